//! `POST /oauth/introspect` (RFC 7662), for authenticated confidential
//! clients about their own tokens: access tokens issued to them, and the
//! refresh tokens of their instances and grants. A resource server's client
//! whose roles grant `tokens:introspect` also learns about every access
//! token issued to a client of its organization; the platform admin about
//! every one. An active access token's answer carries its subject's roles
//! and permissions as they are now, a person's or a client's.
//!
//! `POST /oauth/revoke` (RFC 7009), for any authenticated client (a public one by its id, as RFC 7009 §2.1 allows:
//! an installed application ends its own grant at sign-out) about its own
//! tokens only; any other token is answered 200 and left alone, so the
//! endpoint tells nobody whether a token is good.

use axum::Form as AxumForm;
use axum::extract::State;

use crate::access;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::registration;
use domain::client::ClientType;
use domain::role::INTROSPECT_PERMISSION;
use serde_json::{Value, json};

use super::client_auth::{AuthenticatedClient, Form, authenticate};
use super::error::{OAuthError, no_store};
use crate::context::RequestContext;
use crate::state::AppState;

type FormResult = Result<AxumForm<Vec<(String, String)>>, axum::extract::rejection::FormRejection>;

fn parse(form: FormResult) -> Result<Form, OAuthError> {
    let AxumForm(pairs) = form.map_err(|e| OAuthError::unreadable_form(&e))?;
    Form::parse(pairs)
}

/// Authenticates the caller, who must be a confidential client: a public
/// client's id is no secret, and would make these endpoints an oracle.
async fn confidential_caller(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    form: &Form,
) -> Result<AuthenticatedClient, OAuthError> {
    let caller = authenticate(state, headers, form, ctx).await?;
    if caller.client.client_type != ClientType::Confidential {
        return Err(OAuthError::invalid_client(
            "introspection and revocation are for authenticated confidential clients",
        ));
    }
    Ok(caller)
}

/// Whether a refresh token value has our shape (so that introspection and
/// revocation look it up as one rather than as an access token).
fn looks_like_refresh_token(token: &str) -> bool {
    registration::parse_refresh_token(token).is_some()
}

pub async fn introspect(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    form: FormResult,
) -> Response {
    let result = async {
        let form = parse(form)?;
        let caller = confidential_caller(&state, &ctx, &headers, &form).await?;
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let body = if commands::grant::is_grant_refresh(token) {
            crate::oidc::token::introspect_refresh(&state, &caller, token).await?
        } else if looks_like_refresh_token(token) {
            introspect_refresh(&state, &caller, token).await?
        } else {
            introspect_access(&state, &caller, token).await
        };
        let mut resp = axum::Json(body).into_response();
        no_store(&mut resp);
        Ok::<_, OAuthError>(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn inactive() -> Value {
    json!({ "active": false })
}

/// Whether `caller` may learn about the access token `v`: its own; one of
/// a client of its organization when its roles grant
/// [`INTROSPECT_PERMISSION`] (a resource server); any for the platform
/// admin. Anyone else is answered `active: false`, which says no more
/// than "not for you" (RFC 7662 §4).
async fn may_introspect(
    state: &AppState,
    caller: &AuthenticatedClient,
    v: &projections::tokens::ValidToken,
) -> bool {
    if v.client_id == caller.client_id || caller.client.platform_admin {
        return true;
    }
    if v.client.organization_id != caller.client.organization_id {
        return false;
    }
    match access::effective_roles(state, access::Subject::Client(caller.client_id)).await {
        Ok(roles) => access::grants(&roles, INTROSPECT_PERMISSION),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the roles of an introspecting client");
            false
        }
    }
}

/// Whose roles an access token speaks for: the person of a grant's token,
/// the client of a client's own token; nobody for an instance's.
async fn subject_of(
    state: &AppState,
    v: &projections::tokens::ValidToken,
) -> Option<access::Subject> {
    if v.claims.extra.contains_key(domain::token::GRANT_CLAIM) {
        let id = uuid::Uuid::parse_str(&v.claims.sub).ok()?;
        let user = state.tokens.user(id).await.ok().flatten()?;
        return Some(access::Subject::User {
            id,
            organization_id: user.organization_id,
        });
    }
    (v.claims.sub == v.claims.client_id).then_some(access::Subject::Client(v.client_id))
}

async fn introspect_access(state: &AppState, caller: &AuthenticatedClient, token: &str) -> Value {
    let Ok(v) = state.tokens.validate(token, state.clock.now()).await else {
        return inactive();
    };
    if !may_introspect(state, caller, &v).await {
        return inactive();
    }
    let mut body = json!({
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
    });
    // The subject's roles as they are now (not as when the token was
    // issued), every one of them: a resource server reads them here.
    if let Some(subject) = subject_of(state, &v).await
        && let Some(o) = body.as_object_mut()
    {
        match access::effective_roles(state, subject).await {
            Ok(roles) => {
                let (names, permissions) = access::names_and_permissions(&roles);
                // A configured name never hides a registered member.
                o.entry(state.config.roles_claim.clone())
                    .or_insert(json!(names));
                o.entry(state.config.permissions_claim.clone())
                    .or_insert(json!(permissions));
            }
            Err(e) => tracing::error!(error = %e, "cannot read the roles of a token's subject"),
        }
    }
    body
}

async fn introspect_refresh(
    state: &AppState,
    caller: &AuthenticatedClient,
    token: &str,
) -> Result<Value, OAuthError> {
    let chain = registration::live_refresh(&state.bus, token)
        .await
        .map_err(|e| OAuthError::server_error(&e))?;
    let Some(chain) = chain.filter(|c| c.client_id == caller.client_id) else {
        return Ok(inactive());
    };
    let mut body = json!({
        "active": true,
        "client_id": chain.client_id.to_string(),
        "token_type": "refresh_token",
        "sub": chain.id.to_string(),
        "iss": state.tokens.issuer,
    });
    if let Some(o) = body.as_object_mut() {
        if let Some(scope) = chain.granted_scope.as_deref().filter(|s| !s.is_empty()) {
            o.insert("scope".into(), json!(scope));
        }
        if let Some(at) = chain.last_used_at {
            o.insert("iat".into(), json!(at.unix_timestamp()));
        }
    }
    Ok(body)
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
        let meta = ctx.metadata(
            domain::Actor::client(caller.client_id.to_string()),
            Some(caller.client.organization_id),
        );
        if commands::grant::is_grant_refresh(token) {
            crate::oidc::token::revoke_refresh(&state, &caller, token, &meta).await?;
        } else if looks_like_refresh_token(token) {
            revoke_refresh(&state, &caller, token, &meta).await?;
        } else if let Ok(valid) = state.tokens.validate(token, state.clock.now()).await
            && valid.client_id == caller.client_id
        {
            // Tokens that are not (or no longer) valid, or not the caller's,
            // need nothing: 200, as RFC 7009 §2.2 says of invalid tokens.
            state
                .revoke_token(&valid, &meta)
                .await
                .map_err(|e| OAuthError::server_error(&e))?;
        }
        let mut resp = StatusCode::OK.into_response();
        no_store(&mut resp);
        Ok::<_, OAuthError>(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Ends the chain of a refresh token of the caller's: its refresh tokens
/// and the access tokens issued from it.
async fn revoke_refresh(
    state: &AppState,
    caller: &AuthenticatedClient,
    token: &str,
    meta: &domain::Metadata,
) -> Result<(), OAuthError> {
    let Some((chain_id, _, _)) = registration::parse_refresh_token(token) else {
        return Ok(());
    };
    match state.tokens.auth_token(chain_id).await {
        Ok(Some(chain)) if chain.client_id == caller.client_id => {}
        Ok(_) => return Ok(()),
        Err(e) => return Err(OAuthError::server_error(&e)),
    }
    if registration::revoke_refresh(&state.bus, token, meta)
        .await
        .map_err(|e| OAuthError::server_error(&e))?
        .is_some()
    {
        // This node stops honouring the chain's access tokens at once;
        // other nodes when the event reaches them.
        state.tokens.auth_tokens.invalidate(chain_id);
    }
    Ok(())
}
