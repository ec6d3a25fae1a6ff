//! Registration tokens and the instances (auth tokens) that consumed them:
//! count, used, remaining, status, and who used what from where.

use std::collections::HashMap;

use async_trait::async_trait;
use domain::registration::{AuthTokenEvent, RegistrationTokenEvent};
use eventlog::RecordedEvent;
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use crate::db::ReadDb;
use crate::fields::{id_of, text, values_sql};
use crate::generation::Tables;
use crate::runner::{Projection, ProjectionError};

pub struct RegistrationProjection;

#[async_trait]
impl Projection for RegistrationProjection {
    fn name(&self) -> &'static str {
        "registration"
    }

    fn version(&self) -> u32 {
        // 2: instances name their subject; erasure and correction.
        // 3: an erasure also clears the device names.
        3
    }

    fn tables(&self) -> &'static [&'static str] {
        &["registration_tokens", "auth_tokens"]
    }

    fn handles(&self, e: &RecordedEvent) -> bool {
        matches!(e.category(), "regtoken" | "authtoken")
            || e.event_type == domain::privacy::SUBJECT_ERASED_V1
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if e.event_type == domain::privacy::SUBJECT_ERASED_V1 {
            // The person's values leave the read model; the rows stay.
            if let Some(subject) = &e.subject {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {} SET user_name = NULL, device_name = '' WHERE subject = $1",
                    tables.name("auth_tokens")
                )))
                .bind(subject.clone())
                .execute(conn)
                .await?;
            }
            return Ok(());
        }
        let id = id_of(e).to_owned();
        if e.category() == "regtoken" {
            match eventlog::decode::<RegistrationTokenEvent>(e)? {
                RegistrationTokenEvent::Created(c) => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO {} (id, organization_id, client_id, description, count, used,
                             expires_at, created_at, created_by, revoked_at, last_used_at)
                         VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, NULL, NULL) ON CONFLICT (id) DO NOTHING",
                        tables.name("registration_tokens")
                    )))
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
                    record_use(conn, tables, &id, c.used_after as i64, &text(c.consumed_at))
                        .await?;
                }
                RegistrationTokenEvent::Revoked(r) => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE {} SET revoked_at = $1 WHERE id = $2",
                        tables.name("registration_tokens")
                    )))
                    .bind(text(r.revoked_at))
                    .bind(id)
                    .execute(conn)
                    .await?;
                }
            }
            return Ok(());
        }
        let (set, at) = match eventlog::decode::<AuthTokenEvent>(e)? {
            AuthTokenEvent::Issued(i) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {} (id, registration_token_id, client_id, organization_id, instance_id,
                         device_name, user_name, app_version, created_at, source_ip, user_agent, subject)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
                    tables.name("auth_tokens")
                )))
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
                .bind(i.instance.subject)
                .execute(conn)
                .await?;
                return Ok(());
            }
            AuthTokenEvent::InstanceCorrected(c) => {
                let auth_tokens = tables.name("auth_tokens");
                if let Some(user_name) = c.user_name {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE {auth_tokens} SET user_name = $1 WHERE id = $2"
                    )))
                    .bind(user_name.value().cloned())
                    .bind(id.clone())
                    .execute(&mut *conn)
                    .await?;
                }
                if let Some(device_name) = c.device_name {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE {auth_tokens} SET device_name = $1 WHERE id = $2"
                    )))
                    .bind(device_name)
                    .bind(id)
                    .execute(conn)
                    .await?;
                }
                return Ok(());
            }
            AuthTokenEvent::Exchanged(x) => {
                ("exchanged_at = $1, last_used_at = $1", x.exchanged_at)
            }
            AuthTokenEvent::Refreshed(r) => ("last_used_at = $1", r.refreshed_at),
            AuthTokenEvent::ReuseDetected(r) => ("chain_revoked_at = $1", r.detected_at),
            AuthTokenEvent::Revoked(r) => ("chain_revoked_at = $1", r.revoked_at),
            AuthTokenEvent::Deleted(d) => ("deleted_at = $1", d.deleted_at),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {} SET {set} WHERE id = $2",
            tables.name("auth_tokens")
        )))
        .bind(text(at))
        .bind(id)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // A hot registration token is consumed many times per batch: only
        // its last count is written, before its next other event or at the
        // end of the batch. Instances issued in the batch are written once,
        // as their later events in the batch left them, many per statement.
        let mut used: HashMap<String, (i64, String)> = HashMap::new();
        let mut instances = Instances::default();
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
                    record_use(conn, tables, &id, n, &at).await?;
                }
            } else if e.category() == "authtoken" {
                if instances.absorb(e)? {
                    continue;
                }
                // About an instance written before this batch: its row.
            } else {
                // An erasure: the rows it may name are written first.
                instances.flush(conn, tables).await?;
            }
            self.apply(conn, tables, e).await?;
        }
        for (id, (n, at)) in used {
            record_use(conn, tables, &id, n, &at).await?;
        }
        instances.flush(conn, tables).await
    }
}

/// Instances issued within one batch, with what their later events in the
/// batch changed, not yet written.
#[derive(Default)]
struct Instances {
    rows: Vec<InstanceRow>,
    by_id: HashMap<String, usize>,
}

/// An `auth_tokens` row: the columns of [`INSTANCE_COLUMNS`].
struct InstanceRow {
    id: String,
    registration_token_id: String,
    client_id: String,
    organization_id: String,
    instance_id: String,
    device_name: String,
    user_name: Option<String>,
    app_version: String,
    created_at: String,
    source_ip: Option<String>,
    user_agent: Option<String>,
    subject: Option<String>,
    exchanged_at: Option<String>,
    last_used_at: Option<String>,
    chain_revoked_at: Option<String>,
    deleted_at: Option<String>,
}

const INSTANCE_COLUMNS: &str = "id, registration_token_id, client_id, organization_id, instance_id,
    device_name, user_name, app_version, created_at, source_ip, user_agent, subject,
    exchanged_at, last_used_at, chain_revoked_at, deleted_at";
const INSTANCE_VALUES: usize = 16;
/// Rows per INSERT: 800 parameters.
const INSTANCES_PER_INSERT: usize = 50;

impl Instances {
    /// Takes an auth-token event into the batch if it issues an instance or
    /// changes one issued in this batch; false if it must be applied to a
    /// row already written.
    fn absorb(&mut self, e: &RecordedEvent) -> Result<bool, ProjectionError> {
        let event = eventlog::decode::<AuthTokenEvent>(e)?;
        if let AuthTokenEvent::Issued(i) = event {
            let id = i.id.to_string();
            self.by_id.insert(id.clone(), self.rows.len());
            self.rows.push(InstanceRow {
                id,
                registration_token_id: i.registration_token_id.to_string(),
                client_id: i.client_id.to_string(),
                organization_id: i.organization_id.to_string(),
                instance_id: i.instance.instance_id,
                device_name: i.instance.device_name,
                user_name: i.instance.user_name.value().cloned(),
                app_version: i.instance.app_version,
                created_at: text(i.issued_at),
                source_ip: e.metadata.source_ip.clone(),
                user_agent: e.metadata.user_agent.clone(),
                subject: i.instance.subject,
                exchanged_at: None,
                last_used_at: None,
                chain_revoked_at: None,
                deleted_at: None,
            });
            return Ok(true);
        }
        let Some(row) = self.by_id.get(id_of(e)).map(|&k| &mut self.rows[k]) else {
            return Ok(false);
        };
        match event {
            AuthTokenEvent::Issued(_) => {}
            AuthTokenEvent::Exchanged(x) => {
                row.exchanged_at = Some(text(x.exchanged_at));
                row.last_used_at = Some(text(x.exchanged_at));
            }
            AuthTokenEvent::Refreshed(r) => row.last_used_at = Some(text(r.refreshed_at)),
            AuthTokenEvent::ReuseDetected(r) => row.chain_revoked_at = Some(text(r.detected_at)),
            AuthTokenEvent::Revoked(r) => row.chain_revoked_at = Some(text(r.revoked_at)),
            AuthTokenEvent::Deleted(d) => row.deleted_at = Some(text(d.deleted_at)),
            AuthTokenEvent::InstanceCorrected(c) => {
                if let Some(user_name) = c.user_name {
                    row.user_name = user_name.value().cloned();
                }
                if let Some(device_name) = c.device_name {
                    row.device_name = device_name;
                }
            }
        }
        Ok(true)
    }

    async fn flush(
        &mut self,
        conn: &mut AnyConnection,
        tables: Tables,
    ) -> Result<(), ProjectionError> {
        self.by_id.clear();
        let rows = std::mem::take(&mut self.rows);
        let table = tables.name("auth_tokens");
        for chunk in rows.chunks(INSTANCES_PER_INSERT) {
            let mut sql = format!("INSERT INTO {table} ({INSTANCE_COLUMNS}) VALUES ");
            values_sql(&mut sql, tables.dialect, chunk.len(), INSTANCE_VALUES);
            sql.push_str(" ON CONFLICT (id) DO NOTHING");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(r.id.clone())
                    .bind(r.registration_token_id.clone())
                    .bind(r.client_id.clone())
                    .bind(r.organization_id.clone())
                    .bind(r.instance_id.clone())
                    .bind(r.device_name.clone())
                    .bind(r.user_name.clone())
                    .bind(r.app_version.clone())
                    .bind(r.created_at.clone())
                    .bind(r.source_ip.clone())
                    .bind(r.user_agent.clone())
                    .bind(r.subject.clone())
                    .bind(r.exchanged_at.clone())
                    .bind(r.last_used_at.clone())
                    .bind(r.chain_revoked_at.clone())
                    .bind(r.deleted_at.clone());
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

async fn record_use(
    conn: &mut AnyConnection,
    tables: Tables,
    id: &str,
    used: i64,
    at: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {} SET used = $1, last_used_at = $2 WHERE id = $3",
        tables.name("registration_tokens")
    )))
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

/// A registration token, its status as of `now`.
pub async fn get(
    db: &ReadDb,
    id: &str,
    now: OffsetDateTime,
) -> Result<Option<RegistrationTokenRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RT_COLUMNS} FROM registration_tokens WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    r.as_ref().map(|r| rt_row(r, now)).transpose()
}

/// Registration tokens of an organization (or all), by id, after `after`,
/// their status as of `now`.
pub async fn list(
    db: &ReadDb,
    organization_id: Option<&str>,
    client_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
    now: OffsetDateTime,
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
