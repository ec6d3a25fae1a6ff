//! The notifications read model: every message sent to a person, with its
//! channel, purpose, recipient (decrypted by the log's reader) and how its
//! delivery went, for the admins to list. A user's deletion, or their
//! subject's erasure, deletes their rows.

use async_trait::async_trait;
use domain::notification::NotificationEvent;
use eventlog::RecordedEvent;
use sqlx::{AnyConnection, Row};

use crate::db::ReadDb;
use crate::fields::{id_of, text};
use crate::generation::Tables;
use crate::runner::{Projection, ProjectionError};

pub struct NotificationsProjection;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRow {
    pub id: String,
    pub user_id: String,
    pub organization_id: String,
    pub channel: String,
    pub purpose: String,
    pub recipient: Option<String>,
    pub status: String,
    pub provider: Option<String>,
    pub reason: Option<String>,
    pub queued_at: String,
    pub settled_at: Option<String>,
}

const COLUMNS: &str = "id, user_id, organization_id, channel, purpose, recipient, status,
     provider, reason, queued_at, settled_at";

fn row(r: &sqlx::any::AnyRow) -> Result<NotificationRow, ProjectionError> {
    Ok(NotificationRow {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        organization_id: r.try_get(2)?,
        channel: r.try_get(3)?,
        purpose: r.try_get(4)?,
        recipient: r.try_get(5)?,
        status: r.try_get(6)?,
        provider: r.try_get(7)?,
        reason: r.try_get(8)?,
        queued_at: r.try_get(9)?,
        settled_at: r.try_get(10)?,
    })
}

/// A user's messages, newest first, a page of `limit` before the cursor
/// `before` (a `(queued_at, id)` of the previous page's last row).
pub async fn notifications_of(
    db: &ReadDb,
    user_id: &str,
    before: Option<(String, String)>,
    limit: i64,
) -> Result<Vec<NotificationRow>, ProjectionError> {
    let rows = match before {
        Some((at, id)) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM notifications WHERE user_id = $1
                   AND (queued_at < $2 OR (queued_at = $2 AND id < $3))
                 ORDER BY queued_at DESC, id DESC LIMIT {limit}"
            )))
            .bind(user_id)
            .bind(at)
            .bind(id)
            .fetch_all(&db.pool)
            .await?
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM notifications WHERE user_id = $1
                 ORDER BY queued_at DESC, id DESC LIMIT {limit}"
            )))
            .bind(user_id)
            .fetch_all(&db.pool)
            .await?
        }
    };
    rows.iter().map(row).collect()
}

#[async_trait]
impl Projection for NotificationsProjection {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["notifications"]
    }

    fn handles(&self, e: &RecordedEvent) -> bool {
        e.category() == "notification"
            || e.event_type == domain::user::DELETED_V1
            || e.event_type == domain::privacy::SUBJECT_ERASED_V1
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let table = tables.name("notifications");
        if e.event_type == domain::privacy::SUBJECT_ERASED_V1
            || e.event_type == domain::user::DELETED_V1
        {
            if let Some(user) = e.subject.as_deref().and_then(domain::user::user_of_subject) {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE user_id = $1"
                )))
                .bind(user.to_string())
                .execute(conn)
                .await?;
            }
            return Ok(());
        }
        let (status, provider, reason, at) = match eventlog::decode::<NotificationEvent>(e)? {
            NotificationEvent::Queued(q) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} ({COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, 'queued', NULL, NULL, $7, NULL)
                     ON CONFLICT (id) DO NOTHING"
                )))
                .bind(q.notification_id.to_string())
                .bind(q.user_id.to_string())
                .bind(q.organization_id.to_string())
                .bind(q.channel.as_str())
                .bind(q.purpose.as_str())
                .bind(q.recipient.value().cloned())
                .bind(text(q.at))
                .execute(conn)
                .await?;
                return Ok(());
            }
            NotificationEvent::Sent(s) => ("sent", s.provider, None, s.at),
            NotificationEvent::Failed(f) => ("failed", f.provider, Some(f.reason), f.at),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET status = $1, provider = $2, reason = $3, settled_at = $4
             WHERE id = $5"
        )))
        .bind(status)
        .bind(provider)
        .bind(reason)
        .bind(text(at))
        .bind(id_of(e))
        .execute(conn)
        .await?;
        Ok(())
    }
}
