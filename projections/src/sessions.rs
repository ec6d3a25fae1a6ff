//! The sessions read model: each session a person holds, with where it
//! began (decrypted by the log's reader), for the person and the admins to
//! list and revoke. Whether a session may be used is decided from its
//! stream, never from here. A user's deletion, or their subject's
//! erasure, deletes their rows.

use async_trait::async_trait;
use domain::session::SessionEvent;
use eventlog::RecordedEvent;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::db::ReadDb;
use crate::fields::{id_of, text};
use crate::generation::Tables;
use crate::runner::{Projection, ProjectionError};

pub struct SessionsProjection;

/// The most sessions a list answers.
pub const MAX_LISTED: i64 = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub organization_id: String,
    pub methods: Vec<String>,
    pub auth_time: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    pub idle_timeout_seconds: i64,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
}

impl SessionRow {
    /// Whether, as far as this row knows, the session may still be used at
    /// `now` (its stream decides).
    pub fn live_at(&self, now: OffsetDateTime) -> bool {
        let parse = |s: &str| OffsetDateTime::parse(s, &Rfc3339).ok();
        let (Some(expires), Some(used)) = (parse(&self.expires_at), parse(&self.last_used_at))
        else {
            return false;
        };
        self.ended_at.is_none()
            && now < expires
            && now < used + time::Duration::seconds(self.idle_timeout_seconds)
    }
}

const COLUMNS: &str = "id, user_id, organization_id, methods, auth_time, created_at, last_used_at,
     expires_at, idle_timeout_seconds, source_ip, user_agent, ended_at, end_reason";

fn row(r: &sqlx::any::AnyRow) -> Result<SessionRow, ProjectionError> {
    let methods: String = r.try_get(3)?;
    Ok(SessionRow {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        organization_id: r.try_get(2)?,
        methods: serde_json::from_str(&methods).unwrap_or_default(),
        auth_time: r.try_get(4)?,
        created_at: r.try_get(5)?,
        last_used_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
        idle_timeout_seconds: r.try_get(8)?,
        source_ip: r.try_get(9)?,
        user_agent: r.try_get(10)?,
        ended_at: r.try_get(11)?,
        end_reason: r.try_get(12)?,
    })
}

/// A user's sessions, newest first (at most [`MAX_LISTED`]); with
/// `ended`, those revoked or found expired too.
pub async fn sessions_of(
    db: &ReadDb,
    user_id: &str,
    ended: bool,
) -> Result<Vec<SessionRow>, ProjectionError> {
    let filter = if ended { "" } else { "AND ended_at IS NULL" };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sessions WHERE user_id = $1 {filter}
         ORDER BY created_at DESC, id DESC LIMIT {MAX_LISTED}"
    )))
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(row).collect()
}

/// One session.
pub async fn get_session(db: &ReadDb, id: &str) -> Result<Option<SessionRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sessions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    r.as_ref().map(row).transpose()
}

async fn forget_user(
    conn: &mut AnyConnection,
    tables: Tables,
    user_id: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {} WHERE user_id = $1",
        tables.name("sessions")
    )))
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Projection for SessionsProjection {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sessions"]
    }

    fn handles(&self, e: &RecordedEvent) -> bool {
        e.category() == "session"
            || e.event_type == domain::user::DELETED_V1
            || e.event_type == domain::privacy::SUBJECT_ERASED_V1
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if e.event_type == domain::privacy::SUBJECT_ERASED_V1
            || e.event_type == domain::user::DELETED_V1
        {
            let user = e.subject.as_deref().and_then(domain::user::user_of_subject);
            if let Some(user) = user {
                forget_user(conn, tables, &user.to_string()).await?;
            }
            return Ok(());
        }
        let table = tables.name("sessions");
        match eventlog::decode::<SessionEvent>(e)? {
            SessionEvent::Created(c) => {
                let methods: Vec<&str> = c.methods.iter().map(|m| m.as_str()).collect();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} ({COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, NULL, NULL)
                     ON CONFLICT (id) DO NOTHING"
                )))
                .bind(c.session_id.to_string())
                .bind(c.user_id.to_string())
                .bind(c.organization_id.to_string())
                .bind(serde_json::to_string(&methods).unwrap_or_else(|_| "[]".into()))
                .bind(text(c.auth_time))
                .bind(text(c.at))
                .bind(text(c.expires_at))
                .bind(c.idle_timeout_seconds)
                .bind(c.source_ip.and_then(|v| v.value().cloned()))
                .bind(c.user_agent.and_then(|v| v.value().cloned()))
                .execute(conn)
                .await?;
            }
            SessionEvent::Used(u) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET last_used_at = $1 WHERE id = $2"
                )))
                .bind(text(u.at))
                .bind(id_of(e))
                .execute(conn)
                .await?;
            }
            SessionEvent::Revoked(r) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET ended_at = $1, end_reason = $2
                     WHERE id = $3 AND ended_at IS NULL"
                )))
                .bind(text(r.at))
                .bind(r.reason.as_str())
                .bind(id_of(e))
                .execute(conn)
                .await?;
            }
            SessionEvent::Expired(x) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET ended_at = $1, end_reason = 'expired'
                     WHERE id = $2 AND ended_at IS NULL"
                )))
                .bind(text(x.at))
                .bind(id_of(e))
                .execute(conn)
                .await?;
            }
            // A step-up changes nothing listed.
            SessionEvent::Verified(_)
            | SessionEvent::AddressCodeSent(_)
            | SessionEvent::AddressCodeFailed(_)
            | SessionEvent::AddressCodeUsed(_) => {}
        }
        Ok(())
    }
}
