//! The organizations read model.

use async_trait::async_trait;
use domain::organization::{CREATED_V1, OrganizationEvent, RENAMED_V1};
use eventlog::RecordedEvent;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::db::ReadDb;
use crate::fields::{id_of, text};
use crate::generation::Tables;
use crate::runner::{Projection, ProjectionError};

pub struct OrganizationsProjection;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrganizationRow {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub revision: i64,
}

#[async_trait]
impl Projection for OrganizationsProjection {
    fn name(&self) -> &'static str {
        "organizations"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["organizations"]
    }

    fn handles(&self, e: &RecordedEvent) -> bool {
        e.event_type == CREATED_V1 || e.event_type == RENAMED_V1
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let event: OrganizationEvent = eventlog::decode(e)?;
        let at = text(e.metadata.occurred_at);
        match event {
            OrganizationEvent::Created(c) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {} (id, name, created_at, updated_at, revision)
                     VALUES ($1, $2, $3, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at,
                         revision = excluded.revision",
                    tables.name("organizations")
                )))
                .bind(c.id.to_string())
                .bind(c.name)
                .bind(at)
                .bind(e.revision as i64)
                .execute(conn)
                .await?;
            }
            OrganizationEvent::Renamed(r) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {} SET name = $1, updated_at = $2, revision = $3 WHERE id = $4",
                    tables.name("organizations")
                )))
                .bind(r.name)
                .bind(at)
                .bind(e.revision as i64)
                .bind(id_of(e))
                .execute(conn)
                .await?;
            }
            // Not handled (see `handles`): the policy is read from the log.
            OrganizationEvent::SignInPolicySet(_)
            | OrganizationEvent::ClientSignInPolicySet(_)
            | OrganizationEvent::BrandingSet(_) => {}
        }
        Ok(())
    }
}

fn row(r: &sqlx::any::AnyRow) -> Result<OrganizationRow, sqlx::Error> {
    Ok(OrganizationRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        created_at: r.try_get(2)?,
        updated_at: r.try_get(3)?,
        revision: r.try_get(4)?,
    })
}

pub async fn get(db: &ReadDb, id: &str) -> Result<Option<OrganizationRow>, ProjectionError> {
    let r = sqlx::query(
        "SELECT id, name, created_at, updated_at, revision FROM organizations WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    Ok(r.as_ref().map(row).transpose()?)
}

/// Organizations ordered by id, after the cursor `after` (an id), at most `limit`.
pub async fn list(
    db: &ReadDb,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<OrganizationRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT id, name, created_at, updated_at, revision FROM organizations
         WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
}
