//! The `subject_keys` table: each data subject's key, sealed under the
//! master key by the caller (this module never sees a key in the clear).
//! Not a projection: rebuilds leave it alone, and deleting a row is a data
//! subject's erasure.

use sqlx::Row;

use crate::db::ReadDb;
use crate::runner::ProjectionError;

/// The sealed key of `subject`, if it has one.
pub async fn sealed(db: &ReadDb, subject: &str) -> Result<Option<String>, ProjectionError> {
    let row = sqlx::query("SELECT sealed_key FROM subject_keys WHERE subject = $1")
        .bind(subject.to_owned())
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Stores a sealed key unless `subject` already has one (the first stored
/// wins when two writers race).
pub async fn insert(
    db: &ReadDb,
    subject: &str,
    sealed: &str,
    created_at: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO subject_keys (subject, sealed_key, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (subject) DO NOTHING",
    )
    .bind(subject.to_owned())
    .bind(sealed.to_owned())
    .bind(created_at.to_owned())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Deletes the subject's key; true if there was one.
pub async fn delete(db: &ReadDb, subject: &str) -> Result<bool, ProjectionError> {
    let done = sqlx::query("DELETE FROM subject_keys WHERE subject = $1")
        .bind(subject.to_owned())
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
