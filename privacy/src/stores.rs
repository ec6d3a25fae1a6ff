//! Opening the stores as the server does, for every crate that reads or
//! writes events: the log wrapped so that personal values are encrypted per
//! subject on the way in and opened on the way out, the read-model
//! database, the subject keys, and the command loop over that log. Whatever
//! does not open its log here writes personal data in the clear.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use commands::crypto::MasterKey;
use commands::{Clock, CommandBus};
use eventlog::redact::{redact_url, scrub};
use eventlog::{EventLog, LogOptions};
use projections::ReadDb;

use crate::pseudonyms::PersonIds;
use crate::{PiiLog, SubjectKeys};

/// Where the stores are, as the configuration names them.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// The data directory of the embedded default (made private).
    pub data_dir: PathBuf,
    pub log_url: String,
    pub read_models_url: String,
    /// The subject keys' own database; `None`: a table of the read models'.
    pub keys_url: Option<String>,
    /// Whether the log's file may still hold an older data directory's read
    /// models (taken out, and rebuilt in their own file).
    pub legacy_read_models: bool,
    pub max_connections: u32,
}

/// The event log, the read-model database and the command loop over the
/// log, opened as the settings name them.
pub struct Stores {
    /// The log as everything reads and writes it: personal values
    /// encrypted per subject on the way in, opened on the way out.
    pub log: Arc<dyn EventLog>,
    pub read_db: ReadDb,
    pub bus: Arc<CommandBus>,
    pub master_key: MasterKey,
    /// Where the master key came from (for the start-up log line).
    pub master_key_from: String,
    pub subject_keys: Arc<SubjectKeys>,
    pub clock: Arc<dyn Clock>,
}

impl Stores {
    /// Closes the read-model and key databases. On SQLite the last close
    /// folds the write-ahead log into its file: without it a command that
    /// wrote much (a rebuild) leaves a large log beside the file.
    pub async fn close(&self) {
        self.read_db.close().await;
        self.subject_keys.close().await;
    }
}

/// Why the stores did not open. URLs are shown with their secrets masked,
/// and a driver's message quoting one is scrubbed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory: {0}")]
    DataDir(std::io::Error),
    #[error("event log {url}: {detail}")]
    Log { url: String, detail: String },
    #[error("read-model database {url}: {detail}")]
    ReadDb { url: String, detail: String },
}

impl StoreError {
    pub fn log(url: &str, e: &dyn std::fmt::Display) -> Self {
        Self::Log {
            url: redact_url(url),
            detail: scrub(&e.to_string(), url),
        }
    }

    pub fn read_db(url: &str, e: &dyn std::fmt::Display) -> Self {
        Self::ReadDb {
            url: redact_url(url),
            detail: scrub(&e.to_string(), url),
        }
    }
}

/// Opens the stores; `clock` is the command loop's.
pub async fn open_stores(
    settings: &StoreSettings,
    master_key: MasterKey,
    master_key_from: String,
    clock: Arc<dyn Clock>,
) -> Result<Stores, StoreError> {
    make_private(&settings.data_dir).map_err(StoreError::DataDir)?;
    let log_url = &settings.log_url;
    let db_url = &settings.read_models_url;
    let keys_db = match &settings.keys_url {
        Some(url) => Some(
            crate::key_store::open(url, settings.max_connections)
                .await
                .map_err(|e| StoreError::read_db(url, &e))?,
        ),
        None => None,
    };
    if let Some(keys_db) = &keys_db
        && settings.legacy_read_models
        && ReadDb::holds_read_models(log_url).await
    {
        let old = ReadDb::connect_unmigrated(log_url, 1)
            .await
            .map_err(|e| StoreError::read_db(log_url, &e))?;
        crate::key_store::move_all(&old, keys_db)
            .await
            .map_err(|e| StoreError::read_db(log_url, &e))?;
        old.close().await;
        let dropped = ReadDb::retire_read_models(log_url, &projections::all())
            .await
            .map_err(|e| StoreError::read_db(log_url, &e))?;
        tracing::warn!(
            dropped,
            "the read models of this older data directory were taken out of the log's file; they are rebuilt from the log into their own"
        );
    }
    let log = eventlog::open(
        log_url,
        &LogOptions {
            max_connections: settings.max_connections,
            clock: Arc::clone(&clock),
        },
    )
    .await
    .map_err(|e| StoreError::log(log_url, &e))?;
    let read_db = ReadDb::connect(db_url, settings.max_connections)
        .await
        .map_err(|e| StoreError::read_db(db_url, &e))?;
    let keys_db = match keys_db {
        Some(keys_db) => {
            // A data directory from before kept the keys with the read models.
            let moved = crate::key_store::move_all(&read_db, &keys_db)
                .await
                .map_err(|e| StoreError::read_db(db_url, &e))?;
            if moved > 0 {
                tracing::info!(
                    moved,
                    "subject keys moved out of the read-model database into their own"
                );
            }
            keys_db
        }
        None => read_db.clone(),
    };
    let mut sqlite_urls = vec![log_url.clone(), db_url.clone()];
    sqlite_urls.extend(settings.keys_url.clone());
    make_sqlite_files_private(&sqlite_urls).map_err(StoreError::DataDir)?;
    let subject_keys = Arc::new(SubjectKeys::new(
        keys_db,
        master_key.clone(),
        Arc::clone(&clock),
    ));
    let log: Arc<dyn EventLog> = Arc::new(PiiLog::new(log, Arc::clone(&subject_keys)));
    let bus = Arc::new(
        CommandBus::new(Arc::clone(&log), Arc::clone(&clock))
            .with_person_ids(Arc::new(PersonIds::derive(&master_key))),
    );
    // The bus keeps folded states, opened with the subjects' keys: an
    // erasure drops them with the key.
    let cached = Arc::downgrade(&bus);
    subject_keys.on_evict(move |_| {
        if let Some(bus) = cached.upgrade() {
            bus.forget_states();
        }
    });
    Ok(Stores {
        log,
        read_db,
        bus,
        master_key,
        master_key_from,
        subject_keys,
        clock,
    })
}

/// Makes the data directory private to the service user (mode 0700),
/// creating it if needed. Everything in it is secret or personal: the
/// master key, the log, the subject keys.
pub fn make_private(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            tracing::info!(path = %dir.display(), was = format!("{mode:o}"), "the data directory is now private to its owner (0700)");
        }
    }
    Ok(())
}

/// Gives the files of the SQLite databases among `urls` (with their
/// write-ahead log and shared-memory files) mode 0600. SQLite creates
/// them 0644 and gives a new WAL file its database file's mode, so this
/// runs once the databases are open.
pub fn make_sqlite_files_private(urls: &[String]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for url in urls {
            let Some(rest) = url.strip_prefix("sqlite:") else {
                continue;
            };
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let path = rest.split('?').next().unwrap_or(rest);
            if path.is_empty() || path == ":memory:" {
                continue;
            }
            for file in [
                path.to_owned(),
                format!("{path}-wal"),
                format!("{path}-shm"),
            ] {
                let file = Path::new(&file);
                if file.exists() {
                    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = urls;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Metadata;
    use domain::credentials::{Credentials, CredentialsCommand};
    use domain::pii::Pii;
    use uuid::Uuid;

    /// A fold the bus keeps holds personal values opened with the subject's
    /// key; after the erasure, loading it again finds them erased, as a
    /// read of the log from the start would.
    #[tokio::test]
    async fn an_erasure_drops_the_states_the_bus_opened_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let url = |file: &str| format!("sqlite:{}", dir.path().join(file).display());
        let settings = StoreSettings {
            data_dir: dir.path().to_owned(),
            log_url: url("log.db"),
            read_models_url: url("read.db"),
            keys_url: Some(url("keys.db")),
            legacy_read_models: false,
            max_connections: 2,
        };
        let clock: Arc<dyn Clock> = Arc::new(commands::SystemClock);
        let meta = Metadata::system(Uuid::now_v7(), clock.now());
        let stores = open_stores(
            &settings,
            MasterKey::from_bytes([7; 32]),
            "test".into(),
            clock,
        )
        .await
        .unwrap();
        let user_id = Uuid::now_v7();
        let secret = "JBSWY3DPEHPK3PXP".to_owned();
        let enrol = CredentialsCommand::EnrolTotp {
            user_id,
            secret: secret.clone(),
            step: 1,
        };
        let id = user_id.to_string();
        stores
            .bus
            .execute::<Credentials>(&id, enrol, &meta)
            .await
            .unwrap();
        let totp = |c: Credentials| c.totp.map(|t| t.secret);
        let (held, _) = stores.bus.load::<Credentials>(&id).await.unwrap();
        assert_eq!(totp(held), Some(Pii::Value(secret)));

        crate::erase(
            &stores.bus,
            &stores.subject_keys,
            &domain::user::user_subject(user_id),
            &meta,
        )
        .await
        .unwrap();
        let (after, _) = stores.bus.load::<Credentials>(&id).await.unwrap();
        assert_eq!(totp(after), Some(Pii::Erased));
    }
}
