use std::io::Write;
use std::path::PathBuf;

use api::{Config, Server};

/// A real server on 127.0.0.1 with a port of its own and fresh storage.
pub struct TestServer {
    pub server: Option<Server>,
    pub base: String,
    pub data_dir: PathBuf,
    pub config: Config,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

impl TestServer {
    /// A configuration with fresh storage of the given kind; `None` (after
    /// one line on the terminal) when PostgreSQL is asked for but
    /// `TEST_DATABASE_URL` is not set.
    pub async fn config(store: Store, name: &str) -> Option<(Config, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            log: "warn".into(),
            ..Config::default()
        };
        if store == Store::Postgres {
            let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: end-to-end {name} on PostgreSQL: TEST_DATABASE_URL is not set"
                );
                return None;
            };
            let url = eventlog::postgres::create_scratch_database(&admin, &format!("e2e_{name}"))
                .await
                .unwrap();
            config.database_url = Some(url);
            config.db_max_connections = 16;
        }
        Some((config, dir))
    }

    pub async fn start_with(config: Config, dir: Option<tempfile::TempDir>) -> Self {
        let server = Server::start(config.clone()).await.unwrap();
        let base = format!("http://{}", server.addr);
        Self {
            data_dir: config.data_dir.clone(),
            server: Some(server),
            base,
            config,
            _dir: dir,
        }
    }

    pub async fn start(store: Store, name: &str) -> Option<Self> {
        let (config, dir) = Self::config(store, name).await?;
        Some(Self::start_with(config, Some(dir)).await)
    }

    /// Polls `/readyz` until it answers 200 (at most 10 s); returns its body.
    pub async fn wait_ready(&self) -> serde_json::Value {
        let c = http();
        for _ in 0..400 {
            let r = c.get(self.url("/readyz")).send().await.unwrap();
            if r.status() == 200 {
                return r.json().await.unwrap();
            }
            assert_eq!(r.status(), 503);
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the server did not become ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// Stops the server gracefully and keeps the storage for a restart.
    pub async fn stop(&mut self) -> (Config, Option<tempfile::TempDir>) {
        self.server.take().unwrap().shutdown().await;
        (self.config.clone(), self._dir.take())
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}
