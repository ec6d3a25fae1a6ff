//! Signing in, from the admin side: an organization's sign-in policy, a
//! user's sessions (list, revoke), and lifting the waits a user's failed
//! sign-ins began.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use domain::organization::{Organization, OrganizationCommand};
use domain::session::RevokeReason;
use domain::sign_in_policy::{Method, SignInPolicy};
use projections::sessions;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AdminCaller;
use super::users::organization_of;
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::self_service::{Revoked, SessionList, SessionView, revoke_all};
use crate::state::AppState;

type PathRejection = axum::extract::rejection::PathRejection;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/organizations/{id}/sign-in-policy",
            get(show_policy).put(set_policy),
        )
        .route(
            "/admin/clients/{id}/sign-in-policy",
            get(show_client_policy)
                .put(set_client_policy)
                .delete(clear_client_policy),
        )
        .route("/admin/users/{id}/sessions", get(user_sessions))
        .route(
            "/admin/users/{id}/sessions/revoke",
            post(revoke_user_sessions),
        )
        .route(
            "/admin/users/{id}/sessions/{session}",
            delete(revoke_session),
        )
        .route("/admin/users/{id}/unlock", post(unlock))
        .route("/admin/users/{id}/methods/totp", delete(remove_totp))
        .route("/admin/users/{id}/notifications", get(user_notifications))
        .route("/admin/outbox", get(outbox))
}

/// What signing in to an organization takes.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// The methods that may be used at all: `password`, `email`, `sms`,
    /// `whatsapp`, `totp`, `passkey`, `sso`.
    pub methods: Vec<String>,
    /// The methods a sign-in may begin with (a subset of `methods`).
    pub first_factors: Vec<String>,
    /// Factors a sign-in needs, 1 to 3 (a passkey that verified the user
    /// counts as two).
    pub factors_required: u8,
    /// Whether a code sent by email, SMS or WhatsApp may begin a sign-in.
    #[serde(default)]
    pub passwordless_codes: bool,
}

impl From<&SignInPolicy> for PolicyBody {
    fn from(p: &SignInPolicy) -> Self {
        let names = |s: &std::collections::BTreeSet<Method>| {
            s.iter().map(|m| m.as_str().to_owned()).collect()
        };
        Self {
            methods: names(&p.methods),
            first_factors: names(&p.first_factors),
            factors_required: p.factors_required,
            passwordless_codes: p.passwordless_codes,
        }
    }
}

fn methods(
    field: &'static str,
    names: &[String],
) -> Result<std::collections::BTreeSet<Method>, Problem> {
    names
        .iter()
        .map(|n| {
            Method::parse(n).ok_or_else(|| {
                Problem::validation(format!("unknown method in {field}")).with("field", field)
            })
        })
        .collect()
}

async fn organization(
    state: &AppState,
    caller: &AdminCaller,
    id: Uuid,
) -> Result<Organization, Problem> {
    caller.within(Some(id), "organization")?;
    let (org, _) = state
        .bus
        .load::<Organization>(&id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    if org.id.is_none() {
        return Err(Problem::not_found("organization"));
    }
    Ok(org)
}

/// The organization's sign-in policy (the default one until set). Needs
/// `idp:admin`.
#[utoipa::path(get, path = "/admin/organizations/{id}/sign-in-policy",
    params(("id" = Uuid, Path, description = "The organization's id")),
    responses((status = 200, body = PolicyBody, description = "done"), (status = 404, description = "not found")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn show_policy(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<PolicyBody>, Problem> {
    let Path(id) = path?;
    let org = organization(&state, &caller, id).await?;
    Ok(Json(PolicyBody::from(&org.sign_in_policy)))
}

/// Set the organization's sign-in policy: the methods allowed, which may
/// begin, how many factors. Sign-ins already started keep the policy they
/// started under. Needs `idp:admin`.
#[utoipa::path(put, path = "/admin/organizations/{id}/sign-in-policy",
    params(("id" = Uuid, Path, description = "The organization's id")), request_body = PolicyBody,
    responses((status = 200, body = PolicyBody, description = "done"), (status = 404, description = "not found"),
        (status = 422, description = "a policy nobody could meet, or an unknown method")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn set_policy(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<PolicyBody>,
) -> Result<Json<PolicyBody>, Problem> {
    let Path(id) = path?;
    organization(&state, &caller, id).await?;
    let policy = SignInPolicy {
        methods: methods("methods", &body.methods)?,
        first_factors: methods("first_factors", &body.first_factors)?,
        factors_required: body.factors_required,
        passwordless_codes: body.passwordless_codes,
    };
    let meta = ctx.metadata(caller.actor(), Some(id));
    state
        .bus
        .execute::<Organization>(
            &id.to_string(),
            OrganizationCommand::SetSignInPolicy { policy },
            &meta,
        )
        .await?;
    let org = organization(&state, &caller, id).await?;
    Ok(Json(PolicyBody::from(&org.sign_in_policy)))
}

/// A client's sign-in policy: its own, or the organization's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientPolicyView {
    /// Whether the client has a policy of its own.
    pub own: bool,
    pub policy: PolicyBody,
}

/// The organization of client `id`, for a caller who may act on it.
async fn client_organization(
    state: &AppState,
    caller: &AdminCaller,
    id: Uuid,
) -> Result<Uuid, Problem> {
    let (client, _) = state
        .bus
        .load::<domain::client::Client>(&id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    if !client.exists || client.deleted {
        return Err(Problem::not_found("client"));
    }
    caller.within(Some(client.organization_id), "client")
}

async fn client_policy(
    state: &AppState,
    caller: &AdminCaller,
    id: Uuid,
) -> Result<ClientPolicyView, Problem> {
    let org = client_organization(state, caller, id).await?;
    let org = organization(state, caller, org).await?;
    Ok(ClientPolicyView {
        own: org.client_policies.contains_key(&id),
        policy: PolicyBody::from(org.policy_for(Some(id))),
    })
}

/// The sign-in policy sign-ins through a client follow. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/clients/{id}/sign-in-policy",
    params(("id" = Uuid, Path, description = "The client's id")),
    responses((status = 200, body = ClientPolicyView, description = "done"), (status = 404, description = "not found")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn show_client_policy(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<ClientPolicyView>, Problem> {
    let Path(id) = path?;
    Ok(Json(client_policy(&state, &caller, id).await?))
}

async fn put_client_policy(
    state: &AppState,
    caller: &AdminCaller,
    ctx: &RequestContext,
    id: Uuid,
    policy: Option<SignInPolicy>,
) -> Result<ClientPolicyView, Problem> {
    let org = client_organization(state, caller, id).await?;
    let meta = ctx.metadata(caller.actor(), Some(org));
    state
        .bus
        .execute::<Organization>(
            &org.to_string(),
            OrganizationCommand::SetClientSignInPolicy {
                client_id: id,
                policy,
            },
            &meta,
        )
        .await?;
    client_policy(state, caller, id).await
}

/// Give a client a sign-in policy of its own, overriding its
/// organization's. Needs `idp:admin`.
#[utoipa::path(put, path = "/admin/clients/{id}/sign-in-policy",
    params(("id" = Uuid, Path, description = "The client's id")), request_body = PolicyBody,
    responses((status = 200, body = ClientPolicyView, description = "done"), (status = 404, description = "not found"),
        (status = 422, description = "a policy nobody could meet, or an unknown method")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn set_client_policy(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
    Body(body): Body<PolicyBody>,
) -> Result<Json<ClientPolicyView>, Problem> {
    let Path(id) = path?;
    let policy = SignInPolicy {
        methods: methods("methods", &body.methods)?,
        first_factors: methods("first_factors", &body.first_factors)?,
        factors_required: body.factors_required,
        passwordless_codes: body.passwordless_codes,
    };
    Ok(Json(
        put_client_policy(&state, &caller, &ctx, id, Some(policy)).await?,
    ))
}

/// The client follows its organization's sign-in policy again. Needs
/// `idp:admin`.
#[utoipa::path(delete, path = "/admin/clients/{id}/sign-in-policy",
    params(("id" = Uuid, Path, description = "The client's id")),
    responses((status = 200, body = ClientPolicyView, description = "done"), (status = 404, description = "not found")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn clear_client_policy(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<ClientPolicyView>, Problem> {
    let Path(id) = path?;
    Ok(Json(
        put_client_policy(&state, &caller, &ctx, id, None).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionsQuery {
    /// Include sessions that were revoked or expired.
    #[serde(default)]
    pub ended: bool,
}

/// A user's sessions, newest first (live ones, or all with `ended`).
/// Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/users/{id}/sessions",
    params(("id" = Uuid, Path, description = "The user's id"), SessionsQuery),
    responses((status = 200, body = SessionList, description = "done"), (status = 404, description = "not found")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn user_sessions(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
    query: Result<Query<SessionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionList>, Problem> {
    let Path(id) = path?;
    let Query(q) = query?;
    organization_of(&state, &caller, id).await?;
    let now = state.clock.now();
    let rows = sessions::sessions_of(&state.read_db, &id.to_string(), q.ended)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(SessionList {
        items: rows
            .into_iter()
            .map(|r| SessionView::of(r, now, None))
            .filter(|v| q.ended || v.active)
            .collect(),
    }))
}

/// Revoke one session of a user. Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/users/{id}/sessions/{session}",
    params(("id" = Uuid, Path, description = "The user's id"), ("session" = Uuid, Path, description = "The session's id")),
    responses((status = 204, description = "revoked"), (status = 404, description = "not found")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn revoke_session(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<(Uuid, Uuid)>, PathRejection>,
) -> Result<Response, Problem> {
    let Path((user, session)) = path?;
    let org = organization_of(&state, &caller, user).await?;
    match commands::session::load(&state.bus, session).await {
        Ok(s) if s.user_id == user => {}
        _ => return Err(Problem::not_found("session")),
    }
    let meta = ctx.metadata(caller.actor(), Some(org));
    revoke_all(&state, vec![session], RevokeReason::ByAdmin, &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revoke every session of a user. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/users/{id}/sessions/revoke",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, body = Revoked, description = "done"), (status = 404, description = "not found")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn revoke_user_sessions(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Revoked>, Problem> {
    let Path(user) = path?;
    let org = organization_of(&state, &caller, user).await?;
    let meta = ctx.metadata(caller.actor(), Some(org));
    let revoked = revoke_sessions_of(&state, user, RevokeReason::ByAdmin, &meta).await?;
    Ok(Json(Revoked { revoked }))
}

/// Revokes every live session of `user` the read model lists.
pub async fn revoke_sessions_of(
    state: &AppState,
    user: Uuid,
    reason: RevokeReason,
    meta: &domain::Metadata,
) -> Result<usize, Problem> {
    let rows = sessions::sessions_of(&state.read_db, &user.to_string(), false)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let ids: Vec<Uuid> = rows
        .iter()
        .filter_map(|r| Uuid::parse_str(&r.id).ok())
        .collect();
    revoke_all(state, ids, reason, meta).await
}

/// Lift every wait the user's failed sign-ins began, from every address,
/// on every node. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/users/{id}/unlock",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 204, description = "unlocked"), (status = 404, description = "not found")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn unlock(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(user) = path?;
    let org = organization_of(&state, &caller, user).await?;
    let meta = ctx.metadata(caller.actor(), Some(org));
    commands::sign_in::unlock(&state.bus, user, &meta)
        .await
        .map_err(|e| Problem::internal(&e))?;
    // This node forgets at once; the others when they read the event.
    let account = commands::sign_in::account_of_user(user);
    state.tokens.user_throttle.forget(|(a, _)| *a == account);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Remove a user's authenticator app (a lost phone): they sign in without
/// it, as far as the policy allows, and may enrol a new one. Needs
/// `idp:admin`.
#[utoipa::path(delete, path = "/admin/users/{id}/methods/totp",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 204, description = "removed (or there was none)"), (status = 404, description = "not found")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn remove_totp(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(user) = path?;
    let org = organization_of(&state, &caller, user).await?;
    let meta = ctx.metadata(caller.actor(), Some(org));
    commands::credentials::remove_totp(&state.bus, user, &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A message sent to a person (never its text).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: String,
    /// `email`, `sms` or `whatsapp`.
    pub channel: String,
    /// `sign_in_code` or `lockout_notice`.
    pub purpose: String,
    pub recipient: Option<String>,
    /// `queued`, `sent` or `failed`.
    pub status: String,
    /// `smtp`, `webhook` or `outbox`.
    pub provider: Option<String>,
    /// The provider's reason for a failure.
    pub reason: Option<String>,
    pub queued_at: String,
    pub settled_at: Option<String>,
}

impl From<projections::notifications::NotificationRow> for NotificationView {
    fn from(r: projections::notifications::NotificationRow) -> Self {
        Self {
            id: r.id,
            channel: r.channel,
            purpose: r.purpose,
            recipient: r.recipient,
            status: r.status,
            provider: r.provider,
            reason: r.reason,
            queued_at: r.queued_at,
            settled_at: r.settled_at,
        }
    }
}

/// The messages sent to a user, newest first, with their delivery status.
/// Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/users/{id}/notifications",
    params(("id" = Uuid, Path, description = "The user's id"), super::PageQuery),
    responses((status = 200, body = super::Page<NotificationView>, description = "done"), (status = 404, description = "not found")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn user_notifications(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
    query: Result<Query<super::PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<super::Page<NotificationView>>, Problem> {
    let Path(user) = path?;
    let Query(page) = query?;
    let limit = page.limit()?;
    organization_of(&state, &caller, user).await?;
    let before = match &page.cursor {
        Some(c) => Some(
            c.split_once('|')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| Problem::bad_request("malformed cursor"))?,
        ),
        None => None,
    };
    let rows = projections::notifications::notifications_of(
        &state.read_db,
        &user.to_string(),
        before,
        limit + 1,
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    let items: Vec<NotificationView> = rows.into_iter().map(NotificationView::from).collect();
    Ok(Json(super::Page::from_overfetch(items, limit, |n| {
        format!("{}|{}", n.queued_at, n.id)
    })))
}

/// The development mailbox: the last messages of channels with no
/// provider configured, newest first, text included (this node's memory
/// only). Needs the platform admin.
#[utoipa::path(get, path = "/admin/outbox",
    responses((status = 200, body = Vec<crate::notify::OutboxEntry>, description = "done"),
        (status = 403, description = "only the platform admin reads the outbox")),
    security(("bearer" = ["idp:admin"])), tag = "sign-in")]
pub async fn outbox(
    State(state): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<Vec<crate::notify::OutboxEntry>>, Problem> {
    if !caller.platform {
        return Err(Problem::forbidden_organization());
    }
    Ok(Json(state.notifier.outbox.list()))
}
