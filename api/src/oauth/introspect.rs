//! `POST /oauth/introspect` (RFC 7662) and `POST /oauth/revoke` (RFC 7009),
//! both for authenticated clients.

use axum::Form as AxumForm;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;

use super::client_auth::{Form, authenticate};
use super::error::{OAuthError, no_store};
use crate::context::RequestContext;
use crate::server::AppState;
use crate::tokens::TokenService;

type FormResult = Result<AxumForm<Vec<(String, String)>>, axum::extract::rejection::FormRejection>;

fn parse(form: FormResult) -> Result<Form, OAuthError> {
    let AxumForm(pairs) = form.map_err(|e| {
        OAuthError::invalid_request(format!(
            "the body must be application/x-www-form-urlencoded: {}",
            e.body_text()
        ))
    })?;
    Form::parse(pairs)
}

pub async fn introspect(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    form: FormResult,
) -> Response {
    let result = async {
        let form = parse(form)?;
        authenticate(&state, &headers, &form, &ctx).await?;
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let body = match state
            .tokens
            .validate(token, OffsetDateTime::now_utc())
            .await
        {
            Ok(v) => json!({
                "active": true,
                "scope": v.scope,
                "client_id": v.claims.client_id,
                "token_type": "Bearer",
                "exp": v.claims.exp,
                "iat": v.claims.iat,
                "sub": v.claims.sub,
                "aud": v.claims.aud,
                "iss": v.claims.iss,
                "jti": v.claims.jti,
            }),
            Err(_) => json!({ "active": false }),
        };
        let mut resp = axum::Json(body).into_response();
        no_store(&mut resp);
        Ok::<_, OAuthError>(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn revoke(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    form: FormResult,
) -> Response {
    let result = async {
        let form = parse(form)?;
        let caller = authenticate(&state, &headers, &form, &ctx).await?;
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        // Tokens that are not (or no longer) valid need nothing: 200 as RFC 7009 §2.2 says.
        if let Ok(valid) = state
            .tokens
            .validate(token, OffsetDateTime::now_utc())
            .await
        {
            if valid.client_id != caller.client_id {
                return Err(OAuthError::unauthorized_client(
                    "a client may only revoke its own tokens",
                ));
            }
            let meta = ctx.metadata(
                TokenService::actor_for(caller.client_id),
                Some(caller.client.organization_id),
            );
            state
                .tokens
                .revoke(&valid, &meta)
                .await
                .map_err(|e| OAuthError::server_error(&e))?;
        }
        let mut resp = StatusCode::OK.into_response();
        no_store(&mut resp);
        Ok(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
