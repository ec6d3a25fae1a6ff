//! `/admin/keys`: the signing keys (public parts only) and their rotation.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::signing_key::KeyAlgorithm;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use super::AdminCaller;
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::server::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/keys", get(list))
        .route("/admin/keys/rotate", post(rotate))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    pub status: String,
    pub created_at: Option<String>,
    pub activated_at: Option<String>,
    pub retired_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// `ES256` (access tokens) or `RS256`.
    #[schema(value_type = String)]
    pub alg: KeyAlgorithm,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rotated {
    pub kid: String,
    pub alg: String,
}

/// List signing keys, newest first. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/keys", responses((status = 200, body = KeyList)),
    security(("bearer" = ["idp:admin"])), tag = "keys")]
pub async fn list(State(state): State<AppState>, _caller: AdminCaller) -> Json<KeyList> {
    Json(KeyList {
        items: state.tokens.key_views(),
    })
}

/// Rotate: a new key of `alg` becomes active, the old ones retire (and stay
/// published while tokens they signed can still be valid). Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/keys/rotate", request_body = RotateKey,
    responses((status = 200, body = Rotated)),
    security(("bearer" = ["idp:admin"])), tag = "keys")]
pub async fn rotate(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    Body(body): Body<RotateKey>,
) -> Result<Json<Rotated>, Problem> {
    let meta = ctx.metadata(caller.actor(), None);
    let kid = commands::keys::rotate(&state.bus, &state.master_key, body.alg, &meta)
        .await
        .map_err(|e| Problem::internal(&e))?;
    state
        .tokens
        .catch_up_keys(&kid)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(Rotated {
        kid,
        alg: body.alg.as_str().to_owned(),
    }))
}

pub(crate) fn fmt_time(t: Option<time::OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&Rfc3339).ok())
}
