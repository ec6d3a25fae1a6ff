//! The `subject_keys` table: each data subject's key, sealed under the
//! master key by the caller (this module never sees a key in the clear).
//! Not a projection: rebuilds leave it alone, and deleting a row is a data
//! subject's erasure. The embedded default keeps it in a database of its
//! own ([`open`]), so that the read models' file can be lost or deleted
//! (a start rebuilds it from the log) without erasing everyone.

use sqlx::Row;

use projections::{ProjectionError, ReadDb};

/// The table as [`open`] creates it; the read-model migration 0005 creates
/// the same one among the read models.
const TABLE: &str = "CREATE TABLE IF NOT EXISTS subject_keys (
    subject    TEXT PRIMARY KEY,
    sealed_key TEXT NOT NULL,
    created_at TEXT NOT NULL
)";

/// Keys moved per transaction by [`move_all`].
const MOVE_PAGE: i64 = 500;

/// Opens (creating it if need be) a database that holds only subject keys,
/// with the read database's connection settings (on SQLite, deleted rows
/// are overwritten on disk).
pub async fn open(url: &str, max_connections: u32) -> Result<ReadDb, ProjectionError> {
    let db = ReadDb::connect_unmigrated(url, max_connections).await?;
    sqlx::query(TABLE).execute(&db.pool).await?;
    Ok(db)
}

/// Moves every key `from` holds into `to`: each page of keys is committed
/// in `to` before it is deleted from `from`, so a crash leaves a key in both
/// places (moved again next time), never in neither; a key `to` already has
/// stays as it is. Then `from` is checkpointed, so the moved keys are gone
/// from its write-ahead log too. Returns how many keys were moved; none when
/// the two are one database under two URLs (moving would delete them).
pub async fn move_all(from: &ReadDb, to: &ReadDb) -> Result<u64, ProjectionError> {
    let any: Option<String> = sqlx::query_scalar("SELECT subject FROM subject_keys LIMIT 1")
        .fetch_optional(&from.pool)
        .await?;
    if any.is_none() || same_table(from, to).await? {
        return Ok(0);
    }
    let mut moved = 0u64;
    loop {
        let rows = sqlx::query(
            "SELECT subject, sealed_key, created_at FROM subject_keys ORDER BY subject LIMIT $1",
        )
        .bind(MOVE_PAGE)
        .fetch_all(&from.pool)
        .await?;
        if rows.is_empty() {
            break;
        }
        let keys = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<(String, String, String)>, sqlx::Error>>()?;
        let mut tx = to.begin_write().await?;
        for (subject, sealed, created_at) in &keys {
            insert_on(&mut tx, subject, sealed, created_at).await?;
        }
        tx.commit().await?;
        let mut tx = from.begin_write().await?;
        for (subject, _, _) in &keys {
            sqlx::query("DELETE FROM subject_keys WHERE subject = $1")
                .bind(subject.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        moved += keys.len() as u64;
    }
    if moved > 0 {
        from.checkpoint().await?;
    }
    Ok(moved)
}

/// Whether `a` and `b` hold one `subject_keys` table: a row written
/// through `b` is seen through `a`. The probe row is removed again.
async fn same_table(a: &ReadDb, b: &ReadDb) -> Result<bool, ProjectionError> {
    let probe = format!("probe:{}", uuid::Uuid::new_v4());
    insert(b, &probe, "", "").await?;
    let seen = sealed(a, &probe).await;
    delete(b, &probe).await?;
    Ok(seen?.is_some())
}

/// The sealed key of `subject`, if it has one.
pub async fn sealed(db: &ReadDb, subject: &str) -> Result<Option<String>, ProjectionError> {
    let row = sqlx::query("SELECT sealed_key FROM subject_keys WHERE subject = $1")
        .bind(subject.to_owned())
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Stores a sealed key unless `subject` already has one (the first stored
/// wins when two writers race); true if this one was stored.
pub async fn insert(
    db: &ReadDb,
    subject: &str,
    sealed: &str,
    created_at: &str,
) -> Result<bool, ProjectionError> {
    let _turn = db.write_turn().await;
    let mut conn = db.writes().acquire().await?;
    insert_on(&mut conn, subject, sealed, created_at).await
}

async fn insert_on(
    conn: &mut sqlx::AnyConnection,
    subject: &str,
    sealed: &str,
    created_at: &str,
) -> Result<bool, ProjectionError> {
    let done = sqlx::query(
        "INSERT INTO subject_keys (subject, sealed_key, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (subject) DO NOTHING",
    )
    .bind(subject.to_owned())
    .bind(sealed.to_owned())
    .bind(created_at.to_owned())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes the subject's key; true if there was one.
pub async fn delete(db: &ReadDb, subject: &str) -> Result<bool, ProjectionError> {
    let _turn = db.write_turn().await;
    let done = sqlx::query("DELETE FROM subject_keys WHERE subject = $1")
        .bind(subject.to_owned())
        .execute(db.writes())
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_database_under_two_urls_keeps_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let a = open(&format!("sqlite:{}", path.display()), 1)
            .await
            .unwrap();
        let b = open(&format!("sqlite://{}/./keys.db", dir.path().display()), 1)
            .await
            .unwrap();
        insert(&a, "person:1", "sealed", "now").await.unwrap();
        assert_eq!(move_all(&a, &b).await.unwrap(), 0);
        assert_eq!(
            sealed(&b, "person:1").await.unwrap().as_deref(),
            Some("sealed")
        );
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM subject_keys")
            .fetch_one(&a.pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "the probe is gone");

        let other = open(
            &format!("sqlite:{}", dir.path().join("other.db").display()),
            1,
        )
        .await
        .unwrap();
        assert_eq!(move_all(&a, &other).await.unwrap(), 1);
        assert_eq!(sealed(&a, "person:1").await.unwrap(), None);
        assert_eq!(
            sealed(&other, "person:1").await.unwrap().as_deref(),
            Some("sealed")
        );
    }
}
