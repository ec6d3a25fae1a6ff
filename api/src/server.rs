//! Wiring: opens the log and the read models, starts the projections, and
//! serves HTTP until told to stop, then drains in-flight requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use commands::{Clock, SystemClock};
use projections::Runner;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, redact_url, scrub};
use crate::master_key::{MasterKeyError, load_or_create};
pub use crate::state::{AppState, MAX_BODY_BYTES};
use crate::telemetry;
use domain::Metadata;
use privacy::StoreSettings;
pub use privacy::Stores;
use projections::tokens::TokenViews;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    /// `detail` is the cause's message with the URL's secrets masked
    /// (a driver's message may quote the URL it was given).
    #[error("event log {url}: {detail}")]
    Log { url: String, detail: String },
    #[error("read-model database {url}: {detail}")]
    ReadDb { url: String, detail: String },
    #[error("data directory: {0}")]
    DataDir(std::io::Error),
    #[error(transparent)]
    Stores(#[from] privacy::StoreError),
    #[error("signing keys: {0}")]
    Keys(String),
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    #[error("passwords: {0}")]
    Passwords(String),
    #[error("passkeys: {0}")]
    Passkeys(String),
    #[error("messages: {0}")]
    Notify(#[from] crate::notify::NotifyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl StartError {
    fn log(url: &str, e: &dyn std::fmt::Display) -> Self {
        Self::Log {
            url: redact_url(url),
            detail: scrub(&e.to_string(), url),
        }
    }

    fn read_db(url: &str, e: &dyn std::fmt::Display) -> Self {
        Self::ReadDb {
            url: redact_url(url),
            detail: scrub(&e.to_string(), url),
        }
    }
}

/// Opens the stores as `Server::start` does; the operator subcommands use
/// it too, so they act on exactly the log and database the server would.
pub async fn open_stores(config: &Config) -> Result<Stores, StartError> {
    open_stores_with(config, Arc::new(SystemClock)).await
}

/// [`open_stores`] with the clock the command loop reads.
pub async fn open_stores_with(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Stores, StartError> {
    privacy::make_private(&config.data_dir).map_err(StartError::DataDir)?;
    let (master_key, master_key_from) = load_or_create(config)?;
    let settings = StoreSettings {
        data_dir: config.data_dir.clone(),
        log_url: config.eventstore_url(),
        read_models_url: config.database_url(),
        keys_url: config.subject_keys_url(),
        legacy_read_models: config.legacy_read_models(),
        max_connections: config.db_max_connections,
    };
    Ok(privacy::open_stores(&settings, master_key, master_key_from, clock).await?)
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    /// Where the first start wrote the bootstrap credentials, if it did.
    pub bootstrap_file: Option<PathBuf>,
    stop: watch::Sender<bool>,
    serving: JoinHandle<std::io::Result<()>>,
    follower: JoinHandle<()>,
    reporter: JoinHandle<()>,
}

impl Server {
    /// Opens everything the configuration names and starts serving (the
    /// listen port may be 0: `addr` says which port was bound).
    pub async fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Server::start`] with the clock every "now" of the server comes
    /// from (tests move it instead of sleeping).
    pub async fn start_with_clock(
        mut config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let metrics = telemetry::metrics();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        // Without a configured issuer, the public base URL is the address
        // actually bound (the configured port may be 0).
        if config.issuer.is_none() {
            config.issuer = Some(format!("http://{addr}"));
        }
        let Stores {
            log,
            read_db,
            bus,
            master_key,
            master_key_from: key_from,
            subject_keys,
            clock,
        } = open_stores_with(&config, clock).await?;
        let log_url = config.eventstore_url();
        let db_url = config.database_url();
        let runner = Runner::new(Arc::clone(&log), read_db.clone(), projections::all())
            .with_clock(Arc::clone(&clock))
            .start()
            .await
            .map_err(|e| StartError::read_db(&db_url, &e))?;
        let empty = log
            .head()
            .await
            .map_err(|e| StartError::log(&log_url, &e))?
            .is_none();
        let bootstrap_file = if empty {
            let creds = crate::bootstrap::bootstrap(&log, &bus, &config)
                .await
                .map_err(|e| StartError::Bootstrap(e.to_string()))?;
            let path = config.data_dir.join("bootstrap.json");
            let text = serde_json::to_string_pretty(&creds)
                .map_err(|e| StartError::Bootstrap(e.to_string()))?;
            crate::master_key::write_private(&path, &text)
                .map_err(|e| StartError::Bootstrap(format!("{}: {e}", path.display())))?;
            tracing::warn!(path = %path.display(), "empty log: created the first organization and an admin client; their credentials are in this file (mode 0600)");
            Some(path)
        } else {
            None
        };
        let system = Metadata::system(uuid::Uuid::now_v7(), clock.now());
        let ring = commands::keys::ensure_active(&bus, &log, &master_key, &system)
            .await
            .map_err(|e| StartError::Keys(e.to_string()))?;
        let tokens = Arc::new(TokenViews::new(
            config.issuer(),
            runner.tail(),
            Arc::clone(&clock),
            master_key.clone(),
            ring,
        ));
        let passwords = Arc::new(passwords(&config)?);
        let passkeys = crate::passkeys::RelyingParty::from_config(&config)
            .map_err(StartError::Passkeys)?
            .map(Arc::new);
        let notifier = Arc::new(crate::notify::Notifier::from_config(
            &config,
            clock.clone(),
        )?);
        let follower = tokio::spawn(Arc::clone(&tokens).follow());
        let decisions = commands::authz::DecisionRecorder::start(Arc::clone(bus.log()));
        let state = AppState::new(crate::state::Services {
            config: Arc::new(config),
            clock,
            log: eventlog::LogReader::new(log),
            read_db,
            bus,
            projections: Arc::new(runner),
            master_key,
            metrics,
            tokens,
            subject_keys,
            passwords,
            notifier,
            passkeys,
            compiled_policies: Arc::default(),
            subject_facts: Arc::default(),
            decisions,
            token_claims: Arc::default(),
            tarpit: crate::authentication::Tarpit::default(),
        });
        tracing::info!(
            %addr,
            issuer = %state.config.issuer(),
            eventlog = state.log.backend(),
            read_models = ?state.read_db.dialect,
            master_key = %key_from,
            "idp serving"
        );
        announce_catching_up(&state).await;
        let reporter = tokio::spawn(housekeeping(state.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let app = router(state.clone());
        let limits = crate::serve::Limits {
            header_timeout: Duration::from_secs(state.config.http_header_timeout_seconds.max(1)),
            max_connections: state.config.http_max_connections.max(1),
        };
        let serving = tokio::spawn(crate::serve::serve(listener, app, limits, stop_rx));
        Ok(Self {
            addr,
            state,
            bootstrap_file,
            stop,
            serving,
            follower,
            reporter,
        })
    }

    /// Stops accepting connections, lets in-flight requests finish (up to
    /// the configured grace), then stops the projections.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let grace = Duration::from_secs(self.state.config.shutdown_grace_seconds);
        let mut serving = self.serving;
        if tokio::time::timeout(grace, &mut serving).await.is_err() {
            tracing::warn!("requests still running after the shutdown grace period; dropping them");
            serving.abort();
        }
        self.follower.abort();
        self.reporter.abort();
        // Counted failures not yet recorded are recorded now.
        crate::oauth::client_auth::flush_failures(&self.state, true).await;
        self.state.projections.stop().await;
        // Closed here, not whenever the last holder lets go: on SQLite the
        // last close folds the write-ahead log into the file, which is then
        // complete when this returns.
        self.state.read_db.close().await;
        self.state.subject_keys.close().await;
        tracing::info!("idp stopped");
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully. The
    /// signals are caught from `signals`' creation on: create it before
    /// [`Server::start`] so that a signal during start-up is not lost to the
    /// default action (which would end the process at once).
    pub async fn run_until(self, signals: ShutdownSignals) {
        signals.recv().await;
        tracing::info!("shutdown requested");
        self.shutdown().await;
    }
}

/// SIGTERM and SIGINT, caught from creation on (needs a Tokio runtime).
pub struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for the first of them.
    pub async fn recv(self) {
        #[cfg(unix)]
        {
            async fn next(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(self.term) => {},
                _ = next(self.int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The password policy, deny list and hasher the configuration names.
fn passwords(config: &Config) -> Result<commands::password::Passwords, StartError> {
    let denied = match &config.password_deny_list {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StartError::Passwords(format!("{}: {e}", path.display())))?;
            commands::password::Passwords::read_deny_list(&text)
        }
        None => Vec::new(),
    };
    let policy = domain::password::PasswordPolicy {
        min_length: config.password_min_length,
        max_length: config.password_max_length,
    };
    if policy.min_length < 1 || policy.max_length < policy.min_length {
        return Err(StartError::Passwords(
            "IDP_PASSWORD_MIN_LENGTH must be at least 1 and at most IDP_PASSWORD_MAX_LENGTH".into(),
        ));
    }
    let params = commands::password::HashParams {
        memory_kib: config.password_argon2_memory_kib,
        iterations: config.password_argon2_iterations,
        parallelism: config.password_argon2_parallelism,
    };
    let threads = config.password_hash_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    commands::password::Passwords::new(policy, denied, params, threads)
        .map_err(|e| StartError::Passwords(e.to_string()))
}

/// Says how far behind the log the read models start and, once they have
/// caught up with the head as of now, how long that took: /readyz answers
/// 503 meanwhile, and an operator should not have to guess why.
async fn announce_catching_up(state: &AppState) {
    let Ok(Some(head)) = state.log.head().await else {
        return;
    };
    let at = state.projections.position();
    if at >= head {
        return;
    }
    if state.log.counts_cheaply() {
        let behind = state.log.count_after(at).await.unwrap_or(0);
        tracing::info!(
            events_behind = behind,
            "read models are catching up with the log; not ready until then"
        );
    } else {
        tracing::info!("read models are catching up with the log; not ready until then");
    }
    let runner = Arc::clone(&state.projections);
    tokio::spawn(async move {
        let started = eventlog::clock::monotonic();
        // No deadline (a duration past the clock's end never elapses): false
        // only when the projections stop first, at shutdown.
        if runner.wait_for(head, Duration::MAX).await {
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "read models caught up with the log; ready"
            );
        }
    });
}

/// Until the task is dropped: every few seconds, records the counted client
/// authentication failures whose window has closed and the sign-ins left
/// half-way whose time is up; at start and then hourly, drops the decision
/// records retention no longer keeps.
async fn housekeeping(state: AppState) {
    const TICK: Duration = Duration::from_secs(5);
    let mut tick = tokio::time::interval(TICK);
    let mut next_day = None;
    let mut ticks_to_retention = 0u32;
    loop {
        tick.tick().await;
        crate::oauth::client_auth::flush_failures(&state, false).await;
        if let Err(e) = crate::authentication::expiry::expire_abandoned(&state).await {
            tracing::warn!(error = %e, "recording abandoned sign-ins as expired failed; retrying later");
        }
        if ticks_to_retention == 0 {
            ticks_to_retention = (crate::retention::EVERY.as_secs() / TICK.as_secs()) as u32;
            if let Err(e) = crate::retention::drop_old_decisions(&state, &mut next_day).await {
                tracing::error!(error = %e, "dropping old decision records failed; retrying later");
            }
        }
        ticks_to_retention -= 1;
    }
}

pub fn router(state: AppState) -> Router {
    // Probes and scrapes are counted but not traced: they come every few
    // seconds, and a 503 from /readyz while the read models catch up is
    // its answer, not a failure to log as an error.
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    // The span names the path, never the query string: a query can carry
    // personal values (the subject lookup's `user_name`) or codes.
    let trace = tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request| {
        tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
    });
    Router::new()
        .route("/openapi.json", get(openapi))
        .merge(crate::admin::router())
        .merge(crate::oauth::router())
        .merge(crate::oidc::router())
        .merge(crate::authentication::router())
        .merge(crate::authz::router())
        .merge(crate::scim::router())
        .merge(crate::self_service::router())
        .layer(trace)
        .merge(probes)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_route)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A request that takes longer, its body included, is answered 408.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(state.config.http_request_timeout_seconds.max(1)),
        ))
        .layer(middleware::from_fn(record_request))
        .with_state(state)
}

async fn method_not_allowed() -> crate::problem::Problem {
    crate::problem::Problem::method_not_allowed()
}

async fn no_route() -> crate::problem::Problem {
    crate::problem::Problem::no_route()
}

/// Counts requests and their latency by route (never by raw path, so ids
/// and tokens in paths never become metric labels).
async fn record_request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().to_string();
    let started = eventlog::clock::monotonic();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("idp_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("idp_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let projections: Vec<_> = state
        .projections
        .statuses()
        .into_iter()
        .map(|s| json!({ "name": s.name, "version": s.version, "position": s.position }))
        .collect();
    if !state.tokens.can_sign() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "no_signing_key", "projections": projections })),
        )
            .into_response();
    }
    match state.projections.caught_up().await {
        Ok(true) => Json(json!({ "status": "ready", "projections": projections })).into_response(),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "catching_up", "projections": projections })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": "the event log cannot be read" })),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let position = state.projections.position();
    metrics::gauge!("idp_projection_min_position").set(position.commit as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use eventlog::LogOptions;
    use privacy::SubjectKeys;
    use projections::ReadDb;

    fn config_in(dir: &std::path::Path) -> Config {
        Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn a_new_data_directory_keeps_the_read_models_beside_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        drop(open_stores(&config).await.unwrap());
        assert!(dir.path().join("idp.db").exists() && dir.path().join("read.db").exists());
        assert!(models_apart(&config).await);
        // And again, now that both files exist.
        drop(open_stores(&config).await.unwrap());
        assert!(models_apart(&config).await);
    }

    #[tokio::test]
    async fn an_older_data_directory_has_its_read_models_taken_out_of_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let (master, _) = load_or_create(&config).unwrap();
        // As an older build left it: log, read models and keys in one file.
        let one = config.eventstore_url();
        let log = eventlog::open(&one, &LogOptions::default()).await.unwrap();
        let event = eventlog::NewEvent::new(
            "organization.created.v1",
            json!({"marker": "kept"}),
            Metadata::system(
                uuid::Uuid::now_v7(),
                time::macros::datetime!(2026-12-01 12:00 UTC),
            ),
        );
        log.append(
            "organization-1",
            eventlog::ExpectedRevision::NoStream,
            vec![event],
        )
        .await
        .unwrap();
        drop(log);
        let old = ReadDb::connect(&one, 1).await.unwrap();
        let key = SubjectKeys::new(old.clone(), master, Arc::new(SystemClock))
            .key_or_create("person:a")
            .await
            .unwrap();
        let sealed = privacy::key_store::sealed(&old, "person:a")
            .await
            .unwrap()
            .unwrap();
        old.close().await;

        let stores = open_stores(&config).await.unwrap();
        assert!(models_apart(&config).await);
        assert_eq!(
            stores.subject_keys.key("person:a").await.unwrap(),
            Some(key)
        );
        let read = stores
            .log
            .read_all(eventlog::Position::START, &eventlog::Filter::all(), 10)
            .await
            .unwrap();
        assert_eq!(read.len(), 1, "the log is untouched");
        assert_eq!(read[0].data, json!({"marker": "kept"}));
        drop(stores);
        // The read models have their own file now.
        let tables = tables_in(&config.database_url()).await;
        assert!(tables.contains(&"audit_entries".to_owned()), "{tables:?}");
        let in_log = tables_in(&one).await;
        for gone in [
            "subject_keys",
            "projection_checkpoints",
            "read_model_migrations",
            "audit_entries",
            "organizations",
        ] {
            assert!(!in_log.iter().any(|t| t == gone), "{gone} in {in_log:?}");
        }
        assert!(in_log.iter().any(|t| t == "events"));
        let bytes = std::fs::read(dir.path().join("idp.db")).unwrap();
        assert!(!bytes.windows(sealed.len()).any(|w| w == sealed.as_bytes()));

        // A log file without read models (a first start cut short) is left
        // alone.
        let fresh = tempfile::tempdir().unwrap();
        let config = config_in(fresh.path());
        drop(
            eventlog::open(&config.eventstore_url(), &LogOptions::default())
                .await
                .unwrap(),
        );
        drop(open_stores(&config).await.unwrap());
        assert!(models_apart(&config).await);
    }

    /// Whether the read models are in `read.db` and not in the log's file.
    async fn models_apart(config: &Config) -> bool {
        ReadDb::holds_read_models(&config.database_url()).await
            && !ReadDb::holds_read_models(&config.eventstore_url()).await
    }

    /// The tables of the SQLite file at `url`, read-only.
    async fn tables_in(url: &str) -> Vec<String> {
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .unwrap()
            .read_only(true)
            .connect()
            .await
            .unwrap();
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    }

    async fn keys_in(url: &str) -> i64 {
        let db = privacy::key_store::open(url, 1).await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM subject_keys")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    }

    fn remove_database(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }

    #[tokio::test]
    async fn losing_the_read_models_file_keeps_every_subject_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let stores = open_stores(&config).await.unwrap();
        let key = stores.subject_keys.key_or_create("person:a").await.unwrap();
        drop(stores);
        assert_eq!(keys_in(&config.database_url()).await, 0);
        remove_database(&dir.path().join("read.db"));

        let stores = open_stores(&config).await.unwrap();
        assert_eq!(
            stores.subject_keys.key("person:a").await.unwrap(),
            Some(key)
        );
    }

    /// Closing the stores folds the read-model and key databases'
    /// write-ahead logs into their files: an operator command that ends
    /// right after leaves no log beside them.
    #[tokio::test]
    async fn closed_stores_leave_no_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let stores = open_stores(&config).await.unwrap();
        stores.subject_keys.key_or_create("person:a").await.unwrap();
        sqlx::query("UPDATE projection_checkpoints SET updated_at = 'now'")
            .execute(&stores.read_db.pool)
            .await
            .unwrap();
        let wal = |name: &str| dir.path().join(format!("{name}-wal"));
        assert!(wal("read.db").exists() && wal("keys.db").exists());
        stores.close().await;
        assert!(
            !wal("read.db").exists(),
            "read.db's write-ahead log is left"
        );
        assert!(
            !wal("keys.db").exists(),
            "keys.db's write-ahead log is left"
        );
    }

    /// On PostgreSQL the keys may have a database of their own; a start
    /// moves the keys the read-model database held there.
    #[tokio::test]
    async fn a_configured_keys_database_takes_the_keys_on_postgres() {
        use std::io::Write;
        let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: keys database on PostgreSQL: TEST_DATABASE_URL is not set"
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let read = eventlog::postgres::create_scratch_database(&admin, "keys_read")
            .await
            .unwrap();
        let keys = eventlog::postgres::create_scratch_database(&admin, "keys_own")
            .await
            .unwrap();
        let before = Config {
            database_url: Some(read.clone()),
            ..config_in(dir.path())
        };
        let stores = open_stores(&before).await.unwrap();
        let key = stores.subject_keys.key_or_create("person:a").await.unwrap();
        drop(stores);
        assert_eq!(keys_in(&read).await, 1, "a table of the read models");

        let after = Config {
            keys_database_url: Some(keys.clone()),
            ..before
        };
        let stores = open_stores(&after).await.unwrap();
        assert_eq!(
            stores.subject_keys.key("person:a").await.unwrap(),
            Some(key)
        );
        assert_eq!(keys_in(&read).await, 0);
        assert_eq!(keys_in(&keys).await, 1);
        drop(stores);
        // The same database under another spelling of its URL keeps them.
        let same = Config {
            keys_database_url: Some(format!("{keys}?application_name=idp")),
            database_url: Some(keys.clone()),
            ..after
        };
        let stores = open_stores(&same).await.unwrap();
        assert_eq!(
            stores.subject_keys.key("person:a").await.unwrap(),
            Some(key)
        );
    }

    #[tokio::test]
    async fn keys_kept_with_the_read_models_move_to_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let stores = open_stores(&config).await.unwrap();
        let mut made = Vec::new();
        for i in 0..1_203 {
            let subject = format!("person:{i}");
            let key = stores.subject_keys.key_or_create(&subject).await.unwrap();
            made.push((subject, key));
        }
        drop(stores);
        // As a build before keys.db left them: among the read models.
        let keys_url = config.subject_keys_url().unwrap();
        let keys = privacy::key_store::open(&keys_url, 1).await.unwrap();
        let read = ReadDb::connect(&config.database_url(), 1).await.unwrap();
        privacy::key_store::move_all(&keys, &read).await.unwrap();
        drop((keys, read));
        remove_database(&dir.path().join("keys.db"));
        assert_eq!(keys_in(&config.database_url()).await, 1_203);

        let stores = open_stores(&config).await.unwrap();
        assert_eq!(keys_in(&config.database_url()).await, 0);
        assert_eq!(keys_in(&keys_url).await, 1_203);
        for (subject, key) in &made {
            assert_eq!(stores.subject_keys.key(subject).await.unwrap(), Some(*key));
        }
        // The moved keys are gone from the read database's bytes too.
        drop(stores);
        let bytes = std::fs::read(dir.path().join("read.db")).unwrap();
        let sealed = sqlx::query_scalar::<_, String>("SELECT sealed_key FROM subject_keys LIMIT 1")
            .fetch_one(&privacy::key_store::open(&keys_url, 1).await.unwrap().pool)
            .await
            .unwrap();
        assert!(!bytes.windows(sealed.len()).any(|w| w == sealed.as_bytes()));
    }
}
