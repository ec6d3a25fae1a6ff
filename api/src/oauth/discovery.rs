//! Discovery documents (RFC 8414, OpenID Connect Discovery) and the JWKS:
//! they list exactly what this server implements.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::AppState;

pub fn document(issuer: &str) -> Value {
    let methods = json!([
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt"
    ]);
    // Public clients (installed applications) authenticate with `none` at
    // the token endpoint, and name themselves to revoke their own tokens
    // (RFC 7009 §2.1); introspection is for confidential clients only.
    let token_methods = json!([
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none"
    ]);
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
        "end_session_endpoint": format!("{issuer}/oauth/end_session"),
        "jwks_uri": format!("{issuer}/oauth/jwks"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "grant_types_supported": [
            "authorization_code",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "refresh_token",
        ],
        "token_exchange_subject_token_types_supported": [super::instance::AUTH_TOKEN_TYPE],
        "registration_token_consume_endpoint": format!("{issuer}/registration/consume"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": crate::oidc::claims::SCOPES.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "claims_supported": crate::oidc::claims::SUPPORTED,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "userinfo_signing_alg_values_supported": [],
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": [crate::oidc::authorize::ACR_SINGLE, crate::oidc::authorize::ACR_MFA],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "ui_locales_supported": ["en"],
        "token_endpoint_auth_methods_supported": token_methods.clone(),
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "PS256", "ES384"],
        "introspection_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "PS256", "ES384"],
        "revocation_endpoint_auth_methods_supported": token_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "PS256", "ES384"],
        "access_token_signing_alg_values_supported": ["ES256"],
        "service_documentation": format!("{issuer}/openapi.json"),
    })
}

pub async fn configuration(State(state): State<AppState>) -> Response {
    let mut resp = Json(document(&state.tokens.issuer)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// Retired keys stay published this long, so tokens signed before a
/// rotation verify until they expire (the longest access token lifetime).
pub const RETIRED_KEY_GRACE: time::Duration = time::Duration::days(1);

pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut resp = Json(state.tokens.jwks(state.clock.now(), RETIRED_KEY_GRACE)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    resp
}
