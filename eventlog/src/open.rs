use std::sync::Arc;

use crate::error::Error;
use crate::port::EventLog;
use crate::postgres::PostgresLog;
use crate::sqlite::{SqliteLog, Synchronous};

/// Tuning that does not belong in the URL.
#[derive(Clone, Debug)]
pub struct LogOptions {
    pub max_connections: u32,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_connections: 32,
        }
    }
}

/// Opens the event log a URL names:
/// - `sqlite:PATH` or `sqlite://PATH`, optionally `?synchronous=full`;
/// - `postgres://…` or `postgresql://…`;
/// - `esdb://…`, `kurrentdb://…` (and their `+discover` forms), when built
///   with the `kurrentdb` feature.
pub async fn open(url: &str, options: &LogOptions) -> Result<Arc<dyn EventLog>, Error> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut sync = Synchronous::Normal;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
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
        let log = tokio::task::spawn_blocking(move || SqliteLog::open(path, sync))
            .await
            .map_err(|e| Error::Backend(e.to_string()))??;
        return Ok(Arc::new(log));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(
            PostgresLog::connect(url, options.max_connections).await?,
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
