//! `/self/…`: what a signed-in person does for themselves, authenticated
//! by their session cookie: who they are, their sessions (list, revoke one,
//! revoke all others), signing out.
//!
//! A change needs a request from this server's own pages: a cross-site
//! `Origin` or `Sec-Fetch-Site` is refused (the cookie's `SameSite=Lax`
//! already keeps it off cross-site posts).

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use domain::session::{RevokeReason, Session};
use domain::user::User;
use domain::{Actor, Metadata};
use projections::sessions::{self, SessionRow};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::authentication::cookie_name;
use crate::authentication::cookies::{self, SESSION_COOKIE};
use crate::context::RequestContext;
use crate::problem::Problem;
use crate::state::AppState;

pub mod addresses;
pub mod consents;
pub mod methods;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(methods::router())
        .merge(addresses::router())
        .merge(consents::router())
        .route("/self", get(me))
        .route("/self/sessions", get(list_sessions))
        .route("/self/sessions/{id}", delete(revoke_session))
        .route("/self/sessions/revoke-others", post(revoke_others))
        .route("/self/sign-out", post(sign_out))
}

/// The person a request's session cookie signs in, with that session.
pub struct SessionCaller {
    pub session: Session,
    pub ctx: RequestContext,
}

impl SessionCaller {
    pub fn metadata(&self) -> Metadata {
        self.ctx.metadata(
            Actor::user(self.session.user_id.to_string()),
            Some(self.session.organization_id),
        )
    }
}

/// Whether a state-changing request comes from another site.
fn cross_site(parts: &Parts, issuer: &str) -> bool {
    cross_site_headers(&parts.headers, issuer)
}

/// Whether a request with these headers comes from another site (its
/// `Sec-Fetch-Site`, or an `Origin` that is not the issuer's).
pub fn cross_site_headers(headers: &axum::http::HeaderMap, issuer: &str) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return true;
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    origin.is_some_and(|o| o.trim_end_matches('/') != issuer.trim_end_matches('/'))
}

impl FromRequestParts<AppState> for SessionCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Ok(ctx) = RequestContext::from_request_parts(parts, state).await;
        if parts.method != Method::GET && cross_site(parts, &state.config.issuer()) {
            return Err(Problem::refused(
                StatusCode::FORBIDDEN,
                "cross-site-request",
                "a change to one's own account must come from this server's pages",
            ));
        }
        let cookie = cookies::read(&parts.headers, &cookie_name(state, SESSION_COOKIE))
            .ok_or_else(|| {
                Problem::refused(
                    StatusCode::UNAUTHORIZED,
                    "no-session",
                    "sign in first: there is no session cookie",
                )
            })?;
        let meta = ctx.metadata(Actor::system(), None);
        let session = commands::session::authenticate(&state.bus, &cookie, &meta).await?;
        Ok(Self { session, ctx })
    }
}

/// Who is signed in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeView {
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub username: Option<String>,
    pub email: Option<String>,
    /// The current session.
    pub session_id: Uuid,
    pub amr: Vec<&'static str>,
    /// RFC 3339.
    pub auth_time: String,
}

/// A session of the person's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub methods: Vec<String>,
    pub auth_time: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// Whether the session is live (not revoked, not expired).
    pub active: bool,
    /// Why it ended: `signed_out`, `by_user`, `by_admin`,
    /// `user_deactivated`, `user_deleted` or `expired`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Whether it is the session of this request.
    pub current: bool,
}

impl SessionView {
    pub fn of(row: SessionRow, now: time::OffsetDateTime, current: Option<Uuid>) -> Self {
        Self {
            active: row.live_at(now),
            current: current.is_some_and(|c| c.to_string() == row.id),
            id: row.id,
            methods: row.methods,
            auth_time: row.auth_time,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            source_ip: row.source_ip,
            user_agent: row.user_agent,
            end_reason: row.end_reason,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionView>,
}

/// Who the session cookie signs in. Needs a session.
#[utoipa::path(get, path = "/self", responses((status = 200, body = MeView, description = "done"),
    (status = 401, description = "no valid session cookie")), tag = "self")]
pub async fn me(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Json<MeView>, Problem> {
    let s = &caller.session;
    let (user, _) = state
        .bus
        .load::<User>(&s.user_id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(MeView {
        user_id: s.user_id,
        organization_id: s.organization_id,
        username: user.username.value().cloned(),
        email: user.email.as_ref().and_then(|e| e.value().cloned()),
        session_id: s.id,
        amr: s.amr(),
        auth_time: s.auth_time.format(&Rfc3339).unwrap_or_default(),
    }))
}

/// The person's live sessions, newest first, the current one marked.
/// Needs a session.
#[utoipa::path(get, path = "/self/sessions", responses((status = 200, body = SessionList, description = "done"),
    (status = 401, description = "no valid session cookie")), tag = "self")]
pub async fn list_sessions(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Json<SessionList>, Problem> {
    let now = state.clock.now();
    let rows = sessions::sessions_of(&state.read_db, &caller.session.user_id.to_string(), false)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(SessionList {
        items: rows
            .into_iter()
            .map(|r| SessionView::of(r, now, Some(caller.session.id)))
            .filter(|v| v.active)
            .collect(),
    }))
}

/// Revokes sessions and waits until the read models show it.
pub async fn revoke_all(
    state: &AppState,
    ids: Vec<Uuid>,
    reason: RevokeReason,
    meta: &Metadata,
) -> Result<usize, Problem> {
    let mut revoked = 0;
    for id in ids {
        let out = commands::session::revoke(&state.bus, id, reason, meta).await?;
        // This node's authorization endpoint stops honouring it at once.
        state.tokens.sessions.invalidate(id);
        if out.events > 0 {
            revoked += 1;
        }
        crate::admin::settle(state, &out).await?;
    }
    Ok(revoked)
}

/// Revoke one of one's sessions (the current one too: that signs out).
/// Needs a session.
#[utoipa::path(delete, path = "/self/sessions/{id}",
    params(("id" = Uuid, Path, description = "The session's id")),
    responses((status = 204, description = "revoked"), (status = 401, description = "no valid session cookie"),
        (status = 404, description = "not a session of this person")), tag = "self")]
pub async fn revoke_session(
    State(state): State<AppState>,
    caller: SessionCaller,
    path: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    let target = commands::session::load(&state.bus, id).await;
    match target {
        Ok(s) if s.user_id == caller.session.user_id => {}
        _ => return Err(Problem::not_found("session")),
    }
    let reason = if id == caller.session.id {
        RevokeReason::SignedOut
    } else {
        RevokeReason::ByUser
    };
    revoke_all(&state, vec![id], reason, &caller.metadata()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// How many sessions a request revoked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub revoked: usize,
}

/// Revoke every session of one's but the current one. Needs a session.
#[utoipa::path(post, path = "/self/sessions/revoke-others",
    responses((status = 200, body = Revoked, description = "done"), (status = 401, description = "no valid session cookie")),
    tag = "self")]
pub async fn revoke_others(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Json<Revoked>, Problem> {
    let rows = sessions::sessions_of(&state.read_db, &caller.session.user_id.to_string(), false)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let others: Vec<Uuid> = rows
        .iter()
        .filter_map(|r| Uuid::parse_str(&r.id).ok())
        .filter(|id| *id != caller.session.id)
        .collect();
    let revoked = revoke_all(&state, others, RevokeReason::ByUser, &caller.metadata()).await?;
    Ok(Json(Revoked { revoked }))
}

/// Sign out: revoke the current session and clear its cookie. Needs a
/// session.
#[utoipa::path(post, path = "/self/sign-out",
    responses((status = 204, description = "signed out"), (status = 401, description = "no valid session cookie")),
    tag = "self")]
pub async fn sign_out(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Response, Problem> {
    revoke_all(
        &state,
        vec![caller.session.id],
        RevokeReason::SignedOut,
        &caller.metadata(),
    )
    .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(v) = cookies::clear(&cookie_name(&state, SESSION_COOKIE), &state.config.issuer()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}
