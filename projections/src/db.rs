//! The read-model database: SQLite or PostgreSQL through sqlx's `Any`
//! driver, with the schema migrations of `migrations/{sqlite,postgres}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use tokio::sync::Notify;

use crate::runner::ProjectionError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One migration: applied once, in order, in its own transaction.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// A migration from its version, the number its files start with, and
/// its name: `migrations/{sqlite,postgres}/{number}_{name}.sql`.
macro_rules! migration {
    ($version:literal, $number:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!(
                "../../migrations/sqlite/",
                $number,
                "_",
                $name,
                ".sql"
            )),
            postgres: include_str!(concat!(
                "../../migrations/postgres/",
                $number,
                "_",
                $name,
                ".sql"
            )),
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001", "read_models"),
    migration!(2, "0002", "clients"),
    migration!(3, "0003", "registration"),
    migration!(4, "0004", "audit"),
    migration!(5, "0005", "privacy"),
    migration!(6, "0006", "audit_compact"),
    migration!(7, "0007", "audit_uuid_bytes"),
    migration!(8, "0008", "audit_by_source_ip"),
    migration!(9, "0009", "users"),
    migration!(10, "0010", "user_attributes_by_organization"),
    migration!(11, "0011", "users_by_status"),
    migration!(12, "0012", "sessions"),
    migration!(13, "0013", "notifications"),
    migration!(14, "0014", "roles"),
    migration!(15, "0015", "role_includes"),
    migration!(16, "0016", "user_attribute_keys"),
    migration!(17, "0017", "group_external_id"),
    migration!(18, "0018", "open_sign_ins"),
];

/// How a transaction that will write begins on SQLite: it takes the write
/// lock at once, so a transaction that reads before it writes never fails
/// to upgrade when another writer got there first.
const SQLITE_BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

#[derive(Clone, Debug)]
pub struct ReadDb {
    pub pool: AnyPool,
    pub dialect: Dialect,
    /// This process's writers of a SQLite database take turns here rather
    /// than in SQLite's busy handler, which sleeps whole milliseconds.
    write_turn: Arc<tokio::sync::Mutex<()>>,
    /// What they write with: on SQLite one connection, whose page cache
    /// then lasts from one commit to the next (a connection's cache starts
    /// over whenever another connection has written); on PostgreSQL the
    /// pool.
    writer: AnyPool,
}

/// A transaction that writes: on SQLite it holds the process's write turn
/// until it ends. Reads as the connection it runs on.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// The writing connection's page cache: 64 MiB (a negative `cache_size`
/// counts KiB), for the index pages a batch of rows probes.
const WRITER_PRAGMAS: &str = "PRAGMA cache_size=-65536;";

/// The pool's settings; on SQLite every connection runs the pragmas below
/// and then `extra`.
fn pool_options(dialect: Dialect, max_connections: u32, extra: &'static str) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if dialect == Dialect::Sqlite {
                    // secure_delete: an erased person's values are
                    // overwritten on disk, not left in free pages.
                    // mmap_size: pages are read from the mapped file
                    // instead of copied by a system call each (SQLite
                    // caps it at its compiled-in limit).
                    conn.execute(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; \
                         PRAGMA secure_delete=ON; PRAGMA mmap_size=17179869184;",
                    )
                    .await?;
                    if !extra.is_empty() {
                        conn.execute(extra).await?;
                    }
                }
                Ok(())
            })
        })
}

impl ReadDb {
    /// Connects to `url` (`sqlite:PATH` or `postgres://…`) and brings the
    /// schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ProjectionError> {
        let db = Self::connect_unmigrated(url, max_connections).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Connects with the read database's settings, without its schema.
    /// Connects without applying the read-model migrations (for a
    /// database that holds something else, or before its read models are
    /// retired).
    pub async fn connect_unmigrated(
        url: &str,
        max_connections: u32,
    ) -> Result<Self, ProjectionError> {
        install_default_drivers();
        let (url, dialect) = if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = rest.split_once('?').map_or(rest, |(p, _)| p);
            if let Some(dir) = std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ProjectionError::Db(format!("creating {}: {e}", dir.display())))?;
            }
            (format!("sqlite://{path}?mode=rwc"), Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), Dialect::Postgres)
        } else {
            return Err(ProjectionError::Db(format!(
                "unsupported read-model database URL {url:?}: expected sqlite: or postgres://"
            )));
        };
        let pool = pool_options(
            dialect,
            if dialect == Dialect::Sqlite {
                max_connections.min(8)
            } else {
                max_connections
            },
            "",
        )
        .connect(&url)
        .await?;
        let writer = match dialect {
            Dialect::Sqlite => {
                pool_options(dialect, 1, WRITER_PRAGMAS)
                    .connect(&url)
                    .await?
            }
            Dialect::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            dialect,
            write_turn: Arc::new(tokio::sync::Mutex::new(())),
            writer,
        })
    }

    /// The pool writes go through (see [`Self::begin_write`]).
    pub fn writes(&self) -> &AnyPool {
        &self.writer
    }

    /// Closes the connections. On SQLite the last close folds the
    /// write-ahead log into the database file.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// Whether the SQLite database at `url` already holds read models (it
    /// has this module's migrations table). Read-only; false when it cannot
    /// tell.
    pub async fn holds_read_models(url: &str) -> bool {
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        let Ok(options) = sqlx::sqlite::SqliteConnectOptions::from_str(url) else {
            return false;
        };
        let Ok(mut conn) = options.read_only(true).connect().await else {
            return false;
        };
        let found: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'read_model_migrations'",
        )
        .fetch_one(&mut conn)
        .await;
        found.is_ok_and(|n| n > 0)
    }

    /// Takes the read models out of the SQLite database at `url`, where an
    /// older data directory kept them beside the log. The caller moves the
    /// subject keys out first (they are not read models); then every
    /// read-model table (each projection's tables with any generation
    /// a rebuild left, the checkpoints, the migrations) is dropped in one
    /// transaction, with deleted pages overwritten, and the file
    /// checkpointed. Nothing else in the file is touched. The read models
    /// are rebuilt from the log wherever they live now. Returns how many
    /// tables were dropped.
    pub async fn retire_read_models(
        url: &str,
        projections: &[Arc<dyn crate::Projection>],
    ) -> Result<usize, ProjectionError> {
        let old = Self::connect_unmigrated(url, 1).await?;
        if old.dialect != Dialect::Sqlite {
            return Err(ProjectionError::Db(
                "read models are retired only from a SQLite file".into(),
            ));
        }
        let mut names: Vec<String> = vec![
            "subject_keys".into(),
            "projection_checkpoints".into(),
            "read_model_migrations".into(),
        ];
        for p in projections {
            for t in p.tables() {
                for suffix in ["", "__next", "__old"] {
                    names.push(format!("{t}{suffix}"));
                }
            }
        }
        let mut tx = old.begin_write().await?;
        let mut dropped = 0;
        for name in &names {
            let exists: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
            )
            .bind(name.clone())
            .fetch_one(&mut *tx)
            .await?;
            if exists > 0 {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE \"{name}\"")))
                    .execute(&mut *tx)
                    .await?;
                dropped += 1;
            }
        }
        tx.commit().await?;
        old.checkpoint().await?;
        old.close().await;
        Ok(dropped)
    }

    /// Moves SQLite's write-ahead log into the database file and truncates
    /// it, so that overwritten values are gone from the WAL too (after a
    /// data subject's erasure). A no-op on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), ProjectionError> {
        if self.dialect == Dialect::Sqlite {
            self.pool.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
        }
        Ok(())
    }

    /// Begins a transaction that will write (see [`SQLITE_BEGIN_WRITE`]);
    /// on SQLite, after this process's other writers of the database.
    pub async fn begin_write(&self) -> Result<WriteTx, ProjectionError> {
        Ok(match self.dialect {
            Dialect::Sqlite => {
                let turn = Arc::clone(&self.write_turn).lock_owned().await;
                WriteTx {
                    tx: self.writer.begin_with(SQLITE_BEGIN_WRITE).await?,
                    _turn: Some(turn),
                }
            }
            Dialect::Postgres => WriteTx {
                tx: self.pool.begin().await?,
                _turn: None,
            },
        })
    }

    /// Runs one writing statement (or autocommit batch) in this process's
    /// write turn (see [`Self::begin_write`]); run it on [`Self::writes`].
    pub async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.dialect {
            Dialect::Sqlite => Some(Arc::clone(&self.write_turn).lock_owned().await),
            Dialect::Postgres => None,
        }
    }

    async fn migrate(&self) -> Result<(), ProjectionError> {
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::Postgres {
            // Two nodes starting together must not both migrate.
            conn.execute("SELECT pg_advisory_lock(7236067985)").await?;
        }
        let result = self.migrate_locked(&mut conn).await;
        if self.dialect == Dialect::Postgres {
            conn.execute("SELECT pg_advisory_unlock(7236067985)")
                .await?;
        }
        result
    }

    async fn migrate_locked(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    ) -> Result<(), ProjectionError> {
        conn.execute(
            "CREATE TABLE IF NOT EXISTS read_model_migrations (
                 version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .await?;
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM read_model_migrations ORDER BY version")
                .fetch_all(&mut **conn)
                .await?;
        for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            let sql = match self.dialect {
                Dialect::Sqlite => m.sqlite,
                Dialect::Postgres => m.postgres,
            };
            let mut tx = sqlx::Connection::begin(&mut **conn).await?;
            if !applied.is_empty() {
                discard_next_generations(&mut tx, self.dialect).await?;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO read_model_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(crate::runner::now_text())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "read-model migration applied"
            );
        }
        Ok(())
    }
}

/// Drops every next generation (tables `*__next` and checkpoints
/// `*#next`): an interrupted rebuild's tables were created from the DDL
/// before a migration, so the rebuild starts again over the new one
/// instead of switching in tables of the old form.
pub(crate) async fn discard_next_generations(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
) -> Result<(), ProjectionError> {
    let list = match dialect {
        Dialect::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%\\_\\_next' ESCAPE '\\'"
        }
        Dialect::Postgres => {
            "SELECT tablename::text FROM pg_tables
              WHERE schemaname = current_schema() AND tablename LIKE '%\\_\\_next' ESCAPE '\\'"
        }
    };
    let tables: Vec<String> = sqlx::query_scalar(list).fetch_all(&mut *conn).await?;
    for t in tables {
        tracing::warn!(table = %t, "a read-model migration discards an unfinished rebuild");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE \"{t}\"")))
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM projection_checkpoints WHERE name LIKE '%#next'")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The connection a rebuild writes its large transactions on. On SQLite
/// the commit that grows the write-ahead log past its limit copies the log
/// into the database (and syncs it) before it returns: during a rebuild
/// that was an eighth of the time. This connection does not checkpoint;
/// a helper task does, passively (beside the writer, never blocking it),
/// after each commit, and once more when the writer is finished.
pub(crate) struct BulkWriter {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
    dialect: Dialect,
    helper: Option<Checkpointer>,
}

struct Checkpointer {
    nudge: Arc<Notify>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl BulkWriter {
    pub(crate) async fn open(db: &ReadDb) -> Result<Self, ProjectionError> {
        let mut conn = db.pool.acquire().await?;
        let helper = if db.dialect == Dialect::Sqlite {
            // Never back in the pool with checkpoints turned off.
            conn.close_on_drop();
            conn.execute("PRAGMA wal_autocheckpoint=0").await?;
            let nudge = Arc::new(Notify::new());
            let stop = Arc::new(AtomicBool::new(false));
            let (pool, n, s) = (db.pool.clone(), nudge.clone(), stop.clone());
            let task = tokio::spawn(async move {
                while !s.load(Ordering::SeqCst) {
                    n.notified().await;
                    if let Err(e) = pool.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
                        tracing::warn!(error = %e, "checkpoint during a rebuild failed");
                    }
                }
            });
            Some(Checkpointer { nudge, stop, task })
        } else {
            None
        };
        Ok(Self {
            conn,
            dialect: db.dialect,
            helper,
        })
    }

    /// Begins a write transaction (see [`SQLITE_BEGIN_WRITE`]).
    pub(crate) async fn begin(
        &mut self,
    ) -> Result<sqlx::Transaction<'_, sqlx::Any>, ProjectionError> {
        Ok(match self.dialect {
            Dialect::Sqlite => {
                sqlx::Connection::begin_with(&mut *self.conn, SQLITE_BEGIN_WRITE).await?
            }
            Dialect::Postgres => sqlx::Connection::begin(&mut *self.conn).await?,
        })
    }

    /// Call after each commit: the helper copies what was committed.
    pub(crate) fn committed(&self) {
        if let Some(h) = &self.helper {
            h.nudge.notify_one();
        }
    }

    /// Stops the helper and checkpoints what it has not copied yet.
    pub(crate) async fn finish(mut self) -> Result<(), ProjectionError> {
        if let Some(h) = self.helper.take() {
            h.stop.store(true, Ordering::SeqCst);
            h.nudge.notify_one();
            let _ = h.task.await;
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await?;
        }
        Ok(())
    }
}

impl Drop for BulkWriter {
    fn drop(&mut self) {
        if let Some(h) = self.helper.take() {
            h.task.abort();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn discards_only_next_generations(db: ReadDb) {
        let mut conn = db.pool.acquire().await.unwrap();
        conn.execute(
            "CREATE TABLE organizations__next (id TEXT PRIMARY KEY);
             CREATE TABLE audit_entries__next (commit_pos BIGINT);
             CREATE TABLE nextish (id TEXT);
             INSERT INTO projection_checkpoints (name, version, commit_pos, prepare_pos, events_applied, updated_at)
             VALUES ('organizations#next', 1, 5, 5, 5, 'now'), ('organizations', 1, 9, 9, 9, 'now')",
        )
        .await
        .unwrap();
        discard_next_generations(&mut conn, db.dialect)
            .await
            .unwrap();
        let table = |name: &'static str| {
            let sql = match db.dialect {
                Dialect::Sqlite => {
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
                }
                Dialect::Postgres => {
                    "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1"
                }
            };
            let pool = db.pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(name)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(table("organizations__next").await, 0);
        assert_eq!(table("audit_entries__next").await, 0);
        assert_eq!(table("nextish").await, 1, "other tables stay");
        assert_eq!(table("organizations").await, 1);
        let left: Vec<String> =
            sqlx::query_scalar("SELECT name FROM projection_checkpoints ORDER BY name")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        assert_eq!(left, vec!["organizations".to_owned()]);
    }

    #[tokio::test]
    async fn a_migration_discards_unfinished_rebuilds_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("read.db").display());
        discards_only_next_generations(ReadDb::connect(&url, 2).await.unwrap()).await;
    }

    #[tokio::test]
    async fn a_migration_discards_unfinished_rebuilds_on_postgres() {
        let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: read-model migrations on PostgreSQL: TEST_DATABASE_URL is not set"
            );
            return;
        };
        let url = eventlog::postgres::create_scratch_database(&admin, "discard_next")
            .await
            .unwrap();
        discards_only_next_generations(ReadDb::connect(&url, 2).await.unwrap()).await;
    }
}
