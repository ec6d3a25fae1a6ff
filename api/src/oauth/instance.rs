//! The grants of installed instances: an auth token traded once for an
//! access token and a refresh token (RFC 8693 token exchange with a token
//! type of our own), then `refresh_token` with rotation and reuse detection.

use axum::response::{IntoResponse, Response};
use commands::registration::{self, RefreshOutcome, RegistrationFailure};
use std::sync::Arc;

use domain::auth_token::AuthTokenError;
use domain::client::{GrantType, granted_scope, narrowed_scope};
use domain::registration::AuthToken;
use serde_json::json;
use uuid::Uuid;

use super::client_auth::{AuthenticatedClient, Form};
use super::error::{OAuthError, no_store};
use crate::context::RequestContext;
use crate::state::AppState;
use commands::tokens::Grant;

/// The token type of auth tokens, for `subject_token_type`.
pub const AUTH_TOKEN_TYPE: &str = "urn:idp:params:oauth:token-type:auth_token";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Issues the access token of an instance and answers with it.
async fn answer(
    state: &AppState,
    ctx: &RequestContext,
    auth: &AuthenticatedClient,
    grant: GrantType,
    scope: &str,
    auth_token_id: Uuid,
    refresh_token: &str,
) -> Result<Response, OAuthError> {
    let exchange = grant == GrantType::TokenExchange;
    let meta = ctx.metadata(
        domain::Actor::client(auth.client_id.to_string()),
        Some(auth.client.organization_id),
    );
    let (token, claims) = state
        .issue_token(
            Grant {
                client_id: auth.client_id,
                client: &auth.client,
                grant_type: grant.as_str(),
                scope,
                audience: &state.tokens.issuer,
                auth_method: auth.method.as_str(),
                secret_id: auth.secret_id,
                auth_token_id: Some(auth_token_id),
                person: None,
                claims: serde_json::Map::new(),
            },
            &meta,
        )
        .await
        .map_err(|e| OAuthError::server_error(&e))?;
    let mut body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims.exp - claims.iat,
        "refresh_token": refresh_token,
    });
    if let Some(o) = body.as_object_mut() {
        if exchange {
            o.insert("issued_token_type".into(), json!(ACCESS_TOKEN_TYPE));
        }
        if !scope.is_empty() {
            o.insert("scope".into(), json!(scope));
        }
    }
    let mut resp = axum::Json(body).into_response();
    no_store(&mut resp);
    Ok(resp)
}

/// The instance's credential must belong to the calling application: checked
/// before an exchange or refresh spends it.
async fn owned_by(
    state: &AppState,
    auth_token_id: Uuid,
    auth: &AuthenticatedClient,
    what: &str,
) -> Result<Arc<AuthToken>, OAuthError> {
    let owner = state
        .tokens
        .auth_token(auth_token_id)
        .await
        .map_err(|e| OAuthError::server_error(&e))?
        .ok_or_else(|| OAuthError::invalid_grant(format!("unknown {what}")))?;
    if owner.client_id != auth.client_id {
        return Err(OAuthError::invalid_grant(format!(
            "the {what} was issued to another application"
        )));
    }
    Ok(owner)
}

/// A subject token refused for any reason is `invalid_request` in a token
/// exchange (RFC 8693 §2.2.2), where a grant would be `invalid_grant`.
fn subject_refused(e: OAuthError) -> OAuthError {
    if e.code == "invalid_grant" {
        OAuthError::invalid_request(e.description)
    } else {
        e
    }
}

pub async fn token_exchange(
    state: &AppState,
    ctx: &RequestContext,
    form: &Form,
    auth: AuthenticatedClient,
) -> Result<Response, OAuthError> {
    auth.client.may_use(GrantType::TokenExchange)?;
    let subject = form
        .get("subject_token")
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    match form.get("subject_token_type") {
        Some(AUTH_TOKEN_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "subject_token_type `{other}` is not supported; use {AUTH_TOKEN_TYPE}"
            )));
        }
        None => {
            return Err(OAuthError::invalid_request(
                "subject_token_type is required",
            ));
        }
    }
    if let Some(t) = form.get("requested_token_type")
        && t != ACCESS_TOKEN_TYPE
    {
        return Err(OAuthError::invalid_request(format!(
            "only {ACCESS_TOKEN_TYPE} can be requested"
        )));
    }
    let scope = granted_scope(form.get("scope"), &auth.client.settings.scopes)?;
    // The auth token must belong to the calling application; check before
    // the exchange spends it.
    let (auth_token_id, _) = registration::parse_auth_token(subject)
        .ok_or_else(|| OAuthError::invalid_request("the auth token is malformed"))?;
    owned_by(state, auth_token_id, &auth, "auth token")
        .await
        .map_err(subject_refused)?;
    let meta = ctx.metadata(
        domain::Actor::client(auth.client_id.to_string()),
        Some(auth.client.organization_id),
    );
    let (_, grant) = registration::exchange(&state.bus, subject, &scope, &meta)
        .await
        .map_err(|e| {
            if matches!(
                e,
                RegistrationFailure::AuthToken(AuthTokenError::AlreadyExchanged)
            ) {
                // The replay revoked the chain: its access tokens die now.
                state.tokens.auth_tokens.invalidate(auth_token_id);
            }
            subject_refused(OAuthError::from(e))
        })?;
    answer(
        state,
        ctx,
        &auth,
        GrantType::TokenExchange,
        &scope,
        grant.auth_token_id,
        &grant.refresh_token_value,
    )
    .await
}

/// `grant_type=refresh_token` with an instance's refresh token
/// (`presented`; the caller checked the client may use the grant).
pub async fn refresh(
    state: &AppState,
    ctx: &RequestContext,
    form: &Form,
    auth: AuthenticatedClient,
    presented: &str,
) -> Result<Response, OAuthError> {
    let (auth_token_id, _, _) = registration::parse_refresh_token(presented)
        .ok_or_else(|| OAuthError::invalid_grant("the refresh token is malformed"))?;
    let chain = owned_by(state, auth_token_id, &auth, "refresh token").await?;
    // A refresh never widens the grant (RFC 6749 §6). A chain exchanged
    // before grants were recorded had the client's default scope.
    let original = match &chain.granted_scope {
        Some(s) => s.clone(),
        None => granted_scope(None, &auth.client.settings.scopes)?,
    };
    let scope = narrowed_scope(form.get("scope"), &original, &auth.client.settings.scopes)?;
    let meta = ctx.metadata(
        domain::Actor::client(auth.client_id.to_string()),
        Some(auth.client.organization_id),
    );
    match registration::refresh(&state.bus, presented, form.get("scope"), &meta)
        .await
        .map_err(OAuthError::from)?
    {
        RefreshOutcome::Refreshed { grant, .. } => {
            answer(
                state,
                ctx,
                &auth,
                GrantType::RefreshToken,
                &scope,
                grant.auth_token_id,
                &grant.refresh_token_value,
            )
            .await
        }
        RefreshOutcome::ReuseDetected { auth_token_id, .. } => {
            state.tokens.auth_tokens.invalidate(auth_token_id);
            metrics::counter!("idp_refresh_reuse_detected_total").increment(1);
            tracing::warn!(%auth_token_id, "refresh token reused: the chain is revoked");
            Err(OAuthError::invalid_grant(
                "the refresh token was already used; every token of this instance is revoked",
            ))
        }
    }
}
