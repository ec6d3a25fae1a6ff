//! The OAuth 2.1 endpoints: token (RFC 6749), introspection (RFC 7662),
//! revocation (RFC 7009), discovery (RFC 8414, OpenID Connect Discovery)
//! and the JWKS.

pub mod client_auth;
pub mod discovery;
pub mod error;
pub mod instance;
pub mod introspect;
pub mod token;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/token", post(token::token))
        .route("/registration/consume", post(crate::registration::consume))
        .route("/oauth/introspect", post(introspect::introspect))
        .route("/oauth/revoke", post(introspect::revoke))
        .route("/oauth/jwks", get(discovery::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(discovery::configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::configuration),
        )
}
