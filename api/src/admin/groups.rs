//! `/admin/groups`: groups of users, and groups inside groups.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use projections::users::{self as read, GroupRow, MemberRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::users::if_match;
use super::{AdminCaller, Page, PageQuery, settle};
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

type PathRejection = axum::extract::rejection::PathRejection;
type QueryRejection = axum::extract::rejection::QueryRejection;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/groups", get(list).post(create))
        .route("/admin/groups/{id}", get(show).patch(update).delete(remove))
        .route("/admin/groups/{id}/members", get(members).post(add_member))
        .route(
            "/admin/groups/{id}/members/{member_id}",
            delete(remove_member),
        )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub organization_id: Uuid,
    /// A GUID; generated when absent.
    pub group_id: Option<String>,
    /// 1 to 200 characters.
    pub name: String,
    /// At most 1,000 characters.
    #[serde(default)]
    pub description: String,
}

/// Changes to a group; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// A member to add: a user or a group (exactly one).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub group_id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
    /// The group's version, as in the `ETag` header.
    pub version: String,
}

impl From<GroupRow> for GroupView {
    fn from(r: GroupRow) -> Self {
        Self {
            group_id: r.id,
            organization_id: r.organization_id,
            name: r.name,
            description: r.description,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: format!("\"{}\"", r.revision),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub member_id: String,
    /// `user` or `group`.
    #[serde(rename = "type")]
    pub member_type: String,
    pub added_at: String,
}

impl From<MemberRow> for MemberView {
    fn from(r: MemberRow) -> Self {
        Self {
            member_id: r.member_id,
            member_type: r.member_type,
            added_at: r.added_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupListQuery {
    pub organization_id: Option<Uuid>,
    /// At most this many items (1 to 200, default 50).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn with_etag(view: GroupView, status: StatusCode) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&view.version) {
        headers.insert(header::ETAG, v);
    }
    (status, headers, Json(view)).into_response()
}

async fn load_for(state: &AppState, caller: &AdminCaller, id: Uuid) -> Result<GroupView, Problem> {
    let row = read::get_group(&state.read_db, &id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(|| Problem::not_found("group"))?;
    caller.within(Uuid::parse_str(&row.organization_id).ok(), "group")?;
    Ok(GroupView::from(row))
}

/// Create a group in an organization. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/groups", request_body = CreateGroup,
    responses((status = 201, body = GroupView, description = "created"), (status = 409, description = "group_id taken"),
        (status = 422, description = "a value breaks a rule: the problem names the field")),
    security(("bearer" = ["idp:admin"])), tag = "groups")]
pub async fn create(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    Body(body): Body<CreateGroup>,
) -> Result<Response, Problem> {
    let id = match &body.group_id {
        Some(given) => Uuid::parse_str(given).map_err(|_| {
            Problem::validation("group_id must be a GUID").with("field", "group_id")
        })?,
        None => Uuid::now_v7(),
    };
    caller.within(Some(body.organization_id), "organization")?;
    let meta = ctx.metadata(caller.actor(), Some(body.organization_id));
    let out = commands::group::create(
        &state.bus,
        id,
        body.organization_id,
        body.name,
        body.description,
        None,
        &meta,
    )
    .await?;
    settle(&state, &out).await?;
    let mut resp = with_etag(load_for(&state, &caller, id).await?, StatusCode::CREATED);
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/groups/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// List groups, ordered by id, a page at a time. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/groups", params(GroupListQuery),
    responses((status = 200, body = Page<GroupView>, description = "done")),
    security(("bearer" = ["idp:admin"])), tag = "groups")]
pub async fn list(
    State(state): State<AppState>,
    caller: AdminCaller,
    query: Result<Query<GroupListQuery>, QueryRejection>,
) -> Result<Json<Page<GroupView>>, Problem> {
    let Query(q) = query?;
    let organization = caller.list_scope(q.organization_id)?.map(|o| o.to_string());
    let limit = PageQuery {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    let rows = read::list_groups(
        &state.read_db,
        organization.as_deref(),
        q.cursor.as_deref(),
        limit + 1,
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    let items = rows.into_iter().map(GroupView::from).collect();
    Ok(Json(Page::from_overfetch(items, limit, |g| {
        g.group_id.clone()
    })))
}

/// Show a group. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/groups/{id}",
    params(("id" = Uuid, Path, description = "The group's id")),
    responses((status = 200, body = GroupView, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "groups")]
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

/// Rename or describe a group; with `If-Match`, only at that version.
/// Needs `idp:admin`.
#[utoipa::path(patch, path = "/admin/groups/{id}",
    params(("id" = Uuid, Path, description = "The group's id"),
        ("If-Match" = Option<String>, Header, description = "The version (ETag) the change is based on")),
    request_body = UpdateGroup,
    responses((status = 200, body = GroupView, description = "done"), (status = 404, description = "not found (or in another organization)"),
        (status = 412, description = "the group changed since that version"), (status = 422, description = "a value breaks a rule")),
    security(("bearer" = ["idp:admin"])), tag = "groups")]
pub async fn update(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    headers: HeaderMap,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<UpdateGroup>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    let expected = if_match(&headers)?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let change = commands::group::GroupChange {
        name: body.name,
        description: body.description,
        external_id: None,
    };
    let out = commands::group::change(&state.bus, id, expected, change, &meta).await?;
    settle(&state, &out).await?;
    Ok(with_etag(
        load_for(&state, &caller, id).await?,
        StatusCode::OK,
    ))
}

/// Delete a group: its members leave it, and it leaves the groups it was
/// in. Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/groups/{id}",
    params(("id" = Uuid, Path, description = "The group's id"),
        ("If-Match" = Option<String>, Header, description = "The version (ETag) the deletion is based on")),
    responses((status = 204, description = "deleted"), (status = 404, description = "not found (or in another organization)"), (status = 412, description = "the group changed since that version")),
    security(("bearer" = ["idp:admin"])), tag = "groups")]
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
    let out = commands::group::delete(&state.bus, id, expected, &meta).await?;
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A group's direct members (users and groups), ordered by id, a page at
/// a time. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/groups/{id}/members",
    params(("id" = Uuid, Path, description = "The group's id"), PageQuery),
    responses((status = 200, body = Page<MemberView>, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "groups")]
pub async fn members(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<MemberView>>, Problem> {
    let Path(id) = path?;
    let Query(q) = query?;
    load_for(&state, &caller, id).await?;
    let limit = q.limit()?;
    let rows = read::group_members(
        &state.read_db,
        &id.to_string(),
        q.cursor.as_deref(),
        limit + 1,
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    let items = rows.into_iter().map(MemberView::from).collect();
    Ok(Json(Page::from_overfetch(items, limit, |m| {
        m.member_id.clone()
    })))
}

/// Add a user or a group to a group. A group that would end up inside
/// itself is refused (409, naming the cycle). Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/groups/{id}/members",
    params(("id" = Uuid, Path, description = "The group's id")), request_body = AddMember,
    responses((status = 204, description = "a member (already, or now)"), (status = 404, description = "not found (or in another organization)"),
        (status = 409, description = "the nesting would make a cycle"), (status = 422, description = "no such user or group in the organization")),
    security(("bearer" = ["idp:admin"])), tag = "groups")]
pub async fn add_member(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<AddMember>,
) -> Result<StatusCode, Problem> {
    let Path(id) = path?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let out = match (body.user_id, body.group_id) {
        (Some(user), None) => commands::group::add_user(&state.bus, id, user, &meta).await?,
        (None, Some(child)) => commands::group::nest(&state.bus, id, child, &meta).await?,
        _ => {
            return Err(
                Problem::validation("name exactly one of user_id and group_id")
                    .with("field", "user_id"),
            );
        }
    };
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a member (a user or a group) from a group. Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/groups/{id}/members/{member_id}",
    params(("id" = Uuid, Path, description = "The group's id"), ("member_id" = Uuid, Path, description = "The member's id")),
    responses((status = 204, description = "not a member (any more)"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "groups")]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<(Uuid, Uuid)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path((id, member)) = path?;
    let organization = load_for(&state, &caller, id).await?.organization_id;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&organization).ok());
    let as_group = read::get_group(&state.read_db, &member.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?
        .is_some();
    let out = if as_group {
        commands::group::unnest(&state.bus, id, member, &meta).await?
    } else {
        commands::group::remove_user(&state.bus, id, member, &meta).await?
    };
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}
