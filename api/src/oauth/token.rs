//! `POST /oauth/token`: the client credentials grant, and the dispatch to
//! the other grants (a person's in `crate::oidc::token`, an instance's in
//! `instance.rs`).

use axum::Form as AxumForm;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use domain::client::{GrantType, granted_scope};
use serde_json::json;

use super::client_auth::{AuthenticatedClient, Form, authenticate};
use super::error::{OAuthError, no_store};
use crate::context::RequestContext;
use crate::state::AppState;
use commands::tokens::Grant;

pub async fn token(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    form: Result<AxumForm<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    match handle(&state, &ctx, &headers, form).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    form: Result<AxumForm<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Result<Response, OAuthError> {
    let AxumForm(pairs) = form.map_err(|e| OAuthError::unreadable_form(&e))?;
    let form = Form::parse(pairs)?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let grant: GrantType = grant_type.parse().map_err(|_| {
        OAuthError::unsupported_grant_type(format!("grant type `{grant_type}` is not supported"))
    })?;
    let client = authenticate(state, headers, &form, ctx).await?;
    match grant {
        GrantType::ClientCredentials => client_credentials(state, ctx, &form, client).await,
        GrantType::TokenExchange => {
            super::instance::token_exchange(state, ctx, &form, client).await
        }
        GrantType::AuthorizationCode => {
            crate::oidc::token::authorization_code(state, ctx, &form, client).await
        }
        GrantType::RefreshToken => {
            client.client.may_use(GrantType::RefreshToken)?;
            let presented = form
                .get("refresh_token")
                .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
            // A person's grant (`rg_…`) or an instance's chain (`rf_…`).
            if commands::grant::is_grant_refresh(presented) {
                crate::oidc::token::refresh(state, ctx, &form, client, presented).await
            } else {
                super::instance::refresh(state, ctx, &form, client, presented).await
            }
        }
    }
}

async fn client_credentials(
    state: &AppState,
    ctx: &RequestContext,
    form: &Form,
    auth: AuthenticatedClient,
) -> Result<Response, OAuthError> {
    let client = &auth.client;
    client.may_use(GrantType::ClientCredentials)?;
    let scope = granted_scope(form.get("scope"), &client.settings.scopes)?;
    let audience = client
        .settings
        .audience_for(form.get("resource"), &state.tokens.issuer)?;
    let meta = ctx.metadata(
        domain::Actor::client(auth.client_id.to_string()),
        Some(client.organization_id),
    );
    let access =
        crate::access::token_claims(state, crate::access::Subject::Client(auth.client_id)).await;
    let (token, claims) = state
        .issue_token(
            Grant {
                client_id: auth.client_id,
                client,
                grant_type: GrantType::ClientCredentials.as_str(),
                scope: &scope,
                audience: &audience,
                auth_method: auth.method.as_str(),
                secret_id: auth.secret_id,
                auth_token_id: None,
                person: None,
                claims: access,
            },
            &meta,
        )
        .await
        .map_err(|e| OAuthError::server_error(&e))?;
    let mut body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims.exp - claims.iat,
    });
    if !scope.is_empty()
        && let Some(o) = body.as_object_mut()
    {
        o.insert("scope".into(), json!(scope));
    }
    let mut resp = axum::Json(body).into_response();
    no_store(&mut resp);
    Ok(resp)
}
