//! `/self/methods/…` and `/self/step-up`: a person's own sign-in methods.
//! Adding, changing or removing one needs a fresh proof of who they are: a
//! sign-in or a step-up (a password or an authenticator code) within
//! [`STEP_UP_WINDOW`].
//!
//! Enrolling an authenticator app takes two calls: the first answers a new
//! secret (as an `otpauth://` URI and a QR code) with an enrolment token,
//! the secret sealed under the master key for this session and ten
//! minutes; the second carries the token and a code the app computed, and
//! only then is the secret recorded. An enrolment left halfway records
//! nothing.

use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use commands::sign_in::{Identified, account_of_user};
use domain::session::STEP_UP_WINDOW;
use domain::sign_in_policy::Method;
use domain::user::User;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::SessionCaller;
use crate::authentication::{
    Failed, Holder, MAX_PASSWORD_BYTES, failed, gate, required, verify_code,
};
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

/// How long an enrolment token may be confirmed.
const ENROLMENT_SECONDS: i64 = 600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/self/methods", get(list))
        .route("/self/step-up", post(step_up))
        .route("/self/methods/password", put(set_password))
        .route("/self/methods/totp", post(begin_totp).delete(remove_totp))
        .route("/self/methods/totp/confirm", post(confirm_totp))
        .route("/self/methods/passkeys", post(begin_passkey))
        .route("/self/methods/passkeys/confirm", post(confirm_passkey))
        .route(
            "/self/methods/passkeys/{id}",
            patch(rename_passkey).delete(remove_passkey),
        )
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PasswordMethod {
    pub set: bool,
    pub set_at: Option<String>,
    /// A new password must be chosen.
    pub must_change: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TotpMethod {
    pub enrolled: bool,
    pub enrolled_at: Option<String>,
    pub last_used_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddressMethod {
    pub value: Option<String>,
    pub verified: bool,
}

/// A passkey of the person's (never its key).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PasskeyView {
    pub id: Uuid,
    pub name: Option<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl PasskeyView {
    fn of(p: &domain::credentials::PasskeyCredential) -> Self {
        Self {
            id: p.id,
            name: p.name.value().cloned(),
            created_at: rfc3339(p.created_at),
            last_used_at: p.last_used_at.map(rfc3339),
        }
    }
}

/// The person's sign-in methods.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MethodsView {
    pub password: PasswordMethod,
    pub totp: TotpMethod,
    pub passkeys: Vec<PasskeyView>,
    pub email: AddressMethod,
    pub phone: AddressMethod,
    /// Until when a change to a method needs no new step-up (RFC 3339), if
    /// it is fresh now.
    pub step_up_until: Option<String>,
}

/// The person's sign-in methods and what each holds (never a secret).
/// Needs a session.
#[utoipa::path(get, path = "/self/methods", responses((status = 200, body = MethodsView, description = "done"),
    (status = 401, description = "no valid session cookie")), tag = "self")]
pub async fn list(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Json<MethodsView>, Problem> {
    let h = Holder::load(&state, caller.session.user_id).await?;
    let u = &h.user;
    let totp = h.credentials.totp.as_ref();
    let until = caller.session.verified_at + STEP_UP_WINDOW;
    Ok(Json(MethodsView {
        password: PasswordMethod {
            set: u.password.is_some(),
            set_at: u.password.as_ref().map(|p| rfc3339(p.set_at)),
            must_change: u.password.as_ref().is_some_and(|p| p.must_change),
        },
        totp: TotpMethod {
            enrolled: totp.is_some(),
            enrolled_at: totp.map(|t| rfc3339(t.enrolled_at)),
            last_used_at: totp.and_then(|t| t.last_used_at).map(rfc3339),
        },
        passkeys: h.credentials.passkeys.iter().map(PasskeyView::of).collect(),
        email: AddressMethod {
            value: u.email.as_ref().and_then(|e| e.value().cloned()),
            verified: u.email_verified,
        },
        phone: AddressMethod {
            value: u.phone_number.as_ref().and_then(|p| p.value().cloned()),
            verified: u.phone_verified,
        },
        step_up_until: (state.clock.now() < until).then(|| rfc3339(until)),
    }))
}

/// Refuses a change unless the session proved who the person is lately.
pub fn must_be_fresh(state: &AppState, caller: &SessionCaller) -> Result<(), Problem> {
    if caller.session.freshly_verified(state.clock.now()) {
        return Ok(());
    }
    Err(Problem::refused(
        StatusCode::FORBIDDEN,
        "step-up-required",
        "prove who you are again (POST /self/step-up) before changing a sign-in method",
    ))
}

/// A proof of who one is: `password` with `password`, `totp` with `code`,
/// or `passkey`: first without `assertion` (the answer is the request for
/// the browser's WebAuthn API and a `ceremony` to send back), then with
/// the authenticator's `assertion` and that `ceremony`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpBody {
    pub method: String,
    pub password: Option<String>,
    pub code: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub assertion: Option<serde_json::Value>,
    pub ceremony: Option<String>,
}

/// The request for a passkey step-up.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PasskeyStepUp {
    /// Send back with the assertion (ten minutes, this session, once).
    pub ceremony: String,
    /// `PublicKeyCredentialRequestOptions` for `navigator.credentials.get`.
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SteppedUp {
    /// Until when changes to methods need no new step-up (RFC 3339).
    pub step_up_until: String,
}

/// Prove again who one is, with a method one holds: changes to sign-in
/// methods are allowed for five minutes after. Failures count like failed
/// sign-in steps. Needs a session.
#[utoipa::path(post, path = "/self/step-up", request_body = StepUpBody,
    responses((status = 200, body = SteppedUp, description = "verified (or, for a passkey asked without an assertion, a PasskeyStepUp request)"),
        (status = 401, description = "no valid session cookie, or the proof was not accepted"),
        (status = 429, description = "too many failures from this address")), tag = "self")]
pub async fn step_up(
    State(state): State<AppState>,
    caller: SessionCaller,
    Body(body): Body<StepUpBody>,
) -> Result<Response, Problem> {
    let session = &caller.session;
    let meta = caller.metadata();
    let method = match Method::parse(&body.method) {
        Some(Method::Passkey) => return passkey_step_up(&state, &caller, &body).await,
        Some(m @ (Method::Password | Method::Totp)) => m,
        _ => {
            return Err(
                Problem::validation("a step-up is a password, a totp code or a passkey")
                    .with("field", "method"),
            );
        }
    };
    let key = (
        account_of_user(session.user_id),
        caller.ctx.source_ip.clone().unwrap_or_default(),
    );
    if let Some(refused) = gate(&state, &key).await {
        return Ok(refused);
    }
    let (user, _) = state
        .bus
        .load::<User>(&session.user_id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    let found = Identified {
        account: key.0.clone(),
        user: Some(user),
    };
    let attempt = if method == Method::Password {
        let password = required(body.password.as_deref(), "password", MAX_PASSWORD_BYTES)?;
        commands::sign_in::verify_password(&state.bus, &state.passwords, found, password, &meta)
            .await?
    } else {
        let code = required(body.code.as_deref(), "code", 16)?;
        verify_code(&state, found, code, &meta).await?
    };
    if let Err(reason) = attempt.outcome {
        let f = Failed {
            sign_in_id: session.id,
            organization_id: session.organization_id,
            method,
            reason,
            user_id: Some(session.user_id),
        };
        return Err(failed(&state, f, key, &meta).await);
    }
    state.tokens.user_throttle.succeeded(&key);
    let after = commands::credentials::step_up(&state.bus, session.id, method, &meta).await?;
    Ok(Json(SteppedUp {
        step_up_until: rfc3339(after.verified_at + STEP_UP_WINDOW),
    })
    .into_response())
}

fn step_up_aad(session: Uuid) -> Vec<u8> {
    format!("passkey-step-up:{}", session.simple()).into_bytes()
}

/// A step-up with one of the person's passkeys. The ceremony travels
/// sealed, bound to the session and to its last verification, so an
/// answer counts once: the step-up it records moves that verification.
async fn passkey_step_up(
    state: &AppState,
    caller: &SessionCaller,
    body: &StepUpBody,
) -> Result<Response, Problem> {
    let rp = relying_party(state)?;
    let session = &caller.session;
    let meta = caller.metadata();
    let holder = Holder::load(state, session.user_id).await?;
    let verified_at = session.verified_at.unix_timestamp_nanos();
    let Some(raw) = &body.assertion else {
        let passkeys: Vec<webauthn_rs::prelude::Passkey> = holder
            .credentials
            .passkeys
            .iter()
            .filter_map(|p| serde_json::from_value(p.passkey.value()?.clone()).ok())
            .collect();
        if passkeys.is_empty() {
            return Err(
                Problem::validation("there is no passkey to prove who you are with")
                    .with("field", "method"),
            );
        }
        let (request, ceremony) = rp
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| Problem::internal(&e))?;
        let expires = state.clock.now().unix_timestamp() + ENROLMENT_SECONDS;
        let ceremony = serde_json::to_string(&ceremony).map_err(|e| Problem::internal(&e))?;
        let sealed = commands::crypto::seal(
            &state.master_key,
            &step_up_aad(session.id),
            format!("{expires}:{verified_at}:{ceremony}").as_bytes(),
        );
        return Ok(Json(PasskeyStepUp {
            ceremony: sealed,
            request: serde_json::to_value(&request).map_err(|e| Problem::internal(&e))?,
        })
        .into_response());
    };
    let bad = || {
        Problem::validation(
            "the ceremony is not one of this session's, it expired, or it was answered",
        )
        .with("field", "ceremony")
    };
    let sealed = body.ceremony.as_deref().ok_or_else(bad)?;
    let opened = commands::crypto::open(&state.master_key, &step_up_aad(session.id), sealed)
        .map_err(|_| bad())?;
    let text = String::from_utf8(opened).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (Some(expires), Some(asked_at), Some(ceremony)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let expired = state.clock.now().unix_timestamp() > expires.parse::<i64>().map_err(|_| bad())?;
    if expired || asked_at != verified_at.to_string() {
        return Err(bad());
    }
    let ceremony: webauthn_rs::prelude::PasskeyAuthentication =
        serde_json::from_str(ceremony).map_err(|e| Problem::internal(&e))?;
    let credential: webauthn_rs::prelude::PublicKeyCredential = serde_json::from_value(raw.clone())
        .map_err(|e| {
            Problem::validation(format!("the assertion is malformed: {e}"))
                .with("field", "assertion")
        })?;
    let key = (
        account_of_user(session.user_id),
        caller.ctx.source_ip.clone().unwrap_or_default(),
    );
    if let Some(refused) = gate(state, &key).await {
        return Ok(refused);
    }
    let id = crate::passkeys::credential_id(credential.get_credential_id());
    let stored = holder
        .credentials
        .passkey_by_credential(&id)
        .and_then(|p| Some((p.id, p.passkey.value()?.clone())));
    let outcome = match stored {
        None => Err(domain::sign_in::FailureReason::NoCredential),
        Some((passkey_id, record)) => {
            crate::authentication::check_passkey(
                state,
                session.user_id,
                passkey_id,
                record,
                &meta,
                |_| {
                    rp.webauthn
                        .finish_passkey_authentication(&credential, &ceremony)
                },
            )
            .await?
        }
    };
    if let Err(reason) = outcome {
        let f = Failed {
            sign_in_id: session.id,
            organization_id: session.organization_id,
            method: Method::Passkey,
            reason,
            user_id: Some(session.user_id),
        };
        return Err(failed(state, f, key, &meta).await);
    }
    state.tokens.user_throttle.succeeded(&key);
    let after =
        commands::credentials::step_up(&state.bus, session.id, Method::Passkey, &meta).await?;
    Ok(Json(SteppedUp {
        step_up_until: rfc3339(after.verified_at + STEP_UP_WINDOW),
    })
    .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
}

/// Set a new password (the policy applies). Needs a session with a fresh
/// step-up.
#[utoipa::path(put, path = "/self/methods/password", request_body = NewPassword,
    responses((status = 204, description = "set"), (status = 401, description = "no valid session cookie"),
        (status = 403, description = "a step-up is needed first"),
        (status = 422, description = "the policy refuses the password (the rule is named)")), tag = "self")]
pub async fn set_password(
    State(state): State<AppState>,
    caller: SessionCaller,
    Body(body): Body<NewPassword>,
) -> Result<Response, Problem> {
    must_be_fresh(&state, &caller)?;
    let user_id = caller.session.user_id;
    let meta = caller.metadata();
    commands::user::set_password(
        &state.bus,
        &state.passwords,
        user_id,
        &body.password,
        false,
        &meta,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new authenticator app secret to enrol.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TotpEnrolment {
    /// Send back with a code to confirm (valid ten minutes, this session
    /// only).
    pub enrolment: String,
    /// The secret in base32, for typing into an app by hand.
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as a QR code: an SVG image as a `data:` URI.
    pub qr_code: String,
}

fn enrolment_aad(session: Uuid) -> Vec<u8> {
    format!("totp-enrolment:{}", session.simple()).into_bytes()
}

/// Begin enrolling an authenticator app: answers a new secret to show (as
/// a QR code) and an enrolment token. Nothing is recorded until the
/// confirmation. Needs a session with a fresh step-up.
#[utoipa::path(post, path = "/self/methods/totp",
    responses((status = 200, body = TotpEnrolment, description = "scan it, then confirm with a code"),
        (status = 401, description = "no valid session cookie"), (status = 403, description = "a step-up is needed first")),
    tag = "self")]
pub async fn begin_totp(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Json<TotpEnrolment>, Problem> {
    must_be_fresh(&state, &caller)?;
    let (user, _) = state
        .bus
        .load::<User>(&caller.session.user_id.to_string())
        .await
        .map_err(|e| Problem::internal(&e))?;
    let account = user.username.value().cloned().unwrap_or_default();
    let issuer =
        crate::authentication::organization_name(&state, caller.session.organization_id).await;
    let secret = commands::totp::new_secret();
    let uri = commands::totp::otpauth_uri(&secret, &issuer, &account)
        .ok_or_else(|| Problem::internal(&"the otpauth URI could not be made"))?;
    let expires = state.clock.now().unix_timestamp() + ENROLMENT_SECONDS;
    let enrolment = commands::crypto::seal(
        &state.master_key,
        &enrolment_aad(caller.session.id),
        format!("{secret}:{expires}").as_bytes(),
    );
    Ok(Json(TotpEnrolment {
        enrolment,
        qr_code: format!(
            "data:image/svg+xml;base64,{}",
            STANDARD.encode(qr_svg(&uri))
        ),
        otpauth_uri: uri,
        secret,
    }))
}

/// The QR code of `text` as an SVG document (dark modules as one path).
fn qr_svg(text: &str) -> String {
    use qrcodegen::{QrCode, QrCodeEcc};
    let Ok(qr) = QrCode::encode_text(text, QrCodeEcc::Medium) else {
        return String::new();
    };
    let border = 4;
    let size = qr.size() + 2 * border;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\">\
         <title>QR code to enrol an authenticator app</title>\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/><path d=\"{path}\" fill=\"#000000\"/></svg>"
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotp {
    pub enrolment: String,
    /// A code the app shows for the new secret.
    pub code: String,
}

/// Confirm an authenticator app with a code it computed: records the
/// secret (encrypted under the person's key), replacing an earlier one.
/// Needs the session that began the enrolment.
#[utoipa::path(post, path = "/self/methods/totp/confirm", request_body = ConfirmTotp,
    responses((status = 204, description = "enrolled"), (status = 401, description = "no valid session cookie"),
        (status = 422, description = "the code or the enrolment token is not right, or the enrolment expired")),
    tag = "self")]
pub async fn confirm_totp(
    State(state): State<AppState>,
    caller: SessionCaller,
    Body(body): Body<ConfirmTotp>,
) -> Result<Response, Problem> {
    let bad = || {
        Problem::validation("the enrolment token is not one of this session's, or it expired")
            .with("field", "enrolment")
    };
    let opened = commands::crypto::open(
        &state.master_key,
        &enrolment_aad(caller.session.id),
        &body.enrolment,
    )
    .map_err(|_| bad())?;
    let text = String::from_utf8(opened).map_err(|_| bad())?;
    let (secret, expires) = text.split_once(':').ok_or_else(bad)?;
    let expires: i64 = expires.parse().map_err(|_| bad())?;
    if state.clock.now().unix_timestamp() > expires {
        return Err(bad());
    }
    let meta = caller.metadata();
    commands::credentials::enrol_totp(
        &state.bus,
        caller.session.user_id,
        secret.to_owned(),
        &body.code,
        &meta,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Remove the authenticator app. Needs a session with a fresh step-up.
#[utoipa::path(delete, path = "/self/methods/totp",
    responses((status = 204, description = "removed (or there was none)"), (status = 401, description = "no valid session cookie"),
        (status = 403, description = "a step-up is needed first")), tag = "self")]
pub async fn remove_totp(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Response, Problem> {
    must_be_fresh(&state, &caller)?;
    let meta = caller.metadata();
    commands::credentials::remove_totp(&state.bus, caller.session.user_id, &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A passkey to create with the authenticator.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PasskeyRegistration {
    /// Send back with the authenticator's answer (valid ten minutes, this
    /// session only).
    pub registration: String,
    /// `{"publicKey": …}` for `navigator.credentials.create`, binary
    /// values in base64url; a discoverable credential with user
    /// verification is asked for.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

fn registration_aad(session: Uuid) -> Vec<u8> {
    format!("passkey-registration:{}", session.simple()).into_bytes()
}

fn relying_party(state: &AppState) -> Result<&crate::passkeys::RelyingParty, Problem> {
    state.passkeys.as_deref().ok_or_else(|| {
        Problem::refused(
            StatusCode::BAD_REQUEST,
            "method-unavailable",
            "passkeys are not configured on this server (IDP_WEBAUTHN_ORIGINS)",
        )
    })
}

/// Begin adding a passkey: answers the options to create it with, and a
/// registration token. Nothing is recorded until the confirmation. Needs
/// a session with a fresh step-up.
#[utoipa::path(post, path = "/self/methods/passkeys",
    responses((status = 200, body = PasskeyRegistration, description = "create it, then confirm"),
        (status = 401, description = "no valid session cookie"), (status = 403, description = "a step-up is needed first")),
    tag = "self")]
pub async fn begin_passkey(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Json<PasskeyRegistration>, Problem> {
    must_be_fresh(&state, &caller)?;
    let rp = relying_party(&state)?;
    let holder = Holder::load(&state, caller.session.user_id).await?;
    let username = holder.user.username.value().cloned().unwrap_or_default();
    let display = holder
        .user
        .profile
        .value()
        .and_then(|p| p.name.clone())
        .unwrap_or_else(|| username.clone());
    let exclude: Vec<Vec<u8>> = holder
        .credentials
        .passkeys
        .iter()
        .filter_map(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&p.credential_id)
                .ok()
        })
        .collect();
    let (mut options, registration) = rp
        .webauthn
        .start_passkey_registration(holder.user.id, &username, &display, Some(exclude))
        .map_err(|e| Problem::internal(&e))?;
    // Discoverable, so that signing in needs no name.
    if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
        selection.resident_key = serde_json::from_str("\"required\"").ok();
    }
    let expires = state.clock.now().unix_timestamp() + ENROLMENT_SECONDS;
    let ceremony = serde_json::to_string(&registration).map_err(|e| Problem::internal(&e))?;
    let sealed = commands::crypto::seal(
        &state.master_key,
        &registration_aad(caller.session.id),
        format!("{expires}:{ceremony}").as_bytes(),
    );
    Ok(Json(PasskeyRegistration {
        registration: sealed,
        options: serde_json::to_value(&options).map_err(|e| Problem::internal(&e))?,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmPasskey {
    pub registration: String,
    /// The authenticator's answer (`navigator.credentials.create(…).toJSON()`).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
    /// What to call it (default `Passkey`).
    pub name: Option<String>,
}

/// Confirm a passkey with the authenticator's answer: checks it
/// (attestation, origin, user verification) and records it. Needs the
/// session that began the registration.
#[utoipa::path(post, path = "/self/methods/passkeys/confirm", request_body = ConfirmPasskey,
    responses((status = 201, body = PasskeyView, description = "registered"), (status = 401, description = "no valid session cookie"),
        (status = 409, description = "already registered, or too many passkeys"),
        (status = 422, description = "the answer or the registration token is not right, or it expired")),
    tag = "self")]
pub async fn confirm_passkey(
    State(state): State<AppState>,
    caller: SessionCaller,
    Body(body): Body<ConfirmPasskey>,
) -> Result<Response, Problem> {
    let rp = relying_party(&state)?;
    let bad = || {
        Problem::validation("the registration token is not one of this session's, or it expired")
            .with("field", "registration")
    };
    let opened = commands::crypto::open(
        &state.master_key,
        &registration_aad(caller.session.id),
        &body.registration,
    )
    .map_err(|_| bad())?;
    let text = String::from_utf8(opened).map_err(|_| bad())?;
    let (expires, ceremony) = text.split_once(':').ok_or_else(bad)?;
    if state.clock.now().unix_timestamp() > expires.parse::<i64>().map_err(|_| bad())? {
        return Err(bad());
    }
    let ceremony: webauthn_rs::prelude::PasskeyRegistration =
        serde_json::from_str(ceremony).map_err(|e| Problem::internal(&e))?;
    let answer: webauthn_rs::prelude::RegisterPublicKeyCredential =
        serde_json::from_value(body.credential).map_err(|e| {
            Problem::validation(format!("the credential is malformed: {e}"))
                .with("field", "credential")
        })?;
    let passkey = rp
        .webauthn
        .finish_passkey_registration(&answer, &ceremony)
        .map_err(|e| {
            Problem::validation(format!("the authenticator's answer was refused: {e}"))
                .with("field", "credential")
        })?;
    let user_id = caller.session.user_id;
    let passkey_id = Uuid::now_v7();
    let new = commands::credentials::NewPasskey {
        user_id,
        passkey_id,
        credential_id: crate::passkeys::credential_id(passkey.cred_id()),
        name: body.name.unwrap_or_else(|| "Passkey".into()),
        passkey: serde_json::to_value(&passkey).map_err(|e| Problem::internal(&e))?,
    };
    commands::credentials::register_passkey(&state.bus, new, &caller.metadata()).await?;
    let credentials = commands::credentials::load(&state.bus, user_id).await?;
    let view = credentials
        .passkey(passkey_id)
        .map(PasskeyView::of)
        .ok_or_else(|| Problem::internal(&"the passkey just recorded is missing"))?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenamePasskey {
    pub name: String,
}

/// Rename one of one's passkeys. Needs a session.
#[utoipa::path(patch, path = "/self/methods/passkeys/{id}", request_body = RenamePasskey,
    params(("id" = Uuid, Path, description = "The passkey's id")),
    responses((status = 204, description = "renamed"), (status = 401, description = "no valid session cookie"),
        (status = 404, description = "no such passkey of this person's"), (status = 422, description = "a name out of shape")),
    tag = "self")]
pub async fn rename_passkey(
    State(state): State<AppState>,
    caller: SessionCaller,
    path: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
    Body(body): Body<RenamePasskey>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    commands::credentials::rename_passkey(
        &state.bus,
        caller.session.user_id,
        id,
        body.name,
        &caller.metadata(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Remove one of one's passkeys. Needs a session with a fresh step-up.
#[utoipa::path(delete, path = "/self/methods/passkeys/{id}",
    params(("id" = Uuid, Path, description = "The passkey's id")),
    responses((status = 204, description = "removed (or there was none)"), (status = 401, description = "no valid session cookie"),
        (status = 403, description = "a step-up is needed first")), tag = "self")]
pub async fn remove_passkey(
    State(state): State<AppState>,
    caller: SessionCaller,
    path: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    must_be_fresh(&state, &caller)?;
    commands::credentials::remove_passkey(
        &state.bus,
        caller.session.user_id,
        id,
        &caller.metadata(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
