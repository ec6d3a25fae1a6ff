//! `/self/methods/email` and `/self/methods/phone`: a person adds, changes
//! or removes their email address or phone number. A new one is recorded
//! only once a code sent to it comes back, so it is verified from the
//! start; until then the address and the code's keyed digest travel
//! sealed under the master key, bound to the session, for ten minutes, and
//! the session records the digest (never the code or the address): the code
//! is spent once, and five wrong tries use it up, on every node.
//! Every change needs a fresh step-up; uniqueness of email addresses is
//! decided by the same claims as the admin API's.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use commands::user::UserPatch;
use domain::notification::{Channel, Purpose};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::SessionCaller;
use super::methods::must_be_fresh;
use crate::authentication::{Failed, failed, gate, organization_name};
use crate::extract::Body;
use crate::notify::Message;
use crate::problem::Problem;
use crate::state::AppState;

/// How long a verification may be completed.
const VERIFY_SECONDS: i64 = 600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/self/methods/email",
            axum::routing::put(change_email).delete(remove_email),
        )
        .route("/self/methods/email/verify", post(verify_email))
        .route(
            "/self/methods/phone",
            axum::routing::put(change_phone).delete(remove_phone),
        )
        .route("/self/methods/phone/verify", post(verify_phone))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEmail {
    pub email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPhone {
    /// E.164, e.g. `+442071234567`.
    pub phone_number: String,
    /// How the code goes: `sms` (default) or `whatsapp`.
    pub channel: Option<String>,
}

/// A verification under way.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Send back with the code received (valid ten minutes, this session
    /// only).
    pub verification: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyAddress {
    pub verification: String,
    pub code: String,
}

fn aad(session: Uuid, kind: &str) -> Vec<u8> {
    format!("address-verification:{kind}:{}", session.simple()).into_bytes()
}

fn digest(state: &AppState, session: Uuid, code: &str) -> String {
    commands::crypto::keyed_digest(
        &state.master_key,
        "address code",
        &format!("{}:{}", session.simple(), code.trim()),
    )
}

/// Sends a code to `to` and answers the sealed verification.
async fn begin(
    state: &AppState,
    caller: &SessionCaller,
    kind: &str,
    channel: Channel,
    to: String,
) -> Result<Response, Problem> {
    must_be_fresh(state, caller)?;
    let session = &caller.session;
    let now = state.clock.now();
    let account = commands::sign_in::account_of_user(session.user_id);
    if let Some(wait) = state.tokens.code_send_wait(&account, None, now) {
        return Ok(crate::authentication::too_many(wait));
    }
    let counted = state
        .tokens
        .count_code_send(&account, None, Some(session.user_id), now);
    commands::sign_in::record_code_send(&state.bus, &counted, &caller.metadata())
        .await
        .map_err(|e| Problem::internal(&e))?;
    let code = commands::sign_in::new_code();
    let expires = now.unix_timestamp() + VERIFY_SECONDS;
    let hash = digest(state, session.id, &code);
    // The session keeps the code's digest: it is spent once, and a few
    // wrong tries use it up, on every node.
    commands::session::send_address_code(
        &state.bus,
        session.id,
        hash.clone(),
        now + time::Duration::seconds(VERIFY_SECONDS),
        &caller.metadata(),
    )
    .await?;
    let sealed = commands::crypto::seal(
        &state.master_key,
        &aad(session.id, kind),
        format!("{expires}:{hash}:{to}").as_bytes(),
    );
    let organization = organization_name(state, session.organization_id).await;
    let text = format!(
        "{code} is the code to confirm this {} for your {organization} account. It works for 10 minutes.",
        if channel == Channel::Email {
            "email address"
        } else {
            "number"
        }
    );
    let message = Message {
        id: Uuid::now_v7(),
        channel,
        purpose: Purpose::AddressVerification,
        to,
        subject: format!("Confirm your address for {organization}"),
        text,
    };
    state
        .notifier
        .deliver(
            &state.bus,
            session.user_id,
            session.organization_id,
            message,
            &caller.metadata(),
        )
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Verification {
            verification: sealed,
        }),
    )
        .into_response())
}

/// Opens a verification and checks its code: the address it was for.
async fn check(
    state: &AppState,
    caller: &SessionCaller,
    kind: &str,
    body: &VerifyAddress,
) -> Result<Result<String, Response>, Problem> {
    let session = &caller.session;
    let bad = || {
        Problem::validation("the verification is not one of this session's, or it expired")
            .with("field", "verification")
    };
    let opened = commands::crypto::open(
        &state.master_key,
        &aad(session.id, kind),
        &body.verification,
    )
    .map_err(|_| bad())?;
    let text = String::from_utf8(opened).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (Some(expires), Some(hash), Some(to)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if state.clock.now().unix_timestamp() > expires.parse::<i64>().map_err(|_| bad())? {
        return Err(bad());
    }
    // The code must still wait in the session: not spent, not used up,
    // not replaced by a later one.
    let held = commands::session::load(&state.bus, session.id).await?;
    if held.address_code.as_ref().is_none_or(|c| c.digest != hash) {
        return Err(Problem::from(commands::session::SessionFailure::Session(
            domain::session::SessionError::NoAddressCode,
        )));
    }
    let key = (
        commands::sign_in::account_of_user(session.user_id),
        caller.ctx.source_ip.clone().unwrap_or_default(),
    );
    if let Some(refused) = gate(state, &key).await {
        return Ok(Err(refused));
    }
    if !commands::crypto::secret_matches_digest(&digest(state, session.id, &body.code), hash) {
        let f = Failed {
            sign_in_id: session.id,
            organization_id: session.organization_id,
            method: if kind == "email" {
                domain::sign_in_policy::Method::Email
            } else {
                domain::sign_in_policy::Method::Sms
            },
            reason: domain::sign_in::FailureReason::WrongCredential,
            user_id: Some(session.user_id),
        };
        commands::session::fail_address_code(&state.bus, session.id, &caller.metadata()).await?;
        return Err(failed(state, f, key, &caller.metadata()).await);
    }
    commands::session::use_address_code(
        &state.bus,
        session.id,
        hash.to_owned(),
        &caller.metadata(),
    )
    .await?;
    state.tokens.user_throttle.succeeded(&key);
    Ok(Ok(to.to_owned()))
}

/// Add or change one's email address: a code goes to the new address,
/// and the address is recorded (verified) once the code comes back. Needs
/// a session with a fresh step-up.
#[utoipa::path(put, path = "/self/methods/email", request_body = NewEmail,
    responses((status = 202, body = Verification, description = "a code was sent to the address"),
        (status = 401, description = "no valid session cookie"), (status = 403, description = "a step-up is needed first"),
        (status = 422, description = "not an email address")), tag = "self")]
pub async fn change_email(
    State(state): State<AppState>,
    caller: SessionCaller,
    Body(body): Body<NewEmail>,
) -> Result<Response, Problem> {
    let email = domain::user::validate_email(&body.email)
        .map_err(|e| Problem::validation(e.to_string()).with("field", "email"))?;
    begin(&state, &caller, "email", Channel::Email, email).await
}

/// Confirm a new email address with the code sent to it. Needs the
/// session that began the change.
#[utoipa::path(post, path = "/self/methods/email/verify", request_body = VerifyAddress,
    responses((status = 204, description = "recorded, verified"), (status = 401, description = "the code is not right"),
        (status = 409, description = "the address is another person's"),
        (status = 422, description = "the verification is not right or expired")), tag = "self")]
pub async fn verify_email(
    State(state): State<AppState>,
    caller: SessionCaller,
    Body(body): Body<VerifyAddress>,
) -> Result<Response, Problem> {
    let email = match check(&state, &caller, "email", &body).await? {
        Ok(email) => email,
        Err(refused) => return Ok(refused),
    };
    let patch = UserPatch {
        email: Some(Some(email)),
        email_verified: Some(true),
        ..UserPatch::default()
    };
    let out = commands::user::change(
        &state.bus,
        caller.session.user_id,
        None,
        patch,
        &caller.metadata(),
    )
    .await?;
    // What one changed shows at once wherever it is read.
    crate::admin::settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Add or change one's phone number: a code goes to it by SMS or
/// WhatsApp, and the number is recorded (verified) once the code comes
/// back. Needs a session with a fresh step-up.
#[utoipa::path(put, path = "/self/methods/phone", request_body = NewPhone,
    responses((status = 202, body = Verification, description = "a code was sent to the number"),
        (status = 401, description = "no valid session cookie"), (status = 403, description = "a step-up is needed first"),
        (status = 422, description = "not an E.164 number, or an unknown channel")), tag = "self")]
pub async fn change_phone(
    State(state): State<AppState>,
    caller: SessionCaller,
    Body(body): Body<NewPhone>,
) -> Result<Response, Problem> {
    let phone = domain::user::validate_phone_number(&body.phone_number)
        .map_err(|e| Problem::validation(e.to_string()).with("field", "phone_number"))?;
    let channel = match body.channel.as_deref() {
        None | Some("sms") => Channel::Sms,
        Some("whatsapp") => Channel::Whatsapp,
        Some(_) => {
            return Err(
                Problem::validation("channel must be sms or whatsapp").with("field", "channel")
            );
        }
    };
    begin(&state, &caller, "phone", channel, phone).await
}

/// Confirm a new phone number with the code sent to it. Needs the session
/// that began the change.
#[utoipa::path(post, path = "/self/methods/phone/verify", request_body = VerifyAddress,
    responses((status = 204, description = "recorded, verified"), (status = 401, description = "the code is not right"),
        (status = 422, description = "the verification is not right or expired")), tag = "self")]
pub async fn verify_phone(
    State(state): State<AppState>,
    caller: SessionCaller,
    Body(body): Body<VerifyAddress>,
) -> Result<Response, Problem> {
    let phone = match check(&state, &caller, "phone", &body).await? {
        Ok(phone) => phone,
        Err(refused) => return Ok(refused),
    };
    let patch = UserPatch {
        phone_number: Some(Some(phone)),
        phone_verified: Some(true),
        ..UserPatch::default()
    };
    let out = commands::user::change(
        &state.bus,
        caller.session.user_id,
        None,
        patch,
        &caller.metadata(),
    )
    .await?;
    // What one changed shows at once wherever it is read.
    crate::admin::settle(&state, &out).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove(
    state: &AppState,
    caller: &SessionCaller,
    patch: UserPatch,
) -> Result<Response, Problem> {
    must_be_fresh(state, caller)?;
    let out = commands::user::change(
        &state.bus,
        caller.session.user_id,
        None,
        patch,
        &caller.metadata(),
    )
    .await?;
    // What one changed shows at once wherever it is read.
    crate::admin::settle(state, &out).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Remove one's email address. Needs a session with a fresh step-up.
#[utoipa::path(delete, path = "/self/methods/email",
    responses((status = 204, description = "removed"), (status = 403, description = "a step-up is needed first")), tag = "self")]
pub async fn remove_email(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Response, Problem> {
    let patch = UserPatch {
        email: Some(None),
        ..UserPatch::default()
    };
    remove(&state, &caller, patch).await
}

/// Remove one's phone number. Needs a session with a fresh step-up.
#[utoipa::path(delete, path = "/self/methods/phone",
    responses((status = 204, description = "removed"), (status = 403, description = "a step-up is needed first")), tag = "self")]
pub async fn remove_phone(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Response, Problem> {
    let patch = UserPatch {
        phone_number: Some(None),
        ..UserPatch::default()
    };
    remove(&state, &caller, patch).await
}
