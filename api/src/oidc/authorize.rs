//! `/authorize` (GET and POST): a checked request, then the person's
//! session, their consent, and the code sent back to the client; or the
//! sign-in page, the consent page, or the error the request earns.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use domain::session::Session;
use domain::{Actor, Metadata};
use time::Duration;

use super::request::{self, AuthRequest, Refusal};
use super::{Params, message, see_other, theme, with_query};
use crate::authentication::cookie_name;
use crate::authentication::cookies::{self, SESSION_COOKIE};
use crate::context::RequestContext;
use crate::state::AppState;

type Pairs = Vec<(String, String)>;

/// `/authorize`, GET or POST.
pub async fn handle(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Params(pairs): Params,
) -> Response {
    authorize(&state, &ctx, &headers, pairs).await
}

/// Answers a refused request: a page, or the error sent back (recorded).
pub async fn refused(state: &AppState, ctx: &RequestContext, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page {
            title,
            message: text,
        } => {
            let t = theme(state, None, None).await;
            message(&t, StatusCode::BAD_REQUEST, &title, &text)
        }
        Refusal::Redirect {
            redirect_uri,
            error,
            description,
            state: client_state,
            client_id,
            organization_id,
        } => {
            metrics::counter!("idp_authorization_refusals_total", "error" => error).increment(1);
            let anonymous = Actor {
                kind: domain::ActorKind::Anonymous,
                id: None,
            };
            let meta = ctx.metadata(anonymous, Some(organization_id));
            if let Err(e) = commands::grant::record_refusal(
                &state.bus,
                client_id,
                organization_id,
                error,
                &description,
                &meta,
            )
            .await
            {
                tracing::error!(error = %e, "a refused authorization request could not be recorded");
            }
            let mut pairs = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &client_state {
                pairs.push(("state", s.as_str()));
            }
            let issuer = state.tokens.issuer.clone();
            pairs.push(("iss", issuer.as_str()));
            see_other(&with_query(&redirect_uri, &pairs))
        }
    }
}

/// The person's session, if the browser holds one that is live and of
/// the client's organization. Checked against the token views (kept
/// current by the log's subscription); once a minute the use is recorded
/// through the command side, which checks it against the log again.
pub async fn current_session(
    state: &AppState,
    headers: &HeaderMap,
    ctx: &RequestContext,
    organization_id: uuid::Uuid,
) -> Option<Session> {
    let cookie = cookies::read(headers, &cookie_name(state, SESSION_COOKIE))?;
    let (id, secret) = commands::session::parse_cookie(&cookie)?;
    let session = state.tokens.session(id).await.ok()??;
    if session.organization_id != organization_id
        || !commands::crypto::secret_matches(secret, &session.secret_hash)
    {
        return None;
    }
    let now = state.clock.now();
    session.check(now).ok()?;
    let user = state.tokens.user(session.user_id).await.ok()??;
    if !user.is_active() {
        return None;
    }
    if now - session.last_used_at < domain::session::USE_RECORDED_EVERY {
        return Some((*session).clone());
    }
    let meta = ctx.metadata(Actor::system(), Some(organization_id));
    commands::session::authenticate(&state.bus, &cookie, &meta)
        .await
        .ok()
}

/// The request's metadata, acting as the person.
pub fn as_person(ctx: &RequestContext, session: &Session) -> Metadata {
    ctx.metadata(
        Actor::user(session.user_id.to_string()),
        Some(session.organization_id),
    )
}

async fn authorize(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    pairs: Pairs,
) -> Response {
    let req = match request::parse(state, pairs).await {
        Ok(r) => r,
        Err(refusal) => return refused(state, ctx, refusal).await,
    };
    let organization = req.client.organization_id;
    let session = current_session(state, headers, ctx, organization).await;
    let now = state.clock.now();
    let fresh = |s: &Session| {
        req.max_age
            .is_none_or(|m| now - s.auth_time <= Duration::seconds(m))
    };
    let session = match session {
        Some(s) if fresh(&s) && !req.prompt.login && !req.prompt.select_account => s,
        _ if req.prompt.none => {
            return refused(
                state,
                ctx,
                req.refuse("login_required", "the person is not signed in"),
            )
            .await;
        }
        _ => return see_other(&login_path(&req)),
    };
    // An `id_token_hint` names who the client expects: anyone else signed
    // in is refused rather than answered for (OpenID Connect Core §3.1.2.1).
    if req
        .hinted_subject
        .as_deref()
        .is_some_and(|sub| sub != session.user_id.to_string())
    {
        return refused(
            state,
            ctx,
            req.refuse(
                "login_required",
                "the person signed in is not the one the id_token_hint names",
            ),
        )
        .await;
    }
    continue_with(state, ctx, req, session).await
}

/// Where the sign-in page starts for this request.
pub fn login_path(req: &AuthRequest) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("client_id", &req.client_id.to_string());
    q.append_pair("continue", &req.continue_path());
    if let Some(h) = &req.login_hint {
        q.append_pair("login_hint", h);
    }
    if let Some(l) = &req.ui_locales {
        q.append_pair("ui_locales", l);
    }
    format!("/login?{}", q.finish())
}

/// With a signed-in person: the consent screen when one is needed, else
/// the code.
async fn continue_with(
    state: &AppState,
    ctx: &RequestContext,
    req: AuthRequest,
    session: Session,
) -> Response {
    if req.client.settings.skip_consent && !req.prompt.consent {
        return issue(state, ctx, &req, &session, None).await;
    }
    let consents = match state.tokens.consents(session.user_id).await {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a person's consents");
            return refused(
                state,
                ctx,
                req.refuse("server_error", "the consent could not be read"),
            )
            .await;
        }
    };
    match consents.by_client.get(&req.client_id) {
        Some(c) if c.covers(&req.scope) && !req.prompt.consent => {
            let since = c.since;
            issue(state, ctx, &req, &session, Some(since)).await
        }
        _ if req.prompt.none => {
            refused(
                state,
                ctx,
                req.refuse(
                    "consent_required",
                    "the person has not consented to this client",
                ),
            )
            .await
        }
        _ => {
            let path = req.continue_path().replacen("/authorize?", "/consent?", 1);
            see_other(&path)
        }
    }
}

/// The `acr` of a session: one factor or more.
pub fn acr(session: &Session) -> &'static str {
    if session.multi_factor() {
        ACR_MFA
    } else {
        ACR_SINGLE
    }
}

/// A sign-in with one factor.
pub const ACR_SINGLE: &str = "urn:idp:acr:sfa";
/// A sign-in with two factors or more.
pub const ACR_MFA: &str = "urn:idp:acr:mfa";

/// Issues the code and sends it back (RFC 9207 `iss` beside it).
pub async fn issue(
    state: &AppState,
    ctx: &RequestContext,
    req: &AuthRequest,
    session: &Session,
    consent_since: Option<time::OffsetDateTime>,
) -> Response {
    let meta = as_person(ctx, session);
    let code = commands::grant::NewCode {
        organization_id: req.client.organization_id,
        client_id: req.client_id,
        user_id: session.user_id,
        session_id: session.id,
        redirect_uri: req.redirect_uri.clone(),
        scope: req.scope.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        auth_time: session.auth_time,
        amr: session.amr().into_iter().map(str::to_owned).collect(),
        acr: Some(acr(session).to_owned()),
        consent_since,
    };
    match commands::grant::issue_code(&state.bus, code, &meta).await {
        Ok((code, _, _)) => {
            metrics::counter!("idp_authorization_codes_issued_total").increment(1);
            let issuer = state.tokens.issuer.clone();
            let mut pairs = vec![("code", code.as_str())];
            if let Some(s) = &req.state {
                pairs.push(("state", s.as_str()));
            }
            pairs.push(("iss", issuer.as_str()));
            see_other(&with_query(&req.redirect_uri, &pairs))
        }
        Err(e) => {
            tracing::error!(error = %e, "an authorization code could not be issued");
            refused(
                state,
                ctx,
                req.refuse("server_error", "the code could not be issued"),
            )
            .await
        }
    }
}
