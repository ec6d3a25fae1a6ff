use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use eventlog::{EventLog, LogOptions};

pub struct Harness {
    pub log: Arc<dyn EventLog>,
    /// The log's URL without options: a way into its database that goes
    /// around the adapter (`sqlite:PATH` or a PostgreSQL URL).
    pub url: String,
    pub _dir: Option<tempfile::TempDir>,
}

/// Prints one line per skipped suite straight to the terminal (past the
/// test harness's capture), however many of its tests run.
pub fn say_skipped(suite: &str, why: &str) {
    static SAID: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let said = SAID.get_or_init(|| Mutex::new(Vec::new()));
    let mut said = said.lock().unwrap();
    if !said.iter().any(|s| s == suite) {
        said.push(suite.to_owned());
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the {suite} event log contract suite: {why}"
        );
    }
}

impl Harness {
    pub async fn sqlite() -> Self {
        Self::sqlite_with("").await
    }

    /// `options`: a URL query such as `?seal_every=50`, or empty.
    pub async fn sqlite_with(options: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("log.db").display());
        let log = eventlog::open(&format!("{url}{options}"), &LogOptions::default())
            .await
            .unwrap();
        Self {
            log,
            url,
            _dir: Some(dir),
        }
    }

    pub async fn postgres(case: &str) -> Option<Self> {
        Self::postgres_with(&format!("contract_{case}"), "").await
    }

    /// A fresh database named `database`; `options` as for `sqlite_with`.
    pub async fn postgres_with(database: &str, options: &str) -> Option<Self> {
        let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
            say_skipped("PostgreSQL", "TEST_DATABASE_URL is not set");
            return None;
        };
        let url = eventlog::postgres::create_scratch_database(&admin, database)
            .await
            .unwrap();
        let log = open_postgres(&format!("{url}{options}")).await;
        Some(Self {
            log,
            url,
            _dir: None,
        })
    }

    #[cfg(feature = "kurrentdb")]
    #[allow(dead_code)]
    pub async fn kurrent() -> Option<Self> {
        let Ok(url) = std::env::var("EVENTSTORE_URL") else {
            say_skipped("KurrentDB", "EVENTSTORE_URL is not set");
            return None;
        };
        let log = eventlog::open(&url, &LogOptions::default()).await.unwrap();
        Some(Self {
            log,
            url,
            _dir: None,
        })
    }
}

pub async fn open_postgres(url: &str) -> Arc<dyn EventLog> {
    eventlog::open(
        url,
        &LogOptions {
            max_connections: 24,
            ..LogOptions::default()
        },
    )
    .await
    .unwrap()
}
