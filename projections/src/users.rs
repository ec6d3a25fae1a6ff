//! The users and groups read models: users with their values (decrypted by
//! the log's reader) for the admin search, one row per custom attribute
//! value for filtering, groups, and their direct members (users and
//! groups). A user's deletion, or their subject's erasure, deletes their
//! rows: they leave the search at once.

use async_trait::async_trait;
use domain::group::{GroupEvent, GroupTreeEvent};
use domain::pii::Pii;
use domain::user::{AttributeValue, Attributes, UserCreated, UserEvent, normalize_identifier};
use eventlog::RecordedEvent;
use sqlx::AnyConnection;

use crate::fields::{id_of, text};
use crate::generation::Tables;
use crate::runner::{Projection, ProjectionError};

pub use crate::user_queries::*;

pub struct UsersProjection;

fn clear(v: &Pii<String>) -> String {
    v.value().cloned().unwrap_or_default()
}

fn clear_opt(v: &Option<Pii<String>>) -> Option<String> {
    v.as_ref().and_then(|p| p.value().cloned())
}

fn json<T: serde::Serialize>(v: &Pii<T>) -> String {
    v.value()
        .and_then(|v| serde_json::to_string(v).ok())
        .unwrap_or_else(|| "{}".into())
}

/// The parameters of a statement, each read into a [`Bind`].
macro_rules! binds {
    ($($v:expr),* $(,)?) => { vec![$(Bind::from($v)),*] };
}

/// A statement's parameter.
enum Bind {
    Text(Option<String>),
    Int(i64),
}

impl From<Option<String>> for Bind {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}

impl From<i64> for Bind {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<bool> for Bind {
    fn from(v: bool) -> Self {
        Self::Int(i64::from(v))
    }
}

async fn exec(
    conn: &mut AnyConnection,
    sql: String,
    binds: Vec<Bind>,
) -> Result<(), ProjectionError> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Int(i) => q.bind(i),
        };
    }
    q.execute(conn).await?;
    Ok(())
}

async fn set_attributes(
    conn: &mut AnyConnection,
    tables: Tables,
    user_id: &str,
    attributes: &Pii<Attributes>,
) -> Result<(), ProjectionError> {
    let t = tables.name("user_attributes");
    exec(
        conn,
        format!("DELETE FROM {t} WHERE user_id = $1"),
        binds![Some(user_id.to_owned())],
    )
    .await?;
    let Some(attributes) = attributes.value() else {
        return Ok(());
    };
    for (name, value) in attributes {
        let values: Vec<&String> = match value {
            AttributeValue::One(v) => vec![v],
            AttributeValue::Many(vs) => vs.iter().collect(),
        };
        for v in values {
            exec(
                conn,
                format!(
                    "INSERT INTO {t} (user_id, organization_id, name, value, value_key)
                     SELECT $1, organization_id, $2, $3, $4 FROM {} WHERE id = $1
                     ON CONFLICT DO NOTHING",
                    tables.name("users")
                ),
                binds![
                    Some(user_id.to_owned()),
                    Some(name.clone()),
                    Some(v.clone()),
                    Some(attribute_key(v))
                ],
            )
            .await?;
        }
    }
    Ok(())
}

async fn forget_user(
    conn: &mut AnyConnection,
    tables: Tables,
    user_id: &str,
) -> Result<(), ProjectionError> {
    for (table, column) in [
        ("users", "id"),
        ("user_attributes", "user_id"),
        ("group_members", "member_id"),
    ] {
        exec(
            conn,
            format!("DELETE FROM {} WHERE {column} = $1", tables.name(table)),
            binds![Some(user_id.to_owned())],
        )
        .await?;
    }
    Ok(())
}

/// The columns of a new user's row.
const USER_INSERT: &str = "id, organization_id, username, username_key, email, email_key,
    email_verified, phone_number, phone_verified, profile, attributes, status, has_password,
    must_change_password, password_set_at, created_at, updated_at, last_sign_in_at, revision";

/// Rows inserted per statement (each user row binds 14 values).
const ROWS_PER_INSERT: usize = 200;

/// Inserts new users (and their attribute values), many per statement.
async fn insert_created(
    conn: &mut AnyConnection,
    tables: Tables,
    created: &[(String, i64, UserCreated)],
) -> Result<(), ProjectionError> {
    let users = tables.name("users");
    let attrs = tables.name("user_attributes");
    for chunk in created.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("INSERT INTO {users} ({USER_INSERT}) VALUES ");
        let mut binds = Vec::with_capacity(chunk.len() * 14);
        let mut attribute_rows = Vec::new();
        for (i, (id, rev, c)) in chunk.iter().enumerate() {
            let n = i * 14;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, 'active', 0, 0, NULL, ${}, ${}, NULL, ${})",
                n + 1, n + 2, n + 3, n + 4, n + 5, n + 6, n + 7, n + 8, n + 9, n + 10, n + 11,
                n + 12, n + 13, n + 14,
            ));
            let username = clear(&c.username);
            let email = clear_opt(&c.email);
            let at = text(c.at);
            binds.extend(binds![
                Some(id.clone()),
                Some(c.organization_id.to_string()),
                Some(username.clone()),
                Some(normalize_identifier(&username)),
                email.clone(),
                email.as_deref().map(normalize_identifier),
                c.email_verified,
                clear_opt(&c.phone_number),
                c.phone_verified,
                Some(json(&c.profile)),
                Some(json(&c.attributes)),
                Some(at.clone()),
                Some(at),
                *rev,
            ]);
            if let Some(attributes) = c.attributes.value() {
                for (name, value) in attributes.iter() {
                    let values: Vec<String> = match value {
                        AttributeValue::One(v) => vec![v.clone()],
                        AttributeValue::Many(vs) => vs.clone(),
                    };
                    for v in values {
                        attribute_rows.push((
                            id.clone(),
                            c.organization_id.to_string(),
                            name.clone(),
                            v,
                        ));
                    }
                }
            }
        }
        sql.push_str(" ON CONFLICT (id) DO NOTHING");
        exec(conn, sql, binds).await?;
        for rows in attribute_rows.chunks(ROWS_PER_INSERT * 2) {
            let mut sql = format!(
                "INSERT INTO {attrs} (user_id, organization_id, name, value, value_key) VALUES "
            );
            let mut binds = Vec::with_capacity(rows.len() * 5);
            for (i, (user, org, name, value)) in rows.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let n = i * 5;
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5
                ));
                binds.extend(binds![
                    Some(user.clone()),
                    Some(org.clone()),
                    Some(name.clone()),
                    Some(value.clone()),
                    Some(attribute_key(value))
                ]);
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            exec(conn, sql, binds).await?;
        }
    }
    Ok(())
}

async fn apply_user(
    conn: &mut AnyConnection,
    tables: Tables,
    e: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let users = tables.name("users");
    let id = id_of(e).to_owned();
    let rev = e.revision as i64;
    let event: UserEvent = eventlog::decode(e)?;
    let at = text(event.at());
    let update = |set: &str| {
        format!("UPDATE {users} SET {set}, updated_at = $1, revision = $2 WHERE id = $3")
    };
    match event {
        UserEvent::Created(c) => insert_created(conn, tables, &[(id, rev, c)]).await?,
        UserEvent::UsernameChanged(c) => {
            let username = clear(&c.username);
            exec(
                conn,
                update("username = $4, username_key = $5"),
                binds![
                    Some(at),
                    rev,
                    Some(id),
                    Some(username.clone()),
                    Some(normalize_identifier(&username)),
                ],
            )
            .await?;
        }
        UserEvent::EmailChanged(c) => {
            let email = clear_opt(&c.email);
            exec(
                conn,
                update("email = $4, email_key = $5, email_verified = $6"),
                binds![
                    Some(at),
                    rev,
                    Some(id),
                    email.clone(),
                    email.as_deref().map(normalize_identifier),
                    c.verified,
                ],
            )
            .await?;
        }
        UserEvent::PhoneChanged(c) => {
            exec(
                conn,
                update("phone_number = $4, phone_verified = $5"),
                binds![
                    Some(at),
                    rev,
                    Some(id),
                    clear_opt(&c.phone_number),
                    c.verified,
                ],
            )
            .await?;
        }
        UserEvent::VerificationChanged(c) => {
            exec(
                conn,
                update("email_verified = $4, phone_verified = $5"),
                binds![Some(at), rev, Some(id), c.email_verified, c.phone_verified,],
            )
            .await?;
        }
        UserEvent::ProfileChanged(c) => {
            exec(
                conn,
                update("profile = $4"),
                binds![Some(at), rev, Some(id), Some(json(&c.profile))],
            )
            .await?;
        }
        UserEvent::AttributesChanged(c) => {
            exec(
                conn,
                update("attributes = $4"),
                binds![Some(at), rev, Some(id.clone()), Some(json(&c.attributes))],
            )
            .await?;
            set_attributes(conn, tables, &id, &c.attributes).await?;
        }
        UserEvent::Deactivated(_) | UserEvent::Reactivated(_) => {
            let status = if matches!(event, UserEvent::Deactivated(_)) {
                domain::user::UserStatus::Deactivated
            } else {
                domain::user::UserStatus::Active
            }
            .as_str();
            exec(
                conn,
                update("status = $4"),
                binds![Some(at), rev, Some(id), Some(status.to_owned())],
            )
            .await?;
        }
        UserEvent::PasswordSet(p) => {
            exec(
                conn,
                update("has_password = 1, must_change_password = $4, password_set_at = $1"),
                binds![Some(at), rev, Some(id), p.must_change,],
            )
            .await?;
        }
        UserEvent::PasswordCleared(_) => {
            exec(
                conn,
                update("has_password = 0, must_change_password = 0, password_set_at = NULL"),
                binds![Some(at), rev, Some(id)],
            )
            .await?;
        }
        UserEvent::PasswordChangeRequired(p) => {
            exec(
                conn,
                update("must_change_password = $4"),
                binds![Some(at), rev, Some(id), p.required,],
            )
            .await?;
        }
        UserEvent::SignedIn(_) => {
            // A sign-in is not an update of the user.
            exec(
                conn,
                format!("UPDATE {users} SET last_sign_in_at = $1, revision = $2 WHERE id = $3"),
                binds![Some(at), rev, Some(id)],
            )
            .await?;
        }
        UserEvent::Deleted(_) => forget_user(conn, tables, &id).await?,
    }
    Ok(())
}

async fn apply_group(
    conn: &mut AnyConnection,
    tables: Tables,
    e: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let groups = tables.name("groups");
    let members = tables.name("group_members");
    let id = id_of(e).to_owned();
    let rev = e.revision as i64;
    match eventlog::decode::<GroupEvent>(e)? {
        GroupEvent::Created(c) => {
            exec(
                conn,
                format!(
                    "INSERT INTO {groups} (id, organization_id, name, description, created_at, updated_at, revision,
                         external_id)
                     VALUES ($1, $2, $3, $4, $5, $5, $6, $7) ON CONFLICT (id) DO NOTHING"
                ),
                binds![
                    Some(id),
                    Some(c.organization_id.to_string()),
                    Some(c.name),
                    Some(c.description),
                    Some(text(c.at)),
                    rev,
                    c.external_id,
                ],
            )
            .await?;
        }
        GroupEvent::Renamed(r) => {
            exec(
                conn,
                format!(
                    "UPDATE {groups} SET name = $1, updated_at = $2, revision = $3 WHERE id = $4"
                ),
                binds![Some(r.name), Some(text(r.at)), rev, Some(id)],
            )
            .await?;
        }
        GroupEvent::Described(d) => {
            exec(
                conn,
                format!("UPDATE {groups} SET description = $1, updated_at = $2, revision = $3 WHERE id = $4"),
                binds![Some(d.description), Some(text(d.at)), rev, Some(id)],
            )
            .await?;
        }
        GroupEvent::ExternalIdSet(x) => {
            exec(
                conn,
                format!("UPDATE {groups} SET external_id = $1, updated_at = $2, revision = $3 WHERE id = $4"),
                binds![x.external_id, Some(text(x.at)), rev, Some(id)],
            )
            .await?;
        }
        GroupEvent::Deleted(_) => {
            exec(
                conn,
                format!("DELETE FROM {groups} WHERE id = $1"),
                binds![Some(id.clone())],
            )
            .await?;
            exec(
                conn,
                format!("DELETE FROM {members} WHERE group_id = $1 OR member_id = $1"),
                binds![Some(id)],
            )
            .await?;
        }
        GroupEvent::UserAdded(m) => {
            exec(
                conn,
                format!(
                    "INSERT INTO {members} (group_id, member_id, member_type, added_at)
                     VALUES ($1, $2, 'user', $3) ON CONFLICT DO NOTHING"
                ),
                binds![Some(id), Some(m.user_id.to_string()), Some(text(m.at))],
            )
            .await?;
            touch_group(conn, &groups, e, &m.group_id.to_string(), m.at).await?;
        }
        GroupEvent::UserRemoved(m) => {
            exec(
                conn,
                format!("DELETE FROM {members} WHERE group_id = $1 AND member_id = $2"),
                binds![Some(id), Some(m.user_id.to_string())],
            )
            .await?;
            touch_group(conn, &groups, e, &m.group_id.to_string(), m.at).await?;
        }
    }
    Ok(())
}

/// A membership change moves the group's revision (its ETag).
async fn touch_group(
    conn: &mut AnyConnection,
    groups: &str,
    e: &RecordedEvent,
    group: &str,
    at: time::OffsetDateTime,
) -> Result<(), ProjectionError> {
    exec(
        conn,
        format!("UPDATE {groups} SET updated_at = $1, revision = $2 WHERE id = $3"),
        binds![Some(text(at)), e.revision as i64, Some(group.to_owned()),],
    )
    .await
}

async fn apply_tree(
    conn: &mut AnyConnection,
    tables: Tables,
    e: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let members = tables.name("group_members");
    let groups = tables.name("groups");
    // A group nested or taken out changes its parent (its lastModified).
    let touch = |parent: String, at: time::OffsetDateTime| {
        (
            format!("UPDATE {groups} SET updated_at = $1 WHERE id = $2"),
            binds![Some(text(at)), Some(parent)],
        )
    };
    match eventlog::decode::<GroupTreeEvent>(e)? {
        GroupTreeEvent::Nested(n) => {
            exec(
                conn,
                format!(
                    "INSERT INTO {members} (group_id, member_id, member_type, added_at)
                     VALUES ($1, $2, 'group', $3) ON CONFLICT DO NOTHING"
                ),
                binds![
                    Some(n.parent.to_string()),
                    Some(n.child.to_string()),
                    Some(text(n.at)),
                ],
            )
            .await?;
            let (sql, values) = touch(n.parent.to_string(), n.at);
            exec(conn, sql, values).await?;
        }
        GroupTreeEvent::Unnested(u) => {
            exec(
                conn,
                format!("DELETE FROM {members} WHERE group_id = $1 AND member_id = $2"),
                binds![Some(u.parent.to_string()), Some(u.child.to_string())],
            )
            .await?;
            let (sql, values) = touch(u.parent.to_string(), u.at);
            exec(conn, sql, values).await?;
        }
        GroupTreeEvent::Forgotten(f) => {
            exec(
                conn,
                format!("DELETE FROM {members} WHERE member_id = $1 OR (group_id = $1 AND member_type = 'group')"),
                binds![Some(f.group.to_string())],
            )
            .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        "users"
    }

    fn version(&self) -> u32 {
        // 2: attribute values carry their user's organization; 3: and their
        // lowercased key; 4: a group nested or taken out moves its parent's
        // updated_at, and a group keeps its external id.
        4
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users", "user_attributes", "groups", "group_members"]
    }

    fn handles(&self, e: &RecordedEvent) -> bool {
        matches!(e.category(), "user" | "group" | "grouptree")
            || e.event_type == domain::privacy::SUBJECT_ERASED_V1
    }

    fn changes_access(&self) -> bool {
        true
    }

    /// A recorded sign-in moves only the last sign-in, which no decision
    /// reads: every sign-in would otherwise drop what is cached of everyone.
    fn event_changes_access(&self, e: &RecordedEvent) -> bool {
        e.event_type != domain::user::SIGNED_IN_V1
    }

    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // Creations come in runs (an import, a burst of sign-ups): each run
        // is inserted many rows per statement; everything else one by one,
        // in order.
        let mut run: Vec<(String, i64, UserCreated)> = Vec::new();
        for e in events {
            if e.event_type == domain::user::CREATED_V1
                && let UserEvent::Created(c) = eventlog::decode::<UserEvent>(e)?
            {
                run.push((id_of(e).to_owned(), e.revision as i64, c));
                continue;
            }
            if !run.is_empty() {
                insert_created(conn, tables, &run).await?;
                run.clear();
            }
            self.apply(conn, tables, e).await?;
        }
        if !run.is_empty() {
            insert_created(conn, tables, &run).await?;
        }
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if e.event_type == domain::privacy::SUBJECT_ERASED_V1 {
            if let Some(user) = e
                .subject
                .as_deref()
                .and_then(domain::user::user_of_subject)
                .map(|u| u.to_string())
            {
                forget_user(conn, tables, &user).await?;
            }
            return Ok(());
        }
        match e.category() {
            "user" => apply_user(conn, tables, e).await,
            "group" => apply_group(conn, tables, e).await,
            _ => apply_tree(conn, tables, e).await,
        }
    }
}
