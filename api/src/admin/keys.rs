//! `/admin/keys`: the signing keys (public parts only) and their rotation.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use commands::CommandError;
use domain::signing_key::KeyAlgorithm;
use domain::signing_key::SigningKeyError;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use super::AdminCaller;
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/keys", get(list))
        .route("/admin/keys/rotate", post(rotate))
        .route("/admin/keys/{kid}/revoke", post(revoke))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    pub status: String,
    pub created_at: Option<String>,
    pub activated_at: Option<String>,
    pub retired_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// `ES256` (access tokens) or `RS256`.
    pub alg: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rotated {
    pub kid: String,
    pub alg: String,
}

/// List signing keys, newest first. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/keys", responses((status = 200, body = KeyList, description = "done")),
    security(("bearer" = ["idp:admin"])), tag = "keys")]
pub async fn list(State(state): State<AppState>, _caller: AdminCaller) -> Json<KeyList> {
    Json(KeyList {
        items: key_views(&state),
    })
}

/// Rotate: a new key of `alg` becomes active, the old ones retire (and stay
/// published while tokens they signed can still be valid). Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/keys/rotate", request_body = RotateKey,
    responses((status = 200, body = Rotated, description = "done")),
    security(("bearer" = ["idp:admin"])), tag = "keys")]
pub async fn rotate(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    Body(body): Body<RotateKey>,
) -> Result<Json<Rotated>, Problem> {
    caller.must_be_platform()?;
    let alg = KeyAlgorithm::ALL
        .into_iter()
        .find(|a| a.as_str() == body.alg)
        .ok_or_else(|| {
            Problem::validation(format!("unknown alg {:?}: ES256 or RS256", body.alg))
        })?;
    let meta = ctx.metadata(caller.actor(), None);
    let kid = commands::keys::rotate(&state.bus, &state.master_key, alg, &meta)
        .await
        .map_err(|e| Problem::internal(&e))?;
    state
        .tokens
        .catch_up_keys(&kid)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(Rotated {
        kid,
        alg: alg.as_str().to_owned(),
    }))
}

/// Revoke a key outright (say, it leaked): it verifies nothing from now on,
/// not even tokens it signed before, and leaves the JWKS. The active key
/// cannot be revoked: rotate first. Needs `idp:admin` of the platform.
#[utoipa::path(post, path = "/admin/keys/{kid}/revoke",
    params(("kid" = String, Path, description = "The key's id")),
    responses((status = 200, body = KeyView, description = "done"), (status = 404, description = "not found (or in another organization)"), (status = 409, description = "the key is active: rotate first")),
    security(("bearer" = ["idp:admin"])), tag = "keys")]
pub async fn revoke(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<KeyView>, Problem> {
    caller.must_be_platform()?;
    let Path(kid) = path?;
    let meta = ctx.metadata(caller.actor(), None);
    let revoked = commands::keys::revoke(&state.bus, &kid, &meta).await;
    match revoked {
        Ok(_) => {}
        Err(commands::keys::KeyError::Command(CommandError::Domain(e))) => {
            return Err(match e {
                SigningKeyError::NotFound => Problem::not_found("signing key"),
                e @ SigningKeyError::RevokeActive => {
                    Problem::conflict("signing-key-active", e.to_string())
                }
                other => Problem::validation(other.to_string()),
            });
        }
        Err(e) => return Err(Problem::internal(&e)),
    }
    state
        .tokens
        .catch_up_keys_until(|ring| {
            ring.get(&kid)
                .is_some_and(|e| e.status == domain::signing_key::KeyStatus::Revoked)
        })
        .await
        .map_err(|e| Problem::internal(&e))?;
    key_views(&state)
        .into_iter()
        .find(|k| k.kid == kid)
        .map(Json)
        .ok_or_else(|| Problem::not_found("signing key"))
}

/// The keys as the admin API shows them, newest first.
fn key_views(state: &AppState) -> Vec<KeyView> {
    let mut views = state
        .tokens
        .with_ring(|ring| {
            ring.entries()
                .map(|e| KeyView {
                    kid: e.kid.clone(),
                    alg: e.alg.as_str().to_owned(),
                    status: e.status.as_str().to_owned(),
                    created_at: fmt_time(Some(e.created_at)),
                    activated_at: fmt_time(e.activated_at),
                    retired_at: fmt_time(e.retired_at),
                    revoked_at: fmt_time(e.revoked_at),
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    views.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    views
}

fn fmt_time(t: Option<time::OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&Rfc3339).ok())
}
