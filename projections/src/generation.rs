//! Table generations: a rebuild writes a projection's next generation beside
//! the live one and then switches them in one transaction.
//!
//! The next generation of table `t` is `t__next`, created from the live
//! table's own DDL (its indexes too), with its own checkpoint row
//! `<name>#next`. The switch renames `t` to `t__old` and `t__next` to `t` and
//! moves the checkpoint row onto `<name>`, all in one transaction (SQLite
//! and PostgreSQL both rename tables transactionally); the old generation is
//! dropped afterwards. Query functions name the live tables and never see a
//! half-built generation.

use std::borrow::Cow;

use eventlog::Position;
use sqlx::{AnyConnection, Row};

use crate::db::{BulkWriter, Dialect, ReadDb};
use crate::runner::{Projection, ProjectionError, now_text};

const NEXT: &str = "__next";
const OLD: &str = "__old";

/// Which generation of its tables a projection writes to, and in which SQL
/// dialect. Projections name every table through [`Tables::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tables {
    pub dialect: Dialect,
    next: bool,
}

impl Tables {
    /// The tables queries read.
    pub fn live(dialect: Dialect) -> Self {
        Self {
            dialect,
            next: false,
        }
    }

    /// The tables a rebuild fills.
    pub fn next(dialect: Dialect) -> Self {
        Self {
            dialect,
            next: true,
        }
    }

    /// The name of table `base` in this generation.
    pub fn name(&self, base: &'static str) -> Cow<'static, str> {
        if self.next {
            Cow::Owned(format!("{base}{NEXT}"))
        } else {
            Cow::Borrowed(base)
        }
    }
}

/// The checkpoint row of a projection's next generation.
pub(crate) fn next_key(name: &str) -> String {
    format!("{name}#next")
}

/// A checkpoint row: the projection version that wrote it and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub version: u32,
    pub at: Position,
}

pub(crate) async fn read_checkpoint(
    conn: &mut AnyConnection,
    key: &str,
) -> Result<Option<Checkpoint>, ProjectionError> {
    let row = sqlx::query(
        "SELECT version, commit_pos, prepare_pos FROM projection_checkpoints WHERE name = $1",
    )
    .bind(key.to_owned())
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        let version: i64 = r.try_get(0)?;
        let commit: i64 = r.try_get(1)?;
        let prepare: i64 = r.try_get(2)?;
        Ok(Checkpoint {
            version: version as u32,
            at: Position::new(commit as u64, prepare as u64),
        })
    })
    .transpose()
}

/// Writes checkpoint `key` afresh (no events applied yet).
pub(crate) async fn put_checkpoint(
    conn: &mut AnyConnection,
    key: &str,
    version: u32,
    at: Position,
) -> Result<(), ProjectionError> {
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
        .bind(key.to_owned())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, version, commit_pos, prepare_pos, events_applied, updated_at)
         VALUES ($1, $2, $3, $4, 0, $5)",
    )
    .bind(key.to_owned())
    .bind(i64::from(version))
    .bind(at.commit as i64)
    .bind(at.prepare as i64)
    .bind(now_text())
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves checkpoint `key` from `from` to `to`, only if it is still at `from`
/// under `version` (compare and set, first in its transaction so that it
/// also takes the lock). False when someone else moved it: another node's
/// runner, or a rebuild that switched generations; the caller rolls back
/// and reloads.
pub(crate) async fn advance(
    conn: &mut AnyConnection,
    key: &str,
    version: u32,
    from: Position,
    to: Position,
    applied: u64,
) -> Result<bool, ProjectionError> {
    let done = sqlx::query(
        "UPDATE projection_checkpoints
            SET commit_pos = $1, prepare_pos = $2, events_applied = events_applied + $3, updated_at = $4
          WHERE name = $5 AND version = $6 AND commit_pos = $7 AND prepare_pos = $8",
    )
    .bind(to.commit as i64)
    .bind(to.prepare as i64)
    .bind(applied as i64)
    .bind(now_text())
    .bind(key.to_owned())
    .bind(i64::from(version))
    .bind(from.commit as i64)
    .bind(from.prepare as i64)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn table_exists(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &str,
) -> Result<bool, ProjectionError> {
    let sql = match dialect {
        Dialect::Sqlite => "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        Dialect::Postgres => {
            "SELECT count(*) FROM information_schema.tables
              WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    let n: i64 = sqlx::query_scalar(sql)
        .bind(table.to_owned())
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

/// Serializes generation changes of the read DB among processes.
async fn lock_generations(
    conn: &mut AnyConnection,
    dialect: Dialect,
) -> Result<(), ProjectionError> {
    if dialect == Dialect::Postgres {
        // Released at the end of the transaction. (SQLite: `BEGIN
        // IMMEDIATE` already serialized it.)
        sqlx::query("SELECT pg_advisory_xact_lock(7236067986)")
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn drop_old(writer: &mut BulkWriter, p: &dyn Projection) -> Result<(), ProjectionError> {
    for t in p.tables() {
        let mut tx = writer.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS {t}{OLD}"
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        writer.committed();
    }
    Ok(())
}

/// Makes `p`'s next generation ready to be filled and says where it
/// resumes: its checkpoint if a rebuild of this version was interrupted,
/// otherwise the start of the log over freshly created empty tables.
pub(crate) async fn prepare_next(
    db: &ReadDb,
    writer: &mut BulkWriter,
    p: &dyn Projection,
) -> Result<Position, ProjectionError> {
    drop_old(writer, p).await?;
    let mut tx = writer.begin().await?;
    lock_generations(&mut tx, db.dialect).await?;
    let key = next_key(p.name());
    if let Some(cp) = read_checkpoint(&mut tx, &key).await?
        && cp.version == p.version()
    {
        let mut complete = true;
        for t in p.tables() {
            complete &= table_exists(&mut tx, db.dialect, &format!("{t}{NEXT}")).await?;
        }
        if complete {
            tx.commit().await?;
            writer.committed();
            return Ok(cp.at);
        }
    }
    for t in p.tables() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS {t}{NEXT}"
        )))
        .execute(&mut *tx)
        .await?;
        create_next_table(&mut tx, db.dialect, t).await?;
    }
    put_checkpoint(&mut tx, &key, p.version(), Position::START).await?;
    tx.commit().await?;
    writer.committed();
    Ok(Position::START)
}

/// Creates `t__next` with the DDL of `t`: columns, keys and indexes.
async fn create_next_table(
    conn: &mut AnyConnection,
    dialect: Dialect,
    t: &str,
) -> Result<(), ProjectionError> {
    match dialect {
        Dialect::Postgres => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {t}{NEXT} (LIKE {t} INCLUDING ALL)"
            )))
            .execute(conn)
            .await?;
        }
        Dialect::Sqlite => {
            // Only the table and its key: the other indexes are built once
            // the rows are in ([`index_next`]), a sort instead of a million
            // random inserts into each index.
            let sql: Option<String> = sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1",
            )
            .bind(t.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
            let sql = sql.ok_or_else(|| ProjectionError::Db(format!("no table {t} to copy")))?;
            sqlx::query(sqlx::AssertSqlSafe(next_table_ddl(&sql, t)?))
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// Connection settings while an index of a next generation is built.
const INDEX_BUILD_PRAGMAS: &str = "PRAGMA threads = 2";
/// SQLite's default, restored on the pooled connection afterwards.
const DEFAULT_PRAGMAS: &str = "PRAGMA threads = 0";

/// Gives `p`'s next generation on SQLite the indexes of its live tables
/// that it lacks, each in its own transaction (so appends to a log in the
/// same file wait for one index at a time). On PostgreSQL the next tables
/// got their indexes when they were created.
///
/// Calls `building(index, built, of)` before each build, `of` counting the
/// indexes still missing.
pub(crate) async fn index_next(
    db: &ReadDb,
    writer: &mut BulkWriter,
    p: &dyn Projection,
    building: &(dyn Fn(&str, usize, usize) + Sync),
) -> Result<(), ProjectionError> {
    if db.dialect != Dialect::Sqlite {
        return Ok(());
    }
    let mut missing = Vec::new();
    for t in p.tables() {
        let sqls: Vec<String> = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL",
        )
        .bind((*t).to_owned())
        .fetch_all(&db.pool)
        .await?;
        for sql in sqls {
            let (name, ddl) = next_index_ddl(&sql, t)?;
            if !index_exists(&db.pool, &name).await? {
                missing.push((name, ddl));
            }
        }
    }
    let of = missing.len();
    for (built, (name, ddl)) in missing.into_iter().enumerate() {
        building(&name, built, of);
        let mut tx = writer.begin().await?;
        // Again under the write lock: another rebuild may have built it.
        if !index_exists(&mut *tx, &name).await? {
            // A large sort: let SQLite's sorter use a helper thread (about
            // a fifth faster on a million audit entries; a bigger cache
            // made it slower).
            sqlx::query(INDEX_BUILD_PRAGMAS).execute(&mut *tx).await?;
            let started = eventlog::clock::monotonic();
            let result = sqlx::query(sqlx::AssertSqlSafe(ddl))
                .execute(&mut *tx)
                .await;
            sqlx::query(DEFAULT_PRAGMAS).execute(&mut *tx).await?;
            result?;
            tracing::info!(
                index = %name,
                seconds = started.elapsed().as_secs_f64(),
                "built an index of a rebuilt table"
            );
        }
        tx.commit().await?;
        writer.committed();
    }
    Ok(())
}

async fn index_exists<'e>(
    on: impl sqlx::Executor<'e, Database = sqlx::Any>,
    name: &str,
) -> Result<bool, ProjectionError> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = $1")
            .bind(name.to_owned())
            .fetch_one(on)
            .await?;
    Ok(n > 0)
}

/// Splits `sql` after the identifier that starts at or after `from`
/// (skipping blanks): (text before it, identifier unquoted, text after).
fn split_identifier(sql: &str, from: usize) -> Option<(&str, &str, &str)> {
    let rest = &sql[from..];
    let start = from + (rest.len() - rest.trim_start().len());
    let s = &sql[start..];
    let (ident, len) = match s.chars().next()? {
        q @ ('"' | '`' | '[') => {
            let close = if q == '[' { ']' } else { q };
            let end = s[1..].find(close)? + 1;
            (&s[1..end], end + 1)
        }
        _ => {
            let end = s
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            (&s[..end], end)
        }
    };
    Some((&sql[..start], ident, &sql[start + len..]))
}

fn malformed(sql: &str) -> ProjectionError {
    ProjectionError::Db(format!("cannot copy the DDL {sql:?}"))
}

/// Position just after `keyword` (case-insensitive, as a whole word).
fn after_keyword(sql: &str, keyword: &str, from: usize) -> Option<usize> {
    let upper = sql.to_ascii_uppercase();
    let mut at = from;
    while let Some(i) = upper[at..].find(keyword) {
        let start = at + i;
        let end = start + keyword.len();
        let before = upper[..start].chars().last();
        let after = upper[end..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !word(before) && !word(after) {
            return Some(end);
        }
        at = end;
    }
    None
}

/// `CREATE TABLE t (…)` as `CREATE TABLE t__next (…)`.
fn next_table_ddl(sql: &str, t: &str) -> Result<String, ProjectionError> {
    let at = after_keyword(sql, "TABLE", 0).ok_or_else(|| malformed(sql))?;
    let (head, name, tail) = split_identifier(sql, at).ok_or_else(|| malformed(sql))?;
    if name != t {
        return Err(malformed(sql));
    }
    Ok(format!("{head}\"{t}{NEXT}\"{tail}"))
}

/// `CREATE INDEX i ON t (…)` as an index of `t__next`, and its name. Index
/// names are global and SQLite cannot rename them, so the generations
/// alternate between `i` and `i__next`.
fn next_index_ddl(sql: &str, t: &str) -> Result<(String, String), ProjectionError> {
    let mut at = after_keyword(sql, "INDEX", 0).ok_or_else(|| malformed(sql))?;
    if let Some(exists) = after_keyword(sql, "EXISTS", at)
        && sql[at..exists].to_ascii_uppercase().contains("IF NOT")
    {
        at = exists;
    }
    let (head, index, tail) = split_identifier(sql, at).ok_or_else(|| malformed(sql))?;
    let index = match index.strip_suffix(NEXT) {
        Some(base) => base.to_owned(),
        None => format!("{index}{NEXT}"),
    };
    let sql = format!("{head}\"{index}\"{tail}");
    let on = after_keyword(&sql, "ON", head.len()).ok_or_else(|| malformed(&sql))?;
    let (head, table, tail) = split_identifier(&sql, on).ok_or_else(|| malformed(&sql))?;
    if table != t {
        return Err(malformed(&sql));
    }
    Ok((index, format!("{head}\"{t}{NEXT}\"{tail}")))
}

/// What [`switch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Switched {
    /// The next generation is live now.
    Done,
    /// The live generation has applied events the next one has not: apply
    /// them and try again (so a live position never goes backwards).
    LiveAhead,
}

/// Makes `p`'s next generation the live one, in one transaction: renames
/// the tables and moves the checkpoint. Then drops the old generation.
pub(crate) async fn switch(
    db: &ReadDb,
    writer: &mut BulkWriter,
    p: &dyn Projection,
) -> Result<Switched, ProjectionError> {
    let key = next_key(p.name());
    let mut tx = writer.begin().await?;
    lock_generations(&mut tx, db.dialect).await?;
    // Lock both checkpoint rows before any table: a live runner takes its
    // checkpoint row first too, so the two never wait on each other in
    // opposite orders.
    sqlx::query("UPDATE projection_checkpoints SET updated_at = $1 WHERE name = $2 OR name = $3")
        .bind(now_text())
        .bind(p.name())
        .bind(key.clone())
        .execute(&mut *tx)
        .await?;
    let next = read_checkpoint(&mut tx, &key)
        .await?
        .filter(|c| c.version == p.version())
        .ok_or_else(|| {
            ProjectionError::Db(format!(
                "the next generation of {} is gone (switched by another process?)",
                p.name()
            ))
        })?;
    if let Some(live) = read_checkpoint(&mut tx, p.name()).await?
        && live.at > next.at
    {
        tx.rollback().await?;
        return Ok(Switched::LiveAhead);
    }
    for t in p.tables() {
        if table_exists(&mut tx, db.dialect, t).await? {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE {t} RENAME TO {t}{OLD}"
            )))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {t}{NEXT} RENAME TO {t}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE projection_checkpoints SET name = $1 WHERE name = $2")
        .bind(p.name())
        .bind(key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    writer.committed();
    drop_old(writer, p).await?;
    tracing::info!(
        projection = p.name(),
        version = p.version(),
        at = %next.at,
        "rebuilt projection switched in"
    );
    Ok(Switched::Done)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ddl_is_copied_to_the_next_generation_and_back() {
        let t = "CREATE TABLE organizations (\n id TEXT PRIMARY KEY, name TEXT)";
        assert_eq!(
            next_table_ddl(t, "organizations").unwrap(),
            "CREATE TABLE \"organizations__next\" (\n id TEXT PRIMARY KEY, name TEXT)"
        );
        // After a switch SQLite stores the renamed table's name quoted.
        let renamed = "CREATE TABLE \"organizations\"(id TEXT)";
        assert_eq!(
            next_table_ddl(renamed, "organizations").unwrap(),
            "CREATE TABLE \"organizations__next\"(id TEXT)"
        );
        let i = "CREATE INDEX audit_by_actor ON audit_entries (actor_id, commit_pos DESC)\n    WHERE actor_id IS NOT NULL";
        let (name, next) = next_index_ddl(i, "audit_entries").unwrap();
        assert_eq!(name, "audit_by_actor__next");
        assert_eq!(
            next,
            "CREATE INDEX \"audit_by_actor__next\" ON \"audit_entries__next\" (actor_id, commit_pos DESC)\n    WHERE actor_id IS NOT NULL"
        );
        let again = "CREATE INDEX \"audit_by_actor__next\" ON \"audit_entries\" (actor_id)";
        assert_eq!(
            next_index_ddl(again, "audit_entries").unwrap().1,
            "CREATE INDEX \"audit_by_actor\" ON \"audit_entries__next\" (actor_id)"
        );
        assert!(next_table_ddl(t, "clients").is_err());
    }
}
