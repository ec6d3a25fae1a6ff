//! `/oauth/userinfo` (OpenID Connect Core §5.3), GET and POST: the person's
//! claims that the access token's scopes release. Errors are RFC 6750's,
//! in `WWW-Authenticate`.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::authorization::{BearerError, bearer_with_scope};
use crate::state::AppState;

pub async fn get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    userinfo(&state, &headers).await
}

/// POST: the token in the header, or as `access_token` in the form body
/// (RFC 6750 §2.2).
pub async fn post(
    State(state): State<AppState>,
    mut headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let in_body = form
        .ok()
        .and_then(|Form(f)| f.into_iter().find(|(k, _)| k == "access_token"))
        .map(|(_, v)| v);
    if let Some(token) = in_body {
        if headers.contains_key(header::AUTHORIZATION) {
            return challenge(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the token is in both the header and the body",
            );
        }
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(header::AUTHORIZATION, v);
        }
    }
    userinfo(&state, &headers).await
}

/// A refusal with its RFC 6750 §3 challenge.
fn challenge(status: StatusCode, error: &str, description: &str) -> Response {
    let mut value = format!("Bearer error=\"{error}\", error_description=\"{description}\"");
    if error == "insufficient_scope" {
        value.push_str(", scope=\"openid\"");
    }
    let mut resp = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn userinfo(state: &AppState, headers: &HeaderMap) -> Response {
    let token = match bearer_with_scope(headers, state, "openid").await {
        Ok(t) => t,
        Err(BearerError::Malformed(e)) => {
            return challenge(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string());
        }
        Err(BearerError::Missing(_)) => {
            // No credentials at all: a bare challenge (RFC 6750 §3.1).
            let mut resp = StatusCode::UNAUTHORIZED.into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
        Err(BearerError::Unauthenticated(d)) => {
            return challenge(StatusCode::UNAUTHORIZED, "invalid_token", &d);
        }
        Err(BearerError::MissingScope(_)) => {
            return challenge(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "the access token was not granted the openid scope",
            );
        }
    };
    let user_id = match token.claims.extra.get(domain::token::GRANT_CLAIM) {
        Some(_) => token.claims.sub.clone(),
        None => {
            return challenge(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token was not issued for a person",
            );
        }
    };
    let id = uuid::Uuid::parse_str(&user_id).unwrap_or_default();
    let user = match state.tokens.user(id).await {
        Ok(Some(u)) if u.is_active() => u,
        Ok(_) => {
            return challenge(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the person can no longer sign in",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot load a person for userinfo");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut claims = super::claims::for_scope(&user, &token.scope);
    claims.insert("sub".into(), Value::String(user_id));
    let mut resp = axum::Json(Value::Object(claims)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
