//! The queries of the users and groups read models: a user by id, the
//! admin search (prefix of username, email or id; filters; three sort
//! orders with keyset cursors; a total count), groups, their members and a
//! user's groups (direct, and those they are in through nesting).

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::ReadDb;
use crate::runner::ProjectionError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub id: String,
    pub organization_id: String,
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone_number: Option<String>,
    pub phone_verified: bool,
    pub profile: serde_json::Value,
    pub attributes: serde_json::Value,
    pub status: String,
    pub has_password: bool,
    pub must_change_password: bool,
    pub password_set_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_sign_in_at: Option<String>,
    pub revision: i64,
    /// The key of the list's sort order (for its cursor).
    #[serde(skip)]
    pub sort_key: String,
}

const USER_COLUMNS: &str = "id, organization_id, username, email, email_verified, phone_number,
    phone_verified, profile, attributes, status, has_password, must_change_password,
    password_set_at, created_at, updated_at, last_sign_in_at, revision";

fn user_row(r: &AnyRow, sort_key: Option<usize>) -> Result<UserRow, ProjectionError> {
    let flag = |i: usize| -> Result<bool, ProjectionError> { Ok(r.try_get::<i64, _>(i)? != 0) };
    let parsed = |i: usize| -> Result<serde_json::Value, ProjectionError> {
        let s: String = r.try_get(i)?;
        Ok(serde_json::from_str(&s).unwrap_or(serde_json::Value::Null))
    };
    Ok(UserRow {
        id: r.try_get(0)?,
        organization_id: r.try_get(1)?,
        username: r.try_get(2)?,
        email: r.try_get(3)?,
        email_verified: flag(4)?,
        phone_number: r.try_get(5)?,
        phone_verified: flag(6)?,
        profile: parsed(7)?,
        attributes: parsed(8)?,
        status: r.try_get(9)?,
        has_password: flag(10)?,
        must_change_password: flag(11)?,
        password_set_at: r.try_get(12)?,
        created_at: r.try_get(13)?,
        updated_at: r.try_get(14)?,
        last_sign_in_at: r.try_get(15)?,
        revision: r.try_get(16)?,
        sort_key: match sort_key {
            Some(i) => r.try_get::<Option<String>, _>(i)?.unwrap_or_default(),
            None => String::new(),
        },
    })
}

/// A user that is not deleted.
pub async fn get_user(db: &ReadDb, id: &str) -> Result<Option<UserRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    r.as_ref().map(|r| user_row(r, None)).transpose()
}

/// The order of a user list; every order ends with the id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UserSort {
    #[default]
    Username,
    Created,
    LastSignIn,
}

impl UserSort {
    fn column(self) -> &'static str {
        match self {
            Self::Username => "username_key",
            Self::Created => "created_at",
            // Never signed in sorts first (before any time).
            Self::LastSignIn => "COALESCE(last_sign_in_at, '')",
        }
    }
}

/// Filters of the user list; `None` means any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserFilter {
    pub organization_id: Option<String>,
    /// A prefix of the username, the email address (both compared
    /// normalized) or the id.
    pub search: Option<String>,
    pub status: Option<String>,
    /// Members of this group or of any group nested in it.
    pub group_id: Option<String>,
    pub created_from: Option<String>,
    pub created_to: Option<String>,
    pub last_sign_in_from: Option<String>,
    pub last_sign_in_to: Option<String>,
    /// A custom attribute's name and one of its values.
    pub attribute: Option<(String, String)>,
    /// The username, exactly (compared normalized, as uniqueness is).
    pub username: Option<String>,
    /// Custom attributes' names and a value each, compared regardless of
    /// case (as [`attribute_key`]s); every one must hold.
    pub attributes_any_case: Vec<(String, String)>,
}

/// How an attribute value is compared regardless of case: the key stored
/// beside it (`user_attributes.value_key`) and the key a filter asks for.
pub fn attribute_key(value: &str) -> String {
    value.to_lowercase()
}

/// The `WHERE` clause of a filter and its parameters (numbered from 1).
fn where_clause(f: &UserFilter) -> (String, Vec<String>) {
    let mut sql = String::from("1 = 1");
    let mut binds: Vec<String> = Vec::new();
    let param = |binds: &mut Vec<String>, v: String| {
        binds.push(v);
        format!("${}", binds.len())
    };
    // Within one organization, each sub-select below is one index range.
    let mut in_org = String::new();
    if let Some(org) = &f.organization_id {
        let p = param(&mut binds, org.clone());
        sql.push_str(&format!(" AND organization_id = {p}"));
        in_org = format!(" AND organization_id = {p}");
    }
    if let Some(q) = f.search.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        // Prefix ranges rather than LIKE, so that the indexes serve them.
        let key = domain::user::normalize_identifier(q);
        let id = q.to_ascii_lowercase();
        let (lo, hi) = (
            param(&mut binds, key.clone()),
            param(&mut binds, format!("{key}\u{10FFFF}")),
        );
        let (ilo, ihi) = (
            param(&mut binds, id.clone()),
            param(&mut binds, format!("{id}\u{10FFFF}")),
        );
        sql.push_str(&format!(
            " AND id IN (
                SELECT id FROM users WHERE username_key >= {lo} AND username_key < {hi}{in_org}
                UNION SELECT id FROM users WHERE email_key >= {lo} AND email_key < {hi}{in_org}
                UNION SELECT id FROM users WHERE id >= {ilo} AND id < {ihi})"
        ));
    }
    if let Some(name) = &f.username {
        let p = param(&mut binds, domain::user::normalize_identifier(name));
        if in_org.is_empty() {
            sql.push_str(&format!(" AND username_key = {p}"));
        } else {
            // Unique within an organization: as the id it names, the
            // planner looks it up rather than walking the organization's
            // users in the order asked.
            sql.push_str(&format!(
                " AND id = (SELECT id FROM users WHERE username_key = {p}{in_org} LIMIT 1)"
            ));
        }
    }
    for (name, value) in &f.attributes_any_case {
        let (n, v) = (
            param(&mut binds, name.clone()),
            param(&mut binds, attribute_key(value)),
        );
        sql.push_str(&format!(
            " AND id IN (SELECT user_id FROM user_attributes
                WHERE name = {n} AND value_key = {v}{in_org})"
        ));
    }
    if let Some(status) = &f.status {
        let p = param(&mut binds, status.clone());
        sql.push_str(&format!(" AND status = {p}"));
    }
    if let Some(group) = &f.group_id {
        let p = param(&mut binds, group.clone());
        sql.push_str(&format!(
            " AND id IN (
                WITH RECURSIVE nested(g) AS (
                    SELECT CAST({p} AS TEXT)
                    UNION SELECT m.member_id FROM group_members m JOIN nested ON m.group_id = nested.g
                        WHERE m.member_type = 'group')
                SELECT m.member_id FROM group_members m JOIN nested ON m.group_id = nested.g
                WHERE m.member_type = 'user')"
        ));
    }
    for (value, op, column) in [
        (&f.created_from, ">=", "created_at"),
        (&f.created_to, "<", "created_at"),
        (&f.last_sign_in_from, ">=", "last_sign_in_at"),
        (&f.last_sign_in_to, "<", "last_sign_in_at"),
    ] {
        if let Some(v) = value {
            let p = param(&mut binds, v.clone());
            sql.push_str(&format!(" AND {column} {op} {p}"));
        }
    }
    if let Some((name, value)) = &f.attribute {
        let (n, v) = (
            param(&mut binds, name.clone()),
            param(&mut binds, value.clone()),
        );
        sql.push_str(&format!(
            " AND id IN (SELECT user_id FROM user_attributes
                WHERE name = {n} AND value = {v}{in_org})"
        ));
    }
    (sql, binds)
}

/// A page of users in `sort` order (descending with `descending`), after
/// the cursor `(sort key, id)`, at most `limit`.
pub async fn list_users(
    db: &ReadDb,
    filter: &UserFilter,
    sort: UserSort,
    descending: bool,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<UserRow>, ProjectionError> {
    let (mut sql, mut binds) = where_clause(filter);
    let column = sort.column();
    let (cmp, dir) = if descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some((key, id)) = after {
        binds.push(key.to_owned());
        let k = binds.len();
        binds.push(id.to_owned());
        let i = binds.len();
        sql.push_str(&format!(
            " AND ({column} {cmp} ${k} OR ({column} = ${k} AND id {cmp} ${i}))"
        ));
    }
    let query = format!(
        "SELECT {USER_COLUMNS}, {column} FROM users WHERE {sql}
         ORDER BY {column} {dir}, id {dir} LIMIT {}",
        limit.max(0)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(query));
    for b in binds {
        q = q.bind(b);
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter().map(|r| user_row(r, Some(17))).collect()
}

/// Users passing `filter` in the order of their creation, `offset` of
/// them skipped, at most `limit` (for lists addressed by index, as SCIM's).
pub async fn list_users_at(
    db: &ReadDb,
    filter: &UserFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<UserRow>, ProjectionError> {
    let (sql, binds) = where_clause(filter);
    let query = format!(
        "SELECT {USER_COLUMNS}, created_at FROM users WHERE {sql}
         ORDER BY created_at, id LIMIT {} OFFSET {}",
        limit.max(0),
        offset.max(0)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(query));
    for b in binds {
        q = q.bind(b);
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter().map(|r| user_row(r, Some(17))).collect()
}

impl UserFilter {
    /// The one condition of a filter that asks only for an organization's
    /// users with an attribute value: the attribute's name, value and the
    /// column it is compared in.
    fn only_attribute(&self) -> Option<(&str, &str, String, &'static str)> {
        let organization = self.organization_id.as_deref()?;
        let bare = UserFilter {
            organization_id: self.organization_id.clone(),
            attribute: self.attribute.clone(),
            attributes_any_case: self.attributes_any_case.clone(),
            ..UserFilter::default()
        };
        if *self != bare {
            return None;
        }
        match (&self.attribute, self.attributes_any_case.as_slice()) {
            (Some((name, value)), []) => Some((organization, name, value.clone(), "value")),
            (None, [(name, value)]) => {
                Some((organization, name, attribute_key(value), "value_key"))
            }
            _ => None,
        }
    }
}

/// How many users pass `filter`. An organization's users with one
/// attribute value are counted in the attribute index alone (every
/// attribute row's user exists), not by looking up each user.
pub async fn count_users(db: &ReadDb, filter: &UserFilter) -> Result<i64, ProjectionError> {
    if let Some((organization, name, value, column)) = filter.only_attribute() {
        return Ok(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT count(DISTINCT user_id) FROM user_attributes
             WHERE organization_id = $1 AND name = $2 AND {column} = $3"
        )))
        .bind(organization)
        .bind(name)
        .bind(value)
        .fetch_one(&db.pool)
        .await?);
    }
    let (sql, binds) = where_clause(filter);
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM users WHERE {sql}"
    )));
    for b in binds {
        q = q.bind(b);
    }
    Ok(q.fetch_one(&db.pool).await?)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
    pub revision: i64,
    /// Its id in the system that provisions it.
    pub external_id: Option<String>,
}

/// How many columns [`GROUP_COLUMNS`] names: what a query selects after
/// them starts here.
const GROUP_COLUMN_COUNT: usize = 8;

const GROUP_COLUMNS: &str =
    "g.id, g.organization_id, g.name, g.description, g.created_at, g.updated_at, g.revision,
    g.external_id";

fn group_row(r: &AnyRow) -> Result<GroupRow, ProjectionError> {
    Ok(GroupRow {
        id: r.try_get(0)?,
        organization_id: r.try_get(1)?,
        name: r.try_get(2)?,
        description: r.try_get(3)?,
        created_at: r.try_get(4)?,
        updated_at: r.try_get(5)?,
        revision: r.try_get(6)?,
        external_id: r.try_get(7)?,
    })
}

pub async fn get_group(db: &ReadDb, id: &str) -> Result<Option<GroupRow>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    r.as_ref().map(group_row).transpose()
}

/// Groups ordered by id after `after`, in one organization or all.
pub async fn list_groups(
    db: &ReadDb,
    organization_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<GroupRow>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {GROUP_COLUMNS} FROM groups g
         WHERE g.id > $1 AND ($2 = '' OR g.organization_id = $2)
         ORDER BY g.id LIMIT $3"
    )))
    .bind(after.unwrap_or(""))
    .bind(organization_id.unwrap_or(""))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(group_row).collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberRow {
    pub member_id: String,
    /// `user` or `group`.
    pub member_type: String,
    pub added_at: String,
}

/// A group's direct members ordered by id after `after`.
pub async fn group_members(
    db: &ReadDb,
    group_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<MemberRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT member_id, member_type, added_at FROM group_members
         WHERE group_id = $1 AND member_id > $2 ORDER BY member_id LIMIT $3",
    )
    .bind(group_id)
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(MemberRow {
                member_id: r.try_get(0)?,
                member_type: r.try_get(1)?,
                added_at: r.try_get(2)?,
            })
        })
        .collect()
}

/// A group a user is in, and whether directly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserGroupRow {
    pub group: GroupRow,
    pub direct: bool,
}

/// The groups a user is in: directly, and through groups nested in others.
pub async fn user_groups(db: &ReadDb, user_id: &str) -> Result<Vec<UserGroupRow>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE up(g, direct) AS (
             SELECT group_id, CAST(1 AS BIGINT) FROM group_members WHERE member_id = $1 AND member_type = 'user'
             UNION SELECT m.group_id, CAST(0 AS BIGINT) FROM group_members m JOIN up ON m.member_id = up.g
                 WHERE m.member_type = 'group')
         SELECT {GROUP_COLUMNS}, max(up.direct) FROM up JOIN groups g ON g.id = up.g
         GROUP BY {GROUP_COLUMNS} ORDER BY g.name, g.id"
    )))
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(UserGroupRow {
                group: group_row(r)?,
                direct: r.try_get::<i64, _>(GROUP_COLUMN_COUNT)? != 0,
            })
        })
        .collect()
}
