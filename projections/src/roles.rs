//! The roles read model: each organization's roles and who holds them, and
//! the queries on it: a role, a page of roles, a role's holders, and the
//! effective roles of a user (their own, their groups' through nesting,
//! their organization's) or of a client. A holder's deletion (a user, their
//! subject's erasure, a group, a client) takes their assignments with it.

use async_trait::async_trait;
use domain::role::RoleEvent;
use eventlog::RecordedEvent;
use sqlx::{AnyConnection, Row};

use crate::db::ReadDb;
use crate::fields::{id_of, text};
use crate::generation::Tables;
use crate::runner::{Projection, ProjectionError};

pub struct RolesProjection;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub revision: i64,
}

/// One holder of a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderRow {
    /// `user`, `group`, `client` or `organization`.
    pub holder_type: String,
    pub holder_id: String,
    pub assigned_at: String,
}

/// A role someone holds, and through which assignments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveRole {
    pub role: RoleRow,
    /// `(holder type, holder id)` of each assignment that gives it: the
    /// user or client themself, a group they are in, their organization,
    /// or (`role`) a role they hold that includes it.
    pub via: Vec<(String, String)>,
}

const COLUMNS: &str = "r.id, r.organization_id, r.name, r.description, r.permissions,
     r.created_at, r.updated_at, r.revision";

fn role_row(r: &sqlx::any::AnyRow) -> Result<RoleRow, ProjectionError> {
    let permissions: String = r.try_get(4)?;
    Ok(RoleRow {
        id: r.try_get(0)?,
        organization_id: r.try_get(1)?,
        name: r.try_get(2)?,
        description: r.try_get(3)?,
        permissions: serde_json::from_str(&permissions).unwrap_or_default(),
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
        revision: r.try_get(7)?,
    })
}

pub async fn get_role(db: &ReadDb, id: &str) -> Result<Option<RoleRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM roles r WHERE r.id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    r.as_ref().map(role_row).transpose()
}

/// Roles ordered by id after `after`, of one organization or of all.
pub async fn list_roles(
    db: &ReadDb,
    organization: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RoleRow>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM roles r
         WHERE ($1 IS NULL OR r.organization_id = $1) AND r.id > $2
         ORDER BY r.id LIMIT $3"
    )))
    .bind(organization)
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(role_row).collect()
}

/// A role's holders ordered by (type, id) after `after` (`type:id`).
pub async fn role_holders(
    db: &ReadDb,
    role_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<HolderRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT holder_type, holder_id, assigned_at FROM role_assignments
         WHERE role_id = $1 AND holder_type || ':' || holder_id > $2
         ORDER BY holder_type, holder_id LIMIT $3",
    )
    .bind(role_id)
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HolderRow {
                holder_type: r.try_get(0)?,
                holder_id: r.try_get(1)?,
                assigned_at: r.try_get(2)?,
            })
        })
        .collect()
}

/// Folds `(role columns…, holder type, holder id)` rows into roles, each
/// with every assignment that gives it, ordered by name then id.
fn effective(rows: &[sqlx::any::AnyRow]) -> Result<Vec<EffectiveRole>, ProjectionError> {
    let mut out: Vec<EffectiveRole> = Vec::new();
    for r in rows {
        let role = role_row(r)?;
        let via = (r.try_get::<String, _>(8)?, r.try_get::<String, _>(9)?);
        match out.iter_mut().find(|e| e.role.id == role.id) {
            Some(e) => e.via.push(via),
            None => out.push(EffectiveRole {
                role,
                via: vec![via],
            }),
        }
    }
    out.sort_by(|a, b| (&a.role.name, &a.role.id).cmp(&(&b.role.name, &b.role.id)));
    Ok(out)
}

/// The roles a user holds: assigned to them, to a group they are in
/// (directly or through nesting) or to their organization.
pub async fn effective_roles_of_user(
    db: &ReadDb,
    user_id: &str,
    organization_id: &str,
) -> Result<Vec<EffectiveRole>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE up(g) AS (
             SELECT group_id FROM group_members WHERE member_id = $1 AND member_type = 'user'
             UNION SELECT m.group_id FROM group_members m JOIN up ON m.member_id = up.g
                 WHERE m.member_type = 'group'),
         held(role_id, holder_type, holder_id) AS (
             SELECT a.role_id, a.holder_type, a.holder_id FROM role_assignments a
             WHERE (a.holder_type = 'user' AND a.holder_id = $1)
                OR (a.holder_type = 'group' AND a.holder_id IN (SELECT g FROM up))
                OR (a.holder_type = 'organization' AND a.holder_id = $2)
             UNION SELECT i.child_id, 'role', i.parent_id FROM role_includes i
                 JOIN held h ON i.parent_id = h.role_id)
         SELECT {COLUMNS}, h.holder_type, h.holder_id
         FROM held h JOIN roles r ON r.id = h.role_id
         ORDER BY r.id, h.holder_type, h.holder_id"
    )))
    .bind(user_id)
    .bind(organization_id)
    .fetch_all(&db.pool)
    .await?;
    effective(&rows)
}

/// The roles assigned to a client (a service account).
pub async fn roles_of_client(
    db: &ReadDb,
    client_id: &str,
) -> Result<Vec<EffectiveRole>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE held(role_id, holder_type, holder_id) AS (
             SELECT a.role_id, a.holder_type, a.holder_id FROM role_assignments a
             WHERE a.holder_type = 'client' AND a.holder_id = $1
             UNION SELECT i.child_id, 'role', i.parent_id FROM role_includes i
                 JOIN held h ON i.parent_id = h.role_id)
         SELECT {COLUMNS}, h.holder_type, h.holder_id
         FROM held h JOIN roles r ON r.id = h.role_id
         ORDER BY r.id"
    )))
    .bind(client_id)
    .fetch_all(&db.pool)
    .await?;
    effective(&rows)
}

async fn exec(
    conn: &mut AnyConnection,
    sql: String,
    binds: &[&str],
) -> Result<(), ProjectionError> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = q.bind(*b);
    }
    q.execute(conn).await?;
    Ok(())
}

/// Every assignment to `holder_id` goes (the holder was deleted).
async fn forget_holder(
    conn: &mut AnyConnection,
    tables: Tables,
    holder_type: &str,
    holder_id: &str,
) -> Result<(), ProjectionError> {
    let table = tables.name("role_assignments");
    exec(
        conn,
        format!("DELETE FROM {table} WHERE holder_type = $1 AND holder_id = $2"),
        &[holder_type, holder_id],
    )
    .await
}

#[async_trait]
impl Projection for RolesProjection {
    fn name(&self) -> &'static str {
        "roles"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["roles", "role_assignments", "role_includes"]
    }

    fn changes_access(&self) -> bool {
        true
    }

    fn handles(&self, e: &RecordedEvent) -> bool {
        matches!(e.category(), "role" | "roletree")
            || e.event_type == domain::user::DELETED_V1
            || e.event_type == domain::privacy::SUBJECT_ERASED_V1
            || e.event_type == domain::group::DELETED_V1
            || e.event_type == domain::client::DELETED_V1
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match e.event_type.as_str() {
            domain::user::DELETED_V1 | domain::privacy::SUBJECT_ERASED_V1 => {
                let user = e.subject.as_deref().and_then(domain::user::user_of_subject);
                if let Some(user) = user {
                    forget_holder(conn, tables, "user", &user.to_string()).await?;
                }
                return Ok(());
            }
            domain::group::DELETED_V1 => {
                return forget_holder(conn, tables, "group", id_of(e)).await;
            }
            domain::client::DELETED_V1 => {
                return forget_holder(conn, tables, "client", id_of(e)).await;
            }
            _ => {}
        }
        let roles = tables.name("roles");
        let assignments = tables.name("role_assignments");
        let includes = tables.name("role_includes");
        if e.category() == "roletree" {
            return apply_tree(conn, &includes, e).await;
        }
        let id = id_of(e).to_owned();
        let permissions = |p: &std::collections::BTreeSet<domain::role::Permission>| {
            let v: Vec<&str> = p.iter().map(|p| p.as_str()).collect();
            serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
        };
        match eventlog::decode::<RoleEvent>(e)? {
            RoleEvent::Created(c) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {roles} (id, organization_id, name, description, permissions,
                         created_at, updated_at, revision)
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7) ON CONFLICT (id) DO NOTHING"
                )))
                .bind(id)
                .bind(c.organization_id.to_string())
                .bind(c.name)
                .bind(c.description)
                .bind(permissions(&c.permissions))
                .bind(text(c.at))
                .bind(e.revision as i64)
                .execute(conn)
                .await?;
            }
            RoleEvent::Changed(c) => {
                let perms = c.permissions.as_ref().map(permissions);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {roles} SET name = COALESCE($1, name),
                         description = COALESCE($2, description),
                         permissions = COALESCE($3, permissions),
                         updated_at = $4, revision = $5
                     WHERE id = $6"
                )))
                .bind(c.name)
                .bind(c.description)
                .bind(perms)
                .bind(text(c.at))
                .bind(e.revision as i64)
                .bind(id)
                .execute(conn)
                .await?;
            }
            RoleEvent::Deleted(_) => {
                exec(conn, format!("DELETE FROM {roles} WHERE id = $1"), &[&id]).await?;
                exec(
                    conn,
                    format!("DELETE FROM {includes} WHERE parent_id = $1 OR child_id = $1"),
                    &[&id],
                )
                .await?;
                exec(
                    conn,
                    format!("DELETE FROM {assignments} WHERE role_id = $1"),
                    &[&id],
                )
                .await?;
            }
            RoleEvent::Assigned(a) => {
                let (kind, holder) = (a.holder.kind(), a.holder.id().to_string());
                exec(
                    conn,
                    format!(
                        "INSERT INTO {assignments} (role_id, holder_type, holder_id, organization_id, assigned_at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
                    ),
                    &[&id, kind, &holder, &a.organization_id.to_string(), &text(a.at)],
                )
                .await?;
                touch(conn, &roles, &id, a.at, e.revision).await?;
            }
            RoleEvent::Unassigned(a) => {
                let (kind, holder) = (a.holder.kind(), a.holder.id().to_string());
                exec(
                    conn,
                    format!(
                        "DELETE FROM {assignments} WHERE role_id = $1 AND holder_type = $2 AND holder_id = $3"
                    ),
                    &[&id, kind, &holder],
                )
                .await?;
                touch(conn, &roles, &id, a.at, e.revision).await?;
            }
        }
        Ok(())
    }
}

/// An inclusion of a role in another, or its end.
async fn apply_tree(
    conn: &mut AnyConnection,
    includes: &str,
    e: &RecordedEvent,
) -> Result<(), ProjectionError> {
    use domain::role_tree::RoleTreeEvent;
    let organization = id_of(e).to_owned();
    match eventlog::decode::<RoleTreeEvent>(e)? {
        RoleTreeEvent::Included(n) => {
            exec(
                conn,
                format!(
                    "INSERT INTO {includes} (parent_id, child_id, organization_id, included_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
                ),
                &[
                    &n.parent.to_string(),
                    &n.child.to_string(),
                    &organization,
                    &text(n.at),
                ],
            )
            .await
        }
        RoleTreeEvent::Excluded(n) => {
            exec(
                conn,
                format!("DELETE FROM {includes} WHERE parent_id = $1 AND child_id = $2"),
                &[&n.parent.to_string(), &n.child.to_string()],
            )
            .await
        }
        RoleTreeEvent::Forgotten(f) => {
            exec(
                conn,
                format!("DELETE FROM {includes} WHERE parent_id = $1 OR child_id = $1"),
                &[&f.group.to_string()],
            )
            .await
        }
    }
}

/// The roles a role includes directly.
pub async fn included_roles(db: &ReadDb, role_id: &str) -> Result<Vec<String>, ProjectionError> {
    let rows =
        sqlx::query("SELECT child_id FROM role_includes WHERE parent_id = $1 ORDER BY child_id")
            .bind(role_id)
            .fetch_all(&db.pool)
            .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// An assignment moves the role's revision (its ETag).
async fn touch(
    conn: &mut AnyConnection,
    roles: &str,
    id: &str,
    at: time::OffsetDateTime,
    revision: u64,
) -> Result<(), ProjectionError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {roles} SET updated_at = $1, revision = $2 WHERE id = $3"
    )))
    .bind(text(at))
    .bind(revision as i64)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}
