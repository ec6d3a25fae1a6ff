//! `/authentication/…`: the sign-in flow API. A browser (or the login
//! pages) starts a sign-in, takes the steps its organization's policy asks
//! for, and completes it into a session cookie. JSON in and out; errors are
//! RFC 9457 problems.
//!
//! Every call after the start must come with the `idp_signin` cookie the
//! start set: a sign-in is bound to the browser that began it. A failed
//! step is recorded and counted per account and source address
//! (`domain::throttle`): past five, that source waits before its next
//! attempt is checked, and only that source.

pub mod cookies;
pub mod expiry;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use commands::sign_in::{Attempt, StartSignIn};
use domain::credentials::Credentials;
use domain::notification::Channel;
use domain::throttle::{ACCOUNT_FREE_FAILURES, ACCOUNT_TARPIT};

use crate::notify;
use domain::sign_in::{FailureReason, SignIn, SignInState, SignInStepFailed};
use domain::sign_in_policy::Method;
use domain::user::User;
use domain::{Actor, ActorKind, Metadata};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;
use cookies::{SESSION_COOKIE, SIGN_IN_COOKIE};

/// The methods this server can verify today; a policy may name more.
pub const OFFERED: &[Method] = &[
    Method::Password,
    Method::Email,
    Method::Sms,
    Method::Whatsapp,
    Method::Totp,
];

/// The longest password read (longer ones are refused unread: argon2id
/// would hash them, and no policy sets a password that long).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The longest identifier read.
const MAX_IDENTIFIER_BYTES: usize = 512;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/authentication/start", post(start))
        .route("/authentication/status", get(status))
        .route("/authentication/authenticate", post(authenticate))
        .route("/authentication/complete", post(complete))
        .route("/authentication/verify-otp", post(verify_otp))
}

// --- wire types ------------------------------------------------------------

/// What a sign-in is for.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The organization to sign in to (the client's when only the client
    /// is named).
    pub organization_id: Option<Uuid>,
    /// The client the sign-in serves, if any.
    pub client_id: Option<Uuid>,
    /// A path on this server to continue to once signed in (the
    /// authorization request, say).
    pub continue_to: Option<String>,
    /// An identifier to show prefilled; echoed, never stored.
    pub login_hint: Option<String>,
}

/// A step that succeeded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepView {
    pub method: &'static str,
    /// RFC 3339.
    pub at: String,
}

/// Where a sign-in stands and what may come next.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignInView {
    pub session_id: Uuid,
    pub organization_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
    /// `in_progress`, `completed` or `expired`.
    pub state: &'static str,
    /// RFC 3339: the steps must be done by then.
    pub expires_at: String,
    pub completed_steps: Vec<StepView>,
    /// Factors the policy requires in all.
    pub required_factors: u8,
    /// Factors still needed.
    pub remaining_factors: u8,
    /// The methods the next step may use (for this person, once a step has
    /// said who they are).
    pub methods: Vec<&'static str>,
    /// Whether `/authentication/complete` would succeed now.
    pub can_complete: bool,
    /// The code sent last and not yet used, if any (never the code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
}

/// A code sent and not yet used.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CodeView {
    /// `email`, `sms` or `whatsapp`.
    pub method: &'static str,
    /// RFC 3339.
    pub expires_at: String,
}

/// A code to check.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyOtpBody {
    pub session_id: Uuid,
    /// The six digits received.
    pub code: String,
}

/// One step. `password` takes `password` and `identifier` (optional once
/// a step said who the person is); `totp` takes `code`, the six digits
/// the authenticator app shows (and `identifier` when it is the first
/// step).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthenticateBody {
    pub session_id: Uuid,
    /// `password`, `email`, `sms`, `whatsapp`, `totp`, `passkey` or `sso`.
    pub method: String,
    /// A username or an email address.
    pub identifier: Option<String>,
    pub password: Option<String>,
    pub code: Option<String>,
    /// `passkey`: the authenticator's answer
    /// (`navigator.credentials.get(…).toJSON()`); without it, the step
    /// answers the request options to pass to the authenticator.
    #[schema(value_type = Option<Object>)]
    pub assertion: Option<serde_json::Value>,
}

/// What to ask the authenticator for (`navigator.credentials.get`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PasskeyRequest {
    pub session_id: Uuid,
    /// `{"publicKey": …}` (and `mediation` for a sign-in that has not said
    /// who the person is): WebAuthn request options, binary values in
    /// base64url.
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    pub session_id: Uuid,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    pub session_id: Uuid,
}

/// The session a completed sign-in opened (its cookie is set beside).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CompletedView {
    /// The new session's id (not the sign-in's).
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    /// Authentication method references (RFC 8176).
    pub amr: Vec<&'static str>,
    pub methods: Vec<&'static str>,
    /// RFC 3339: when the last step succeeded.
    pub auth_time: String,
    /// RFC 3339: the session's absolute expiry.
    pub expires_at: String,
    /// Where to go next, when the sign-in was started for something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continue_to: Option<String>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn anonymous() -> Actor {
    Actor {
        kind: ActorKind::Anonymous,
        id: None,
    }
}

/// A person and the credentials they hold.
pub struct Holder {
    pub user: User,
    pub credentials: Credentials,
}

impl Holder {
    pub async fn load(state: &AppState, user_id: Uuid) -> Result<Self, Problem> {
        let (user, _) = state
            .bus
            .load::<User>(&user_id.to_string())
            .await
            .map_err(|e| Problem::internal(&e))?;
        let credentials = commands::credentials::load(&state.bus, user_id).await?;
        Ok(Self { user, credentials })
    }

    /// Whether the person holds a credential of `method`.
    pub fn holds(&self, method: Method) -> bool {
        let u = &self.user;
        match method {
            Method::Password => u.password.is_some(),
            Method::Email => u.email.is_some() && u.email_verified,
            Method::Sms | Method::Whatsapp => u.phone_number.is_some() && u.phone_verified,
            Method::Totp => self.credentials.totp.is_some(),
            Method::Passkey => !self.credentials.passkeys.is_empty(),
            Method::Sso => false,
        }
    }
}

/// The methods the next step may use: allowed by the policy, offered by
/// this server, and (once known) held by the person.
fn next_methods(state: &AppState, sign_in: &SignIn, holder: Option<&Holder>) -> Vec<Method> {
    sign_in
        .policy
        .next_methods(&sign_in.factors())
        .into_iter()
        .filter(|m| offered(state, *m))
        .filter(|m| holder.is_none_or(|h| h.holds(*m)))
        .collect()
}

async fn view(
    state: &AppState,
    sign_in: &SignIn,
    login_hint: Option<String>,
) -> Result<SignInView, Problem> {
    let now = state.clock.now();
    let holder = match sign_in.user_id {
        Some(id) => Some(Holder::load(state, id).await?),
        None => None,
    };
    let phase = sign_in.state(now);
    let remaining = sign_in.remaining();
    Ok(SignInView {
        session_id: sign_in.id,
        organization_id: sign_in.organization_id,
        client_id: sign_in.client_id,
        state: phase.as_str(),
        expires_at: rfc3339(sign_in.expires_at),
        completed_steps: sign_in
            .steps
            .iter()
            .map(|s| StepView {
                method: s.factor.method.as_str(),
                at: rfc3339(s.at),
            })
            .collect(),
        required_factors: sign_in.policy.factors_required,
        remaining_factors: remaining,
        methods: match phase {
            SignInState::InProgress => next_methods(state, sign_in, holder.as_ref())
                .into_iter()
                .map(Method::as_str)
                .collect(),
            _ => Vec::new(),
        },
        can_complete: phase == SignInState::InProgress && remaining == 0 && holder.is_some(),
        code: sign_in
            .code
            .as_ref()
            .filter(|c| c.expires_at > now && phase == SignInState::InProgress)
            .map(|c| CodeView {
                method: c.method.as_str(),
                expires_at: rfc3339(c.expires_at),
            }),
        login_hint,
    })
}

/// The sign-in `id`, if this browser's cookie is the one it was started
/// with; otherwise as though there were none.
async fn bound(state: &AppState, headers: &HeaderMap, id: Uuid) -> Result<SignIn, Problem> {
    let not_found = || {
        Problem::refused(
            StatusCode::NOT_FOUND,
            "sign-in-not-found",
            "no sign-in with this id belongs to this browser (its cookie is missing or is another's)",
        )
    };
    let cookie =
        cookies::read(headers, &cookie_name(state, SIGN_IN_COOKIE)).ok_or_else(not_found)?;
    let sign_in = match commands::sign_in::load(&state.bus, id).await {
        Ok(s) => s,
        Err(commands::sign_in::SignInFailure::SignIn(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if !commands::crypto::secret_matches(&cookie, &sign_in.browser_hash) {
        return Err(not_found());
    }
    Ok(sign_in)
}

/// The name a cookie goes by: with the `__Host-` prefix whenever it is
/// `Secure`, so no other host can plant it.
pub fn cookie_name(state: &AppState, base: &str) -> String {
    if cookies::insecure_ok(&state.config.issuer()) {
        base.to_owned()
    } else {
        format!("__Host-{base}")
    }
}

/// Refuses a sign-in that is over; records an expiry found here.
async fn live(state: &AppState, sign_in: &SignIn, meta: &Metadata) -> Result<(), Problem> {
    match sign_in.state(state.clock.now()) {
        SignInState::InProgress => Ok(()),
        SignInState::Completed => Err(commands::sign_in::SignInFailure::SignIn(
            domain::sign_in::SignInError::Completed,
        )
        .into()),
        SignInState::Expired => {
            commands::sign_in::expire(&state.bus, sign_in.id, meta).await;
            Err(
                commands::sign_in::SignInFailure::SignIn(domain::sign_in::SignInError::Expired)
                    .into(),
            )
        }
    }
}

// --- handlers ----------------------------------------------------------------

/// Start a sign-in for an organization (and perhaps a client). Answers
/// the methods the first step may use and what the policy requires, and
/// sets the `idp_signin` cookie the next calls must carry. No
/// authentication.
#[utoipa::path(post, path = "/authentication/start", request_body = StartBody,
    responses((status = 201, body = SignInView, description = "started"),
        (status = 422, description = "an unknown organization or client, or a continue_to that is not a path here")),
    tag = "authentication")]
pub async fn start(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Body(body): Body<StartBody>,
) -> Result<Response, Problem> {
    let name = cookie_name(&state, SIGN_IN_COOKIE);
    let (secret, fresh) = match cookies::read(&headers, &name) {
        Some(v) if v.len() >= 43 => (v, false),
        _ => (commands::crypto::new_secret(), true),
    };
    let login_hint = body
        .login_hint
        .map(|h| h.chars().take(MAX_IDENTIFIER_BYTES).collect::<String>());
    let id = Uuid::now_v7();
    let meta = ctx.metadata(anonymous(), body.organization_id);
    let start = StartSignIn {
        id,
        organization_id: body.organization_id,
        client_id: body.client_id,
        continue_to: body.continue_to,
        browser_hash: commands::crypto::hash_secret(&secret),
    };
    let sign_in =
        commands::sign_in::start(&state.bus, start, state.config.sign_in_times(), &meta).await?;
    let mut resp = (
        StatusCode::CREATED,
        Json(view(&state, &sign_in, login_hint).await?),
    )
        .into_response();
    if fresh && let Some(v) = cookies::set(&name, &secret, None, &state.config.issuer()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// Where a sign-in stands: the steps done, the factors still required,
/// the methods the next step may use, its expiry. Needs the sign-in's
/// cookie.
#[utoipa::path(get, path = "/authentication/status", params(StatusQuery),
    responses((status = 200, body = SignInView, description = "done"),
        (status = 404, description = "no such sign-in for this browser")),
    tag = "authentication")]
pub async fn status(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SignInView>, Problem> {
    let Query(q) = query?;
    let sign_in = bound(&state, &headers, q.session_id).await?;
    if sign_in.state(state.clock.now()) == SignInState::Expired && !sign_in.expired {
        let meta = ctx.metadata(anonymous(), Some(sign_in.organization_id));
        commands::sign_in::expire(&state.bus, sign_in.id, &meta).await;
    }
    Ok(Json(view(&state, &sign_in, None).await?))
}

/// Take one step of a sign-in. `password`: `identifier` (a username or an
/// email address) and `password`; `totp`: `code` (and `identifier` when
/// it comes first). A wrong password or code, an unknown identifier, a
/// code used before and a user who may not sign in get the same answer (a
/// password in the same time);
/// past five failures from one address, that address waits (429 with
/// `Retry-After`). Needs the sign-in's cookie.
#[utoipa::path(post, path = "/authentication/authenticate", request_body = AuthenticateBody,
    responses((status = 200, body = SignInView, description = "the step succeeded"),
        (status = 400, description = "an unknown method, a method this server does not offer, or a missing field"),
        (status = 401, description = "the credentials were not accepted"),
        (status = 404, description = "no such sign-in for this browser"),
        (status = 409, description = "the step is not allowed now (policy, order, already done or complete)"),
        (status = 410, description = "the sign-in has expired"),
        (status = 429, description = "too many failures from this address: wait Retry-After seconds")),
    tag = "authentication")]
pub async fn authenticate(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Body(body): Body<AuthenticateBody>,
) -> Result<Response, Problem> {
    let method = Method::parse(&body.method).ok_or_else(|| {
        Problem::refused(
            StatusCode::BAD_REQUEST,
            "unknown-method",
            format!(
                "unknown method; one of: {}",
                Method::ALL.map(Method::as_str).join(", ")
            ),
        )
    })?;
    let sign_in = bound(&state, &headers, body.session_id).await?;
    let meta = ctx.metadata(anonymous(), Some(sign_in.organization_id));
    live(&state, &sign_in, &meta).await?;
    if method == Method::Sso {
        return Err(Problem::refused(
            StatusCode::BAD_REQUEST,
            "method-unavailable",
            "no upstream identity provider is configured for this organization",
        ));
    }
    sign_in
        .policy
        .may_take(&sign_in.factors(), method)
        .map_err(|_| step_not_allowed(&sign_in, method))?;
    if !offered(&state, method) {
        return Err(not_offered(method));
    }
    if method == Method::Passkey {
        let source = ctx.source_ip.clone().unwrap_or_default();
        return passkey_step(&state, &sign_in, &body, source, &meta).await;
    }
    let found = who(&state, &sign_in, body.identifier.as_deref()).await?;
    let key = (
        found.account.clone(),
        ctx.source_ip.clone().unwrap_or_default(),
    );
    if let Some(refused) = gate(&state, &key).await {
        return Ok(refused);
    }
    let attempt = match method {
        Method::Password => {
            let password = required(body.password.as_deref(), "password", MAX_PASSWORD_BYTES)?;
            commands::sign_in::verify_password(&state.bus, &state.passwords, found, password, &meta)
                .await?
        }
        Method::Totp => {
            let code = required(body.code.as_deref(), "code", 16)?;
            verify_code(&state, found, code, &meta).await?
        }
        Method::Email | Method::Sms | Method::Whatsapp => {
            return send_code(&state, &sign_in, method, found, key.1, &meta).await;
        }
        _ => return Err(not_offered(method)),
    };
    step_result(&state, &sign_in, method, attempt, key, &meta).await
}

/// Where a code of `method` goes for `user`: their verified address or
/// number.
fn address(user: &User, method: Method) -> Option<String> {
    let verified = match method {
        Method::Email => user.email_verified.then_some(user.email.as_ref()),
        Method::Sms | Method::Whatsapp => user.phone_verified.then_some(user.phone_number.as_ref()),
        _ => None,
    };
    verified.flatten().and_then(|v| v.value().cloned())
}

fn channel_of(method: Method) -> Channel {
    match method {
        Method::Sms => Channel::Sms,
        Method::Whatsapp => Channel::Whatsapp,
        _ => Channel::Email,
    }
}

/// How a code is kept: its keyed digest, bound to the sign-in.
fn code_hash(state: &AppState, sign_in: Uuid, code: &str) -> String {
    commands::crypto::keyed_digest(
        &state.master_key,
        "sign-in code",
        &format!("{}:{}", sign_in.simple(), code.trim()),
    )
}

/// Sends a one-time code to the person's verified address or number. An
/// identifier nobody holds (or a person without one, or deactivated) gets
/// the same answer, and the code goes nowhere. Sending is limited per
/// account and per source address.
async fn send_code(
    state: &AppState,
    sign_in: &SignIn,
    method: Method,
    found: commands::sign_in::Identified,
    source: String,
    meta: &Metadata,
) -> Result<Response, Problem> {
    let now = state.clock.now();
    if let Some(wait) = state
        .tokens
        .code_send_wait(&found.account, Some(&source), now)
    {
        return Ok(too_many(wait));
    }
    let target = found
        .user
        .as_ref()
        .filter(|u| u.is_active())
        .and_then(|u| address(u, method).map(|to| (u.id, to)));
    if target.is_none() && sign_in.user_id.is_some() {
        return Err(Problem::refused(
            StatusCode::CONFLICT,
            "step-not-allowed",
            format!(
                "there is no verified address for the method {}",
                method.as_str()
            ),
        ));
    }
    let user_id = target.as_ref().map(|(id, _)| *id);
    let counted = state
        .tokens
        .count_code_send(&found.account, Some(&source), user_id, now);
    commands::sign_in::record_code_send(&state.bus, &counted, meta)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let code = commands::sign_in::new_code();
    let hash = code_hash(state, sign_in.id, &code);
    let after =
        commands::sign_in::send_code(&state.bus, sign_in.id, method, user_id, hash, meta).await?;
    if let Some((user_id, to)) = target {
        let organization = organization_name(state, sign_in.organization_id).await;
        let message = notify::code_message(channel_of(method), to, &code, &organization);
        state
            .notifier
            .deliver(&state.bus, user_id, sign_in.organization_id, message, meta)
            .await
            .map_err(|e| Problem::internal(&e))?;
    }
    Ok((StatusCode::ACCEPTED, Json(view(state, &after, None).await?)).into_response())
}

/// The organization's name, as messages and enrolments show it.
pub async fn organization_name(state: &AppState, id: Uuid) -> String {
    match state
        .bus
        .load_cached::<domain::organization::Organization>(&id.to_string())
        .await
    {
        Ok(org) if !org.name.is_empty() => org.name,
        _ => "idp".into(),
    }
}

/// Check a code sent by email, SMS or WhatsApp in this sign-in. A wrong
/// code counts like a failed step; five wrong ones use the code up; it
/// works once, for ten minutes. Needs the sign-in's cookie.
#[utoipa::path(post, path = "/authentication/verify-otp", request_body = VerifyOtpBody,
    responses((status = 200, body = SignInView, description = "the step succeeded"),
        (status = 401, description = "the code is not right"),
        (status = 404, description = "no such sign-in for this browser"),
        (status = 409, description = "no code was sent, or too many wrong ones were entered"),
        (status = 410, description = "the code or the sign-in has expired"),
        (status = 429, description = "too many failures from this address")),
    tag = "authentication")]
pub async fn verify_otp(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Body(body): Body<VerifyOtpBody>,
) -> Result<Response, Problem> {
    let sign_in = bound(&state, &headers, body.session_id).await?;
    let meta = ctx.metadata(anonymous(), Some(sign_in.organization_id));
    live(&state, &sign_in, &meta).await?;
    let pending = sign_in.code.as_ref().ok_or_else(|| {
        Problem::from(commands::sign_in::SignInFailure::SignIn(
            domain::sign_in::SignInError::NoCode,
        ))
    })?;
    let account = match pending.user_id {
        Some(user) => commands::sign_in::account_of_user(user),
        None => format!("signin:{}", sign_in.id.simple()),
    };
    let key = (account, ctx.source_ip.clone().unwrap_or_default());
    if let Some(refused) = gate(&state, &key).await {
        return Ok(refused);
    }
    let code = required(Some(body.code.as_str()), "code", 16)?;
    let method = pending.method;
    let hash = code_hash(&state, sign_in.id, code);
    match commands::sign_in::check_code(&state.bus, sign_in.id, hash, &meta).await? {
        commands::sign_in::CodeCheck::Accepted(after) => {
            Ok(Json(view(&state, &after, None).await?).into_response())
        }
        commands::sign_in::CodeCheck::Rejected { user_id } => {
            let f = Failed {
                sign_in_id: sign_in.id,
                organization_id: sign_in.organization_id,
                method,
                reason: FailureReason::WrongCredential,
                user_id,
            };
            Err(failed(&state, f, key, &meta).await)
        }
    }
}

/// Whether this server verifies `method` (passkeys need a relying party).
fn offered(state: &AppState, method: Method) -> bool {
    OFFERED.contains(&method) || (method == Method::Passkey && state.passkeys.is_some())
}

/// A passkey step: without an assertion, asks for one (for whom the
/// sign-in or the identifier names, or for anyone, usernameless); with
/// one, checks it against the challenge recorded and the person's passkey.
async fn passkey_step(
    state: &AppState,
    sign_in: &SignIn,
    body: &AuthenticateBody,
    source: String,
    meta: &Metadata,
) -> Result<Response, Problem> {
    let rp = state
        .passkeys
        .as_ref()
        .ok_or_else(|| not_offered(Method::Passkey))?;
    let Some(raw) = &body.assertion else {
        let identifier = body
            .identifier
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty());
        let known = match (identifier, sign_in.user_id) {
            (Some(_), _) => who(state, sign_in, identifier).await?.user.map(|u| u.id),
            (None, user) => user,
        };
        let (mut request, ceremony) = rp
            .webauthn
            .start_discoverable_authentication()
            .map_err(|e| Problem::internal(&e))?;
        let mut allow: Vec<String> = match known {
            Some(user) => commands::credentials::load(&state.bus, user)
                .await?
                .passkeys
                .into_iter()
                .map(|p| p.credential_id)
                .collect(),
            None => Vec::new(),
        };
        // An identifier naming nobody with a passkey gets a request shaped
        // like anyone's: one credential, always the same for it.
        if allow.is_empty()
            && let Some(identifier) = identifier
        {
            allow.push(crate::passkeys::decoy_credential_id(
                &state.master_key,
                sign_in.organization_id,
                &domain::user::normalize_identifier(identifier),
            ));
        }
        if !allow.is_empty() {
            let allow = allow
                .into_iter()
                .map(|id| serde_json::json!({"type": "public-key", "id": id}))
                .collect();
            request.public_key.allow_credentials =
                serde_json::from_value(serde_json::Value::Array(allow))
                    .map_err(|e| Problem::internal(&e))?;
            request.mediation = None;
        }
        let ceremony = serde_json::to_value(&ceremony).map_err(|e| Problem::internal(&e))?;
        commands::sign_in::challenge_passkey(&state.bus, sign_in.id, ceremony, known, meta).await?;
        let request = serde_json::to_value(&request).map_err(|e| Problem::internal(&e))?;
        return Ok(Json(PasskeyRequest {
            session_id: sign_in.id,
            request,
        })
        .into_response());
    };
    let credential: webauthn_rs::prelude::PublicKeyCredential = serde_json::from_value(raw.clone())
        .map_err(|e| {
            Problem::validation(format!("the assertion is malformed: {e}"))
                .with("field", "assertion")
        })?;
    let (ceremony, asked_for) = sign_in.passkey_challenge.clone().ok_or_else(|| {
        Problem::from(commands::sign_in::SignInFailure::SignIn(
            domain::sign_in::SignInError::NoPasskeyChallenge,
        ))
    })?;
    let ceremony: webauthn_rs::prelude::DiscoverableAuthentication =
        serde_json::from_value(ceremony).map_err(|e| Problem::internal(&e))?;
    let user_id = match sign_in.user_id.or(asked_for) {
        Some(u) => Some(u),
        None => rp
            .webauthn
            .identify_discoverable_authentication(&credential)
            .ok()
            .map(|(u, _)| u),
    };
    let account = match user_id {
        Some(u) => commands::sign_in::account_of_user(u),
        None => format!("signin:{}", sign_in.id.simple()),
    };
    let key = (account, source);
    if let Some(refused) = gate(state, &key).await {
        return Ok(refused);
    }
    let failure = |reason, user_id| Failed {
        sign_in_id: sign_in.id,
        organization_id: sign_in.organization_id,
        method: Method::Passkey,
        reason,
        user_id,
    };
    let Some(user_id) = user_id else {
        return Err(failed(state, failure(FailureReason::UnknownUser, None), key, meta).await);
    };
    let holder = Holder::load(state, user_id).await?;
    let id = crate::passkeys::credential_id(credential.get_credential_id());
    let stored = holder
        .credentials
        .passkey_by_credential(&id)
        .and_then(|p| Some((p.id, p.passkey.value()?.clone())));
    let exists = holder.user.exists() && holder.user.organization_id == sign_in.organization_id;
    let Some((passkey_id, record)) = stored.filter(|_| exists) else {
        let reason = if exists {
            FailureReason::NoCredential
        } else {
            FailureReason::UnknownUser
        };
        return Err(failed(state, failure(reason, exists.then_some(user_id)), key, meta).await);
    };
    let mut as_person = meta.clone();
    as_person.actor = Actor::user(user_id.to_string());
    let verified = check_passkey(state, user_id, passkey_id, record, &as_person, |p| {
        rp.webauthn
            .finish_discoverable_authentication_v2(&credential, ceremony, p)
    })
    .await?
    .and_then(|user_verified| {
        if holder.user.is_active() {
            Ok(user_verified)
        } else {
            Err(FailureReason::Deactivated)
        }
    });
    match verified {
        Ok(user_verified) => {
            let mut meta = meta.clone();
            meta.actor = Actor::user(user_id.to_string());
            let after = commands::sign_in::succeed(
                &state.bus,
                sign_in.id,
                Method::Passkey,
                user_id,
                user_verified,
                &meta,
            )
            .await?;
            Ok(Json(view(state, &after, None).await?).into_response())
        }
        Err(reason) => Err(failed(state, failure(reason, Some(user_id)), key, meta).await),
    }
}

/// A method this server does not verify yet.
fn not_offered(method: Method) -> Problem {
    Problem::refused(
        StatusCode::BAD_REQUEST,
        "method-unavailable",
        format!(
            "this server does not offer the method {} yet",
            method.as_str()
        ),
    )
}

/// A field a step needs, present and not too long.
pub fn required<'a>(
    value: Option<&'a str>,
    field: &'static str,
    max: usize,
) -> Result<&'a str, Problem> {
    match value {
        Some(v) if !v.is_empty() && v.len() <= max => Ok(v),
        Some(v) if !v.is_empty() => {
            Err(Problem::validation(format!("{field} is too long")).with("field", field))
        }
        _ => Err(Problem::validation(format!("this step needs {field}")).with("field", field)),
    }
}

/// Whom a step is about: the person the identifier names, or else the
/// person earlier steps identified.
async fn who(
    state: &AppState,
    sign_in: &SignIn,
    identifier: Option<&str>,
) -> Result<commands::sign_in::Identified, Problem> {
    let identifier = identifier.map(str::trim).filter(|i| !i.is_empty());
    // Once a step named the person, every later step is about them: an
    // identifier sent again is not looked up, so a second step cannot be
    // used to learn about someone else (or count sends against them).
    match (identifier, sign_in.user_id) {
        (Some(i), None) => {
            if i.len() > MAX_IDENTIFIER_BYTES {
                return Err(
                    Problem::validation("identifier is too long").with("field", "identifier")
                );
            }
            Ok(commands::sign_in::identify(&state.bus, sign_in.organization_id, i).await?)
        }
        (_, Some(user_id)) => {
            let (user, _) = state
                .bus
                .load::<User>(&user_id.to_string())
                .await
                .map_err(|e| Problem::internal(&e))?;
            Ok(commands::sign_in::Identified {
                account: commands::sign_in::account_of_user(user_id),
                user: user.exists().then_some(user),
            })
        }
        (None, None) => {
            Err(Problem::validation("this step needs identifier").with("field", "identifier"))
        }
    }
}

/// Checks an authenticator app's code of whom `found` names.
pub async fn verify_code(
    state: &AppState,
    found: commands::sign_in::Identified,
    code: &str,
    meta: &Metadata,
) -> Result<Attempt, Problem> {
    let Some(user) = found.user else {
        return Ok(Attempt {
            account: found.account,
            user_id: None,
            outcome: Err(FailureReason::UnknownUser),
        });
    };
    let outcome = match commands::credentials::verify_totp(&state.bus, user.id, code, meta).await? {
        Ok(()) if !user.is_active() => Err(FailureReason::Deactivated),
        other => other,
    };
    Ok(Attempt {
        account: found.account,
        user_id: Some(user.id),
        outcome,
    })
}

/// Records a verified step, or counts and records its failure.
async fn step_result(
    state: &AppState,
    sign_in: &SignIn,
    method: Method,
    attempt: Attempt,
    key: (String, String),
    meta: &Metadata,
) -> Result<Response, Problem> {
    let reason = match (attempt.outcome, attempt.user_id) {
        (Ok(()), Some(user_id)) => {
            let mut meta = meta.clone();
            meta.actor = Actor::user(user_id.to_string());
            match commands::sign_in::succeed(&state.bus, sign_in.id, method, user_id, false, &meta)
                .await
            {
                Ok(after) => {
                    metrics::counter!("idp_sign_in_steps_total", "method" => method.as_str(), "outcome" => "success").increment(1);
                    return Ok(Json(view(state, &after, None).await?).into_response());
                }
                Err(commands::sign_in::SignInFailure::SignIn(
                    domain::sign_in::SignInError::OtherUser,
                )) => FailureReason::OtherUser,
                Err(e) => return Err(e.into()),
            }
        }
        (Err(reason), _) => reason,
        (Ok(()), None) => FailureReason::UnknownUser,
    };
    Err(failed(
        state,
        Failed {
            sign_in_id: sign_in.id,
            organization_id: sign_in.organization_id,
            method,
            reason,
            user_id: attempt.user_id,
        },
        key,
        meta,
    )
    .await)
}

/// A failed verification: of a sign-in's step, or of a step-up (then the
/// session's id stands for the sign-in's).
pub struct Failed {
    pub sign_in_id: Uuid,
    pub organization_id: Uuid,
    pub method: Method,
    pub reason: FailureReason,
    pub user_id: Option<Uuid>,
}

/// Refuses an attempt while its source waits (429); slows every attempt on
/// an account that took too many failures from every address this hour.
pub async fn gate(state: &AppState, key: &(String, String)) -> Option<Response> {
    let now = state.clock.now();
    let waits = [
        state.tokens.user_throttle.wait(key, now),
        state.tokens.address_throttle.wait(&key.1, now),
    ];
    if let Some(wait) = waits.into_iter().flatten().max() {
        metrics::counter!("idp_sign_in_throttled_total").increment(1);
        return Some(too_many(wait));
    }
    if state.tokens.account_throttle.failures(&key.0, now) > ACCOUNT_FREE_FAILURES {
        metrics::counter!("idp_sign_in_slowed_total").increment(1);
        state.tarpit.take_turn(&key.0).await;
    }
    None
}

/// Checks an answer from the person's passkey `passkey_id` (stored as
/// `record`) with `finish`, and records its use with the new signature
/// counter: whether the authenticator verified its user, or why the answer
/// is refused (a counter that went backwards, a wrong signature).
pub async fn check_passkey(
    state: &AppState,
    user_id: Uuid,
    passkey_id: Uuid,
    record: serde_json::Value,
    meta: &Metadata,
    finish: impl FnOnce(
        &webauthn_rs::prelude::Passkey,
    ) -> Result<
        webauthn_rs::prelude::AuthenticationResult,
        webauthn_rs::prelude::WebauthnError,
    >,
) -> Result<Result<bool, FailureReason>, Problem> {
    let mut passkey: webauthn_rs::prelude::Passkey =
        serde_json::from_value(record).map_err(|e| Problem::internal(&e))?;
    match finish(&passkey) {
        Ok(result) => {
            let changed = passkey.update_credential(&result) == Some(true);
            let record = changed
                .then(|| serde_json::to_value(&passkey).ok())
                .flatten();
            commands::credentials::use_passkey(&state.bus, user_id, passkey_id, record, meta)
                .await?;
            Ok(Ok(result.user_verified()))
        }
        Err(webauthn_rs::prelude::WebauthnError::CredentialPossibleCompromise) => {
            Ok(Err(FailureReason::CounterRegressed))
        }
        Err(_) => Ok(Err(FailureReason::WrongCredential)),
    }
}

/// Attempts on accounts under attack take turns: one at a time per lane
/// (accounts are spread over [`Tarpit::LANES`]), each [`ACCOUNT_TARPIT`]
/// after the one before, so many sent at once get no more through than
/// one after another (on each node).
pub struct Tarpit {
    lanes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for Tarpit {
    fn default() -> Self {
        Self {
            lanes: (0..Self::LANES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }
}

impl Tarpit {
    pub const LANES: usize = 64;

    fn lane(account: &str) -> usize {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(account);
        (hash % Self::LANES as u64) as usize
    }

    /// Waits for `account`'s turn, and holds it for [`ACCOUNT_TARPIT`].
    pub async fn take_turn(&self, account: &str) {
        let _turn = self.lanes[Self::lane(account)].lock().await;
        tokio::time::sleep(ACCOUNT_TARPIT.unsigned_abs()).await;
    }
}

/// Tells a person (by email, when they have an address) and the admins
/// (an audited event) that their account is under attack.
async fn alert(
    state: &AppState,
    user_id: Uuid,
    organization_id: Uuid,
    failures: u32,
    meta: &Metadata,
) {
    let event = domain::sign_in::AccountSlowed {
        user_id,
        failures,
        at: state.clock.now(),
    };
    metrics::counter!("idp_accounts_slowed_total").increment(1);
    if let Err(e) = commands::sign_in::record_slowed(&state.bus, &event, meta).await {
        tracing::error!(error = %e, "an attack on an account could not be recorded");
    }
    let Ok((user, _)) = state.bus.load::<User>(&user_id.to_string()).await else {
        return;
    };
    let Some(to) = user.email.as_ref().and_then(|e| e.value().cloned()) else {
        return;
    };
    let organization = organization_name(state, organization_id).await;
    let message = notify::Message {
        id: Uuid::now_v7(),
        channel: Channel::Email,
        purpose: domain::notification::Purpose::LockoutNotice,
        to,
        subject: format!("Someone is trying to sign in to your {organization} account"),
        text: format!(
            "There were {failures} failed attempts to sign in to your {organization} account in the \
             last hour, from several places. Your account is not locked: attempts are slowed down. \
             If this was not you, choose a new password or add a passkey."
        ),
    };
    if let Err(e) = state
        .notifier
        .deliver(&state.bus, user_id, organization_id, message, meta)
        .await
    {
        tracing::error!(error = %e, "a notice of an attack could not be queued");
    }
}

/// Counts a failed verification against the throttle, records it, and
/// answers the one refusal every failure gets.
pub async fn failed(
    state: &AppState,
    f: Failed,
    key: (String, String),
    meta: &Metadata,
) -> Problem {
    metrics::counter!("idp_sign_in_steps_total", "method" => f.method.as_str(), "outcome" => "failure").increment(1);
    let now = state.clock.now();
    let (failures, blocked_until) = state.tokens.user_throttle.count(key.clone(), now);
    let (account_failures, _) = state.tokens.account_throttle.count(key.0.clone(), now);
    // Without a source address there is nothing to count it against.
    let (address_failures, address_blocked_until) = if key.1.is_empty() {
        (None, None)
    } else {
        let (n, until) = state.tokens.address_throttle.count(key.1.clone(), now);
        (Some(n), until)
    };
    if account_failures == ACCOUNT_FREE_FAILURES + 1
        && let Some(user) = f.user_id
    {
        alert(state, user, f.organization_id, account_failures, meta).await;
    }
    let failure = SignInStepFailed {
        sign_in_id: f.sign_in_id,
        organization_id: f.organization_id,
        method: f.method,
        reason: f.reason,
        user_id: f.user_id,
        account: key.0,
        failures,
        blocked_until,
        account_failures: Some(account_failures),
        address_failures,
        address_blocked_until,
        at: now,
    };
    if let Err(e) = commands::sign_in::record_failure(&state.bus, &failure, meta).await {
        tracing::error!(error = %e, "a failed sign-in step could not be recorded");
    }
    Problem::refused(
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "the identifier, the password or the code is not right",
    )
}

fn step_not_allowed(sign_in: &SignIn, method: Method) -> Problem {
    let allowed: Vec<&str> = sign_in
        .policy
        .next_methods(&sign_in.factors())
        .into_iter()
        .map(Method::as_str)
        .collect();
    Problem::refused(
        StatusCode::CONFLICT,
        "step-not-allowed",
        format!(
            "the policy does not allow the method {} at this step",
            method.as_str()
        ),
    )
    .with("methods", allowed)
}

/// 429 with the seconds to wait.
pub fn too_many(wait: time::Duration) -> Response {
    let secs = u64::try_from(wait.whole_seconds()).unwrap_or(0) + 1;
    let problem = Problem::refused(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-attempts",
        "too many failed attempts from this address: wait before trying again",
    )
    .with("retry_after", secs);
    let mut resp = problem.into_response();
    if let Ok(v) = secs.to_string().parse() {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Complete a sign-in whose policy is met: opens a session (a new id and
/// secret, in the `idp_session` cookie) bound to the person, the methods
/// used and the time. Needs the sign-in's cookie.
#[utoipa::path(post, path = "/authentication/complete", request_body = CompleteBody,
    responses((status = 200, body = CompletedView, description = "signed in; the session cookie is set"),
        (status = 403, description = "the person may no longer sign in"),
        (status = 404, description = "no such sign-in for this browser"),
        (status = 409, description = "steps remain, or the sign-in is already complete"),
        (status = 410, description = "the sign-in has expired")),
    tag = "authentication")]
pub async fn complete(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Body(body): Body<CompleteBody>,
) -> Result<Response, Problem> {
    let sign_in = bound(&state, &headers, body.session_id).await?;
    let mut meta = ctx.metadata(anonymous(), Some(sign_in.organization_id));
    live(&state, &sign_in, &meta).await?;
    if let Some(user) = sign_in.user_id {
        meta.actor = Actor::user(user.to_string());
    }
    let times = state.config.sign_in_times();
    let done = commands::sign_in::complete(&state.bus, sign_in.id, times, &meta).await?;
    // Only a whole sign-in clears the count of failures from this source:
    // a first factor that succeeds must not buy more guesses at the second.
    let key = (
        commands::sign_in::account_of_user(done.session.user_id),
        ctx.source_ip.clone().unwrap_or_default(),
    );
    state.tokens.user_throttle.succeeded(&key);
    // The person's next request (their sessions, say) reads this.
    if let Some(at) = done.position {
        crate::admin::settle_at(&state, at).await?;
    }
    let session = &done.session;
    let body = CompletedView {
        session_id: session.id,
        user_id: session.user_id,
        organization_id: session.organization_id,
        amr: session.amr(),
        methods: session.methods.iter().map(|m| m.as_str()).collect(),
        auth_time: rfc3339(session.auth_time),
        expires_at: rfc3339(session.expires_at),
        continue_to: done.sign_in.continue_to.clone(),
    };
    let mut resp = Json(body).into_response();
    let issuer = state.config.issuer();
    let max_age = times.session_lifetime.whole_seconds();
    if let Some(v) = cookies::set(
        &cookie_name(&state, SESSION_COOKIE),
        &done.cookie,
        Some(max_age),
        &issuer,
    ) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Three attempts at once on an account under attack end a second
    /// apart; an account of another lane does not wait for them.
    #[tokio::test(start_paused = true)]
    async fn attempts_on_an_account_under_attack_take_turns() {
        let tarpit = Arc::new(Tarpit::default());
        let other = (0..)
            .map(|n| format!("user:{n}"))
            .find(|a| Tarpit::lane(a) != Tarpit::lane("user:ada"))
            .unwrap();
        let (ada_done, other_done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let turn = |account: String, done: &Arc<AtomicUsize>| {
            let (tarpit, done) = (Arc::clone(&tarpit), Arc::clone(done));
            tokio::spawn(async move {
                tarpit.take_turn(&account).await;
                done.fetch_add(1, Ordering::SeqCst);
            })
        };
        for _ in 0..3 {
            turn("user:ada".into(), &ada_done);
        }
        turn(other, &other_done);
        // Half a second past each turn (the test's time is paused and moves
        // only as it sleeps).
        let mut finished = Vec::new();
        for _ in 0..3 {
            let half = ACCOUNT_TARPIT.unsigned_abs() / 2;
            tokio::time::sleep(if finished.is_empty() {
                half * 3
            } else {
                half * 2
            })
            .await;
            finished.push((
                ada_done.load(Ordering::SeqCst),
                other_done.load(Ordering::SeqCst),
            ));
        }
        assert_eq!(finished, [(1, 1), (2, 1), (3, 1)]);
    }
}
