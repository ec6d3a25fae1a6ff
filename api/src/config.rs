//! The one configuration struct: defaults here, then an optional TOML file,
//! then `IDP_*` environment variables (highest precedence).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Every setting, with its environment variable in the doc comment. The
/// README's table is checked against this list by a test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `IDP_LISTEN`: the address the HTTP server binds.
    pub listen: SocketAddr,
    /// `IDP_ISSUER`: the public base URL; default `http://{listen}`.
    pub issuer: Option<String>,
    /// `IDP_DATA_DIR`: where the embedded database and the master key live.
    pub data_dir: PathBuf,
    /// `IDP_DATABASE_URL`: the read models; default `sqlite:{data_dir}/read.db`
    /// (see [`Config::database_url`]).
    pub database_url: Option<String>,
    /// `IDP_EVENTSTORE_URL`: the event log; default `IDP_DATABASE_URL` when that
    /// is set, else `sqlite:{data_dir}/idp.db`.
    pub eventstore_url: Option<String>,
    /// `IDP_KEYS_DATABASE_URL`: the subject keys (see
    /// [`Config::subject_keys_url`]).
    pub keys_database_url: Option<String>,
    /// `IDP_MASTER_KEY`: 64 hex characters; default a key generated into
    /// `{data_dir}/master.key` (mode 0600) on first start.
    pub master_key: Option<String>,
    /// `IDP_MASTER_KEY_FILE`: read the master key from this file instead.
    pub master_key_file: Option<PathBuf>,
    /// `IDP_LOG_FORMAT`: `human` or `json`.
    pub log_format: LogFormat,
    /// `IDP_LOG`: a tracing filter such as `info` or `idp=debug,sqlx=warn`.
    pub log: String,
    /// `IDP_DB_MAX_CONNECTIONS`: the pool size for each database.
    pub db_max_connections: u32,
    /// `IDP_SHUTDOWN_GRACE_SECONDS`: how long in-flight requests may finish.
    pub shutdown_grace_seconds: u64,
    /// `IDP_SECRET_MAX_LIFETIME_DAYS`: the longest a client secret may live.
    pub secret_max_lifetime_days: u32,
    /// `IDP_DECISION_RETENTION_DAYS`: how many days (today included) of the
    /// policy decision point's decision records are kept; older days are
    /// dropped from the log. 0 keeps them all.
    pub decision_retention_days: u32,
    /// `IDP_SECRET_ALLOW_NEVER_EXPIRING`: whether a secret may never expire.
    pub secret_allow_never_expiring: bool,
    /// `IDP_HTTP_HEADER_TIMEOUT_SECONDS`: how long a client has to send a
    /// request's headers, counted from the connection's start or from the
    /// end of the previous response (so also how long a kept-alive
    /// connection may sit idle); then the connection is closed.
    pub http_header_timeout_seconds: u64,
    /// `IDP_HTTP_REQUEST_TIMEOUT_SECONDS`: how long a request (its body
    /// included) may take before it is answered 408.
    pub http_request_timeout_seconds: u64,
    /// `IDP_HTTP_MAX_CONNECTIONS`: open connections at most; one more is
    /// answered 503 and closed.
    pub http_max_connections: usize,
    /// `IDP_PASSWORD_MIN_LENGTH`: the shortest password accepted, in
    /// characters (NIST SP 800-63B: at least 8; 15 for single-factor).
    pub password_min_length: usize,
    /// `IDP_PASSWORD_MAX_LENGTH`: the longest password accepted.
    pub password_max_length: usize,
    /// `IDP_PASSWORD_DENY_LIST`: a file of refused passwords, one per line.
    pub password_deny_list: Option<PathBuf>,
    /// `IDP_PASSWORD_ARGON2_MEMORY_KIB`: argon2id memory cost.
    pub password_argon2_memory_kib: u32,
    /// `IDP_PASSWORD_ARGON2_ITERATIONS`: argon2id time cost.
    pub password_argon2_iterations: u32,
    /// `IDP_PASSWORD_ARGON2_PARALLELISM`: argon2id lanes.
    pub password_argon2_parallelism: u32,
    /// `IDP_PASSWORD_HASH_THREADS`: password hashes computed at once at
    /// most; default the number of cores.
    pub password_hash_threads: Option<usize>,
    /// `IDP_SIGN_IN_TIMEOUT_SECONDS`: how long the steps of one sign-in
    /// may take, from its start.
    pub sign_in_timeout_seconds: u64,
    /// `IDP_SESSION_LIFETIME_SECONDS`: how long a session lasts at most.
    pub session_lifetime_seconds: u64,
    /// `IDP_SESSION_IDLE_SECONDS`: how long a session may go unused
    /// (at least 120).
    pub session_idle_seconds: u64,
    /// `IDP_SMTP_URL`: the SMTP server codes and notices are mailed
    /// through (`smtp://host:port`, `smtp://host?tls=required`,
    /// `smtps://host`); none keeps email in the outbox.
    pub smtp_url: Option<String>,
    /// `IDP_SMTP_FROM`: the sender of those emails.
    pub smtp_from: String,
    /// `IDP_SMS_WEBHOOK_URL`: the HTTP gateway SMS messages are posted to;
    /// none keeps them in the outbox.
    pub sms_webhook_url: Option<String>,
    /// `IDP_WHATSAPP_WEBHOOK_URL`: the same for WhatsApp messages.
    pub whatsapp_webhook_url: Option<String>,
    /// `IDP_WEBHOOK_SECRET`: sent to the gateways in `X-Webhook-Secret`.
    pub webhook_secret: Option<String>,
    /// `IDP_WEBAUTHN_RP_ID`: the relying party id passkeys are bound to (a
    /// domain); default the host of the first origin.
    pub webauthn_rp_id: Option<String>,
    /// `IDP_WEBAUTHN_ORIGINS`: the origins pages ask for passkeys from,
    /// comma-separated; default the issuer's (`http://localhost:PORT` for
    /// an issuer on a loopback address).
    pub webauthn_origins: Option<String>,
    /// `IDP_WEBAUTHN_RP_NAME`: the name authenticators show.
    pub webauthn_rp_name: String,
    /// `IDP_ROLES_CLAIM`: the access token claim that lists its subject's
    /// role names.
    pub roles_claim: String,
    /// `IDP_PERMISSIONS_CLAIM`: the claim that lists their permissions.
    pub permissions_claim: String,
    /// `IDP_ROLE_CLAIMS_MAX`: the most role names and permissions together
    /// a token carries; beyond it, it carries neither list and
    /// `roles_omitted: true` (introspection always answers them all).
    pub role_claims_max: usize,
    /// `IDP_REFRESH_TOKEN_LIFETIME_SECONDS`: how long a person's refresh
    /// token lives unused, unless its client sets its own.
    pub refresh_token_lifetime_seconds: u32,
    /// `IDP_ID_TOKEN_LIFETIME_SECONDS`: how long an ID token is valid.
    pub id_token_lifetime_seconds: u32,
}

/// The environment variables the configuration reads, for the README check.
pub const ENV_VARS: &[&str] = &[
    "IDP_LISTEN",
    "IDP_ISSUER",
    "IDP_DATA_DIR",
    "IDP_DATABASE_URL",
    "IDP_EVENTSTORE_URL",
    "IDP_KEYS_DATABASE_URL",
    "IDP_MASTER_KEY",
    "IDP_MASTER_KEY_FILE",
    "IDP_LOG_FORMAT",
    "IDP_LOG",
    "IDP_DB_MAX_CONNECTIONS",
    "IDP_SHUTDOWN_GRACE_SECONDS",
    "IDP_SECRET_MAX_LIFETIME_DAYS",
    "IDP_SECRET_ALLOW_NEVER_EXPIRING",
    "IDP_HTTP_HEADER_TIMEOUT_SECONDS",
    "IDP_HTTP_REQUEST_TIMEOUT_SECONDS",
    "IDP_HTTP_MAX_CONNECTIONS",
    "IDP_PASSWORD_MIN_LENGTH",
    "IDP_PASSWORD_MAX_LENGTH",
    "IDP_PASSWORD_DENY_LIST",
    "IDP_PASSWORD_ARGON2_MEMORY_KIB",
    "IDP_PASSWORD_ARGON2_ITERATIONS",
    "IDP_PASSWORD_ARGON2_PARALLELISM",
    "IDP_PASSWORD_HASH_THREADS",
    "IDP_SIGN_IN_TIMEOUT_SECONDS",
    "IDP_SESSION_LIFETIME_SECONDS",
    "IDP_SESSION_IDLE_SECONDS",
    "IDP_SMTP_URL",
    "IDP_SMTP_FROM",
    "IDP_SMS_WEBHOOK_URL",
    "IDP_WHATSAPP_WEBHOOK_URL",
    "IDP_WEBHOOK_SECRET",
    "IDP_WEBAUTHN_RP_ID",
    "IDP_WEBAUTHN_ORIGINS",
    "IDP_WEBAUTHN_RP_NAME",
    "IDP_ROLES_CLAIM",
    "IDP_PERMISSIONS_CLAIM",
    "IDP_ROLE_CLAIMS_MAX",
    "IDP_REFRESH_TOKEN_LIFETIME_SECONDS",
    "IDP_ID_TOKEN_LIFETIME_SECONDS",
    "IDP_CONFIG",
];

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            issuer: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            eventstore_url: None,
            keys_database_url: None,
            master_key: None,
            master_key_file: None,
            log_format: LogFormat::Human,
            log: "info".to_owned(),
            db_max_connections: 32,
            shutdown_grace_seconds: 20,
            secret_max_lifetime_days: 365,
            secret_allow_never_expiring: false,
            decision_retention_days: 90,
            http_header_timeout_seconds: 10,
            http_request_timeout_seconds: 30,
            password_min_length: 12,
            password_max_length: 128,
            password_deny_list: None,
            password_argon2_memory_kib: 19 * 1024,
            password_argon2_iterations: 2,
            password_argon2_parallelism: 1,
            password_hash_threads: None,
            sign_in_timeout_seconds: 600,
            session_lifetime_seconds: 12 * 3600,
            session_idle_seconds: 1800,
            smtp_url: None,
            smtp_from: "idp <no-reply@localhost>".into(),
            sms_webhook_url: None,
            whatsapp_webhook_url: None,
            webhook_secret: None,
            webauthn_rp_id: None,
            webauthn_origins: None,
            webauthn_rp_name: "idp".into(),
            roles_claim: "roles".into(),
            permissions_claim: "permissions".into(),
            role_claims_max: 100,
            refresh_token_lifetime_seconds: 30 * 86_400,
            id_token_lifetime_seconds: 3600,
            http_max_connections: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Defaults, then the TOML file (if given), then `IDP_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("{} does not exist", path.display())));
            }
            f = f.merge(Toml::file(path));
        }
        let env = Env::prefixed("IDP_").ignore(&["CONFIG"]);
        f.merge(env)
            .extract::<Config>()
            .map_err(|e| ConfigError(e.to_string()))
    }

    pub fn issuer(&self) -> String {
        self.issuer
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The read models. The embedded default keeps them in a file of their
    /// own beside the log's, so that projection writes never hold the log's
    /// write lock (token grants waited on them). A data directory from
    /// before kept them in the log's file: `open_stores` takes them out
    /// (see [`Config::legacy_read_models`]).
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&self.data_dir.join("read.db")))
    }

    pub fn eventstore_url(&self) -> String {
        self.eventstore_url
            .clone()
            .or_else(|| self.database_url.clone())
            .unwrap_or_else(|| sqlite_url(&self.data_dir.join("idp.db")))
    }

    /// Where the subject keys live when not with the read models: the
    /// configured keys database; else, while the read models are in the
    /// embedded default's file, a file of their own (`keys.db`), so that
    /// losing or deleting the read models' file (which a start rebuilds from
    /// the log) erases nobody. `None`: a table of the configured read-model
    /// database.
    pub fn subject_keys_url(&self) -> Option<String> {
        self.keys_database_url.clone().or_else(|| {
            self.database_url
                .is_none()
                .then(|| sqlite_url(&self.data_dir.join("keys.db")))
        })
    }

    /// Whether the log's file may still hold the read models of an older
    /// data directory (`open_stores` then takes them out, see
    /// `ReadDb::retire_read_models`): both places are the embedded
    /// defaults, the log's file exists and the read models' does not.
    pub fn legacy_read_models(&self) -> bool {
        self.database_url.is_none()
            && self.eventstore_url.is_none()
            && self.data_dir.join("idp.db").exists()
            && !self.data_dir.join("read.db").exists()
    }

    /// How long a sign-in and the session it opens last.
    pub fn sign_in_times(&self) -> commands::sign_in::SignInTimes {
        let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2));
        commands::sign_in::SignInTimes {
            sign_in: secs(self.sign_in_timeout_seconds.max(1)),
            session_lifetime: secs(self.session_lifetime_seconds.max(120)),
            session_idle: secs(self.session_idle_seconds.max(120)),
        }
    }

    /// The configuration as it may be shown: secrets masked.
    pub fn redacted(&self) -> Self {
        let mut c = self.clone();
        if c.master_key.is_some() {
            c.master_key = Some("<redacted>".into());
        }
        c.database_url = c.database_url.map(|u| redact_url(&u));
        c.eventstore_url = c.eventstore_url.map(|u| redact_url(&u));
        c.keys_database_url = c.keys_database_url.map(|u| redact_url(&u));
        c.smtp_url = c.smtp_url.map(|u| redact_url(&u));
        c.sms_webhook_url = c.sms_webhook_url.map(|u| redact_url(&u));
        c.whatsapp_webhook_url = c.whatsapp_webhook_url.map(|u| redact_url(&u));
        if c.webhook_secret.is_some() {
            c.webhook_secret = Some("<redacted>".into());
        }
        c
    }
}

pub use eventlog::redact::{redact_url, scrub};

fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite:{}", path.display())
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's test jail returns its own large error
mod tests {
    use super::*;

    #[test]
    fn every_place_a_password_can_be_is_masked() {
        assert_eq!(
            redact_url("postgres://u:p@ss@db:5432/idp"),
            "postgres://u:<redacted>@db:5432/idp"
        );
        assert_eq!(
            redact_url("postgres://db/idp?user=u&password=hunter2&sslmode=disable"),
            "postgres://db/idp?user=u&password=<redacted>&sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://u:a%40b@db/idp?sslpassword=x"),
            "postgres://u:<redacted>@db/idp?sslpassword=<redacted>"
        );
        assert_eq!(redact_url("sqlite:./data/idp.db"), "sqlite:./data/idp.db");
        let url = "postgres://u:s3cr%40t@db/idp?password=other";
        let message = format!("cannot connect to {url}: password s3cr@t refused; other");
        let shown = scrub(&message, url);
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(!shown.contains("other"), "{shown}");
    }

    #[test]
    fn defaults_need_nothing_installed() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.issuer(), "http://127.0.0.1:8080");
        assert_eq!(c.eventstore_url(), "sqlite:./data/idp.db");
        assert_eq!(c.database_url(), "sqlite:./data/read.db");
        let pg = Config {
            database_url: Some("postgres://db/idp".into()),
            ..Config::default()
        };
        assert_eq!(pg.eventstore_url(), "postgres://db/idp", "one database");
        assert_eq!(
            c.subject_keys_url().as_deref(),
            Some("sqlite:./data/keys.db")
        );
        assert_eq!(pg.subject_keys_url(), None, "with the read models");
        let pg_keys = Config {
            keys_database_url: Some("postgres://db/keys".into()),
            ..pg.clone()
        };
        assert_eq!(
            pg_keys.subject_keys_url().as_deref(),
            Some("postgres://db/keys")
        );
        let log_elsewhere = Config {
            eventstore_url: Some("postgres://db/log".into()),
            ..Config::default()
        };
        assert_eq!(
            log_elsewhere.subject_keys_url().as_deref(),
            Some("sqlite:./data/keys.db"),
            "beside a read-model file"
        );
    }

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "idp.toml",
                "listen = \"0.0.0.0:9000\"\nissuer = \"https://id.example.org/\"\nlog_format = \"json\"",
            )?;
            jail.set_env("IDP_LISTEN", "127.0.0.1:9100");
            jail.set_env("IDP_EVENTSTORE_URL", "postgres://u:pw@db/idp");
            let c = Config::load(Some(Path::new("idp.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
            assert_eq!(c.issuer(), "https://id.example.org");
            assert_eq!(c.log_format, LogFormat::Json);
            assert_eq!(c.eventstore_url(), "postgres://u:pw@db/idp");
            assert_eq!(
                c.redacted().eventstore_url.as_deref(),
                Some("postgres://u:<redacted>@db/idp")
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("idp.toml", "lisen = \"0.0.0.0:9000\"")?;
            assert!(Config::load(Some(Path::new("idp.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn the_readme_documents_every_variable() {
        let readme = include_str!("../../README.md");
        for var in ENV_VARS {
            assert!(
                readme.contains(&format!("`{var}`")),
                "README.md lacks {var}"
            );
        }
    }
}
