//! The token endpoint's grants of a person's grant: `authorization_code`
//! (PKCE verified) and `refresh_token` for refresh tokens of a grant
//! (`rg_…`), with rotation and reuse detection; the ID token.

use axum::response::{IntoResponse, Response};
use commands::grant::{Redeemed, RefreshPolicy};
use commands::tokens::{Grant as TokenGrant, Person};
use domain::client::{Client, GrantType, narrowed_scope};
use domain::grant::{GrantError, RevokeReason, Standing};
use domain::signing_key::KeyAlgorithm;
use domain::user::User;
use serde_json::{Value, json};
use time::Duration;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::oauth::client_auth::{AuthenticatedClient, Form};
use crate::oauth::error::{OAuthError, no_store};
use crate::state::AppState;
use commands::CommandError;

fn grant_error(e: CommandError<GrantError>) -> OAuthError {
    match e {
        CommandError::Domain(e) => OAuthError::invalid_grant(e.to_string()),
        CommandError::Contention { .. } | CommandError::Stale { .. } => {
            OAuthError::temporarily_unavailable("the grant is busy; retry")
        }
        CommandError::Log(e) => OAuthError::server_error(&e),
    }
}

fn refresh_policy(state: &AppState, client: &Client) -> RefreshPolicy {
    let secs = client
        .settings
        .refresh_token_lifetime_secs
        .unwrap_or(state.config.refresh_token_lifetime_seconds);
    RefreshPolicy {
        allowed: client.may_use(GrantType::RefreshToken).is_ok(),
        without_offline_access: client.settings.refresh_without_offline_access,
        lifetime: Duration::seconds(i64::from(secs.max(60))),
    }
}

/// `grant_type=authorization_code`.
pub async fn authorization_code(
    state: &AppState,
    ctx: &RequestContext,
    form: &Form,
    auth: AuthenticatedClient,
) -> Result<Response, OAuthError> {
    auth.client.may_use(GrantType::AuthorizationCode)?;
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = form
        .get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let verifier = form
        .get("code_verifier")
        .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
    if !commands::grant::is_pkce_value(verifier) {
        return Err(OAuthError::invalid_request(
            "code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]",
        ));
    }
    let meta = ctx.metadata(
        domain::Actor::client(auth.client_id.to_string()),
        Some(auth.client.organization_id),
    );
    let facts = commands::grant::code_facts(&state.bus, code)
        .await
        .map_err(grant_error)?;
    let issued = facts
        .issued
        .as_ref()
        .filter(|i| i.client_id == auth.client_id)
        .ok_or_else(|| OAuthError::invalid_grant(GrantError::InvalidCode.to_string()))?;
    let prepared = prepare(
        state,
        &auth,
        GrantType::AuthorizationCode,
        issued,
        &issued.scope,
        form,
    )
    .await?;
    let request = commands::grant::CodeRequest {
        code,
        client_id: auth.client_id,
        redirect_uri,
        code_verifier: verifier,
    };
    let redeemed = commands::grant::redeem(
        &state.bus,
        request,
        refresh_policy(state, &auth.client),
        prepared.access.clone(),
        &meta,
    )
    .await
    .map_err(grant_error)?;
    let (grant, refresh) = match redeemed {
        Redeemed::Granted {
            grant,
            refresh_token,
        } => (grant, refresh_token),
        Redeemed::Replayed { grant_id } | Redeemed::Ended { grant_id, .. } => {
            state.tokens.grants.invalidate(grant_id);
            metrics::counter!("idp_authorization_code_replays_total").increment(1);
            tracing::warn!(%grant_id, "an authorization code was used twice: its grant is revoked");
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used: every token issued with it is revoked",
            ));
        }
    };
    let issued = grant
        .issued
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_grant("unknown grant"))?;
    respond(
        state,
        &auth,
        GrantType::AuthorizationCode,
        issued,
        &issued.scope,
        prepared,
        refresh,
    )
}

/// `grant_type=refresh_token` with a refresh token of a person's grant
/// (`presented`; the caller checked the client may use the grant).
pub async fn refresh(
    state: &AppState,
    ctx: &RequestContext,
    form: &Form,
    auth: AuthenticatedClient,
    presented: &str,
) -> Result<Response, OAuthError> {
    let (grant_id, _, _) = commands::grant::parse_refresh(presented)
        .ok_or_else(|| OAuthError::invalid_grant("the refresh token is malformed"))?;
    let grant = commands::grant::facts(&state.bus, grant_id)
        .await
        .map_err(grant_error)?;
    let Some(issued) = grant.issued.clone() else {
        return Err(OAuthError::invalid_grant("unknown refresh token"));
    };
    if issued.client_id != auth.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let meta = ctx.metadata(
        domain::Actor::client(auth.client_id.to_string()),
        Some(auth.client.organization_id),
    );
    let standing = standing(state, &issued).await?;
    let scope = narrowed_scope(
        form.get("scope"),
        &issued.scope,
        &auth.client.settings.scopes,
    )?;
    // No token is signed for a grant whose session, consent or person is
    // gone: the command records its end instead.
    let prepared = match grant.ended_by(&standing) {
        None => Some(prepare(state, &auth, GrantType::RefreshToken, &issued, &scope, form).await?),
        Some(_) => None,
    };
    let request = commands::grant::RefreshRequest {
        value: presented,
        client_id: auth.client_id,
        scope: scope.clone(),
        lifetime: refresh_policy(state, &auth.client).lifetime,
    };
    let access = prepared
        .as_ref()
        .map(|p| p.access.clone())
        .unwrap_or_default();
    match commands::grant::refresh(&state.bus, request, access, standing, &meta)
        .await
        .map_err(grant_error)?
    {
        Redeemed::Granted { refresh_token, .. } => {
            let prepared = prepared.ok_or_else(|| {
                OAuthError::server_error(&"a refresh was granted without its access token")
            })?;
            respond(
                state,
                &auth,
                GrantType::RefreshToken,
                &issued,
                &scope,
                prepared,
                refresh_token,
            )
        }
        Redeemed::Replayed { grant_id } => {
            state.tokens.grants.invalidate(grant_id);
            metrics::counter!("idp_refresh_reuse_detected_total").increment(1);
            tracing::warn!(%grant_id, "a used refresh token was presented again: its grant is revoked");
            Err(OAuthError::invalid_grant(
                "the refresh token was already used: the grant is revoked, sign in again",
            ))
        }
        Redeemed::Ended { grant_id, reason } => {
            state.tokens.grants.invalidate(grant_id);
            Err(OAuthError::invalid_grant(format!(
                "the grant was revoked ({}): sign in again",
                reason.as_str()
            )))
        }
    }
}

/// What a grant stands on — its session, the person's consent to its
/// client, the person — as the token views have them (kept current by the
/// log's subscription).
async fn standing(
    state: &AppState,
    issued: &domain::grant::CodeIssued,
) -> Result<Standing, OAuthError> {
    let views = &state.tokens;
    let failed = |e: eventlog::Error| OAuthError::server_error(&e);
    let session = views.session(issued.session_id).await.map_err(failed)?;
    let consents = views.consents(issued.user_id).await.map_err(failed)?;
    let person = views.user(issued.user_id).await.map_err(failed)?;
    Ok(Standing {
        session_ended: session.is_none_or(|s| s.revoked.is_some()),
        consent_since: consents.and_then(|c| c.by_client.get(&issued.client_id).map(|c| c.since)),
        person_active: person.is_some_and(|p| p.is_active()),
    })
}

/// An access token signed for a person's grant and not yet handed out:
/// the grant's command records it, and only then is it answered.
struct Prepared {
    token: String,
    claims: jose::AccessTokenClaims,
    user: std::sync::Arc<User>,
    access: commands::grant::Access,
}

/// Signs the access token a request of `auth` earns under the grant
/// `issued` with `scope` (nothing recorded yet).
async fn prepare(
    state: &AppState,
    auth: &AuthenticatedClient,
    grant_type: GrantType,
    issued: &domain::grant::CodeIssued,
    scope: &str,
    form: &Form,
) -> Result<Prepared, OAuthError> {
    let audience = auth
        .client
        .settings
        .audience_for(form.get("resource"), &state.tokens.issuer)?;
    let user = state
        .tokens
        .user(issued.user_id)
        .await
        .map_err(|e| OAuthError::server_error(&e))?
        .filter(|u| u.is_active())
        .ok_or_else(|| OAuthError::invalid_grant("the person can no longer sign in"))?;
    let roles = crate::access::token_claims(
        state,
        crate::access::Subject::User {
            id: issued.user_id,
            organization_id: issued.organization_id,
        },
    )
    .await;
    let grant = TokenGrant {
        client_id: auth.client_id,
        client: &auth.client,
        grant_type: grant_type.as_str(),
        scope,
        audience: &audience,
        auth_method: auth.method.as_str(),
        secret_id: auth.secret_id,
        auth_token_id: None,
        person: Some(Person {
            user_id: issued.user_id,
            grant_id: issued.grant_id,
        }),
        claims: roles,
    };
    let (token, claims, record) = commands::tokens::sign_unrecorded(
        &state.tokens.issuer,
        &grant,
        |c| state.tokens.sign(c),
        state.clock.now(),
    )
    .map_err(|e| OAuthError::server_error(&e))?;
    Ok(Prepared {
        token,
        claims,
        user,
        access: commands::grant::Access {
            issued: Some(domain::grant::IssuedAccess {
                jti: record.jti,
                expires_at: record.expires_at,
            }),
            secret_id: auth.secret_id,
        },
    })
}

/// The token response: the access token, the ID token when `openid` was
/// granted, the refresh token when one was earned.
fn respond(
    state: &AppState,
    auth: &AuthenticatedClient,
    grant_type: GrantType,
    issued: &domain::grant::CodeIssued,
    scope: &str,
    prepared: Prepared,
    refresh: Option<String>,
) -> Result<Response, OAuthError> {
    let mut body = json!({
        "access_token": prepared.token,
        "token_type": "Bearer",
        "expires_in": prepared.claims.exp - prepared.claims.iat,
        "scope": scope,
    });
    if let Some(o) = body.as_object_mut() {
        if scope.split(' ').any(|s| s == "openid") {
            let nonce = (grant_type == GrantType::AuthorizationCode)
                .then(|| issued.nonce.clone())
                .flatten();
            let id_token = id_token(
                state,
                &auth.client,
                auth.client_id,
                issued,
                &prepared.user,
                scope,
                &prepared.token,
                nonce,
            )?;
            o.insert("id_token".into(), json!(id_token));
        }
        if let Some(r) = refresh {
            o.insert("refresh_token".into(), json!(r));
        }
    }
    let mut resp = axum::Json(body).into_response();
    no_store(&mut resp);
    Ok(resp)
}

/// An ID token (OpenID Connect Core §2, §3.1.3.6), signed with the
/// client's algorithm.
#[allow(clippy::too_many_arguments)]
fn id_token(
    state: &AppState,
    client: &Client,
    client_id: Uuid,
    issued: &domain::grant::CodeIssued,
    user: &User,
    scope: &str,
    access_token: &str,
    nonce: Option<String>,
) -> Result<String, OAuthError> {
    let now = state.clock.now().unix_timestamp();
    let mut claims = super::claims::for_scope(user, scope);
    let lifetime = i64::from(state.config.id_token_lifetime_seconds.max(60));
    let mut put = |k: &str, v: Value| {
        claims.insert(k.to_owned(), v);
    };
    put("iss", json!(state.tokens.issuer));
    put("sub", json!(issued.user_id.to_string()));
    put("aud", json!(client_id.to_string()));
    put("azp", json!(client_id.to_string()));
    put("iat", json!(now));
    put("exp", json!(now + lifetime));
    put("auth_time", json!(issued.auth_time.unix_timestamp()));
    put("amr", json!(issued.amr));
    if let Some(acr) = &issued.acr {
        put("acr", json!(acr));
    }
    put("sid", json!(issued.session_id.to_string()));
    put("at_hash", json!(jose::left_half_hash(access_token)));
    if let Some(n) = nonce {
        put("nonce", json!(n));
    }
    let alg = match client.settings.id_token_signed_response_alg {
        domain::client::IdTokenAlg::ES256 => KeyAlgorithm::ES256,
        domain::client::IdTokenAlg::RS256 => KeyAlgorithm::RS256,
    };
    state
        .tokens
        .sign_id_token(alg, &Value::Object(claims))
        .map_err(|e| OAuthError::server_error(&e))
}

/// Introspection of a person's refresh token (RFC 7662): active while it
/// is its grant's live one, for the client it was issued to.
pub async fn introspect_refresh(
    state: &AppState,
    caller: &AuthenticatedClient,
    token: &str,
) -> Result<Value, OAuthError> {
    let inactive = json!({"active": false});
    let Some((grant_id, token_id, secret)) = commands::grant::parse_refresh(token) else {
        return Ok(inactive);
    };
    let grant = commands::grant::load(&state.bus, grant_id)
        .await
        .map_err(grant_error)?;
    let Some(issued) = grant
        .issued
        .as_ref()
        .filter(|i| i.client_id == caller.client_id)
    else {
        return Ok(inactive);
    };
    let live = grant.is_usable()
        && grant
            .chain
            .is_current(token_id, &commands::crypto::hash_secret(&secret))
        && grant
            .refresh_expires_at
            .is_none_or(|t| t > state.clock.now());
    if !live {
        return Ok(inactive);
    }
    let mut body = json!({
        "active": true,
        "client_id": issued.client_id.to_string(),
        "token_type": "refresh_token",
        "sub": issued.user_id.to_string(),
        "scope": issued.scope,
        "iss": state.tokens.issuer,
        "iat": issued.issued_at.unix_timestamp(),
    });
    if let (Some(o), Some(exp)) = (body.as_object_mut(), grant.refresh_expires_at) {
        o.insert("exp".into(), json!(exp.unix_timestamp()));
    }
    Ok(body)
}

/// Revocation of a person's refresh token (RFC 7009 §2.1): the grant ends,
/// with its refresh and access tokens. Someone else's or an unknown token
/// changes nothing.
pub async fn revoke_refresh(
    state: &AppState,
    caller: &AuthenticatedClient,
    token: &str,
    meta: &domain::Metadata,
) -> Result<(), OAuthError> {
    let Some((grant_id, token_id, secret)) = commands::grant::parse_refresh(token) else {
        return Ok(());
    };
    let grant = commands::grant::load(&state.bus, grant_id)
        .await
        .map_err(grant_error)?;
    let ours = grant
        .issued
        .as_ref()
        .is_some_and(|i| i.client_id == caller.client_id);
    let hash = commands::crypto::hash_secret(&secret);
    let known = grant.chain.presented(token_id, &hash) != domain::refresh_chain::Presented::Invalid;
    if ours && known && grant.is_usable() {
        commands::grant::revoke(&state.bus, grant_id, RevokeReason::Client, meta)
            .await
            .map_err(grant_error)?;
        state.tokens.grants.invalidate(grant_id);
    }
    Ok(())
}
