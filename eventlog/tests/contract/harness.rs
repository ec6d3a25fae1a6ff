use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use eventlog::{EventLog, LogOptions};

pub struct Harness {
    pub log: Arc<dyn EventLog>,
    _dir: Option<tempfile::TempDir>,
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
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("log.db").display());
        let log = eventlog::open(&url, &LogOptions::default()).await.unwrap();
        Self {
            log,
            _dir: Some(dir),
        }
    }

    pub async fn postgres(case: &str) -> Option<Self> {
        let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
            say_skipped("PostgreSQL", "TEST_DATABASE_URL is not set");
            return None;
        };
        let url = eventlog::postgres::create_scratch_database(&admin, &format!("contract_{case}"))
            .await
            .unwrap();
        let log = eventlog::open(
            &url,
            &LogOptions {
                max_connections: 24,
            },
        )
        .await
        .unwrap();
        Some(Self { log, _dir: None })
    }

    #[cfg(feature = "kurrentdb")]
    #[allow(dead_code)]
    pub async fn kurrent() -> Option<Self> {
        let Ok(url) = std::env::var("EVENTSTORE_URL") else {
            say_skipped("KurrentDB", "EVENTSTORE_URL is not set");
            return None;
        };
        let log = eventlog::open(&url, &LogOptions::default()).await.unwrap();
        Some(Self { log, _dir: None })
    }
}
