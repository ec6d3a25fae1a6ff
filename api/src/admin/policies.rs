//! `/admin/organizations/{id}/policies`: an organization's Rego policy,
//! uploaded as versions, validated on upload, activated, rolled back.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use domain::authz_policy::{AuthzPolicy, PolicyVersion};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AdminCaller, settle};
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

type PathRejection = axum::extract::rejection::PathRejection;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/organizations/{id}/policies", get(list).post(upload))
        .route("/admin/organizations/{id}/policies/{version}", get(show))
        .route(
            "/admin/organizations/{id}/policies/{version}/activate",
            post(activate),
        )
        .route(
            "/admin/organizations/{id}/policies/rollback",
            post(rollback),
        )
        .route("/admin/organizations/{id}/policies/settings", put(settings))
}

/// A policy version to upload: one Rego module of package `idp.authz`
/// whose rule `allow` decides.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadPolicy {
    /// The Rego source, at most 256 KiB.
    pub source: String,
    #[serde(default)]
    pub description: String,
    /// Make it the active version at once.
    #[serde(default)]
    pub activate: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Record every decision (`true`) or only denials (`false`, the
    /// default).
    pub log_all_decisions: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyVersionView {
    pub version: u32,
    pub description: String,
    /// SHA-256 of the source, hex.
    pub digest: String,
    pub uploaded_by: String,
    pub uploaded_at: String,
    pub active: bool,
    /// The source (only when one version is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PoliciesView {
    pub organization_id: String,
    pub active_version: Option<u32>,
    /// The versions a rollback returns to, the next one last.
    pub rollback_to: Vec<u32>,
    pub log_all_decisions: bool,
    pub versions: Vec<PolicyVersionView>,
}

fn version_view(p: &AuthzPolicy, v: &PolicyVersion, with_source: bool) -> PolicyVersionView {
    PolicyVersionView {
        version: v.version,
        description: v.description.clone(),
        digest: v.digest.clone(),
        uploaded_by: v.uploaded_by.clone(),
        uploaded_at: super::users::rfc3339(v.uploaded_at),
        active: p.active == Some(v.version),
        source: with_source.then(|| v.source.clone()),
    }
}

fn view(organization_id: Uuid, p: &AuthzPolicy) -> PoliciesView {
    PoliciesView {
        organization_id: organization_id.to_string(),
        active_version: p.active,
        rollback_to: p.history.clone(),
        log_all_decisions: p.log_all,
        versions: p
            .versions
            .values()
            .map(|v| version_view(p, v, false))
            .collect(),
    }
}

/// The organization's policies as its stream has them now (this node sees
/// its own change at once).
async fn load(state: &AppState, organization_id: Uuid) -> Result<AuthzPolicy, Problem> {
    state.tokens.authz_policies.invalidate(organization_id);
    let (p, _) = state
        .bus
        .load::<AuthzPolicy>(&organization_id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(p)
}

/// The organization named in the path, if the caller may act in it.
async fn organization(state: &AppState, caller: &AdminCaller, id: Uuid) -> Result<Uuid, Problem> {
    caller.within(Some(id), "organization")?;
    let exists = projections::organizations::get(&state.read_db, &id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?
        .is_some();
    if exists {
        Ok(id)
    } else {
        Err(Problem::not_found("organization"))
    }
}

/// Upload a new version of the organization's policy. It is compiled
/// first: one that does not compile is refused with its line and column,
/// and nothing is recorded. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/organizations/{id}/policies",
    params(("id" = Uuid, Path, description = "The organization's id")), request_body = UploadPolicy,
    responses((status = 201, body = PolicyVersionView, description = "uploaded (and activated, if asked)"),
        (status = 404, description = "no such organization (or another's)"),
        (status = 422, description = "the policy does not compile: `line`, `column` and `detail` say where and why")),
    security(("bearer" = ["idp:admin"])), tag = "policies")]
pub async fn upload(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<UploadPolicy>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    let org = organization(&state, &caller, id).await?;
    let meta = ctx.metadata(caller.actor(), Some(org));
    let upload = commands::authz::Upload {
        organization_id: org,
        source: body.source,
        description: body.description,
        activate: body.activate,
    };
    let out = commands::authz::upload(&state.bus, upload, &meta).await?;
    settle(&state, &out).await?;
    let p = load(&state, org).await?;
    let (&version, v) = p
        .versions
        .iter()
        .next_back()
        .ok_or_else(|| Problem::internal(&"the upload left no version"))?;
    let mut resp = (StatusCode::CREATED, Json(version_view(&p, v, false))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/organizations/{org}/policies/{version}"))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The organization's policy versions, which is active, and what a
/// rollback returns to. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/organizations/{id}/policies",
    params(("id" = Uuid, Path, description = "The organization's id")),
    responses((status = 200, body = PoliciesView, description = "done"), (status = 404, description = "no such organization (or another's)")),
    security(("bearer" = ["idp:admin"])), tag = "policies")]
pub async fn list(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<PoliciesView>, Problem> {
    let Path(id) = path?;
    let org = organization(&state, &caller, id).await?;
    Ok(Json(view(org, &load(&state, org).await?)))
}

/// One version with its source. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/organizations/{id}/policies/{version}",
    params(("id" = Uuid, Path, description = "The organization's id"), ("version" = u32, Path, description = "The version")),
    responses((status = 200, body = PolicyVersionView, description = "done"), (status = 404, description = "no such organization or version")),
    security(("bearer" = ["idp:admin"])), tag = "policies")]
pub async fn show(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<(Uuid, u32)>, PathRejection>,
) -> Result<Json<PolicyVersionView>, Problem> {
    let Path((id, version)) = path?;
    let org = organization(&state, &caller, id).await?;
    let p = load(&state, org).await?;
    let v = p
        .versions
        .get(&version)
        .ok_or_else(|| Problem::not_found("policy version"))?;
    Ok(Json(version_view(&p, v, true)))
}

/// Make a version the active one. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/organizations/{id}/policies/{version}/activate",
    params(("id" = Uuid, Path, description = "The organization's id"), ("version" = u32, Path, description = "The version")),
    responses((status = 200, body = PoliciesView, description = "active (already, or now)"), (status = 404, description = "no such organization or version")),
    security(("bearer" = ["idp:admin"])), tag = "policies")]
pub async fn activate(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<(Uuid, u32)>, PathRejection>,
) -> Result<Json<PoliciesView>, Problem> {
    let Path((id, version)) = path?;
    let org = organization(&state, &caller, id).await?;
    let meta = ctx.metadata(caller.actor(), Some(org));
    let out = commands::authz::activate(&state.bus, org, version, &meta).await?;
    settle(&state, &out).await?;
    Ok(Json(view(org, &load(&state, org).await?)))
}

/// Return to the version active before the current one. Needs
/// `idp:admin`.
#[utoipa::path(post, path = "/admin/organizations/{id}/policies/rollback",
    params(("id" = Uuid, Path, description = "The organization's id")),
    responses((status = 200, body = PoliciesView, description = "rolled back"), (status = 404, description = "no such organization (or another's)"),
        (status = 409, description = "no version was active before the current one")),
    security(("bearer" = ["idp:admin"])), tag = "policies")]
pub async fn rollback(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<PoliciesView>, Problem> {
    let Path(id) = path?;
    let org = organization(&state, &caller, id).await?;
    let meta = ctx.metadata(caller.actor(), Some(org));
    let out = commands::authz::rollback(&state.bus, org, &meta).await?;
    settle(&state, &out).await?;
    Ok(Json(view(org, &load(&state, org).await?)))
}

/// Whether every decision is recorded, or only denials. Needs
/// `idp:admin`.
#[utoipa::path(put, path = "/admin/organizations/{id}/policies/settings",
    params(("id" = Uuid, Path, description = "The organization's id")), request_body = PolicySettings,
    responses((status = 200, body = PoliciesView, description = "set"), (status = 404, description = "no such organization (or another's)")),
    security(("bearer" = ["idp:admin"])), tag = "policies")]
pub async fn settings(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<PolicySettings>,
) -> Result<Json<PoliciesView>, Problem> {
    let Path(id) = path?;
    let org = organization(&state, &caller, id).await?;
    let meta = ctx.metadata(caller.actor(), Some(org));
    let out = commands::authz::set_decision_logging(&state.bus, org, body.log_all_decisions, &meta)
        .await?;
    settle(&state, &out).await?;
    Ok(Json(view(org, &load(&state, org).await?)))
}
