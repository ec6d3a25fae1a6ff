//! `/admin/roles`: roles of an organization, who holds them, and the
//! effective roles of a user or a client.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use domain::role::{Holder, RoleCommand};
use projections::roles::{self as read, EffectiveRole, HolderRow, RoleRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::BUILT_IN_ROLES;
use super::users::if_match;
use super::{AdminCaller, Page, PageQuery, settle};
use crate::access::{self, Subject};
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

type PathRejection = axum::extract::rejection::PathRejection;
type QueryRejection = axum::extract::rejection::QueryRejection;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/roles", get(list).post(create))
        .route("/admin/roles/templates", get(templates))
        .route("/admin/roles/{id}", get(show).patch(update).delete(remove))
        .route("/admin/roles/{id}/holders", get(holders))
        .route(
            "/admin/roles/{id}/includes/{child_id}",
            put(include).delete(exclude),
        )
        .route(
            "/admin/roles/{id}/holders/{holder_type}/{holder_id}",
            put(assign).delete(unassign),
        )
        .route("/admin/users/{id}/roles", get(user_roles))
        .route("/admin/clients/{id}/roles", get(client_roles))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    pub organization_id: Uuid,
    /// A GUID; generated when absent.
    pub role_id: Option<String>,
    /// 1 to 100 characters; the template's name when absent.
    pub name: Option<String>,
    /// At most 1,000 characters.
    pub description: Option<String>,
    /// `resource:action` strings; `*` matches any run of characters on its
    /// side (`users:*`, `*:read`). At most 200. The template's when absent.
    pub permissions: Option<Vec<String>>,
    /// A built-in role to start from: `organization_admin`, `user_admin`,
    /// `auditor` or `viewer` (see `GET /admin/roles/templates`).
    pub template: Option<String>,
}

/// A built-in role: a name and the permissions it grants.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}

/// Changes to a role; absent fields stay as they are. `permissions`
/// replaces the whole set.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<Vec<String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleView {
    pub role_id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    /// The roles this one includes (directly): its holders hold them too.
    pub includes: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The role's version, as in the `ETag` header.
    pub version: String,
}

impl From<RoleRow> for RoleView {
    fn from(r: RoleRow) -> Self {
        Self {
            includes: Vec::new(),
            role_id: r.id,
            organization_id: r.organization_id,
            name: r.name,
            description: r.description,
            permissions: r.permissions,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: format!("\"{}\"", r.revision),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HolderView {
    /// `user`, `group`, `client` or `organization`.
    #[serde(rename = "type")]
    pub holder_type: String,
    pub id: String,
    pub assigned_at: String,
}

impl From<HolderRow> for HolderView {
    fn from(r: HolderRow) -> Self {
        Self {
            holder_type: r.holder_type,
            id: r.holder_id,
            assigned_at: r.assigned_at,
        }
    }
}

/// An assignment through which a role is held.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ViaView {
    /// `user` or `client` (the holder themself), `group` (a group they are
    /// in, directly or through nesting), `organization`, or `role` (a role
    /// they hold that includes this one).
    #[serde(rename = "type")]
    pub holder_type: String,
    pub id: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EffectiveRoleView {
    pub role_id: String,
    pub name: String,
    pub permissions: Vec<String>,
    pub via: Vec<ViaView>,
}

/// Someone's effective roles and what they add up to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessView {
    pub roles: Vec<EffectiveRoleView>,
    /// The union of the roles' permissions, sorted.
    pub permissions: Vec<String>,
}

impl From<Vec<EffectiveRole>> for AccessView {
    fn from(roles: Vec<EffectiveRole>) -> Self {
        let (_, permissions) = access::names_and_permissions(&roles);
        Self {
            permissions,
            roles: roles
                .into_iter()
                .map(|r| EffectiveRoleView {
                    role_id: r.role.id,
                    name: r.role.name,
                    permissions: r.role.permissions,
                    via: r
                        .via
                        .into_iter()
                        .map(|(holder_type, id)| ViaView { holder_type, id })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoleListQuery {
    pub organization_id: Option<Uuid>,
    /// At most this many items (1 to 200, default 50).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn with_etag(view: RoleView, status: StatusCode) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&view.version) {
        headers.insert(header::ETAG, v);
    }
    (status, headers, Json(view)).into_response()
}

async fn load_for(state: &AppState, caller: &AdminCaller, id: Uuid) -> Result<RoleView, Problem> {
    let row = read::get_role(&state.read_db, &id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(|| Problem::not_found("role"))?;
    caller.within(Uuid::parse_str(&row.organization_id).ok(), "role")?;
    let includes = read::included_roles(&state.read_db, &row.id)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(RoleView {
        includes,
        ..RoleView::from(row)
    })
}

/// Create a role in an organization. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/roles", request_body = CreateRole,
    responses((status = 201, body = RoleView, description = "created"), (status = 409, description = "role_id taken"),
        (status = 422, description = "a value breaks a rule: the problem names the field (and the permission out of shape)")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn create(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    Body(body): Body<CreateRole>,
) -> Result<Response, Problem> {
    let id = match &body.role_id {
        Some(given) => Uuid::parse_str(given)
            .map_err(|_| Problem::validation("role_id must be a GUID").with("field", "role_id"))?,
        None => Uuid::now_v7(),
    };
    caller.within(Some(body.organization_id), "organization")?;
    let template = match &body.template {
        Some(t) => Some(
            BUILT_IN_ROLES
                .iter()
                .find(|(name, _, _)| name == t)
                .ok_or_else(|| {
                    Problem::validation(format!("no built-in role is called `{t}`"))
                        .with("field", "template")
                })?,
        ),
        None => None,
    };
    let name = body
        .name
        .or_else(|| template.map(|(n, _, _)| (*n).to_owned()))
        .ok_or_else(|| Problem::validation("name is required").with("field", "name"))?;
    let description = body
        .description
        .or_else(|| template.map(|(_, d, _)| (*d).to_owned()))
        .unwrap_or_default();
    let permissions = body
        .permissions
        .or_else(|| template.map(|(_, _, p)| p.iter().map(|p| (*p).to_owned()).collect()))
        .unwrap_or_default();
    let meta = ctx.metadata(caller.actor(), Some(body.organization_id));
    let role = commands::role::NewRole {
        id,
        organization_id: body.organization_id,
        name,
        description,
        permissions,
    };
    let out = commands::role::create(&state.bus, role, &meta).await?;
    settle(&state, &out).await?;
    let mut resp = with_etag(load_for(&state, &caller, id).await?, StatusCode::CREATED);
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/roles/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The built-in roles a role can start from. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/roles/templates",
    responses((status = 200, body = Vec<TemplateView>, description = "done")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn templates(_caller: AdminCaller) -> Json<Vec<TemplateView>> {
    Json(
        BUILT_IN_ROLES
            .iter()
            .map(|(name, description, permissions)| TemplateView {
                name: (*name).to_owned(),
                description: (*description).to_owned(),
                permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            })
            .collect(),
    )
}

/// List roles, ordered by id, a page at a time. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/roles", params(RoleListQuery),
    responses((status = 200, body = Page<RoleView>, description = "done")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn list(
    State(state): State<AppState>,
    caller: AdminCaller,
    query: Result<Query<RoleListQuery>, QueryRejection>,
) -> Result<Json<Page<RoleView>>, Problem> {
    let Query(q) = query?;
    let organization = caller.list_scope(q.organization_id)?.map(|o| o.to_string());
    let limit = PageQuery {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    let rows = read::list_roles(
        &state.read_db,
        organization.as_deref(),
        q.cursor.as_deref(),
        limit + 1,
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    let items = rows.into_iter().map(RoleView::from).collect();
    Ok(Json(Page::from_overfetch(items, limit, |r| {
        r.role_id.clone()
    })))
}

/// Show a role. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/roles/{id}",
    params(("id" = Uuid, Path, description = "The role's id")),
    responses((status = 200, body = RoleView, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn show(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    Ok(with_etag(
        load_for(&state, &caller, id).await?,
        StatusCode::OK,
    ))
}

/// Rename, describe or set the permissions of a role; with `If-Match`,
/// only at that version. Needs `idp:admin`.
#[utoipa::path(patch, path = "/admin/roles/{id}",
    params(("id" = Uuid, Path, description = "The role's id"),
        ("If-Match" = Option<String>, Header, description = "The version (ETag) the change is based on")),
    request_body = UpdateRole,
    responses((status = 200, body = RoleView, description = "done"), (status = 404, description = "not found (or in another organization)"),
        (status = 412, description = "the role changed since that version"), (status = 422, description = "a value breaks a rule")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn update(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<UpdateRole>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    let expected = if_match(&headers)?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let command = RoleCommand::Change {
        name: body.name,
        description: body.description,
        permissions: body.permissions,
    };
    let out = commands::role::change(&state.bus, id, expected, command, &meta).await?;
    settle(&state, &out).await?;
    Ok(with_etag(
        load_for(&state, &caller, id).await?,
        StatusCode::OK,
    ))
}

/// Delete a role: every holder loses it. Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/roles/{id}",
    params(("id" = Uuid, Path, description = "The role's id"),
        ("If-Match" = Option<String>, Header, description = "The version (ETag) the deletion is based on")),
    responses((status = 204, description = "deleted"), (status = 404, description = "not found (or in another organization)"), (status = 412, description = "the role changed since that version")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
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
    let out = commands::role::delete(&state.bus, id, expected, &meta).await?;
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who holds a role (directly: a group's members are not listed), a page
/// at a time. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/roles/{id}/holders",
    params(("id" = Uuid, Path, description = "The role's id"), PageQuery),
    responses((status = 200, body = Page<HolderView>, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn holders(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<HolderView>>, Problem> {
    let Path(id) = path?;
    let Query(q) = query?;
    load_for(&state, &caller, id).await?;
    let limit = q.limit()?;
    let rows = read::role_holders(
        &state.read_db,
        &id.to_string(),
        q.cursor.as_deref(),
        limit + 1,
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    let items = rows.into_iter().map(HolderView::from).collect();
    Ok(Json(Page::from_overfetch(items, limit, |h| {
        format!("{}:{}", h.holder_type, h.id)
    })))
}

fn holder_of(kind: &str, id: Uuid) -> Result<Holder, Problem> {
    let kind = match kind {
        "users" => "user",
        "groups" => "group",
        "clients" => "client",
        "organizations" => "organization",
        other => other,
    };
    Holder::parse(kind, id).ok_or_else(|| {
        Problem::not_found("holder type (one of users, groups, clients, organizations)")
    })
}

/// Give a role to a user, a group (and so its members, nested groups
/// included), a client or the organization (every user of it). Needs
/// `idp:admin`.
#[utoipa::path(put, path = "/admin/roles/{id}/holders/{holder_type}/{holder_id}",
    params(("id" = Uuid, Path, description = "The role's id"),
        ("holder_type" = String, Path, description = "`users`, `groups`, `clients` or `organizations`"),
        ("holder_id" = Uuid, Path, description = "The holder's id")),
    responses((status = 204, description = "held (already, or now)"), (status = 404, description = "not found (or in another organization)"),
        (status = 422, description = "no such holder in the role's organization")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn assign(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<(Uuid, String, Uuid)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path((id, kind, holder_id)) = path?;
    let holder = holder_of(&kind, holder_id)?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let out = commands::role::assign(&state.bus, id, holder, &meta).await?;
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Take a role from a holder. Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/roles/{id}/holders/{holder_type}/{holder_id}",
    params(("id" = Uuid, Path, description = "The role's id"),
        ("holder_type" = String, Path, description = "`users`, `groups`, `clients` or `organizations`"),
        ("holder_id" = Uuid, Path, description = "The holder's id")),
    responses((status = 204, description = "not held (any more)"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn unassign(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<(Uuid, String, Uuid)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path((id, kind, holder_id)) = path?;
    let holder = holder_of(&kind, holder_id)?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let out = commands::role::unassign(&state.bus, id, holder, &meta).await?;
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a role include another of its organization: whoever holds this
/// one holds the other too. A role that would end up inside itself is
/// refused (409, naming the cycle). Needs `idp:admin`.
#[utoipa::path(put, path = "/admin/roles/{id}/includes/{child_id}",
    params(("id" = Uuid, Path, description = "The including role's id"), ("child_id" = Uuid, Path, description = "The included role's id")),
    responses((status = 204, description = "included (already, or now)"), (status = 404, description = "not found (or in another organization)"),
        (status = 409, description = "the inclusion would make a cycle"), (status = 422, description = "no such role in the organization")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn include(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<(Uuid, Uuid)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path((id, child)) = path?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let out = commands::role::include(&state.bus, id, child, &meta).await?;
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop a role including another. Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/roles/{id}/includes/{child_id}",
    params(("id" = Uuid, Path, description = "The including role's id"), ("child_id" = Uuid, Path, description = "The included role's id")),
    responses((status = 204, description = "not included (any more)"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn exclude(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<(Uuid, Uuid)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path((id, child)) = path?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let out = commands::role::exclude(&state.bus, id, child, &meta).await?;
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's effective roles: their own, those of every group they are in
/// (nested groups included) and their organization's, each with the
/// assignments that give it. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/users/{id}/roles",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, body = AccessView, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn user_roles(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<AccessView>, Problem> {
    let Path(id) = path?;
    let user = super::users::load_for(&state, &caller, id).await?;
    let organization_id =
        Uuid::parse_str(&user.organization_id).map_err(|e| Problem::internal(&e))?;
    let roles = access::effective_roles(
        &state,
        Subject::User {
            id,
            organization_id,
        },
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    Ok(Json(AccessView::from(roles)))
}

/// A client's roles (a service account's). Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/clients/{id}/roles",
    params(("id" = Uuid, Path, description = "The client's id")),
    responses((status = 200, body = AccessView, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn client_roles(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<AccessView>, Problem> {
    let Path(id) = path?;
    let client = projections::clients::get(&state.read_db, &id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(|| Problem::not_found("client"))?;
    caller.within(Uuid::parse_str(&client.organization_id).ok(), "client")?;
    let roles = access::effective_roles(&state, Subject::Client(id))
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(AccessView::from(roles)))
}
