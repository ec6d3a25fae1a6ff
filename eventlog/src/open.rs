use std::sync::Arc;

use crate::chain::DEFAULT_SEAL_EVERY;
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::port::EventLog;
use crate::postgres::PostgresLog;
use crate::sqlite::{SqliteLog, Synchronous};

/// Tuning that does not belong in the URL.
#[derive(Clone)]
pub struct LogOptions {
    pub max_connections: u32,
    /// The time an adapter that stamps events itself records (SQLite; the
    /// other stores stamp with their server's time).
    pub clock: Arc<dyn Clock>,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_connections: 32,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for LogOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogOptions")
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// Opens the event log a URL names:
/// - `sqlite:PATH` or `sqlite://PATH`, optionally `?synchronous=full`;
/// - `postgres://…` or `postgresql://…`;
/// - on both SQL backends, `seal_every=N` sets how many events one
///   tamper-evidence anchor covers at most (default
///   [`DEFAULT_SEAL_EVERY`]; 0: seal only when asked, see
///   [`EventLog::seal`]);
/// - `esdb://…`, `kurrentdb://…` (and their `+discover` forms), when built
///   with the `kurrentdb` feature.
pub async fn open(url: &str, options: &LogOptions) -> Result<Arc<dyn EventLog>, Error> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut sync = Synchronous::Normal;
        let mut seal_every = DEFAULT_SEAL_EVERY;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("seal_every", v)) => seal_every = parse_seal_every(v)?,
                Some(("synchronous", v)) if v.eq_ignore_ascii_case("full") => {
                    sync = Synchronous::Full
                }
                Some(("synchronous", v)) if v.eq_ignore_ascii_case("normal") => {
                    sync = Synchronous::Normal
                }
                // Options meant for other SQLite clients (e.g. `mode=rwc`) are harmless here.
                Some(("mode", _)) => {}
                _ => {
                    return Err(Error::UnsupportedUrl(format!(
                        "unknown SQLite option {pair:?}"
                    )));
                }
            }
        }
        if path.is_empty() {
            return Err(Error::UnsupportedUrl("sqlite URL without a path".into()));
        }
        let path = path.to_owned();
        let clock = Arc::clone(&options.clock);
        let log =
            tokio::task::spawn_blocking(move || SqliteLog::open(path, sync, seal_every, clock))
                .await
                .map_err(|e| Error::Backend(e.to_string()))??;
        return Ok(Arc::new(log));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (url, seal_every) = take_seal_every(url)?;
        return Ok(Arc::new(
            PostgresLog::connect(&url, options.max_connections, seal_every).await?,
        ));
    }
    if url.starts_with("esdb") || url.starts_with("kurrentdb") {
        #[cfg(feature = "kurrentdb")]
        {
            return Ok(Arc::new(crate::kurrent::KurrentLog::connect(url).await?));
        }
        #[cfg(not(feature = "kurrentdb"))]
        {
            return Err(Error::UnsupportedUrl(format!(
                "{url}: this build has no KurrentDB support (build with --features kurrentdb)"
            )));
        }
    }
    Err(Error::UnsupportedUrl(format!(
        "{url}: expected sqlite:, postgres:// or esdb:// / kurrentdb://"
    )))
}

fn parse_seal_every(v: &str) -> Result<u64, Error> {
    v.parse()
        .map_err(|_| Error::UnsupportedUrl(format!("seal_every={v}: expected a number of events")))
}

/// Takes `seal_every` out of a PostgreSQL URL's query (the driver does not
/// know it); returns the URL without it and its value.
fn take_seal_every(url: &str) -> Result<(String, u64), Error> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), DEFAULT_SEAL_EVERY));
    };
    let mut seal_every = DEFAULT_SEAL_EVERY;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("seal_every", v)) => seal_every = parse_seal_every(v)?,
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, seal_every))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_every_is_taken_out_of_a_postgres_url() {
        let (u, n) = take_seal_every("postgres://h/db?seal_every=50&sslmode=disable").unwrap();
        assert_eq!((u.as_str(), n), ("postgres://h/db?sslmode=disable", 50));
        let (u, n) = take_seal_every("postgres://h/db?seal_every=0").unwrap();
        assert_eq!((u.as_str(), n), ("postgres://h/db", 0));
        let (u, n) = take_seal_every("postgres://h/db").unwrap();
        assert_eq!((u.as_str(), n), ("postgres://h/db", DEFAULT_SEAL_EVERY));
        assert!(take_seal_every("postgres://h/db?seal_every=x").is_err());
    }
}
