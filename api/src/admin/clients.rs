//! `/admin/clients`: OAuth clients and their secrets.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use domain::client::{
    ClientSettings, ClientType, GrantType, SecretPolicy, SettingsChanges, UnknownValue,
};
use projections::clients::{self, ClientFilter, ClientRow, SecretRow};
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
        .route("/admin/clients", get(list).post(create))
        .route(
            "/admin/clients/{id}",
            get(show).patch(update).delete(remove),
        )
        .route("/admin/clients/{id}/enable", post(enable))
        .route("/admin/clients/{id}/disable", post(disable))
        .route(
            "/admin/clients/{id}/secrets",
            get(list_secrets).post(create_secret),
        )
        .route(
            "/admin/clients/{id}/secrets/{secret_id}",
            delete(delete_secret),
        )
}

fn default_lifetime() -> u32 {
    3600
}

/// A value of the wire read into the domain's type; an unknown one is a
/// 422 naming it.
fn parsed<T: std::str::FromStr<Err = UnknownValue>>(value: &str) -> Result<T, Problem> {
    value
        .parse()
        .map_err(|e: UnknownValue| Problem::validation(e.to_string()))
}

fn grants(values: &[String]) -> Result<Vec<GrantType>, Problem> {
    values.iter().map(|g| parsed(g)).collect()
}

/// A new client. `client_id` may be supplied (a GUID) or is generated.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    pub organization_id: Uuid,
    pub client_id: Option<String>,
    /// `public` or `confidential`.
    pub client_type: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// `client_credentials`, `authorization_code`, `refresh_token`,
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt` or `none`.
    pub token_endpoint_auth_method: String,
    /// The client's public keys (a JWK Set), for `private_key_jwt`.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    #[serde(default = "default_lifetime")]
    pub access_token_lifetime: u32,
    /// Resource servers (absolute URIs, RFC 8707) the client may ask
    /// tokens for, besides this server.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Where RP-initiated logout may return the browser (matched exactly).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// `ES256` (the default) or `RS256`.
    pub id_token_signed_response_alg: Option<String>,
    /// A first-party client: people are not asked to consent.
    #[serde(default)]
    pub skip_consent: bool,
    /// Seconds a refresh token lives unused (the server's default when absent).
    pub refresh_token_lifetime: Option<u32>,
    /// Refresh tokens even when `offline_access` was not granted.
    #[serde(default)]
    pub refresh_without_offline_access: bool,
}

/// Changes to a client; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClient {
    pub name: Option<String>,
    pub description: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    pub access_token_lifetime: Option<u32>,
    pub resources: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub id_token_signed_response_alg: Option<String>,
    pub skip_consent: Option<bool>,
    /// `null` returns to the server's default.
    #[serde(default, deserialize_with = "super::users::present")]
    #[schema(value_type = Option<u32>)]
    pub refresh_token_lifetime: Option<Option<u32>>,
    pub refresh_without_offline_access: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub organization_id: String,
    pub client_type: String,
    pub name: String,
    pub description: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub token_endpoint_auth_method: String,
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    pub access_token_lifetime: u32,
    pub resources: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub id_token_signed_response_alg: String,
    pub skip_consent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_lifetime: Option<u32>,
    pub refresh_without_offline_access: bool,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ClientRow> for ClientView {
    fn from(r: ClientRow) -> Self {
        let s: ClientSettings = serde_json::from_value(r.settings).unwrap_or_default();
        Self {
            client_id: r.id,
            organization_id: r.organization_id,
            client_type: r.client_type,
            name: s.name,
            description: s.description,
            redirect_uris: s.redirect_uris,
            grant_types: s
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            scopes: s.scopes,
            token_endpoint_auth_method: s.auth_method.as_str().to_owned(),
            jwks: s.jwks,
            access_token_lifetime: s.access_token_lifetime_secs,
            resources: s.resources,
            post_logout_redirect_uris: s.post_logout_redirect_uris,
            id_token_signed_response_alg: s.id_token_signed_response_alg.as_str().to_owned(),
            skip_consent: s.skip_consent,
            refresh_token_lifetime: s.refresh_token_lifetime_secs,
            refresh_without_offline_access: s.refresh_without_offline_access,
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSecret {
    #[serde(default)]
    pub description: String,
    /// RFC 3339; default: now plus the configured maximum lifetime.
    pub expires_at: Option<String>,
    /// Ask for a secret that never expires (only if configuration allows).
    #[serde(default)]
    pub never_expires: bool,
}

/// A new secret: the only response that ever holds its value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedSecretView {
    pub id: String,
    pub client_id: String,
    /// Shown once; store it now.
    pub secret: String,
    pub description: String,
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretView {
    pub id: String,
    pub description: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl From<SecretRow> for SecretView {
    fn from(r: SecretRow) -> Self {
        Self {
            id: r.id,
            description: r.description,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClientListQuery {
    pub organization_id: Option<Uuid>,
    pub enabled: Option<bool>,
    pub name_contains: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

async fn load(state: &AppState, id: Uuid) -> Result<ClientView, Problem> {
    clients::get(&state.read_db, &id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?
        .map(ClientView::from)
        .ok_or_else(|| Problem::not_found("client"))
}

/// [`load`], for a caller who may act on the client's organization.
async fn load_for(state: &AppState, caller: &AdminCaller, id: Uuid) -> Result<ClientView, Problem> {
    let view = load(state, id).await?;
    caller.within(Uuid::parse_str(&view.organization_id).ok(), "client")?;
    Ok(view)
}

/// Register a client in an organization. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/clients", request_body = CreateClient,
    responses((status = 201, body = ClientView, description = "created"), (status = 409, description = "client_id taken"),
        (status = 422, description = "a rule is broken")),
    security(("bearer" = ["idp:admin"])), tag = "clients")]
pub async fn create(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    Body(body): Body<CreateClient>,
) -> Result<impl IntoResponse, Problem> {
    let client_id = match &body.client_id {
        Some(given) => {
            Uuid::parse_str(given).map_err(|_| Problem::validation("client_id must be a GUID"))?
        }
        None => Uuid::now_v7(),
    };
    let client_type: ClientType = parsed(&body.client_type)?;
    let settings = ClientSettings {
        name: body.name,
        description: body.description,
        redirect_uris: body.redirect_uris,
        grant_types: grants(&body.grant_types)?,
        scopes: body.scopes,
        auth_method: parsed(&body.token_endpoint_auth_method)?,
        jwks: body.jwks,
        access_token_lifetime_secs: body.access_token_lifetime,
        resources: body.resources,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        id_token_signed_response_alg: body
            .id_token_signed_response_alg
            .as_deref()
            .map(parsed)
            .transpose()?
            .unwrap_or_default(),
        skip_consent: body.skip_consent,
        refresh_token_lifetime_secs: body.refresh_token_lifetime,
        refresh_without_offline_access: body.refresh_without_offline_access,
    };
    caller.within(Some(body.organization_id), "organization")?;
    let meta = ctx.metadata(caller.actor(), Some(body.organization_id));
    let out = commands::client::create(
        &state.bus,
        client_id,
        body.organization_id,
        client_type,
        settings,
        &meta,
    )
    .await
    .map_err(Problem::from)?;
    settle(&state, &out).await?;
    let view = load(&state, client_id).await?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/clients/{client_id}")) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(view)))
}

/// List clients, filtered, ordered by id, a page at a time. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/clients", params(ClientListQuery),
    responses((status = 200, body = Page<ClientView>, description = "done")),
    security(("bearer" = ["idp:admin"])), tag = "clients")]
pub async fn list(
    State(state): State<AppState>,
    caller: AdminCaller,
    query: Result<Query<ClientListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<ClientView>>, Problem> {
    let Query(q) = query?;
    let organization = caller.list_scope(q.organization_id)?;
    let limit = PageQuery {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    let filter = ClientFilter {
        organization_id: organization.map(|o| o.to_string()),
        enabled: q.enabled,
        name_contains: q.name_contains,
    };
    let rows = clients::list(&state.read_db, &filter, q.cursor.as_deref(), limit + 1)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let items: Vec<ClientView> = rows.into_iter().map(ClientView::from).collect();
    Ok(Json(Page::from_overfetch(items, limit, |c| {
        c.client_id.clone()
    })))
}

/// Show a client. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/clients/{id}",
    params(("id" = Uuid, Path, description = "The client's id")),
    responses((status = 200, body = ClientView, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "clients")]
pub async fn show(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<ClientView>, Problem> {
    let Path(id) = path?;
    Ok(Json(load_for(&state, &caller, id).await?))
}

/// Change a client's settings. Needs `idp:admin`.
#[utoipa::path(patch, path = "/admin/clients/{id}",
    params(("id" = Uuid, Path, description = "The client's id")), request_body = UpdateClient,
    responses((status = 200, body = ClientView, description = "done"), (status = 404, description = "not found (or in another organization)"), (status = 422, description = "a rule is broken: an RFC 9457 problem")),
    security(("bearer" = ["idp:admin"])), tag = "clients")]
pub async fn update(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<UpdateClient>,
) -> Result<Json<ClientView>, Problem> {
    let Path(id) = path?;
    let organization = client_org(&state, &caller, id).await?;
    let changes = SettingsChanges {
        name: body.name,
        description: body.description,
        redirect_uris: body.redirect_uris,
        grant_types: body.grant_types.as_deref().map(grants).transpose()?,
        scopes: body.scopes,
        auth_method: body
            .token_endpoint_auth_method
            .as_deref()
            .map(parsed)
            .transpose()?,
        jwks: body.jwks,
        access_token_lifetime_secs: body.access_token_lifetime,
        resources: body.resources,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        id_token_signed_response_alg: body
            .id_token_signed_response_alg
            .as_deref()
            .map(parsed)
            .transpose()?,
        skip_consent: body.skip_consent,
        refresh_token_lifetime_secs: body.refresh_token_lifetime,
        refresh_without_offline_access: body.refresh_without_offline_access,
    };
    let meta = ctx.metadata(caller.actor(), Some(organization));
    let out = commands::client::change(&state.bus, id, changes, &meta)
        .await
        .map_err(Problem::from)?;
    // This node's token endpoint and authorization endpoint see the new
    // settings at once; other nodes when the event reaches them.
    state.tokens.clients.invalidate(id);
    settle(&state, &out).await?;
    Ok(Json(load(&state, id).await?))
}

/// The organization of a client the caller may act on; a client of
/// another organization is answered as not found.
async fn client_org(state: &AppState, caller: &AdminCaller, id: Uuid) -> Result<Uuid, Problem> {
    let (client, revision) = state
        .bus
        .load::<domain::client::Client>(&id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    caller.within(
        revision.is_some().then_some(client.organization_id),
        "client",
    )
}

/// Delete a client: its tokens stop working at once. Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/clients/{id}",
    params(("id" = Uuid, Path, description = "The client's id")),
    responses((status = 204, description = "done; no content"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "clients")]
pub async fn remove(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(id) = path?;
    let meta = ctx.metadata(caller.actor(), Some(client_org(&state, &caller, id).await?));
    let out = commands::client::delete(&state.bus, id, &meta)
        .await
        .map_err(Problem::from)?;
    state.tokens.clients.invalidate(id);
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables or disables a client and returns it as it now is.
async fn set_enabled(
    state: &AppState,
    caller: &AdminCaller,
    ctx: &RequestContext,
    id: Uuid,
    enabled: bool,
) -> Result<Json<ClientView>, Problem> {
    let meta = ctx.metadata(caller.actor(), Some(client_org(state, caller, id).await?));
    let out = if enabled {
        commands::client::enable(&state.bus, id, &meta).await
    } else {
        commands::client::disable(&state.bus, id, &meta).await
    }
    .map_err(Problem::from)?;
    state.tokens.clients.invalidate(id);
    settle(state, &out).await?;
    Ok(Json(load(state, id).await?))
}

/// Enable a client. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/clients/{id}/enable",
    params(("id" = Uuid, Path, description = "The client's id")),
    responses((status = 200, body = ClientView, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "clients")]
pub async fn enable(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<ClientView>, Problem> {
    let Path(id) = path?;
    set_enabled(&state, &caller, &ctx, id, true).await
}

/// Disable a client: its tokens introspect as inactive. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/clients/{id}/disable",
    params(("id" = Uuid, Path, description = "The client's id")),
    responses((status = 200, body = ClientView, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "clients")]
pub async fn disable(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<ClientView>, Problem> {
    let Path(id) = path?;
    set_enabled(&state, &caller, &ctx, id, false).await
}

/// Create a secret; its value is in this response only. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/clients/{id}/secrets",
    params(("id" = Uuid, Path, description = "The client's id")), request_body = CreateSecret,
    responses((status = 201, body = CreatedSecretView, description = "created"), (status = 409, description = "10 live secrets already"),
        (status = 422, description = "a rule is broken: an RFC 9457 problem")),
    security(("bearer" = ["idp:admin"])), tag = "clients")]
pub async fn create_secret(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<CreateSecret>,
) -> Result<impl IntoResponse, Problem> {
    let Path(id) = path?;
    let policy = SecretPolicy {
        max_lifetime_days: state.config.secret_max_lifetime_days,
        allow_never_expiring: state.config.secret_allow_never_expiring,
    };
    let expires_at = match (&body.expires_at, body.never_expires) {
        (Some(_), true) => {
            return Err(Problem::validation(
                "give either expires_at or never_expires, not both",
            ));
        }
        (Some(t), false) => Some(
            OffsetDateTime::parse(t, &Rfc3339)
                .map_err(|_| Problem::validation("expires_at must be an RFC 3339 date-time"))?,
        ),
        (None, true) => None,
        (None, false) => {
            Some(state.clock.now() + time::Duration::days(i64::from(policy.max_lifetime_days)))
        }
    };
    let meta = ctx.metadata(caller.actor(), Some(client_org(&state, &caller, id).await?));
    let (out, created) = commands::client::create_secret(
        &state.bus,
        id,
        &body.description,
        expires_at,
        policy,
        &meta,
    )
    .await
    .map_err(Problem::from)?;
    state.tokens.clients.invalidate(id);
    settle(&state, &out).await?;
    let view = CreatedSecretView {
        id: created.secret_id.to_string(),
        client_id: id.to_string(),
        secret: created.value.clone(),
        description: body.description,
        expires_at: created.expires_at.and_then(|t| t.format(&Rfc3339).ok()),
    };
    let mut resp = (StatusCode::CREATED, Json(view)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// List a client's secrets (never their values). Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/clients/{id}/secrets",
    params(("id" = Uuid, Path, description = "The client's id")),
    responses((status = 200, body = Page<SecretView>, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "clients")]
pub async fn list_secrets(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Page<SecretView>>, Problem> {
    let Path(id) = path?;
    load_for(&state, &caller, id).await?;
    let rows = clients::secrets(&state.read_db, &id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(Page {
        items: rows.into_iter().map(SecretView::from).collect(),
        next_cursor: None,
    }))
}

/// Delete a secret: it stops authenticating at once. Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/clients/{id}/secrets/{secret_id}",
    params(("id" = Uuid, Path, description = "The client's id"), ("secret_id" = Uuid, Path, description = "The secret's id")),
    responses((status = 204, description = "done; no content"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "clients")]
pub async fn delete_secret(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<(Uuid, Uuid)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path((id, secret_id)) = path?;
    let meta = ctx.metadata(caller.actor(), Some(client_org(&state, &caller, id).await?));
    let out = commands::client::delete_secret(&state.bus, id, secret_id, &meta)
        .await
        .map_err(Problem::from)?;
    state.tokens.clients.invalidate(id);
    settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT)
}
