//! The OAuth 2.1 endpoints: token (RFC 6749), introspection (RFC 7662),
//! revocation (RFC 7009), discovery (RFC 8414, OpenID Connect Discovery)
//! and the JWKS.

pub mod client_auth;
pub mod discovery;
pub mod error;
pub mod instance;
pub mod introspect;
pub mod token;

use std::time::Duration;

use axum::Router;
use axum::http::{Method, header};
use axum::routing::{get, post};
use tower_http::cors::{Any, CorsLayer};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    let from_browsers = Router::new()
        .route("/oauth/token", post(token::token).options(preflight))
        .route("/oauth/revoke", post(introspect::revoke).options(preflight))
        .route("/oauth/jwks", get(discovery::jwks).options(preflight))
        .route(
            "/.well-known/openid-configuration",
            get(discovery::configuration).options(preflight),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::configuration).options(preflight),
        )
        .layer(cors());
    Router::new()
        .route("/registration/consume", post(crate::registration::consume))
        .route("/oauth/introspect", post(introspect::introspect))
        .merge(from_browsers)
}

/// `OPTIONS` on an endpoint browsers may call: routed, so that the CORS
/// layer answers a preflight (this answers any other `OPTIONS`).
pub async fn preflight() -> axum::http::StatusCode {
    axum::http::StatusCode::NO_CONTENT
}

/// What a client running in a browser (a single-page application, a
/// public client) calls from its own origin: discovery, the keys, the
/// token, revocation and UserInfo endpoints (OpenID Connect Core §5.3).
/// None of them reads a cookie, so any origin may, without credentials.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(3600))
}
