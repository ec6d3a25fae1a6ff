//! Registration tokens and the instances (auth tokens) that consumed them:
//! count, used, remaining, status, and who used what from where.

use std::collections::HashMap;

use async_trait::async_trait;
use domain::registration::{AuthTokenEvent, RegistrationTokenEvent};
use eventlog::RecordedEvent;
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use crate::db::{Dialect, ReadDb};
use crate::fields::{id_of, text};
use crate::runner::{Projection, ProjectionError};

pub struct RegistrationProjection;

#[async_trait]
impl Projection for RegistrationProjection {
    fn name(&self) -> &'static str {
        "registration"
    }

    fn version(&self) -> u32 {
        1
    }

    fn handles(&self, e: &RecordedEvent) -> bool {
        matches!(e.category(), "regtoken" | "authtoken")
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        _dialect: Dialect,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let id = id_of(e).to_owned();
        if e.category() == "regtoken" {
            match eventlog::decode::<RegistrationTokenEvent>(e)? {
                RegistrationTokenEvent::Created(c) => {
                    sqlx::query(
                        "INSERT INTO registration_tokens (id, organization_id, client_id, description, count, used,
                             expires_at, created_at, created_by, revoked_at, last_used_at)
                         VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, NULL, NULL) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(c.id.to_string())
                    .bind(c.organization_id.to_string())
                    .bind(c.client_id.to_string())
                    .bind(c.description)
                    .bind(c.count as i64)
                    .bind(text(c.expires_at))
                    .bind(text(c.created_at))
                    .bind(c.created_by)
                    .execute(conn)
                    .await?;
                }
                RegistrationTokenEvent::Consumed(c) => {
                    record_use(conn, &id, c.used_after as i64, &text(c.consumed_at)).await?;
                }
                RegistrationTokenEvent::Revoked(r) => {
                    sqlx::query("UPDATE registration_tokens SET revoked_at = $1 WHERE id = $2")
                        .bind(text(r.revoked_at))
                        .bind(id)
                        .execute(conn)
                        .await?;
                }
            }
            return Ok(());
        }
        let (sql, at) = match eventlog::decode::<AuthTokenEvent>(e)? {
            AuthTokenEvent::Issued(i) => {
                sqlx::query(
                    "INSERT INTO auth_tokens (id, registration_token_id, client_id, organization_id, instance_id,
                         device_name, user_name, app_version, created_at, source_ip, user_agent)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
                )
                .bind(i.id.to_string())
                .bind(i.registration_token_id.to_string())
                .bind(i.client_id.to_string())
                .bind(i.organization_id.to_string())
                .bind(i.instance.instance_id)
                .bind(i.instance.device_name)
                .bind(i.instance.user_name.value().cloned())
                .bind(i.instance.app_version)
                .bind(text(i.issued_at))
                .bind(e.metadata.source_ip.clone())
                .bind(e.metadata.user_agent.clone())
                .execute(conn)
                .await?;
                return Ok(());
            }
            AuthTokenEvent::Exchanged(x) => (
                "UPDATE auth_tokens SET exchanged_at = $1, last_used_at = $1 WHERE id = $2",
                x.exchanged_at,
            ),
            AuthTokenEvent::Refreshed(r) => (
                "UPDATE auth_tokens SET last_used_at = $1 WHERE id = $2",
                r.refreshed_at,
            ),
            AuthTokenEvent::ReuseDetected(r) => (
                "UPDATE auth_tokens SET chain_revoked_at = $1 WHERE id = $2",
                r.detected_at,
            ),
            AuthTokenEvent::Deleted(d) => (
                "UPDATE auth_tokens SET deleted_at = $1 WHERE id = $2",
                d.deleted_at,
            ),
        };
        sqlx::query(sql)
            .bind(text(at))
            .bind(id)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        dialect: Dialect,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // A hot registration token is consumed many times per batch: only
        // its last count is written, before its next other event or at the
        // end of the batch.
        let mut used: HashMap<String, (i64, String)> = HashMap::new();
        for e in events {
            if e.category() == "regtoken" {
                if let RegistrationTokenEvent::Consumed(c) = eventlog::decode(e)? {
                    used.insert(
                        id_of(e).to_owned(),
                        (c.used_after as i64, text(c.consumed_at)),
                    );
                    continue;
                }
                for (id, (n, at)) in used.drain() {
                    record_use(conn, &id, n, &at).await?;
                }
            }
            self.apply(conn, dialect, e).await?;
        }
        for (id, (n, at)) in used {
            record_use(conn, &id, n, &at).await?;
        }
        Ok(())
    }

    async fn reset(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        sqlx::query("DELETE FROM auth_tokens")
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM registration_tokens")
            .execute(conn)
            .await?;
        Ok(())
    }
}

async fn record_use(
    conn: &mut AnyConnection,
    id: &str,
    used: i64,
    at: &str,
) -> Result<(), ProjectionError> {
    sqlx::query("UPDATE registration_tokens SET used = $1, last_used_at = $2 WHERE id = $3")
        .bind(used)
        .bind(at.to_owned())
        .bind(id.to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegistrationTokenRow {
    pub id: String,
    pub organization_id: String,
    pub client_id: String,
    pub description: String,
    pub count: i64,
    pub used: i64,
    pub remaining: i64,
    pub expires_at: String,
    pub status: String,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

const RT_COLUMNS: &str = "id, organization_id, client_id, description, count, used, expires_at, created_at, created_by, revoked_at, last_used_at";

fn rt_row(
    r: &sqlx::any::AnyRow,
    now: OffsetDateTime,
) -> Result<RegistrationTokenRow, ProjectionError> {
    let count: i64 = r.try_get(4)?;
    let used: i64 = r.try_get(5)?;
    let expires_at: String = r.try_get(6)?;
    let revoked_at: Option<String> = r.try_get(9)?;
    // Compared as times: RFC 3339 texts with different numbers of fraction
    // digits do not sort as their instants do.
    let expired =
        OffsetDateTime::parse(&expires_at, &time::format_description::well_known::Rfc3339)
            .map_or(true, |t| t <= now);
    let status = if revoked_at.is_some() {
        "revoked"
    } else if expired {
        "expired"
    } else if used >= count {
        "exhausted"
    } else {
        "active"
    };
    Ok(RegistrationTokenRow {
        id: r.try_get(0)?,
        organization_id: r.try_get(1)?,
        client_id: r.try_get(2)?,
        description: r.try_get(3)?,
        count,
        used,
        remaining: (count - used).max(0),
        expires_at,
        status: status.to_owned(),
        created_at: r.try_get(7)?,
        created_by: r.try_get(8)?,
        revoked_at,
        last_used_at: r.try_get(10)?,
    })
}

pub async fn get(db: &ReadDb, id: &str) -> Result<Option<RegistrationTokenRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RT_COLUMNS} FROM registration_tokens WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    let now = OffsetDateTime::now_utc();
    r.as_ref().map(|r| rt_row(r, now)).transpose()
}

/// Registration tokens of an organization (or all), by id, after `after`.
pub async fn list(
    db: &ReadDb,
    organization_id: Option<&str>,
    client_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RegistrationTokenRow>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RT_COLUMNS} FROM registration_tokens
         WHERE id > $1 AND ($2 = '' OR organization_id = $2) AND ($3 = '' OR client_id = $3)
         ORDER BY id LIMIT $4"
    )))
    .bind(after.unwrap_or(""))
    .bind(organization_id.unwrap_or(""))
    .bind(client_id.unwrap_or(""))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let now = OffsetDateTime::now_utc();
    rows.iter().map(|r| rt_row(r, now)).collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthTokenRow {
    pub id: String,
    pub registration_token_id: String,
    pub client_id: String,
    pub instance_id: String,
    pub device_name: String,
    pub user_name: Option<String>,
    pub app_version: String,
    pub created_at: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub exchanged_at: Option<String>,
    pub last_used_at: Option<String>,
    pub chain_revoked_at: Option<String>,
    pub deleted_at: Option<String>,
}

/// The auth tokens a registration token generated, by id, after `after`.
pub async fn auth_tokens(
    db: &ReadDb,
    registration_token_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<AuthTokenRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT id, registration_token_id, client_id, instance_id, device_name, user_name, app_version,
                created_at, source_ip, user_agent, exchanged_at, last_used_at, chain_revoked_at, deleted_at
           FROM auth_tokens WHERE registration_token_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(registration_token_id)
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuthTokenRow {
                id: r.try_get(0)?,
                registration_token_id: r.try_get(1)?,
                client_id: r.try_get(2)?,
                instance_id: r.try_get(3)?,
                device_name: r.try_get(4)?,
                user_name: r.try_get(5)?,
                app_version: r.try_get(6)?,
                created_at: r.try_get(7)?,
                source_ip: r.try_get(8)?,
                user_agent: r.try_get(9)?,
                exchanged_at: r.try_get(10)?,
                last_used_at: r.try_get(11)?,
                chain_revoked_at: r.try_get(12)?,
                deleted_at: r.try_get(13)?,
            })
        })
        .collect()
}
