//! `/admin/registration-tokens` and `/admin/auth-tokens`: hand out
//! registration tokens, see which instances used them, cut instances off.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use commands::registration::{self, NewRegistrationToken};
use projections::registration::{self as model, AuthTokenRow, RegistrationTokenRow};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{AdminCaller, Page, PageQuery, settle};
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

type PathRejection = axum::extract::rejection::PathRejection;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/registration-tokens", get(list).post(create))
        .route("/admin/registration-tokens/{id}", get(show))
        .route("/admin/registration-tokens/{id}/revoke", post(revoke))
        .route(
            "/admin/registration-tokens/{id}/auth-tokens",
            get(instances),
        )
        .route("/admin/auth-tokens/{id}", delete(delete_auth_token))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRegistrationToken {
    /// The application (an OAuth client) the instances will use.
    pub client_id: Uuid,
    #[serde(default)]
    pub description: String,
    /// How many auth tokens it may generate (at least 1).
    pub count: u64,
    /// RFC 3339.
    pub expires_at: String,
}

/// A new registration token: the only response that holds its value.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedRegistrationToken {
    pub token: String,
    #[serde(flatten)]
    #[schema(inline)]
    pub registration_token: RegistrationTokenView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegistrationTokenView {
    pub id: String,
    pub organization_id: String,
    pub client_id: String,
    pub description: String,
    pub count: i64,
    pub used: i64,
    pub remaining: i64,
    pub expires_at: String,
    /// `active`, `expired`, `exhausted` or `revoked`.
    pub status: String,
    pub created_at: String,
    /// The actor who created it.
    pub created_by: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl From<RegistrationTokenRow> for RegistrationTokenView {
    fn from(r: RegistrationTokenRow) -> Self {
        Self {
            id: r.id,
            organization_id: r.organization_id,
            client_id: r.client_id,
            description: r.description,
            count: r.count,
            used: r.used,
            remaining: r.remaining,
            expires_at: r.expires_at,
            status: r.status,
            created_at: r.created_at,
            created_by: r.created_by,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// An instance that consumed a registration token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthTokenView {
    pub id: String,
    pub registration_token_id: String,
    pub client_id: String,
    pub instance_id: String,
    pub device_name: String,
    pub user_name: Option<String>,
    pub app_version: String,
    pub created_at: String,
    /// Where the consumption came from.
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub exchanged_at: Option<String>,
    pub last_used_at: Option<String>,
    pub chain_revoked_at: Option<String>,
    pub deleted_at: Option<String>,
}

impl From<AuthTokenRow> for AuthTokenView {
    fn from(r: AuthTokenRow) -> Self {
        Self {
            id: r.id,
            registration_token_id: r.registration_token_id,
            client_id: r.client_id,
            instance_id: r.instance_id,
            device_name: r.device_name,
            user_name: r.user_name,
            app_version: r.app_version,
            created_at: r.created_at,
            source_ip: r.source_ip,
            user_agent: r.user_agent,
            exchanged_at: r.exchanged_at,
            last_used_at: r.last_used_at,
            chain_revoked_at: r.chain_revoked_at,
            deleted_at: r.deleted_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegistrationListQuery {
    pub organization_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

async fn load(state: &AppState, id: Uuid) -> Result<RegistrationTokenView, Problem> {
    model::get(&state.read_db, &id.to_string(), state.clock.now())
        .await
        .map_err(|e| Problem::internal(&e))?
        .map(RegistrationTokenView::from)
        .ok_or_else(|| Problem::not_found("registration token"))
}

/// [`load`], for a caller who may act on the token's organization.
async fn load_for(
    state: &AppState,
    caller: &AdminCaller,
    id: Uuid,
) -> Result<RegistrationTokenView, Problem> {
    let view = load(state, id).await?;
    caller.within(
        Uuid::parse_str(&view.organization_id).ok(),
        "registration token",
    )?;
    Ok(view)
}

/// Create a registration token for an application. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/registration-tokens", request_body = CreateRegistrationToken,
    responses((status = 201, body = CreatedRegistrationToken, description = "created"), (status = 422, description = "a rule is broken: an RFC 9457 problem")),
    security(("bearer" = ["idp:admin"])), tag = "registration")]
pub async fn create(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    Body(body): Body<CreateRegistrationToken>,
) -> Result<impl IntoResponse, Problem> {
    let expires_at = OffsetDateTime::parse(&body.expires_at, &Rfc3339)
        .map_err(|_| Problem::validation("expires_at must be an RFC 3339 date-time"))?;
    let client = state
        .tokens
        .client(body.client_id)
        .await
        .map_err(|e| Problem::internal(&e))?
        .filter(|c| !c.deleted && caller.may_act_in(c.organization_id))
        .ok_or_else(|| Problem::validation("client_id names no client"))?;
    let meta = ctx.metadata(caller.actor(), Some(client.organization_id));
    let (out, created) = registration::create(
        &state.bus,
        NewRegistrationToken {
            organization_id: client.organization_id,
            client_id: body.client_id,
            description: body.description,
            count: body.count,
            expires_at,
            created_by: format!("client:{}", caller.client_id),
        },
        &meta,
    )
    .await
    .map_err(Problem::from)?;
    settle(&state, &out).await?;
    let view = load(&state, created.id).await?;
    let mut resp = (
        StatusCode::CREATED,
        Json(CreatedRegistrationToken {
            token: created.value.clone(),
            registration_token: view,
        }),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/registration-tokens/{}", created.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// List registration tokens. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/registration-tokens", params(RegistrationListQuery),
    responses((status = 200, body = Page<RegistrationTokenView>, description = "done")),
    security(("bearer" = ["idp:admin"])), tag = "registration")]
pub async fn list(
    State(state): State<AppState>,
    caller: AdminCaller,
    query: Result<Query<RegistrationListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<RegistrationTokenView>>, Problem> {
    let Query(q) = query?;
    let limit = PageQuery {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    let org = caller.list_scope(q.organization_id)?.map(|o| o.to_string());
    let client = q.client_id.map(|c| c.to_string());
    let rows = model::list(
        &state.read_db,
        org.as_deref(),
        client.as_deref(),
        q.cursor.as_deref(),
        limit + 1,
        state.clock.now(),
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    let items: Vec<RegistrationTokenView> = rows.into_iter().map(Into::into).collect();
    Ok(Json(Page::from_overfetch(items, limit, |r| r.id.clone())))
}

/// Show a registration token: count, used, remaining, status. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/registration-tokens/{id}",
    params(("id" = Uuid, Path, description = "The registration token's (or, for /admin/auth-tokens, the auth token's) id")),
    responses((status = 200, body = RegistrationTokenView, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "registration")]
pub async fn show(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<RegistrationTokenView>, Problem> {
    let Path(id) = path?;
    Ok(Json(load_for(&state, &caller, id).await?))
}

/// Revoke a registration token: no further consumption. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/registration-tokens/{id}/revoke",
    params(("id" = Uuid, Path, description = "The registration token's (or, for /admin/auth-tokens, the auth token's) id")),
    responses((status = 200, body = RegistrationTokenView, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "registration")]
pub async fn revoke(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<RegistrationTokenView>, Problem> {
    let Path(id) = path?;
    let view = load_for(&state, &caller, id).await?;
    let meta = ctx.metadata(caller.actor(), Uuid::parse_str(&view.organization_id).ok());
    let out = registration::revoke(&state.bus, id, &meta)
        .await
        .map_err(Problem::from)?;
    settle(&state, &out).await?;
    Ok(Json(load(&state, id).await?))
}

/// The instances a registration token generated auth tokens for, with
/// where and when. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/registration-tokens/{id}/auth-tokens", params(("id" = Uuid, Path, description = "The registration token's (or, for /admin/auth-tokens, the auth token's) id"), PageQuery),
    responses((status = 200, body = Page<AuthTokenView>, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "registration")]
pub async fn instances(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<AuthTokenView>>, Problem> {
    let Path(id) = path?;
    let Query(q) = query?;
    let limit = q.limit()?;
    load_for(&state, &caller, id).await?;
    let rows = model::auth_tokens(
        &state.read_db,
        &id.to_string(),
        q.cursor.as_deref(),
        limit + 1,
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    let items: Vec<AuthTokenView> = rows.into_iter().map(Into::into).collect();
    Ok(Json(Page::from_overfetch(items, limit, |a| a.id.clone())))
}

/// Delete an instance's auth token: its refresh tokens and access tokens
/// stop working at once. Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/auth-tokens/{id}",
    params(("id" = Uuid, Path, description = "The registration token's (or, for /admin/auth-tokens, the auth token's) id")),
    responses((status = 204, description = "done; no content"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "registration")]
pub async fn delete_auth_token(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(id) = path?;
    let organization = state
        .tokens
        .auth_token(id)
        .await
        .map_err(|e| Problem::internal(&e))?
        .map(|a| a.organization_id);
    let organization = caller.within(organization, "auth token")?;
    let meta = ctx.metadata(caller.actor(), Some(organization));
    let out = registration::delete_auth_token(&state.bus, id, &meta)
        .await
        .map_err(Problem::from)?;
    state.tokens.auth_tokens.invalidate(id);
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}
