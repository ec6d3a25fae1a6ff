//! Signing in: the authentication session a person goes through before
//! they hold a session ([`crate::session`]). It starts for an organization
//! (and perhaps a client and the request to continue to afterwards), bound
//! to one browser by the hash of a secret cookie; each step that succeeds
//! (a password, a code, a passkey) identifies the person and counts toward
//! the policy the session started under ([`crate::sign_in_policy`]); once
//! the policy is met it completes, naming the new session, and is over.
//!
//! A step that fails is not a fact of this stream: it is recorded as a
//! [`SignInStepFailed`] in the day's `authfailures` journal, with the count
//! the throttle keeps, so that every node, and a restarted one, slows the
//! failing source down (`crate::throttle`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::registration::decode_as;
use crate::sign_in_policy::{Factor, Method, SignInPolicy, StepRefused};
use crate::user::user_subject;

pub const STARTED_V1: &str = "signin.started.v1";
pub const STEP_SUCCEEDED_V1: &str = "signin.step_succeeded.v1";
pub const COMPLETED_V1: &str = "signin.completed.v1";
pub const EXPIRED_V1: &str = "signin.expired.v1";
pub const CODE_SENT_V1: &str = "signin.code_sent.v1";
pub const CODE_REJECTED_V1: &str = "signin.code_rejected.v1";
pub const PASSKEY_CHALLENGED_V1: &str = "signin.passkey_challenged.v1";

/// How long a code sent by email, SMS or WhatsApp may be used.
pub const CODE_LIFETIME: time::Duration = time::Duration::minutes(10);
/// Wrong codes a sent code survives; the next check is refused.
pub const CODE_ATTEMPTS: u8 = 5;
/// Codes one sign-in may send at most.
pub const MAX_CODES_SENT: u8 = 5;
/// How long a sign-in waits before sending another code.
pub const CODE_RESEND_AFTER: time::Duration = time::Duration::seconds(30);
/// A journal event (in `authfailures-{day}`), never in a sign-in stream.
pub const STEP_FAILED_V1: &str = "signin.step_failed.v1";
/// A journal event (in `authfailures-{day}`): an admin lifted the waits
/// the user's failed steps began, from every address.
pub const UNLOCKED_V1: &str = "signin.unlocked.v1";
/// A journal event (in `authfailures-{day}`): an account took more failed
/// steps from every address than an hour allows; its attempts are slowed
/// down and its person told.
pub const ACCOUNT_SLOWED_V1: &str = "signin.account_slowed.v1";
/// A journal event (in `authfailures-{day}`): a one-time code was sent,
/// with the send limiter's counts after it, so that every node (and a
/// restarted one) limits sending alike.
pub const CODE_SEND_COUNTED_V1: &str = "signin.code_send_counted.v1";

/// The longest `continue_to` accepted.
pub const MAX_CONTINUE_TO_LEN: usize = 4096;

// --- events ------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInStarted {
    pub sign_in_id: Uuid,
    pub organization_id: Uuid,
    #[serde(default)]
    pub client_id: Option<Uuid>,
    /// A path on this server to continue to once signed in.
    #[serde(default)]
    pub continue_to: Option<String>,
    /// SHA-256 (hex) of the browser's secret cookie.
    pub browser_hash: String,
    pub policy: SignInPolicy,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSucceeded {
    pub sign_in_id: Uuid,
    pub method: Method,
    pub user_id: Uuid,
    #[serde(default)]
    pub user_verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInCompleted {
    pub sign_in_id: Uuid,
    pub user_id: Uuid,
    /// The session it opened.
    pub session_id: Uuid,
    pub methods: Vec<Method>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInExpired {
    pub sign_in_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A one-time code was sent (or, for an identifier nobody holds, made
/// and sent nowhere, so that the answer is the same). Only its keyed hash
/// is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSent {
    pub sign_in_id: Uuid,
    pub method: Method,
    #[serde(default)]
    pub user_id: Option<Uuid>,
    pub code_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A wrong code was entered; `attempts` wrong ones so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRejected {
    pub sign_in_id: Uuid,
    pub attempts: u8,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A passkey was asked for: the ceremony's state (its challenge), which
/// the assertion must answer, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyChallenged {
    pub sign_in_id: Uuid,
    pub state: Value,
    /// The person asked for, when the sign-in named one (no handle needed
    /// in the answer then).
    #[serde(default)]
    pub user_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInEvent {
    Started(SignInStarted),
    StepSucceeded(StepSucceeded),
    Completed(SignInCompleted),
    Expired(SignInExpired),
    CodeSent(CodeSent),
    CodeRejected(CodeRejected),
    PasskeyChallenged(PasskeyChallenged),
}

impl DomainEvent for SignInEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Started(_) => STARTED_V1,
            Self::StepSucceeded(_) => STEP_SUCCEEDED_V1,
            Self::Completed(_) => COMPLETED_V1,
            Self::Expired(_) => EXPIRED_V1,
            Self::CodeSent(_) => CODE_SENT_V1,
            Self::CodeRejected(_) => CODE_REJECTED_V1,
            Self::PasskeyChallenged(_) => PASSKEY_CHALLENGED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Structs of ids, strings and times: serializing cannot fail.
        match self {
            Self::Started(e) => serde_json::to_value(e),
            Self::StepSucceeded(e) => serde_json::to_value(e),
            Self::Completed(e) => serde_json::to_value(e),
            Self::Expired(e) => serde_json::to_value(e),
            Self::CodeSent(e) => serde_json::to_value(e),
            Self::CodeRejected(e) => serde_json::to_value(e),
            Self::PasskeyChallenged(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            STARTED_V1 => decode_as(event_type, data).map(Self::Started),
            STEP_SUCCEEDED_V1 => decode_as(event_type, data).map(Self::StepSucceeded),
            COMPLETED_V1 => decode_as(event_type, data).map(Self::Completed),
            EXPIRED_V1 => decode_as(event_type, data).map(Self::Expired),
            CODE_SENT_V1 => decode_as(event_type, data).map(Self::CodeSent),
            CODE_REJECTED_V1 => decode_as(event_type, data).map(Self::CodeRejected),
            PASSKEY_CHALLENGED_V1 => decode_as(event_type, data).map(Self::PasskeyChallenged),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        match self {
            Self::StepSucceeded(e) => Some(user_subject(e.user_id)),
            Self::Completed(e) => Some(user_subject(e.user_id)),
            Self::CodeSent(e) => e.user_id.map(user_subject),
            Self::Started(_)
            | Self::Expired(_)
            | Self::CodeRejected(_)
            | Self::PasskeyChallenged(_) => None,
        }
    }
}

/// Why a step failed, as the journal records it. The person is told the
/// same thing for most of these (see the HTTP edge); the trail is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// No user has that identifier.
    UnknownUser,
    /// The password (or code) did not match.
    WrongCredential,
    /// The user has no credential of the method.
    NoCredential,
    /// The user is deactivated.
    Deactivated,
    /// The step named another person than the steps before it.
    OtherUser,
    /// A one-time code that was already used.
    Replayed,
    /// A passkey's signature counter went backwards: perhaps a cloned
    /// authenticator.
    CounterRegressed,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::WrongCredential => "wrong_credential",
            Self::NoCredential => "no_credential",
            Self::Deactivated => "deactivated",
            Self::OtherUser => "other_user",
            Self::Replayed => "replayed",
            Self::CounterRegressed => "counter_regressed",
        }
    }
}

/// A failed step, with the throttle's count for the account and source
/// after it and the wait it began (what other nodes impose too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInStepFailed {
    pub sign_in_id: Uuid,
    pub organization_id: Uuid,
    pub method: Method,
    pub reason: FailureReason,
    /// The person the step named, when it named one who exists.
    #[serde(default)]
    pub user_id: Option<Uuid>,
    /// What the throttle counts under: `user:{id}`, or a keyed hash of an
    /// identifier nobody has.
    pub account: String,
    pub failures: u32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub blocked_until: Option<OffsetDateTime>,
    /// Failures on the account from every address within the hour.
    #[serde(default)]
    pub account_failures: Option<u32>,
    /// Failures from the source address against any account, and the wait
    /// they began (`ThrottlePolicy::per_address`).
    #[serde(default)]
    pub address_failures: Option<u32>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub address_blocked_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

crate::single_event!(SignInStepFailed, STEP_FAILED_V1, |e: &SignInStepFailed| e
    .user_id
    .map(user_subject));

/// A code sent: the sends the limiter counts for the account and for the
/// source address (the event's `source_ip`) after it, and the waits they
/// began. No code and no address is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSendCounted {
    /// The person the code went to, when one did.
    #[serde(default)]
    pub user_id: Option<Uuid>,
    /// What the limiter counts under (as [`SignInStepFailed::account`]).
    pub account: String,
    pub account_sends: u32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub account_blocked_until: Option<OffsetDateTime>,
    /// Absent when only the account is limited (a code confirming an
    /// address from one's own session).
    #[serde(default)]
    pub source_sends: Option<u32>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub source_blocked_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

crate::single_event!(
    CodeSendCounted,
    CODE_SEND_COUNTED_V1,
    |e: &CodeSendCounted| e.user_id.map(user_subject)
);

/// An admin lifted every wait of a user's failed sign-ins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInUnlocked {
    pub user_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl DomainEvent for SignInUnlocked {
    fn event_type(&self) -> &'static str {
        UNLOCKED_V1
    }

    fn to_data(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            UNLOCKED_V1 => decode_as(event_type, data),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        Some(user_subject(self.user_id))
    }
}

/// An account under attack: `failures` from every address within the hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSlowed {
    pub user_id: Uuid,
    pub failures: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl DomainEvent for AccountSlowed {
    fn event_type(&self) -> &'static str {
        ACCOUNT_SLOWED_V1
    }

    fn to_data(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            ACCOUNT_SLOWED_V1 => decode_as(event_type, data),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        Some(user_subject(self.user_id))
    }
}

// --- commands, errors ------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInCommand {
    Start {
        id: Uuid,
        organization_id: Uuid,
        client_id: Option<Uuid>,
        continue_to: Option<String>,
        browser_hash: String,
        policy: SignInPolicy,
        expires_at: OffsetDateTime,
    },
    /// A step the command side verified.
    Succeed {
        method: Method,
        user_id: Uuid,
        user_verified: bool,
    },
    /// Opens the session `session_id` (the policy must be met).
    Complete { session_id: Uuid },
    /// Records that the sign-in ran out of time (nothing once recorded, or
    /// while time remains).
    Expire,
    /// Records a code sent by `method` (its keyed hash), replacing any
    /// earlier one.
    SendCode {
        method: Method,
        user_id: Option<Uuid>,
        code_hash: String,
    },
    /// Checks an entered code (its keyed hash, computed as the sent one
    /// was): the step succeeds, or a rejection is recorded.
    CheckCode { code_hash: String },
    /// Records the state of a passkey ceremony the next passkey step
    /// answers (replacing an earlier one).
    ChallengePasskey { state: Value, user_id: Option<Uuid> },
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SignInError {
    #[error("the sign-in already exists")]
    AlreadyExists,
    #[error("there is no such sign-in")]
    NotFound,
    #[error("the sign-in has expired")]
    Expired,
    #[error("the sign-in is already complete")]
    Completed,
    #[error("the policy does not allow the method {0}")]
    MethodNotAllowed(&'static str),
    #[error("a sign-in cannot begin with the method {0}")]
    NotFirstFactor(&'static str),
    #[error("the method {0} was already used in this sign-in")]
    AlreadyUsed(&'static str),
    #[error("the step identified another person than the steps before it")]
    OtherUser,
    #[error("{remaining} more factor(s) are required")]
    StepsRemaining { remaining: u8 },
    #[error("invalid {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("no code was sent in this sign-in")]
    NoCode,
    #[error("the code has expired: ask for a new one")]
    CodeExpired,
    #[error("too many wrong codes: ask for a new one")]
    CodeExhausted,
    #[error("a code was sent moments ago: wait before asking for another")]
    CodeRecentlySent,
    #[error("this sign-in has sent as many codes as it may")]
    TooManyCodes,
    #[error("no passkey was asked for in this sign-in")]
    NoPasskeyChallenge,
}

/// A code sent and not yet used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCode {
    pub method: Method,
    pub user_id: Option<Uuid>,
    pub hash: String,
    pub sent_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Wrong codes entered so far.
    pub attempts: u8,
}

/// Compares two digests in time that does not depend on where they differ.
fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Where the sign-in stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInState {
    InProgress,
    Completed,
    Expired,
}

impl SignInState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Expired => "expired",
        }
    }
}

/// A step that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub factor: Factor,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub started: bool,
    pub id: Uuid,
    pub organization_id: Uuid,
    pub client_id: Option<Uuid>,
    pub continue_to: Option<String>,
    pub browser_hash: String,
    pub policy: SignInPolicy,
    pub started_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Who the steps so far identified.
    pub user_id: Option<Uuid>,
    pub steps: Vec<Step>,
    /// The session it opened.
    pub session_id: Option<Uuid>,
    pub completed_at: Option<OffsetDateTime>,
    pub expired: bool,
    pub code: Option<PendingCode>,
    pub codes_sent: u8,
    /// The passkey ceremony the next passkey step answers, and whom it
    /// asked for.
    pub passkey_challenge: Option<(Value, Option<Uuid>)>,
}

impl Default for SignIn {
    fn default() -> Self {
        Self {
            started: false,
            id: Uuid::nil(),
            organization_id: Uuid::nil(),
            client_id: None,
            continue_to: None,
            browser_hash: String::new(),
            policy: SignInPolicy::default(),
            started_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: OffsetDateTime::UNIX_EPOCH,
            user_id: None,
            steps: Vec::new(),
            session_id: None,
            completed_at: None,
            expired: false,
            code: None,
            codes_sent: 0,
            passkey_challenge: None,
        }
    }
}

/// A path on this server: `/` then no second `/` or `\` (which browsers
/// read as another host), no control characters.
pub fn validate_continue_to(path: &str) -> Result<(), SignInError> {
    let bad = |reason| SignInError::Invalid {
        field: "continue_to",
        reason,
    };
    if path.len() > MAX_CONTINUE_TO_LEN {
        return Err(bad("is too long"));
    }
    let rest = path
        .strip_prefix('/')
        .ok_or(bad("must be a path on this server, starting with /"))?;
    if rest.starts_with('/') || rest.starts_with('\\') {
        return Err(bad("must be a path on this server, not another host"));
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(bad("must not hold control characters or backslashes"));
    }
    Ok(())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl SignIn {
    /// Where it stands at `now` (an unexpired sign-in past its time counts
    /// as expired).
    pub fn state(&self, now: OffsetDateTime) -> SignInState {
        if self.session_id.is_some() {
            SignInState::Completed
        } else if self.expired || now >= self.expires_at {
            SignInState::Expired
        } else {
            SignInState::InProgress
        }
    }

    pub fn factors(&self) -> Vec<Factor> {
        self.steps.iter().map(|s| s.factor).collect()
    }

    /// Factors still needed.
    pub fn remaining(&self) -> u8 {
        self.policy.remaining(&self.factors())
    }

    /// The methods of the steps that succeeded, in order.
    pub fn methods(&self) -> Vec<Method> {
        self.steps.iter().map(|s| s.factor.method).collect()
    }

    fn live(&self, now: OffsetDateTime) -> Result<(), SignInError> {
        if !self.started {
            return Err(SignInError::NotFound);
        }
        match self.state(now) {
            SignInState::InProgress => Ok(()),
            SignInState::Completed => Err(SignInError::Completed),
            SignInState::Expired => Err(SignInError::Expired),
        }
    }
}

impl Aggregate for SignIn {
    type Event = SignInEvent;
    type Command = SignInCommand;
    type Error = SignInError;
    const CATEGORY: &'static str = "signin";

    fn evolve(mut self, event: &SignInEvent) -> Self {
        match event {
            SignInEvent::Started(e) => {
                self.started = true;
                self.id = e.sign_in_id;
                self.organization_id = e.organization_id;
                self.client_id = e.client_id;
                self.continue_to = e.continue_to.clone();
                self.browser_hash = e.browser_hash.clone();
                self.policy = e.policy.clone();
                self.started_at = e.at;
                self.expires_at = e.expires_at;
            }
            SignInEvent::StepSucceeded(e) => {
                if self.code.as_ref().is_some_and(|c| c.method == e.method) {
                    self.code = None;
                }
                if e.method == Method::Passkey {
                    self.passkey_challenge = None;
                }
                self.user_id = Some(e.user_id);
                self.steps.push(Step {
                    factor: Factor {
                        method: e.method,
                        user_verified: e.user_verified,
                    },
                    at: e.at,
                });
            }
            SignInEvent::Completed(e) => {
                self.session_id = Some(e.session_id);
                self.completed_at = Some(e.at);
            }
            SignInEvent::Expired(_) => self.expired = true,
            SignInEvent::CodeSent(e) => {
                self.codes_sent = self.codes_sent.saturating_add(1);
                self.code = Some(PendingCode {
                    method: e.method,
                    user_id: e.user_id,
                    hash: e.code_hash.clone(),
                    sent_at: e.at,
                    expires_at: e.expires_at,
                    attempts: 0,
                });
            }
            SignInEvent::CodeRejected(e) => {
                if let Some(c) = &mut self.code {
                    c.attempts = e.attempts;
                }
            }
            SignInEvent::PasskeyChallenged(e) => {
                self.passkey_challenge = Some((e.state.clone(), e.user_id));
            }
        }
        self
    }

    fn decide(
        &self,
        command: SignInCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<SignInEvent>, SignInError> {
        match command {
            SignInCommand::Start {
                id,
                organization_id,
                client_id,
                continue_to,
                browser_hash,
                policy,
                expires_at,
            } => {
                if self.started {
                    return Err(SignInError::AlreadyExists);
                }
                if let Some(path) = &continue_to {
                    validate_continue_to(path)?;
                }
                if !is_sha256_hex(&browser_hash) {
                    return Err(SignInError::Invalid {
                        field: "browser_hash",
                        reason: "must be a SHA-256 digest in lowercase hex",
                    });
                }
                if expires_at <= now {
                    return Err(SignInError::Invalid {
                        field: "expires_at",
                        reason: "must be in the future",
                    });
                }
                let policy = policy.validate().map_err(|e| SignInError::Invalid {
                    field: e.field,
                    reason: e.reason,
                })?;
                Ok(vec![SignInEvent::Started(SignInStarted {
                    sign_in_id: id,
                    organization_id,
                    client_id,
                    continue_to,
                    browser_hash,
                    policy,
                    expires_at,
                    at: now,
                })])
            }
            SignInCommand::Succeed {
                method,
                user_id,
                user_verified,
            } => {
                self.live(now)?;
                if self.user_id.is_some_and(|u| u != user_id) {
                    return Err(SignInError::OtherUser);
                }
                let done = self.factors();
                if !done.is_empty() && self.policy.remaining(&done) == 0 {
                    return Err(SignInError::AlreadyUsed(method.as_str()));
                }
                if method == Method::Passkey && self.passkey_challenge.is_none() {
                    return Err(SignInError::NoPasskeyChallenge);
                }
                self.policy
                    .may_take(&done, method)
                    .map_err(|refused| match refused {
                        StepRefused::NotAllowed => SignInError::MethodNotAllowed(method.as_str()),
                        StepRefused::NotFirstFactor => SignInError::NotFirstFactor(method.as_str()),
                        StepRefused::AlreadyUsed => SignInError::AlreadyUsed(method.as_str()),
                    })?;
                Ok(vec![SignInEvent::StepSucceeded(StepSucceeded {
                    sign_in_id: self.id,
                    method,
                    user_id,
                    user_verified: user_verified && method == Method::Passkey,
                    at: now,
                })])
            }
            SignInCommand::Complete { session_id } => {
                self.live(now)?;
                let (Some(user_id), remaining) = (self.user_id, self.remaining()) else {
                    return Err(SignInError::StepsRemaining {
                        remaining: self.policy.factors_required,
                    });
                };
                if remaining > 0 {
                    return Err(SignInError::StepsRemaining { remaining });
                }
                Ok(vec![SignInEvent::Completed(SignInCompleted {
                    sign_in_id: self.id,
                    user_id,
                    session_id,
                    methods: self.methods(),
                    at: now,
                })])
            }
            SignInCommand::SendCode {
                method,
                user_id,
                code_hash,
            } => {
                self.live(now)?;
                if !method.is_sent_code() {
                    return Err(SignInError::Invalid {
                        field: "method",
                        reason: "only email, sms and whatsapp send codes",
                    });
                }
                if !is_sha256_hex(&code_hash) {
                    return Err(SignInError::Invalid {
                        field: "code_hash",
                        reason: "must be a SHA-256 digest in lowercase hex",
                    });
                }
                if self.user_id.is_some_and(|u| Some(u) != user_id) {
                    return Err(SignInError::OtherUser);
                }
                self.policy
                    .may_take(&self.factors(), method)
                    .map_err(|_| SignInError::MethodNotAllowed(method.as_str()))?;
                if self.codes_sent >= MAX_CODES_SENT {
                    return Err(SignInError::TooManyCodes);
                }
                if self
                    .code
                    .as_ref()
                    .is_some_and(|c| now - c.sent_at < CODE_RESEND_AFTER)
                {
                    return Err(SignInError::CodeRecentlySent);
                }
                Ok(vec![SignInEvent::CodeSent(CodeSent {
                    sign_in_id: self.id,
                    method,
                    user_id,
                    code_hash,
                    expires_at: (now + CODE_LIFETIME).min(self.expires_at),
                    at: now,
                })])
            }
            SignInCommand::CheckCode { code_hash } => {
                self.live(now)?;
                let code = self.code.as_ref().ok_or(SignInError::NoCode)?;
                if now >= code.expires_at {
                    return Err(SignInError::CodeExpired);
                }
                if code.attempts >= CODE_ATTEMPTS {
                    return Err(SignInError::CodeExhausted);
                }
                match code.user_id {
                    Some(user_id) if same_digest(&code.hash, &code_hash) => self.decide(
                        SignInCommand::Succeed {
                            method: code.method,
                            user_id,
                            user_verified: false,
                        },
                        now,
                    ),
                    _ => Ok(vec![SignInEvent::CodeRejected(CodeRejected {
                        sign_in_id: self.id,
                        attempts: code.attempts.saturating_add(1),
                        at: now,
                    })]),
                }
            }
            SignInCommand::ChallengePasskey { state, user_id } => {
                self.live(now)?;
                self.policy
                    .may_take(&self.factors(), Method::Passkey)
                    .map_err(|_| SignInError::MethodNotAllowed(Method::Passkey.as_str()))?;
                if self.user_id.is_some_and(|u| Some(u) != user_id) {
                    return Err(SignInError::OtherUser);
                }
                Ok(vec![SignInEvent::PasskeyChallenged(PasskeyChallenged {
                    sign_in_id: self.id,
                    state,
                    user_id,
                    at: now,
                })])
            }
            SignInCommand::Expire => {
                if !self.started {
                    return Err(SignInError::NotFound);
                }
                let due = self.session_id.is_none() && !self.expired && now >= self.expires_at;
                Ok(if due {
                    vec![SignInEvent::Expired(SignInExpired {
                        sign_in_id: self.id,
                        at: now,
                    })]
                } else {
                    vec![]
                })
            }
        }
    }
}

#[cfg(test)]
#[path = "sign_in_tests.rs"]
mod tests;
