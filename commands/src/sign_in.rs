//! Command handlers of signing in (`domain::sign_in`): starting a sign-in
//! under the organization's policy, verifying a step, recording a failed
//! one in the day's `authfailures` journal, and completing it by opening a
//! session (`crate::session`).
//!
//! A person is found by an identifier through the uniqueness claims of
//! usernames and email addresses (`crate::user`): the log, not a read
//! model, says who holds a name. An identifier nobody holds, a user with
//! no password and a deactivated user cost one argon2id verification like
//! a wrong password, so the time of an answer tells nothing.
//!
//! The throttle that slows a failing source down is the caller's (it lives
//! in memory on every node): this records what it counted.

use domain::Metadata;
use domain::client::Client;
use domain::organization::Organization;
use domain::reservation::{Reservation, ReservationKind};
use domain::session::{NewSession, Session, SessionCommand, SessionError};
use domain::sign_in::{
    FailureReason, SignIn, SignInCommand, SignInError, SignInStepFailed, SignInUnlocked,
};
use domain::sign_in_policy::{Method, SignInPolicy};
use domain::token::auth_failure_stream;
use domain::user::{User, UserCommand, normalize_identifier};
use time::Duration;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError};
use crate::journal;
use crate::password::{PasswordError, Passwords};
use crate::session::cookie_value;

/// How long the steps of a sign-in may take, and how long the session it
/// opens lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignInTimes {
    pub sign_in: Duration,
    pub session_lifetime: Duration,
    pub session_idle: Duration,
}

impl Default for SignInTimes {
    fn default() -> Self {
        Self {
            sign_in: Duration::minutes(10),
            session_lifetime: Duration::hours(12),
            session_idle: Duration::minutes(30),
        }
    }
}

/// Why a sign-in command did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SignInFailure {
    #[error(transparent)]
    SignIn(SignInError),
    #[error(transparent)]
    Session(SessionError),
    #[error("the organization does not exist")]
    UnknownOrganization,
    #[error("the client does not exist, is disabled or belongs to another organization")]
    UnknownClient,
    #[error("the user may not sign in")]
    UserInactive,
    #[error("no keyed pseudonyms are configured: identifiers cannot be looked up")]
    NoPseudonyms,
    #[error(transparent)]
    Hashing(#[from] PasswordError),
    #[error("the stream kept changing under the command ({attempts} attempts)")]
    Contention { attempts: usize },
    #[error(transparent)]
    Log(#[from] eventlog::Error),
}

impl From<CommandError<SignInError>> for SignInFailure {
    fn from(e: CommandError<SignInError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::SignIn(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { .. } => Self::Contention { attempts: 1 },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

impl From<CommandError<SessionError>> for SignInFailure {
    fn from(e: CommandError<SessionError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::Session(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { .. } => Self::Contention { attempts: 1 },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

type Result<T> = std::result::Result<T, SignInFailure>;

/// A sign-in to start. The organization is the client's when only the
/// client is named.
#[derive(Clone, Debug)]
pub struct StartSignIn {
    pub id: Uuid,
    pub organization_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub continue_to: Option<String>,
    /// SHA-256 (hex) of the browser's secret cookie.
    pub browser_hash: String,
}

/// The policy signing in to `organization_id` (through `client_id`, which
/// may have one of its own) follows now.
pub async fn policy_of(
    bus: &CommandBus,
    organization_id: Uuid,
    client_id: Option<Uuid>,
) -> Result<SignInPolicy> {
    let (org, _) = bus
        .load::<Organization>(&organization_id.to_string())
        .await?;
    if org.id.is_none() {
        return Err(SignInFailure::UnknownOrganization);
    }
    Ok(org.policy_for(client_id).clone())
}

/// Starts a sign-in under the organization's policy; answers its state.
pub async fn start(
    bus: &CommandBus,
    start: StartSignIn,
    times: SignInTimes,
    meta: &Metadata,
) -> Result<SignIn> {
    let client_org = match start.client_id {
        Some(id) => {
            // Fresh: a client may have been disabled on another node.
            let (client, _) = bus.load::<Client>(&id.to_string()).await?;
            if !client.is_active() {
                return Err(SignInFailure::UnknownClient);
            }
            Some(client.organization_id)
        }
        None => None,
    };
    let organization_id = match (start.organization_id, client_org) {
        (Some(org), Some(client_org)) if org != client_org => {
            return Err(SignInFailure::UnknownClient);
        }
        (Some(org), _) | (None, Some(org)) => org,
        (None, None) => return Err(SignInFailure::UnknownOrganization),
    };
    let policy = policy_of(bus, organization_id, start.client_id).await?;
    let command = SignInCommand::Start {
        id: start.id,
        organization_id,
        client_id: start.client_id,
        continue_to: start.continue_to,
        browser_hash: start.browser_hash,
        policy,
        expires_at: bus.clock().now() + times.sign_in,
    };
    bus.execute_new::<SignIn>(&start.id.to_string(), command, meta)
        .await?;
    load(bus, start.id).await
}

/// The sign-in as the log has it now.
pub async fn load(bus: &CommandBus, id: Uuid) -> Result<SignIn> {
    let (sign_in, _) = bus.load::<SignIn>(&id.to_string()).await?;
    if !sign_in.started {
        return Err(SignInFailure::SignIn(SignInError::NotFound));
    }
    Ok(sign_in)
}

/// Records that the sign-in ran out of time, if it did (best effort: the
/// state already says so).
pub async fn expire(bus: &CommandBus, id: Uuid, meta: &Metadata) {
    if let Err(e) = bus
        .execute::<SignIn>(&id.to_string(), SignInCommand::Expire, meta)
        .await
    {
        tracing::warn!(error = %e, "the expiry of a sign-in could not be recorded");
    }
}

/// Whom an identifier names in an organization, and what the throttle
/// counts an attempt under: `user:{id}`, or the identifier's keyed claim
/// when nobody holds it.
#[derive(Clone, Debug)]
pub struct Identified {
    pub account: String,
    pub user: Option<User>,
}

/// Finds the user holding `identifier` as a username, or else as an email
/// address, in `organization_id`.
pub async fn identify(
    bus: &CommandBus,
    organization_id: Uuid,
    identifier: &str,
) -> Result<Identified> {
    let ids = bus.person_ids().ok_or(SignInFailure::NoPseudonyms)?;
    let normalized = normalize_identifier(identifier);
    let mut first_claim = None;
    for kind in [ReservationKind::Username, ReservationKind::Email] {
        let claim = ids.claim(organization_id, kind.as_str(), &normalized);
        let (reservation, _) = bus.load::<Reservation>(&claim).await?;
        if let Some(holder) = reservation.holder
            && reservation.organization_id == Some(organization_id)
        {
            let (user, _) = bus.load::<User>(&holder.to_string()).await?;
            if user.exists() && user.organization_id == organization_id {
                return Ok(Identified {
                    account: account_of_user(user.id),
                    user: Some(user),
                });
            }
        }
        first_claim.get_or_insert(claim);
    }
    let claim = first_claim.unwrap_or_default();
    Ok(Identified {
        account: format!("claim:{}", &claim[..claim.len().min(32)]),
        user: None,
    })
}

/// What the throttle counts a known user's attempts under.
pub fn account_of_user(user_id: Uuid) -> String {
    format!("user:{}", user_id.simple())
}

/// A verified attempt: the account it counts under, the user it named (if
/// one exists), and whether it succeeded.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub account: String,
    pub user_id: Option<Uuid>,
    pub outcome: std::result::Result<(), FailureReason>,
}

/// Checks a password for whom [`identify`] found. Every path costs one
/// verification; a success with a hash of older parameters replaces the
/// hash.
pub async fn verify_password(
    bus: &CommandBus,
    passwords: &Passwords,
    found: Identified,
    password: &str,
    meta: &Metadata,
) -> Result<Attempt> {
    let Some(user) = found.user else {
        passwords.verify_nothing(password).await?;
        return Ok(Attempt {
            account: found.account,
            user_id: None,
            outcome: Err(FailureReason::UnknownUser),
        });
    };
    let hash = user.password.as_ref().and_then(|p| p.hash.value().cloned());
    let matched = match &hash {
        Some(hash) => passwords.verify(hash, password).await?,
        None => passwords.verify_nothing(password).await?,
    };
    let outcome = if hash.is_none() {
        Err(FailureReason::NoCredential)
    } else if !matched {
        Err(FailureReason::WrongCredential)
    } else if !user.is_active() {
        Err(FailureReason::Deactivated)
    } else {
        Ok(())
    };
    if outcome.is_ok()
        && let Some(hash) = &hash
        && passwords.needs_rehash(hash)
    {
        rehash(bus, passwords, &user, password, meta).await;
    }
    Ok(Attempt {
        account: found.account,
        user_id: Some(user.id),
        outcome,
    })
}

/// Replaces a verified password's hash with one of the configured
/// parameters (best effort: the old hash keeps working).
async fn rehash(
    bus: &CommandBus,
    passwords: &Passwords,
    user: &User,
    password: &str,
    meta: &Metadata,
) {
    let must_change = user.password.as_ref().is_some_and(|p| p.must_change);
    let hash = match passwords.hash(password).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "a password could not be rehashed");
            return;
        }
    };
    let command = UserCommand::SetPassword { hash, must_change };
    if let Err(e) = bus
        .execute::<User>(&user.id.to_string(), command, meta)
        .await
    {
        tracing::warn!(error = %e, "a rehashed password could not be recorded");
    }
}

/// Records a step that succeeded; answers the sign-in after it.
pub async fn succeed(
    bus: &CommandBus,
    sign_in_id: Uuid,
    method: Method,
    user_id: Uuid,
    user_verified: bool,
    meta: &Metadata,
) -> Result<SignIn> {
    let command = SignInCommand::Succeed {
        method,
        user_id,
        user_verified,
    };
    bus.execute::<SignIn>(&sign_in_id.to_string(), command, meta)
        .await?;
    load(bus, sign_in_id).await
}

/// A new six-digit code, uniformly drawn.
pub fn new_code() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// Records a code sent by `method` for `user_id` (none: an identifier
/// nobody holds, the code goes nowhere); `code_hash` is its keyed digest.
pub async fn send_code(
    bus: &CommandBus,
    sign_in_id: Uuid,
    method: Method,
    user_id: Option<Uuid>,
    code_hash: String,
    meta: &Metadata,
) -> Result<SignIn> {
    let command = SignInCommand::SendCode {
        method,
        user_id,
        code_hash,
    };
    bus.execute::<SignIn>(&sign_in_id.to_string(), command, meta)
        .await?;
    load(bus, sign_in_id).await
}

/// Records the state of a passkey ceremony the next passkey step answers.
pub async fn challenge_passkey(
    bus: &CommandBus,
    sign_in_id: Uuid,
    state: serde_json::Value,
    user_id: Option<Uuid>,
    meta: &Metadata,
) -> Result<()> {
    bus.execute::<SignIn>(
        &sign_in_id.to_string(),
        SignInCommand::ChallengePasskey { state, user_id },
        meta,
    )
    .await?;
    Ok(())
}

/// What checking an entered code did.
#[derive(Debug)]
pub enum CodeCheck {
    /// The step succeeded: the sign-in after it.
    Accepted(Box<SignIn>),
    /// A wrong code, recorded; the person the sent code was for, if any.
    Rejected { user_id: Option<Uuid> },
}

/// Checks an entered code (`code_hash`, its keyed digest).
pub async fn check_code(
    bus: &CommandBus,
    sign_in_id: Uuid,
    code_hash: String,
    meta: &Metadata,
) -> Result<CodeCheck> {
    let before = load(bus, sign_in_id).await?;
    let pending_for = before.code.as_ref().and_then(|c| c.user_id);
    let mut meta = meta.clone();
    if let Some(user) = pending_for {
        meta.actor = domain::Actor::user(user.to_string());
    }
    bus.execute::<SignIn>(
        &sign_in_id.to_string(),
        SignInCommand::CheckCode { code_hash },
        &meta,
    )
    .await?;
    let after = load(bus, sign_in_id).await?;
    if after.steps.len() > before.steps.len() {
        Ok(CodeCheck::Accepted(Box::new(after)))
    } else {
        Ok(CodeCheck::Rejected {
            user_id: pending_for,
        })
    }
}

/// Records a failed step in the day's `authfailures` journal.
pub async fn record_failure(
    bus: &CommandBus,
    failure: &SignInStepFailed,
    meta: &Metadata,
) -> std::result::Result<(), eventlog::Error> {
    journal::record(bus.log(), &auth_failure_stream(failure.at), failure, meta).await?;
    Ok(())
}

/// Records a code sent, with the send limiter's counts (read by every node).
pub async fn record_code_send(
    bus: &CommandBus,
    counted: &domain::sign_in::CodeSendCounted,
    meta: &Metadata,
) -> std::result::Result<(), eventlog::Error> {
    journal::record(bus.log(), &auth_failure_stream(counted.at), counted, meta).await?;
    Ok(())
}

/// Records that an account is under attack (its attempts are slowed).
pub async fn record_slowed(
    bus: &CommandBus,
    event: &domain::sign_in::AccountSlowed,
    meta: &Metadata,
) -> std::result::Result<(), eventlog::Error> {
    journal::record(bus.log(), &auth_failure_stream(event.at), event, meta).await?;
    Ok(())
}

/// Lifts every wait the user's failed sign-ins began, on every node.
pub async fn unlock(
    bus: &CommandBus,
    user_id: Uuid,
    meta: &Metadata,
) -> std::result::Result<(), eventlog::Error> {
    let now = bus.clock().now();
    let event = SignInUnlocked { user_id, at: now };
    journal::record(bus.log(), &auth_failure_stream(now), &event, meta).await?;
    Ok(())
}

/// A completed sign-in: the session it opened and the cookie value that
/// carries it (shown once; only its hash is kept).
#[derive(Debug)]
pub struct Completed {
    pub sign_in: SignIn,
    pub session: Session,
    pub cookie: String,
    /// Where its last event landed (for a caller that reads its own write).
    pub position: Option<eventlog::Position>,
}

/// Completes a sign-in whose policy is met: opens a session with a new id
/// and secret (nothing of the sign-in carries over, so nothing planted
/// before it can ride on it), records the sign-in's end and the user's
/// sign-in. The session is recorded first: one whose sign-in then fails to
/// complete was never handed out.
pub async fn complete(
    bus: &CommandBus,
    sign_in_id: Uuid,
    times: SignInTimes,
    meta: &Metadata,
) -> Result<Completed> {
    let now = bus.clock().now();
    let sign_in = load(bus, sign_in_id).await?;
    let session_id = Uuid::now_v7();
    // Decided here first, to write nothing for a sign-in that cannot end.
    domain::Aggregate::decide(&sign_in, SignInCommand::Complete { session_id }, now)
        .map_err(SignInFailure::SignIn)?;
    let user_id = sign_in
        .user_id
        .ok_or(SignInFailure::SignIn(SignInError::NotFound))?;
    let (user, _) = bus.load::<User>(&user_id.to_string()).await?;
    if !user.is_active() {
        return Err(SignInFailure::UserInactive);
    }
    let secret = crypto::new_secret();
    let create = SessionCommand::Create(Box::new(NewSession {
        id: session_id,
        user_id,
        organization_id: sign_in.organization_id,
        sign_in_id,
        secret_hash: crypto::hash_secret(&secret),
        methods: sign_in.methods(),
        factors: sign_in.factors().iter().map(|f| f.weight()).sum(),
        auth_time: sign_in.steps.last().map_or(now, |s| s.at),
        lifetime: times.session_lifetime,
        idle_timeout: times.session_idle,
        source_ip: meta.source_ip.clone(),
        user_agent: meta.user_agent.clone(),
    }));
    bus.execute_new::<Session>(&session_id.to_string(), create, meta)
        .await?;
    let mut position = bus
        .execute::<SignIn>(
            &sign_in_id.to_string(),
            SignInCommand::Complete { session_id },
            meta,
        )
        .await?
        .position;
    match bus
        .execute::<User>(&user_id.to_string(), UserCommand::RecordSignIn, meta)
        .await
    {
        Ok(out) => position = out.position.or(position),
        Err(e) => tracing::warn!(error = %e, "a sign-in could not be recorded on the user"),
    }
    let session = match bus
        .cached::<Session>(&session_id.to_string())
        .filter(|s| s.created)
    {
        Some(s) => s,
        None => bus.load::<Session>(&session_id.to_string()).await?.0,
    };
    Ok(Completed {
        sign_in: load(bus, sign_in_id).await?,
        cookie: cookie_value(session_id, &secret),
        session,
        position,
    })
}
