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
        .route(
            "/admin/organizations/{id}/branding",
            get(show_branding).put(set_branding),
        )
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

/// How an organization's sign-in and consent pages look.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingBody {
    /// An https URL of the logo shown on the pages.
    pub logo_url: Option<String>,
    /// The accent colour, `#rrggbb`; the text on it is chosen black or
    /// white for contrast.
    pub accent_color: Option<String>,
}

async fn branding_of(
    state: &AppState,
    caller: &AdminCaller,
    id: Uuid,
) -> Result<domain::organization::Branding, Problem> {
    caller.within(Some(id), "organization")?;
    let (org, _) = state
        .bus
        .load::<domain::organization::Organization>(&id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    if org.id.is_none() {
        return Err(Problem::not_found("organization"));
    }
    Ok(org.branding)
}

/// The organization's branding. Needs `organizations:read`.
#[utoipa::path(get, path = "/admin/organizations/{id}/branding",
    params(("id" = Uuid, Path, description = "The organization's id")),
    responses((status = 200, body = BrandingBody, description = "done"), (status = 404, description = "not found")),
    security(("bearer" = ["idp:admin"])), tag = "organizations")]
pub async fn show_branding(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<BrandingBody>, Problem> {
    let Path(id) = path?;
    let b = branding_of(&state, &caller, id).await?;
    Ok(Json(BrandingBody {
        logo_url: b.logo_url,
        accent_color: b.accent_color,
    }))
}

/// Set the organization's branding: the logo and accent colour of its
/// pages (absent fields fall back to the default theme). Needs
/// `organizations:write`.
#[utoipa::path(put, path = "/admin/organizations/{id}/branding",
    params(("id" = Uuid, Path, description = "The organization's id")), request_body = BrandingBody,
    responses((status = 200, body = BrandingBody, description = "done"), (status = 404, description = "not found"),
        (status = 422, description = "a logo that is not an https URL, or a colour that is not #rrggbb")),
    security(("bearer" = ["idp:admin"])), tag = "organizations")]
pub async fn set_branding(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
    Body(body): Body<BrandingBody>,
) -> Result<Json<BrandingBody>, Problem> {
    let Path(id) = path?;
    branding_of(&state, &caller, id).await?;
    let meta = ctx.metadata(caller.actor(), Some(id));
    state
        .bus
        .execute::<domain::organization::Organization>(
            &id.to_string(),
            domain::organization::OrganizationCommand::SetBranding {
                branding: domain::organization::Branding {
                    logo_url: body.logo_url,
                    accent_color: body.accent_color,
                },
            },
            &meta,
        )
        .await?;
    let b = branding_of(&state, &caller, id).await?;
    Ok(Json(BrandingBody {
        logo_url: b.logo_url,
        accent_color: b.accent_color,
    }))
}
