use std::io::Write;
use std::path::PathBuf;

use api::{Config, Server};
use serde_json::Value;

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
            log: std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
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

    /// A server whose every "now" is a clock the test moves.
    pub async fn start_clocked(
        store: Store,
        name: &str,
    ) -> Option<(Self, std::sync::Arc<commands::ManualClock>)> {
        let (config, dir) = Self::config(store, name).await?;
        Some(Self::start_clocked_with(config, dir).await)
    }

    /// [`TestServer::start_clocked`] with a configuration of the test's.
    pub async fn start_clocked_with(
        config: Config,
        dir: tempfile::TempDir,
    ) -> (Self, std::sync::Arc<commands::ManualClock>) {
        let clock =
            std::sync::Arc::new(commands::ManualClock::new(time::OffsetDateTime::now_utc()));
        let server = Server::start_with_clock(config.clone(), clock.clone())
            .await
            .unwrap();
        let base = format!("http://{}", server.addr);
        (
            Self {
                data_dir: config.data_dir.clone(),
                server: Some(server),
                base,
                config,
                _dir: Some(dir),
            },
            clock,
        )
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

    /// Stops the server gracefully and starts it again on the same storage,
    /// with the clock `clock`.
    pub async fn restart_clocked(&mut self, clock: std::sync::Arc<commands::ManualClock>) {
        self.server.take().unwrap().shutdown().await;
        let server = Server::start_with_clock(self.config.clone(), clock)
            .await
            .unwrap();
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }

    /// Another node on this server's databases (PostgreSQL), with its own
    /// data directory, the same master key and issuer; ready.
    pub async fn second_node(&self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = self.config.clone();
        config.data_dir = dir.path().to_path_buf();
        config.master_key = Some(
            std::fs::read_to_string(self.data_dir.join("master.key"))
                .unwrap()
                .trim()
                .to_owned(),
        );
        config.issuer = Some(self.base.clone());
        let second = Self::start_with(config, Some(dir)).await;
        second.wait_ready().await;
        second
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

/// The admin client the first start bootstrapped, with a fresh token.
pub struct Admin {
    pub client_id: String,
    pub secret: String,
    pub token: String,
    pub organization_id: String,
}

impl TestServer {
    pub async fn admin(&self) -> Admin {
        let text = std::fs::read_to_string(self.data_dir.join("bootstrap.json")).unwrap();
        let b: Value = serde_json::from_str(&text).unwrap();
        let client_id = b["client_id"].as_str().unwrap().to_owned();
        let secret = b["client_secret"].as_str().unwrap().to_owned();
        let token = self
            .token_basic(&client_id, &secret, Some("idp:admin"))
            .await;
        Admin {
            client_id,
            secret,
            token,
            organization_id: b["organization_id"].as_str().unwrap().to_owned(),
        }
    }

    /// A client_credentials token through a real OAuth client (Basic auth).
    pub async fn token_basic(&self, client_id: &str, secret: &str, scope: Option<&str>) -> String {
        use oauth2::TokenResponse;
        let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(client_id.into()))
            .set_client_secret(oauth2::ClientSecret::new(secret.into()))
            .set_token_uri(oauth2::TokenUrl::new(self.url("/oauth/token")).unwrap())
            .set_auth_type(oauth2::AuthType::BasicAuth);
        let mut req = client.exchange_client_credentials();
        if let Some(s) = scope {
            req = req.add_scope(oauth2::Scope::new(s.into()));
        }
        let tok = req.request_async(&oauth_http()).await.unwrap();
        tok.access_token().secret().clone()
    }

    /// An admin API call: (status, content type, JSON body or Null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let mut req = http().request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, ct, v)
    }

    /// Creates a client through the admin API; returns its JSON.
    pub async fn create_client(&self, admin: &Admin, body: Value) -> Value {
        let (status, _, v) = self
            .call(
                reqwest::Method::POST,
                "/admin/clients",
                &admin.token,
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        v
    }

    /// Creates a secret; returns (secret id, value).
    pub async fn create_secret(&self, admin: &Admin, client_id: &str) -> (String, String) {
        let (status, _, v) = self
            .call(
                reqwest::Method::POST,
                &format!("/admin/clients/{client_id}/secrets"),
                &admin.token,
                Some(serde_json::json!({"description": "test"})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        (
            v["id"].as_str().unwrap().to_owned(),
            v["secret"].as_str().unwrap().to_owned(),
        )
    }
}

pub fn oauth_http() -> oauth2::reqwest::Client {
    oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
