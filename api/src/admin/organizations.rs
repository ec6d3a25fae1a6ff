//! `/admin/organizations`: the tenants.

use crate::extract::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use projections::organizations::{self, OrganizationRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AdminCaller, Page, PageQuery, settle};
use crate::context::RequestContext;
use crate::problem::Problem;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/organizations", get(list).post(create))
        .route("/admin/organizations/{id}", get(show).patch(rename))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    /// 1 to 200 characters.
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameOrganization {
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<OrganizationRow> for Organization {
    fn from(r: OrganizationRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

async fn load(state: &AppState, id: &str) -> Result<Organization, Problem> {
    organizations::get(&state.read_db, id)
        .await
        .map_err(|e| Problem::internal(&e))?
        .map(Organization::from)
        .ok_or_else(|| Problem::not_found("organization"))
}

/// Create an organization. Needs the `idp:admin` scope.
#[utoipa::path(post, path = "/admin/organizations", request_body = CreateOrganization,
    responses((status = 201, body = Organization, description = "created"), (status = 422, description = "invalid name")),
    security(("bearer" = ["idp:admin"])), tag = "organizations")]
pub async fn create(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    body: Body<CreateOrganization>,
) -> Result<impl IntoResponse, Problem> {
    let Body(body) = body;
    // A new tenant is the platform's to create.
    caller.must_be_platform()?;
    let id = Uuid::now_v7();
    let meta = ctx.metadata(caller.actor(), Some(id));
    let out = commands::organization::create(&state.bus, id, &body.name, &meta)
        .await
        .map_err(Problem::from)?;
    settle(&state, &out).await?;
    let org = load(&state, &id.to_string()).await?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/organizations/{id}")) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(org)))
}

/// List organizations, ordered by id, a page at a time. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/organizations", params(PageQuery),
    responses((status = 200, body = Page<Organization>, description = "done")),
    security(("bearer" = ["idp:admin"])), tag = "organizations")]
pub async fn list(
    State(state): State<AppState>,
    caller: AdminCaller,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<Organization>>, Problem> {
    let Query(q) = query?;
    let limit = q.limit()?;
    if let Some(own) = caller.list_scope(None)? {
        // An organization's admin sees its own organization alone.
        let own = own.to_string();
        let items = match q.cursor.as_deref() {
            Some(c) if c >= own.as_str() => vec![],
            _ => vec![load(&state, &own).await?],
        };
        return Ok(Json(Page {
            items,
            next_cursor: None,
        }));
    }
    let rows = organizations::list(&state.read_db, q.cursor.as_deref(), limit + 1)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let items: Vec<Organization> = rows.into_iter().map(Organization::from).collect();
    Ok(Json(Page::from_overfetch(items, limit, |o| o.id.clone())))
}

/// Show one organization. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/organizations/{id}",
    params(("id" = Uuid, Path, description = "The organization's id")),
    responses((status = 200, body = Organization, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "organizations")]
pub async fn show(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Organization>, Problem> {
    let Path(id) = path?;
    caller.within(Some(id), "organization")?;
    Ok(Json(load(&state, &id.to_string()).await?))
}

/// Rename an organization. Needs `idp:admin`.
#[utoipa::path(patch, path = "/admin/organizations/{id}",
    params(("id" = Uuid, Path, description = "The organization's id")), request_body = RenameOrganization,
    responses((status = 200, body = Organization, description = "done"), (status = 404, description = "not found (or in another organization)"), (status = 422, description = "a rule is broken: an RFC 9457 problem")),
    security(("bearer" = ["idp:admin"])), tag = "organizations")]
pub async fn rename(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
    body: Body<RenameOrganization>,
) -> Result<Json<Organization>, Problem> {
    let Path(id) = path?;
    let Body(body) = body;
    caller.within(Some(id), "organization")?;
    let meta = ctx.metadata(caller.actor(), Some(id));
    let out = commands::organization::rename(&state.bus, id, &body.name, &meta)
        .await
        .map_err(Problem::from)?;
    settle(&state, &out).await?;
    Ok(Json(load(&state, &id.to_string()).await?))
}
