//! The sign-ins begun and not yet ended (`open_sign_ins`): neither
//! completed nor recorded as expired. The server records each one whose
//! time is up as expired, so that the audit trail ends every attempt. Fed
//! by the audit projection, which reads every event in one transaction per
//! batch already: a table of its own would cost a sign-in more commits.
//! No personal value.

use std::collections::BTreeMap;

use eventlog::RecordedEvent;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use crate::db::ReadDb;
use crate::fields::{id_of, text, values_sql};
use crate::generation::Tables;
use crate::runner::ProjectionError;

pub(crate) const TABLE: &str = "open_sign_ins";

/// Whether `e` opens or ends a sign-in.
fn concerns(e: &RecordedEvent) -> bool {
    use domain::sign_in::{COMPLETED_V1, EXPIRED_V1, STARTED_V1};
    matches!(
        e.event_type.as_str(),
        STARTED_V1 | COMPLETED_V1 | EXPIRED_V1
    )
}

/// How many rows one statement writes or deletes.
const ROWS_PER_STATEMENT: usize = 100;

/// Keeps the table to the sign-ins that `events` leave open: one insert
/// for those they open and one delete for those they end, a sign-in both
/// opened and ended in the batch costing neither.
pub(crate) async fn apply(
    conn: &mut AnyConnection,
    tables: Tables,
    events: &[&RecordedEvent],
) -> Result<(), ProjectionError> {
    use domain::sign_in::SignInEvent;
    // By id: (organization, expiry).
    let mut opened: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut ended: Vec<String> = Vec::new();
    for e in events.iter().filter(|e| concerns(e)) {
        match eventlog::decode::<SignInEvent>(e)? {
            SignInEvent::Started(s) => {
                opened.insert(
                    s.sign_in_id.to_string(),
                    (s.organization_id.to_string(), text(s.expires_at)),
                );
            }
            SignInEvent::Completed(_) | SignInEvent::Expired(_) => {
                let id = id_of(e);
                if opened.remove(id).is_none() {
                    ended.push(id.to_owned());
                }
            }
            _ => {}
        }
    }
    let opened: Vec<(String, (String, String))> = opened.into_iter().collect();
    let table = tables.name(TABLE);
    for chunk in opened.chunks(ROWS_PER_STATEMENT) {
        let mut sql = format!("INSERT INTO {table} (id, organization_id, expires_at) VALUES ");
        values_sql(&mut sql, tables.dialect, chunk.len(), 3);
        sql.push_str(" ON CONFLICT (id) DO NOTHING");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, (organization, expires_at)) in chunk {
            q = q
                .bind(id.clone())
                .bind(organization.clone())
                .bind(expires_at.clone());
        }
        q.execute(&mut *conn).await?;
    }
    for chunk in ended.chunks(ROWS_PER_STATEMENT) {
        let mut sql = format!("DELETE FROM {table} WHERE id IN ");
        values_sql(&mut sql, tables.dialect, 1, chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The sign-ins still open whose time was up at `now`, soonest first (at
/// most `limit`): their ids and organizations.
pub async fn due(
    db: &ReadDb,
    now: OffsetDateTime,
    limit: i64,
) -> Result<Vec<(String, String)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT id, organization_id FROM open_sign_ins WHERE expires_at <= $1
         ORDER BY expires_at, id LIMIT $2",
    )
    .bind(text(now))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
