//! `/admin/users`: people, their passwords, their groups, their history.
//!
//! Every response that shows one user carries its `ETag` (the revision of
//! the user's stream); a change with `If-Match` happens only at that
//! revision (412 otherwise).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use commands::user::{NewUser, UserPatch};
use domain::Aggregate;
use domain::user::{
    Address, AttributeValue, Attributes, Profile, ProfilePatch, User, UserEvent, UserStatus,
};
use projections::users::{self, UserFilter, UserRow, UserSort};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{AdminCaller, PageQuery, settle};
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

type PathRejection = axum::extract::rejection::PathRejection;
type QueryRejection = axum::extract::rejection::QueryRejection;

pub use super::user_bulk::bulk;
pub use super::user_history::{history, show};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list).post(create))
        .route("/admin/users/bulk", post(bulk))
        .route("/admin/users/{id}", get(show).patch(update).delete(remove))
        .route("/admin/users/{id}/history", get(history))
        .route("/admin/users/{id}/groups", get(groups))
        .route("/admin/users/{id}/deactivate", post(deactivate))
        .route("/admin/users/{id}/reactivate", post(reactivate))
        .route(
            "/admin/users/{id}/password",
            put(set_password).delete(clear_password),
        )
        .route(
            "/admin/users/{id}/password/require-change",
            post(require_password_change),
        )
}

// --- wire types ------------------------------------------------------------

/// A postal address (OpenID Connect Core §5.1.1).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    pub formatted: Option<String>,
    pub street_address: Option<String>,
    pub locality: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

impl From<AddressBody> for Address {
    fn from(a: AddressBody) -> Self {
        Self {
            formatted: a.formatted,
            street_address: a.street_address,
            locality: a.locality,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

/// Profile claims (OpenID Connect Core §5.1); each optional.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub middle_name: Option<String>,
    pub nickname: Option<String>,
    /// The display name.
    pub name: Option<String>,
    pub gender: Option<String>,
    /// `YYYY-MM-DD`, or `0000-MM-DD` with the year withheld.
    pub birthdate: Option<String>,
    pub address: Option<AddressBody>,
    /// A BCP 47 language tag, e.g. `en-GB`.
    pub locale: Option<String>,
    /// An IANA time zone, e.g. `Europe/Paris`.
    pub zoneinfo: Option<String>,
    /// An absolute http(s) URL.
    pub picture: Option<String>,
}

impl From<ProfileBody> for Profile {
    fn from(p: ProfileBody) -> Self {
        Self {
            given_name: p.given_name,
            family_name: p.family_name,
            middle_name: p.middle_name,
            nickname: p.nickname,
            name: p.name,
            gender: p.gender,
            birthdate: p.birthdate,
            address: p.address.map(Address::from),
            locale: p.locale,
            zoneinfo: p.zoneinfo,
            picture: p.picture,
            contacts: Default::default(),
        }
    }
}

/// A present field: `null` is `Some(None)`, absent is `None`.
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Changes to some profile fields; `null` clears one.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatchBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub family_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub middle_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub nickname: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub gender: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub birthdate: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AddressBody>)]
    pub address: Option<Option<AddressBody>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub locale: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub zoneinfo: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub picture: Option<Option<String>>,
}

impl From<ProfilePatchBody> for ProfilePatch {
    fn from(p: ProfilePatchBody) -> Self {
        Self {
            given_name: p.given_name,
            family_name: p.family_name,
            middle_name: p.middle_name,
            nickname: p.nickname,
            name: p.name,
            gender: p.gender,
            birthdate: p.birthdate,
            address: p.address.map(|a| a.map(Address::from)),
            locale: p.locale,
            zoneinfo: p.zoneinfo,
            picture: p.picture,
            contacts: None,
        }
    }
}

/// A custom attribute's value: a string or a list of strings.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum AttributeBody {
    One(String),
    Many(Vec<String>),
}

impl From<AttributeBody> for AttributeValue {
    fn from(a: AttributeBody) -> Self {
        match a {
            AttributeBody::One(v) => Self::One(v),
            AttributeBody::Many(v) => Self::Many(v),
        }
    }
}

/// A new user. `user_id` may be supplied (a GUID) or is generated. Never
/// logged: it may hold a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub organization_id: Uuid,
    pub user_id: Option<String>,
    /// Unique in the organization (compared case-insensitively after NFKC).
    pub username: String,
    /// Unique in the organization, like the username.
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    /// E.164, e.g. `+442071234567`.
    pub phone_number: Option<String>,
    #[serde(default)]
    pub phone_verified: bool,
    #[serde(default)]
    pub profile: ProfileBody,
    /// Custom attributes: names to a string or a list of strings.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeBody>,
    /// An initial password (checked against the password policy); none:
    /// the user has no password.
    pub password: Option<String>,
    /// Whether the initial password must be changed at the first sign-in.
    #[serde(default)]
    pub must_change_password: bool,
}

/// Changes to a user; absent fields stay as they are, `null` removes the
/// email address or phone number. `profile` and `attributes` change only
/// the fields they name (`null` clears one).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub username: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone_number: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub phone_verified: Option<bool>,
    pub profile: Option<ProfilePatchBody>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<BTreeMap<String, Option<AttributeBody>>>,
}

/// A password to set. Never logged.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    pub password: String,
    /// Whether it must be changed at the next sign-in.
    #[serde(default)]
    pub must_change: bool,
}

/// A user as the admin API shows them. Credential material is never
/// shown: only whether a password is set, since when, and whether it must
/// change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub user_id: String,
    pub organization_id: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone_number: Option<String>,
    pub phone_verified: bool,
    #[schema(value_type = Object)]
    pub profile: Value,
    #[schema(value_type = Object)]
    pub attributes: Value,
    /// `active` or `deactivated`.
    pub status: String,
    pub has_password: bool,
    pub must_change_password: bool,
    pub password_set_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_sign_in_at: Option<String>,
    /// The user's version, as in the `ETag` header.
    pub version: String,
}

fn version(revision: u64) -> String {
    format!("\"{revision}\"")
}

impl From<UserRow> for UserView {
    fn from(r: UserRow) -> Self {
        Self {
            user_id: r.id,
            organization_id: r.organization_id,
            username: Some(r.username),
            email: r.email,
            email_verified: r.email_verified,
            phone_number: r.phone_number,
            phone_verified: r.phone_verified,
            profile: r.profile,
            attributes: r.attributes,
            status: r.status,
            has_password: r.has_password,
            must_change_password: r.must_change_password,
            password_set_at: r.password_set_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_sign_in_at: r.last_sign_in_at,
            version: version(u64::try_from(r.revision).unwrap_or(0)),
        }
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl UserView {
    /// The user as the fold of their stream leaves them (at `revision`).
    pub fn of_state(user: &User, revision: u64) -> Self {
        let clear = |v: &Option<domain::Pii<String>>| v.as_ref().and_then(|p| p.value().cloned());
        Self {
            user_id: user.id.to_string(),
            organization_id: user.organization_id.to_string(),
            username: user.username.value().cloned(),
            email: clear(&user.email),
            email_verified: user.email_verified,
            phone_number: clear(&user.phone_number),
            phone_verified: user.phone_verified,
            profile: user
                .profile
                .value()
                .and_then(|p| serde_json::to_value(p).ok())
                .unwrap_or(Value::Null),
            attributes: user
                .attributes
                .value()
                .and_then(|a| serde_json::to_value(a).ok())
                .unwrap_or(Value::Null),
            status: user.status.as_str().to_owned(),
            has_password: user.password.is_some(),
            must_change_password: user.password.as_ref().is_some_and(|p| p.must_change),
            password_set_at: user.password.as_ref().map(|p| rfc3339(p.set_at)),
            created_at: rfc3339(user.created_at),
            updated_at: rfc3339(user.updated_at),
            last_sign_in_at: user.last_sign_in_at.map(rfc3339),
            version: version(revision),
        }
    }
}

/// A page of users, with how many pass the filters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// How many users pass the filters (all pages).
    pub total: i64,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    pub organization_id: Option<Uuid>,
    /// A prefix of the username, the email address or the id.
    pub q: Option<String>,
    /// `active` or `deactivated`.
    pub status: Option<String>,
    /// Members of this group, directly or through nested groups.
    pub group_id: Option<Uuid>,
    /// Created at or after this time (RFC 3339).
    pub created_from: Option<String>,
    /// Created before this time (RFC 3339).
    pub created_to: Option<String>,
    pub last_sign_in_from: Option<String>,
    pub last_sign_in_to: Option<String>,
    /// `name=value`: users whose custom attribute `name` is (or holds) `value`.
    pub attribute: Option<String>,
    /// `username` (default), `created_at` or `last_sign_in_at`; a leading
    /// `-` sorts descending.
    pub sort: Option<String>,
    /// At most this many items (1 to 200, default 50).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

// --- helpers ---------------------------------------------------------------

/// The revision an `If-Match` header names (`"N"`); `*` and no header name
/// none. A weak or foreign tag never matches (RFC 9110 §13.1.1).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| Problem::bad_request("If-Match is not text"))?
        .trim();
    if v == "*" {
        return Ok(None);
    }
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|n| n.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| Problem::stale(None))
}

pub(crate) fn with_etag(view: UserView, status: StatusCode) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&view.version) {
        headers.insert(header::ETAG, v);
    }
    (status, headers, Json(view)).into_response()
}

/// The user `id` from the read model, for a caller who may act on their
/// organization.
pub(crate) async fn load_for(
    state: &AppState,
    caller: &AdminCaller,
    id: Uuid,
) -> Result<UserView, Problem> {
    let row = users::get_user(&state.read_db, &id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(|| Problem::not_found("user"))?;
    caller.within(Uuid::parse_str(&row.organization_id).ok(), "user")?;
    Ok(UserView::from(row))
}

/// The organization of user `id` as their stream says (also once they
/// are deleted), for a caller who may act on it.
pub(crate) async fn organization_of(
    state: &AppState,
    caller: &AdminCaller,
    id: Uuid,
) -> Result<Uuid, Problem> {
    let (user, _) = state
        .bus
        .load::<User>(&id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    if !user.created {
        return Err(Problem::not_found("user"));
    }
    caller.within(Some(user.organization_id), "user")
}

fn time_bound(name: &str, v: &Option<String>) -> Result<Option<String>, Problem> {
    v.as_deref()
        .map(|s| {
            OffsetDateTime::parse(s, &Rfc3339)
                .map(|t| rfc3339(t.to_offset(time::UtcOffset::UTC)))
                .map_err(|_| Problem::bad_request(format!("{name} must be an RFC 3339 date-time")))
        })
        .transpose()
}

fn encode_cursor(key: &str, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{key}\u{1f}{id}"))
}

fn decode_cursor(c: &str) -> Result<(String, String), Problem> {
    let bad = || Problem::bad_request("cursor is not one this API gave out");
    let text = URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (k, i) = text.split_once('\u{1f}').ok_or_else(bad)?;
    Ok((k.to_owned(), i.to_owned()))
}

// --- handlers --------------------------------------------------------------

/// Create a user in an organization, with an initial password or none.
/// Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/users", request_body = CreateUser,
    responses((status = 201, body = UserView, description = "created; the ETag header holds its version"),
        (status = 409, description = "username, email or user_id taken"),
        (status = 422, description = "a value breaks a rule: the problem names the field (and the password rule)")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn create(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    Body(body): Body<CreateUser>,
) -> Result<Response, Problem> {
    let id = match &body.user_id {
        Some(given) => Uuid::parse_str(given)
            .map_err(|_| Problem::validation("user_id must be a GUID").with("field", "user_id"))?,
        None => Uuid::now_v7(),
    };
    caller.within(Some(body.organization_id), "organization")?;
    let meta = ctx.metadata(caller.actor(), Some(body.organization_id));
    let new = NewUser {
        id,
        organization_id: body.organization_id,
        username: body.username,
        email: body.email,
        email_verified: body.email_verified,
        phone_number: body.phone_number,
        phone_verified: body.phone_verified,
        profile: body.profile.into(),
        attributes: attributes(body.attributes),
        password: body.password,
        must_change_password: body.must_change_password,
    };
    let out = commands::user::create(&state.bus, &state.passwords, new, &meta).await?;
    settle(&state, &out).await?;
    // The user as the command left them (the bus keeps the state it just
    // appended); the read model has it too once settled.
    let view = match (state.bus.cached::<User>(&id.to_string()), out.revision) {
        (Some(user), Some(revision)) if user.exists() => UserView::of_state(&user, revision),
        _ => load_for(&state, &caller, id).await?,
    };
    let mut resp = with_etag(view, StatusCode::CREATED);
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/users/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn attributes(a: BTreeMap<String, AttributeBody>) -> Attributes {
    a.into_iter().map(|(k, v)| (k, v.into())).collect()
}

/// List and search users: a prefix of username, email or id; filters by
/// status, group, creation and sign-in ranges and a custom attribute;
/// sorted by username, creation or last sign-in; a page at a time, with a
/// total count. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/users", params(UserListQuery),
    responses((status = 200, body = UserPage, description = "done"), (status = 400, description = "a malformed parameter")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn list(
    State(state): State<AppState>,
    caller: AdminCaller,
    query: Result<Query<UserListQuery>, QueryRejection>,
) -> Result<Json<UserPage>, Problem> {
    let Query(q) = query?;
    let organization = caller.list_scope(q.organization_id)?;
    let limit = PageQuery {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    let (sort, descending) = match q.sort.as_deref().unwrap_or("username") {
        "username" => (UserSort::Username, false),
        "-username" => (UserSort::Username, true),
        "created_at" => (UserSort::Created, false),
        "-created_at" => (UserSort::Created, true),
        "last_sign_in_at" => (UserSort::LastSignIn, false),
        "-last_sign_in_at" => (UserSort::LastSignIn, true),
        other => {
            return Err(Problem::bad_request(format!(
                "sort `{other}` is not one of username, created_at, last_sign_in_at (a leading - sorts descending)"
            )));
        }
    };
    if let Some(s) = &q.status
        && ![UserStatus::Active, UserStatus::Deactivated]
            .iter()
            .any(|known| known.as_str() == s)
    {
        return Err(Problem::bad_request(
            "status must be `active` or `deactivated`",
        ));
    }
    let attribute = match &q.attribute {
        Some(a) => Some(
            a.split_once('=')
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .ok_or_else(|| Problem::bad_request("attribute must be `name=value`"))?,
        ),
        None => None,
    };
    let filter = UserFilter {
        organization_id: organization.map(|o| o.to_string()),
        search: q.q.clone(),
        status: q.status.clone(),
        group_id: q.group_id.map(|g| g.to_string()),
        created_from: time_bound("created_from", &q.created_from)?,
        created_to: time_bound("created_to", &q.created_to)?,
        last_sign_in_from: time_bound("last_sign_in_from", &q.last_sign_in_from)?,
        last_sign_in_to: time_bound("last_sign_in_to", &q.last_sign_in_to)?,
        attribute,
        ..UserFilter::default()
    };
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    // The page and the total are two reads of one filter: side by side.
    let (rows, total) = tokio::join!(
        users::list_users(
            &state.read_db,
            &filter,
            sort,
            descending,
            after.as_ref().map(|(k, i)| (k.as_str(), i.as_str())),
            limit + 1,
        ),
        users::count_users(&state.read_db, &filter),
    );
    let rows = rows.map_err(|e| Problem::internal(&e))?;
    let total = total.map_err(|e| Problem::internal(&e))?;
    let more = rows.len() as i64 > limit;
    let mut rows = rows;
    rows.truncate(limit.max(0) as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_cursor(&r.sort_key, &r.id)))
        .flatten();
    Ok(Json(UserPage {
        items: rows.into_iter().map(UserView::from).collect(),
        next_cursor,
        total,
    }))
}

/// Change a user; with `If-Match`, only at that version (412 otherwise).
/// Needs `idp:admin`.
#[utoipa::path(patch, path = "/admin/users/{id}",
    params(("id" = Uuid, Path, description = "The user's id"),
        ("If-Match" = Option<String>, Header, description = "The version (ETag) the change is based on")),
    request_body = UpdateUser,
    responses((status = 200, body = UserView, description = "done"), (status = 404, description = "not found (or in another organization)"),
        (status = 409, description = "username or email taken"), (status = 412, description = "the user changed since that version"),
        (status = 422, description = "a value breaks a rule: the problem names the field")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn update(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<UpdateUser>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    let expected = if_match(&headers)?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let patch = UserPatch {
        username: body.username,
        email: body.email,
        phone_number: body.phone_number,
        email_verified: body.email_verified,
        phone_verified: body.phone_verified,
        profile_patch: body.profile.map(ProfilePatch::from),
        attributes_patch: body.attributes.map(|a| {
            a.into_iter()
                .map(|(k, v)| (k, v.map(AttributeValue::from)))
                .collect()
        }),
        ..UserPatch::default()
    };
    let out = commands::user::change(&state.bus, id, expected, patch, &meta).await?;
    settle(&state, &out).await?;
    Ok(with_etag(
        load_for(&state, &caller, id).await?,
        StatusCode::OK,
    ))
}

/// Deactivates a user and ends their sessions. Every path that
/// deactivates someone (this API, bulk actions, SCIM) comes here: a
/// deactivated person's sessions already refuse, but only a revocation
/// keeps a reactivation from bringing them back, and records why they
/// ended.
pub async fn deactivate_user(
    state: &AppState,
    id: Uuid,
    expected: Option<u64>,
    meta: &domain::Metadata,
) -> Result<commands::Outcome, Problem> {
    let out = commands::user::deactivate(&state.bus, id, expected, meta).await?;
    super::sign_in::revoke_sessions_of(
        state,
        id,
        domain::session::RevokeReason::UserDeactivated,
        meta,
    )
    .await?;
    Ok(out)
}

async fn status_change(
    state: &AppState,
    caller: &AdminCaller,
    ctx: &RequestContext,
    headers: &HeaderMap,
    id: Uuid,
    deactivate: bool,
) -> Result<Response, Problem> {
    let expected = if_match(headers)?;
    let organization = load_for(state, caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let out = if deactivate {
        deactivate_user(state, id, expected, &meta).await?
    } else {
        commands::user::reactivate(&state.bus, id, expected, &meta).await?
    };
    settle(state, &out).await?;
    Ok(with_etag(
        load_for(state, caller, id).await?,
        StatusCode::OK,
    ))
}

/// Deactivate a user: they can no longer sign in. Idempotent. Needs
/// `idp:admin`.
#[utoipa::path(post, path = "/admin/users/{id}/deactivate",
    params(("id" = Uuid, Path, description = "The user's id"),
        ("If-Match" = Option<String>, Header, description = "The version (ETag) the change is based on")),
    responses((status = 200, body = UserView, description = "done"), (status = 404, description = "not found (or in another organization)"), (status = 412, description = "the user changed since that version")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn deactivate(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    status_change(&state, &caller, &ctx, &headers, id, true).await
}

/// Reactivate a user. Idempotent. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/users/{id}/reactivate",
    params(("id" = Uuid, Path, description = "The user's id"),
        ("If-Match" = Option<String>, Header, description = "The version (ETag) the change is based on")),
    responses((status = 200, body = UserView, description = "done"), (status = 404, description = "not found (or in another organization)"), (status = 412, description = "the user changed since that version")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn reactivate(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    status_change(&state, &caller, &ctx, &headers, id, false).await
}

/// Delete a user: the erasure of their personal data, as a data subject
/// erasure (their key is deleted; username and email are released).
/// Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/users/{id}",
    params(("id" = Uuid, Path, description = "The user's id"),
        ("If-Match" = Option<String>, Header, description = "The version (ETag) the deletion is based on")),
    responses((status = 204, description = "deleted and erased"), (status = 404, description = "not found (or in another organization)"), (status = 412, description = "the user changed since that version")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn remove(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(id) = path?;
    let expected = if_match(&headers)?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let erased =
        privacy::people::delete_user(&state.bus, &state.subject_keys, id, expected, &meta).await?;
    super::settle_at(&state, erased.position).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a user's password (checked against the password policy; the
/// problem names the rule refused). Needs `idp:admin`.
#[utoipa::path(put, path = "/admin/users/{id}/password",
    params(("id" = Uuid, Path, description = "The user's id")), request_body = SetPassword,
    responses((status = 204, description = "set"), (status = 404, description = "not found (or in another organization)"), (status = 422, description = "the policy refuses it")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn set_password(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<SetPassword>,
) -> Result<StatusCode, Problem> {
    let Path(id) = path?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let out = commands::user::set_password(
        &state.bus,
        &state.passwords,
        id,
        &body.password,
        body.must_change,
        &meta,
    )
    .await?;
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Clear a user's password: they have none until one is set. Needs
/// `idp:admin`.
#[utoipa::path(delete, path = "/admin/users/{id}/password",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 204, description = "cleared"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn clear_password(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(id) = path?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let out = commands::user::clear_password(&state.bus, id, &meta).await?;
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the password must change at the next sign-in.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequireChange {
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// Require (or stop requiring) that the user change their password at the
/// next sign-in. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/users/{id}/password/require-change",
    params(("id" = Uuid, Path, description = "The user's id")), request_body = RequireChange,
    responses((status = 200, body = UserView, description = "done"), (status = 404, description = "not found (or in another organization)"),
        (status = 409, description = "the user has no password")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn require_password_change(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<RequireChange>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let out = commands::user::require_password_change(&state.bus, id, body.required, &meta).await?;
    settle(&state, &out).await?;
    Ok(with_etag(
        load_for(&state, &caller, id).await?,
        StatusCode::OK,
    ))
}

/// A group a user is in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserGroupView {
    pub group_id: String,
    pub name: String,
    /// False when the user is in it through a nested group.
    pub direct: bool,
}

/// The groups a user is in, directly or through nested groups. Needs
/// `idp:admin`.
#[utoipa::path(get, path = "/admin/users/{id}/groups",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, body = Vec<UserGroupView>, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn groups(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Vec<UserGroupView>>, Problem> {
    let Path(id) = path?;
    load_for(&state, &caller, id).await?;
    let rows = users::user_groups(&state.read_db, &id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(
        rows.into_iter()
            .map(|r| UserGroupView {
                group_id: r.group.id,
                name: r.group.name,
                direct: r.direct,
            })
            .collect(),
    ))
}

/// Folds user `id`'s stream up to the changes decided at or before
/// `until` (all of it with `None`): the
/// state and its revision, or none when nothing was recorded by then.
pub(crate) async fn fold_until(
    state: &AppState,
    id: Uuid,
    until: Option<OffsetDateTime>,
) -> Result<Option<(User, u64, Vec<eventlog::RecordedEvent>)>, Problem> {
    let stream = commands::CommandBus::stream_name::<User>(&id.to_string());
    let events = state
        .log
        .read_stream(&stream, eventlog::Direction::Forwards, None, usize::MAX)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let kept: Vec<_> = events
        .into_iter()
        // The time the change was decided (the server's clock), which every
        // store keeps alike; `recorded_at` is the store's own.
        .filter(|e| until.is_none_or(|t| e.metadata.occurred_at <= t))
        .collect();
    let Some(last) = kept.last().map(|e| e.revision) else {
        return Ok(None);
    };
    let mut user = User::default();
    for e in &kept {
        let event = eventlog::decode::<UserEvent>(e).map_err(|err| Problem::internal(&err))?;
        user = user.evolve(&event);
    }
    Ok(Some((user, last, kept)))
}
