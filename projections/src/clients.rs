//! The clients and client-secret read models. Secret hashes never reach
//! them: listings show id, description, created, expires and last used.

use std::collections::HashMap;

use async_trait::async_trait;
use domain::client::ClientEvent;
use domain::token::ISSUED_V1;
use eventlog::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::ReadDb;
use crate::fields::{id_of, text};
use crate::generation::Tables;
use crate::runner::{Projection, ProjectionError};

pub struct ClientsProjection;

#[async_trait]
impl Projection for ClientsProjection {
    fn name(&self) -> &'static str {
        "clients"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["clients", "client_secrets"]
    }

    fn handles(&self, e: &RecordedEvent) -> bool {
        e.category() == "client" || issues_a_token(e)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if issues_a_token(e) {
            if let Some(secret) = secret_of(e)? {
                record_secret_use(conn, tables, secret, e).await?;
            }
            return Ok(());
        }
        let at = text(e.metadata.occurred_at);
        let rev = e.revision as i64;
        let id = id_of(e).to_owned();
        let event: ClientEvent = eventlog::decode(e)?;
        let settings_json = |s: &domain::client::ClientSettings| {
            serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
        };
        match event {
            ClientEvent::Created(c) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {} (id, organization_id, client_type, name, description, settings,
                         enabled, deleted, created_at, updated_at, revision)
                     VALUES ($1, $2, $3, $4, $5, $6, 1, 0, $7, $7, $8)
                     ON CONFLICT (id) DO NOTHING",
                    tables.name("clients")
                )))
                .bind(c.client_id.to_string())
                .bind(c.organization_id.to_string())
                .bind(c.client_type.as_str())
                .bind(c.settings.name.clone())
                .bind(c.settings.description.clone())
                .bind(settings_json(&c.settings))
                .bind(text(c.created_at))
                .bind(rev)
                .execute(conn)
                .await?;
            }
            ClientEvent::Updated(u) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {} SET name = $1, description = $2, settings = $3, updated_at = $4, revision = $5
                     WHERE id = $6",
                    tables.name("clients")
                )))
                .bind(u.settings.name.clone())
                .bind(u.settings.description.clone())
                .bind(settings_json(&u.settings))
                .bind(at)
                .bind(rev)
                .bind(id)
                .execute(conn)
                .await?;
            }
            ClientEvent::Enabled(_) | ClientEvent::Disabled(_) | ClientEvent::Deleted(_) => {
                let (column, value) = match event {
                    ClientEvent::Enabled(_) => ("enabled", 1),
                    ClientEvent::Disabled(_) => ("enabled", 0),
                    _ => ("deleted", 1),
                };
                let sql = format!(
                    "UPDATE {} SET {column} = $1, updated_at = $2, revision = $3 WHERE id = $4",
                    tables.name("clients")
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(value as i64)
                    .bind(at)
                    .bind(rev)
                    .bind(id)
                    .execute(conn)
                    .await?;
            }
            ClientEvent::SecretCreated(s) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {} (id, client_id, description, created_at, expires_at, last_used_at, deleted)
                     VALUES ($1, $2, $3, $4, $5, NULL, 0) ON CONFLICT (id) DO NOTHING",
                    tables.name("client_secrets")
                )))
                .bind(s.secret_id.to_string())
                .bind(id)
                .bind(s.description)
                .bind(text(s.created_at))
                .bind(s.expires_at.map(text))
                .execute(conn)
                .await?;
            }
            ClientEvent::SecretDeleted(s) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {} SET deleted = 1 WHERE id = $1",
                    tables.name("client_secrets")
                )))
                .bind(s.secret_id.to_string())
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }

    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // A busy secret is used by many grants per batch: only its last use
        // is written, just before the next client event (which may delete
        // the secret) or at the end of the batch.
        let mut uses: HashMap<Uuid, &RecordedEvent> = HashMap::new();
        for e in events {
            if issues_a_token(e) {
                if let Some(secret) = secret_of(e)? {
                    uses.insert(secret, e);
                }
                continue;
            }
            for (secret, last) in uses.drain() {
                record_secret_use(conn, tables, secret, last).await?;
            }
            self.apply(conn, tables, e).await?;
        }
        for (secret, last) in uses {
            record_secret_use(conn, tables, secret, last).await?;
        }
        Ok(())
    }
}

/// Whether `e` records an issued access token (with the secret that
/// authenticated its client): `token.issued`, or a person's grant
/// redeemed or refreshed, which records its token itself.
fn issues_a_token(e: &RecordedEvent) -> bool {
    e.event_type == ISSUED_V1
        || e.event_type == domain::grant::CODE_REDEEMED_V1
        || e.event_type == domain::grant::REFRESHED_V1
}

/// The secret a `token.issued` event authenticated with. Only that field
/// is read: this runs for every token the log holds, the time only for a
/// secret's last use in a batch.
fn secret_of(e: &RecordedEvent) -> Result<Option<Uuid>, ProjectionError> {
    #[derive(Deserialize)]
    struct SecretOf {
        #[serde(default)]
        secret_id: Option<Uuid>,
    }
    let of: SecretOf = e.data.decode().map_err(|err| malformed(e, &err))?;
    Ok(of.secret_id)
}

/// Records `e` (a `token.issued` event) as the last use of `secret`.
async fn record_secret_use(
    conn: &mut AnyConnection,
    tables: Tables,
    secret: Uuid,
    e: &RecordedEvent,
) -> Result<(), ProjectionError> {
    #[derive(Deserialize)]
    struct IssuedAt {
        /// `at` in a grant's events.
        #[serde(with = "time::serde::rfc3339", alias = "at")]
        issued_at: OffsetDateTime,
    }
    let at: IssuedAt = e.data.decode().map_err(|err| malformed(e, &err))?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {} SET last_used_at = $1 WHERE id = $2",
        tables.name("client_secrets")
    )))
    .bind(text(at.issued_at))
    .bind(secret.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

fn malformed(e: &RecordedEvent, err: &serde_json::Error) -> ProjectionError {
    ProjectionError::Apply {
        projection: "clients",
        event: format!("{} at {}", e.event_type, e.position),
        reason: err.to_string(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientRow {
    pub id: String,
    pub organization_id: String,
    pub client_type: String,
    pub name: String,
    pub description: String,
    pub settings: serde_json::Value,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

fn client_row(r: &sqlx::any::AnyRow) -> Result<ClientRow, ProjectionError> {
    let settings: String = r.try_get(5)?;
    let enabled: i64 = r.try_get(6)?;
    Ok(ClientRow {
        id: r.try_get(0)?,
        organization_id: r.try_get(1)?,
        client_type: r.try_get(2)?,
        name: r.try_get(3)?,
        description: r.try_get(4)?,
        settings: serde_json::from_str(&settings).unwrap_or(serde_json::Value::Null),
        enabled: enabled != 0,
        created_at: r.try_get(7)?,
        updated_at: r.try_get(8)?,
    })
}

const CLIENT_COLUMNS: &str = "id, organization_id, client_type, name, description, settings, enabled, created_at, updated_at";

/// A client that is not deleted.
pub async fn get(db: &ReadDb, id: &str) -> Result<Option<ClientRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1 AND deleted = 0"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    r.as_ref().map(client_row).transpose()
}

/// Filters of the client list; `None` means any.
#[derive(Clone, Debug, Default)]
pub struct ClientFilter {
    pub organization_id: Option<String>,
    pub enabled: Option<bool>,
    pub name_contains: Option<String>,
}

/// Clients that are not deleted, ordered by id, after `after`, at most `limit`.
pub async fn list(
    db: &ReadDb,
    filter: &ClientFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ClientRow>, ProjectionError> {
    let name_pattern = filter.name_contains.as_ref().map(|n| {
        format!(
            "%{}%",
            n.to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CLIENT_COLUMNS} FROM clients
         WHERE deleted = 0 AND id > $1
           AND ($2 = '' OR organization_id = $2)
           AND ($3 < 0 OR enabled = $3)
           AND ($4 = '' OR lower(name) LIKE $4 ESCAPE '\\')
         ORDER BY id LIMIT $5"
    )))
    .bind(after.unwrap_or(""))
    .bind(filter.organization_id.clone().unwrap_or_default())
    .bind(filter.enabled.map_or(-1i64, i64::from))
    .bind(name_pattern.unwrap_or_default())
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(client_row).collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretRow {
    pub id: String,
    pub description: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// The secrets of a client that are not deleted, oldest first.
pub async fn secrets(db: &ReadDb, client_id: &str) -> Result<Vec<SecretRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT id, description, created_at, expires_at, last_used_at FROM client_secrets
         WHERE client_id = $1 AND deleted = 0 ORDER BY created_at, id",
    )
    .bind(client_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SecretRow {
                id: r.try_get(0)?,
                description: r.try_get(1)?,
                created_at: r.try_get(2)?,
                expires_at: r.try_get(3)?,
                last_used_at: r.try_get(4)?,
            })
        })
        .collect()
}
