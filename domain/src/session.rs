//! The session a person holds once signed in: created by a completed
//! sign-in ([`crate::sign_in`]), carried by a cookie whose secret only its
//! SHA-256 is kept of, bound to the user, the methods they used and when.
//! It ends when revoked (by the person, an admin, their deactivation or
//! erasure, a sign-out), when it has not been used for its idle timeout, or
//! at its absolute expiry.
//!
//! Use is recorded at most once per [`USE_RECORDED_EVERY`], so a busy
//! session does not write on every request; idle expiry is decided from
//! the last recorded use.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::pii::Pii;
use crate::registration::decode_as;
use crate::sign_in_policy::Method;
use crate::user::user_subject;

pub const CREATED_V1: &str = "session.created.v1";
pub const USED_V1: &str = "session.used.v1";
pub const REVOKED_V1: &str = "session.revoked.v1";
pub const EXPIRED_V1: &str = "session.expired.v1";
pub const VERIFIED_V1: &str = "session.verified.v1";
pub const ADDRESS_CODE_SENT_V1: &str = "session.address_code_sent.v1";
pub const ADDRESS_CODE_FAILED_V1: &str = "session.address_code_failed.v1";
pub const ADDRESS_CODE_USED_V1: &str = "session.address_code_used.v1";

/// Wrong tries a code confirming a new address takes before it is used up.
pub const ADDRESS_CODE_TRIES: u8 = 5;

/// How recent a verification must be for a change to one's own sign-in
/// methods (step-up).
pub const STEP_UP_WINDOW: Duration = Duration::minutes(5);

/// How often a session's use is recorded at most.
pub const USE_RECORDED_EVERY: Duration = Duration::seconds(60);

/// The shortest idle timeout: longer than the use recording interval, so a
/// session in use never idles out.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::seconds(120);

/// Why a session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The person signed out.
    SignedOut,
    /// The person revoked it (from another session, or this one).
    ByUser,
    ByAdmin,
    UserDeactivated,
    UserDeleted,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignedOut => "signed_out",
            Self::ByUser => "by_user",
            Self::ByAdmin => "by_admin",
            Self::UserDeactivated => "user_deactivated",
            Self::UserDeleted => "user_deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCreated {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub sign_in_id: Uuid,
    /// SHA-256 (hex) of the cookie's secret.
    pub secret_hash: String,
    pub methods: Vec<Method>,
    /// The factors the methods counted for (a passkey that verified its
    /// user counts twice); absent in sessions from before: one per method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factors: Option<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub auth_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub idle_timeout_seconds: i64,
    /// Where the session began: personal data, under the user's key.
    #[serde(default)]
    pub source_ip: Option<Pii<String>>,
    #[serde(default)]
    pub user_agent: Option<Pii<String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Something happened to a session: used, expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFact {
    pub session_id: Uuid,
    pub user_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRevoked {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub reason: RevokeReason,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The person proved again who they are (a step-up), with `method`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionVerified {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub method: Method,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A code went to an address the person is adding: its keyed digest (no
/// code, no address) and until when it works. It replaces any code before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressCodeSent {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub digest: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The code the session holds was still waiting when this was noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressCode {
    pub digest: String,
    pub expires_at: OffsetDateTime,
    pub failures: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    Created(SessionCreated),
    Used(SessionFact),
    Revoked(SessionRevoked),
    Expired(SessionFact),
    Verified(SessionVerified),
    AddressCodeSent(AddressCodeSent),
    /// A wrong code for the address: the last of [`ADDRESS_CODE_TRIES`] uses
    /// it up.
    AddressCodeFailed(SessionFact),
    /// The right code: the address is confirmed, the code spent.
    AddressCodeUsed(SessionFact),
}

impl SessionEvent {
    pub fn user_id(&self) -> Uuid {
        match self {
            Self::Created(e) => e.user_id,
            Self::Used(e)
            | Self::Expired(e)
            | Self::AddressCodeFailed(e)
            | Self::AddressCodeUsed(e) => e.user_id,
            Self::Revoked(e) => e.user_id,
            Self::Verified(e) => e.user_id,
            Self::AddressCodeSent(e) => e.user_id,
        }
    }
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => CREATED_V1,
            Self::Used(_) => USED_V1,
            Self::Revoked(_) => REVOKED_V1,
            Self::Expired(_) => EXPIRED_V1,
            Self::Verified(_) => VERIFIED_V1,
            Self::AddressCodeSent(_) => ADDRESS_CODE_SENT_V1,
            Self::AddressCodeFailed(_) => ADDRESS_CODE_FAILED_V1,
            Self::AddressCodeUsed(_) => ADDRESS_CODE_USED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Structs of ids, strings and times: serializing cannot fail.
        match self {
            Self::Created(e) => serde_json::to_value(e),
            Self::Used(e)
            | Self::Expired(e)
            | Self::AddressCodeFailed(e)
            | Self::AddressCodeUsed(e) => serde_json::to_value(e),
            Self::Revoked(e) => serde_json::to_value(e),
            Self::Verified(e) => serde_json::to_value(e),
            Self::AddressCodeSent(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            CREATED_V1 => decode_as(event_type, data).map(Self::Created),
            USED_V1 => decode_as(event_type, data).map(Self::Used),
            REVOKED_V1 => decode_as(event_type, data).map(Self::Revoked),
            EXPIRED_V1 => decode_as(event_type, data).map(Self::Expired),
            VERIFIED_V1 => decode_as(event_type, data).map(Self::Verified),
            ADDRESS_CODE_SENT_V1 => decode_as(event_type, data).map(Self::AddressCodeSent),
            ADDRESS_CODE_FAILED_V1 => decode_as(event_type, data).map(Self::AddressCodeFailed),
            ADDRESS_CODE_USED_V1 => decode_as(event_type, data).map(Self::AddressCodeUsed),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        Some(user_subject(self.user_id()))
    }
}

/// A session to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub sign_in_id: Uuid,
    pub secret_hash: String,
    pub methods: Vec<Method>,
    /// The factors they counted for.
    pub factors: u8,
    pub auth_time: OffsetDateTime,
    pub lifetime: Duration,
    pub idle_timeout: Duration,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    Create(Box<NewSession>),
    /// The session was used now: recorded when the last recorded use is
    /// [`USE_RECORDED_EVERY`] old. Refused once the session is over.
    Use,
    Revoke {
        reason: RevokeReason,
    },
    /// Records that the session ran out of time (nothing while it has not,
    /// or once it is over).
    Expire,
    /// The person proved again who they are with `method` (verified by the
    /// command side).
    Verify {
        method: Method,
    },
    /// A code went to an address being added (its digest, until when it
    /// works).
    SendAddressCode {
        digest: String,
        expires_at: OffsetDateTime,
    },
    /// A wrong code was given for the address (nothing when none waits).
    FailAddressCode,
    /// The right code for the code with `digest`: spent once.
    UseAddressCode {
        digest: String,
    },
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SessionError {
    #[error("the session already exists")]
    AlreadyExists,
    #[error("there is no such session")]
    NotFound,
    #[error("the session was revoked")]
    Revoked,
    #[error("the session has expired")]
    Expired,
    #[error("no code for a new address waits in this session: it was used, used up, or it expired")]
    NoAddressCode,
    #[error("invalid {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub created: bool,
    pub id: Uuid,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub sign_in_id: Uuid,
    pub secret_hash: String,
    pub methods: Vec<Method>,
    /// The factors the sign-in counted.
    pub factors: u8,
    pub auth_time: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub last_used_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub idle_timeout: Duration,
    pub revoked: Option<RevokeReason>,
    pub expired: bool,
    /// When the person last proved who they are: the sign-in, or a
    /// step-up since.
    pub verified_at: OffsetDateTime,
    /// The code confirming an address being added, while it may be used.
    pub address_code: Option<AddressCode>,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            created: false,
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            organization_id: Uuid::nil(),
            sign_in_id: Uuid::nil(),
            secret_hash: String::new(),
            methods: Vec::new(),
            factors: 0,
            auth_time: OffsetDateTime::UNIX_EPOCH,
            created_at: OffsetDateTime::UNIX_EPOCH,
            last_used_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: OffsetDateTime::UNIX_EPOCH,
            idle_timeout: Duration::ZERO,
            revoked: None,
            expired: false,
            verified_at: OffsetDateTime::UNIX_EPOCH,
            address_code: None,
        }
    }
}

impl Session {
    /// When it idles out unless used before.
    pub fn idle_expires_at(&self) -> OffsetDateTime {
        self.last_used_at + self.idle_timeout
    }

    /// Whether it may be used at `now`, and why not.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), SessionError> {
        if !self.created {
            return Err(SessionError::NotFound);
        }
        if self.revoked.is_some() {
            return Err(SessionError::Revoked);
        }
        if self.expired || now >= self.expires_at || now >= self.idle_expires_at() {
            return Err(SessionError::Expired);
        }
        Ok(())
    }

    /// Whether the person proved who they are within [`STEP_UP_WINDOW`].
    pub fn freshly_verified(&self, now: OffsetDateTime) -> bool {
        now - self.verified_at <= STEP_UP_WINDOW
    }

    /// Whether the sign-in counted more than one factor (two methods, or
    /// a passkey that verified its user).
    pub fn multi_factor(&self) -> bool {
        self.factors > 1
    }

    /// The authentication method references (RFC 8176) of its methods,
    /// with `mfa` when more than one factor counted.
    pub fn amr(&self) -> Vec<&'static str> {
        let mut amr: Vec<&'static str> = Vec::new();
        for m in &self.methods {
            if !amr.contains(&m.amr()) {
                amr.push(m.amr());
            }
        }
        if self.multi_factor() {
            amr.push("mfa");
        }
        amr
    }

    fn fact(&self, now: OffsetDateTime) -> SessionFact {
        SessionFact {
            session_id: self.id,
            user_id: self.user_id,
            at: now,
        }
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Aggregate for Session {
    type Event = SessionEvent;
    type Command = SessionCommand;
    type Error = SessionError;
    const CATEGORY: &'static str = "session";

    fn evolve(mut self, event: &SessionEvent) -> Self {
        match event {
            SessionEvent::Created(e) => {
                self.created = true;
                self.id = e.session_id;
                self.user_id = e.user_id;
                self.organization_id = e.organization_id;
                self.sign_in_id = e.sign_in_id;
                self.secret_hash = e.secret_hash.clone();
                self.methods = e.methods.clone();
                self.factors = e
                    .factors
                    .unwrap_or_else(|| u8::try_from(e.methods.len()).unwrap_or(u8::MAX));
                self.auth_time = e.auth_time;
                self.created_at = e.at;
                self.last_used_at = e.at;
                self.expires_at = e.expires_at;
                self.idle_timeout = Duration::seconds(e.idle_timeout_seconds);
                self.verified_at = e.auth_time;
            }
            SessionEvent::Verified(e) => self.verified_at = e.at,
            SessionEvent::AddressCodeSent(e) => {
                self.address_code = Some(AddressCode {
                    digest: e.digest.clone(),
                    expires_at: e.expires_at,
                    failures: 0,
                });
            }
            SessionEvent::AddressCodeFailed(_) => {
                if let Some(c) = &mut self.address_code {
                    c.failures = c.failures.saturating_add(1);
                    if c.failures >= ADDRESS_CODE_TRIES {
                        self.address_code = None;
                    }
                }
            }
            SessionEvent::AddressCodeUsed(_) => self.address_code = None,
            SessionEvent::Used(e) => self.last_used_at = e.at,
            SessionEvent::Revoked(e) => self.revoked = Some(e.reason),
            SessionEvent::Expired(_) => self.expired = true,
        }
        self
    }

    fn decide(
        &self,
        command: SessionCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionEvent>, SessionError> {
        match command {
            SessionCommand::Create(new) => {
                let NewSession {
                    id,
                    user_id,
                    organization_id,
                    sign_in_id,
                    secret_hash,
                    methods,
                    factors,
                    auth_time,
                    lifetime,
                    idle_timeout,
                    source_ip,
                    user_agent,
                } = *new;
                if self.created {
                    return Err(SessionError::AlreadyExists);
                }
                if !is_sha256_hex(&secret_hash) {
                    return Err(SessionError::Invalid {
                        field: "secret_hash",
                        reason: "must be a SHA-256 digest in lowercase hex",
                    });
                }
                if methods.is_empty() {
                    return Err(SessionError::Invalid {
                        field: "methods",
                        reason: "a session follows at least one step",
                    });
                }
                if idle_timeout < MIN_IDLE_TIMEOUT || lifetime < idle_timeout {
                    return Err(SessionError::Invalid {
                        field: "idle_timeout",
                        reason: "must be at least two minutes and at most the lifetime",
                    });
                }
                Ok(vec![SessionEvent::Created(SessionCreated {
                    session_id: id,
                    user_id,
                    organization_id,
                    sign_in_id,
                    secret_hash,
                    methods,
                    factors: Some(factors),
                    auth_time,
                    expires_at: now + lifetime,
                    idle_timeout_seconds: idle_timeout.whole_seconds(),
                    source_ip: source_ip.map(Pii::new),
                    user_agent: user_agent.map(Pii::new),
                    at: now,
                })])
            }
            SessionCommand::Use => {
                self.check(now)?;
                Ok(if now - self.last_used_at >= USE_RECORDED_EVERY {
                    vec![SessionEvent::Used(self.fact(now))]
                } else {
                    vec![]
                })
            }
            SessionCommand::Revoke { reason } => {
                if !self.created {
                    return Err(SessionError::NotFound);
                }
                Ok(if self.revoked.is_some() || self.expired {
                    vec![]
                } else {
                    vec![SessionEvent::Revoked(SessionRevoked {
                        session_id: self.id,
                        user_id: self.user_id,
                        reason,
                        at: now,
                    })]
                })
            }
            SessionCommand::Verify { method } => {
                self.check(now)?;
                Ok(vec![SessionEvent::Verified(SessionVerified {
                    session_id: self.id,
                    user_id: self.user_id,
                    method,
                    at: now,
                })])
            }
            SessionCommand::SendAddressCode { digest, expires_at } => {
                self.check(now)?;
                Ok(vec![SessionEvent::AddressCodeSent(AddressCodeSent {
                    session_id: self.id,
                    user_id: self.user_id,
                    digest,
                    expires_at,
                    at: now,
                })])
            }
            SessionCommand::FailAddressCode => Ok(match &self.address_code {
                Some(c) if c.expires_at > now => {
                    vec![SessionEvent::AddressCodeFailed(self.fact(now))]
                }
                _ => vec![],
            }),
            SessionCommand::UseAddressCode { digest } => {
                self.check(now)?;
                match &self.address_code {
                    Some(c) if c.expires_at > now && c.digest == digest => {
                        Ok(vec![SessionEvent::AddressCodeUsed(self.fact(now))])
                    }
                    _ => Err(SessionError::NoAddressCode),
                }
            }
            SessionCommand::Expire => {
                let due = matches!(self.check(now), Err(SessionError::Expired)) && !self.expired;
                Ok(if due {
                    vec![SessionEvent::Expired(self.fact(now))]
                } else {
                    vec![]
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::given_when;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn create() -> SessionCommand {
        SessionCommand::Create(Box::new(NewSession {
            id: Uuid::from_u128(1),
            user_id: Uuid::from_u128(2),
            organization_id: Uuid::from_u128(3),
            sign_in_id: Uuid::from_u128(4),
            secret_hash: "0f".repeat(32),
            methods: vec![Method::Password, Method::Totp],
            factors: 2,
            auth_time: now(),
            lifetime: Duration::hours(12),
            idle_timeout: Duration::minutes(30),
            source_ip: Some("192.0.2.1".into()),
            user_agent: None,
        }))
    }

    fn created() -> Vec<SessionEvent> {
        given_when::<Session>(&[], create(), now()).unwrap()
    }

    #[test]
    fn a_code_for_a_new_address_is_spent_once_and_used_up_by_wrong_tries() {
        let send = SessionCommand::SendAddressCode {
            digest: "d1".into(),
            expires_at: now() + Duration::minutes(10),
        };
        let mut events = created();
        events.extend(given_when::<Session>(&events, send.clone(), now()).unwrap());
        let spend = |digest: &str| SessionCommand::UseAddressCode {
            digest: digest.into(),
        };
        assert_eq!(
            given_when::<Session>(&events, spend("other"), now()),
            Err(SessionError::NoAddressCode)
        );
        let late = now() + Duration::minutes(11);
        assert_eq!(
            given_when::<Session>(&events, spend("d1"), late),
            Err(SessionError::NoAddressCode)
        );
        let mut spent = events.clone();
        spent.extend(given_when::<Session>(&spent, spend("d1"), now()).unwrap());
        assert_eq!(
            given_when::<Session>(&spent, spend("d1"), now()),
            Err(SessionError::NoAddressCode),
            "once"
        );
        for _ in 0..ADDRESS_CODE_TRIES {
            let failed = given_when::<Session>(&events, SessionCommand::FailAddressCode, now());
            events.extend(failed.unwrap());
        }
        assert_eq!(Session::fold(&events).address_code, None);
        assert_eq!(
            given_when::<Session>(&events, spend("d1"), now()),
            Err(SessionError::NoAddressCode),
            "used up"
        );
    }

    #[test]
    fn mfa_is_named_by_the_factors_counted_not_the_methods() {
        let one_passkey = |factors: Option<u8>| {
            let mut e = created();
            if let SessionEvent::Created(c) = &mut e[0] {
                c.methods = vec![Method::Passkey];
                c.factors = factors;
            }
            Session::fold(&e)
        };
        // A passkey that verified its user counts twice.
        assert_eq!(one_passkey(Some(2)).amr(), ["hwk", "mfa"]);
        assert!(one_passkey(Some(2)).multi_factor());
        assert_eq!(one_passkey(Some(1)).amr(), ["hwk"]);
        // A session recorded before factors were: one per method.
        assert_eq!(one_passkey(None).amr(), ["hwk"]);
        assert_eq!(Session::fold(&created()).amr(), ["pwd", "otp", "mfa"]);
    }

    #[test]
    fn a_session_is_created_once_and_names_its_user_as_subject() {
        let events = created();
        assert_eq!(events[0].subject(), Some(user_subject(Uuid::from_u128(2))));
        assert_eq!(
            given_when::<Session>(&events, create(), now()),
            Err(SessionError::AlreadyExists)
        );
        let s = Session::fold(&events);
        assert_eq!(s.amr(), vec!["pwd", "otp", "mfa"]);
        assert_eq!(s.check(now()), Ok(()));
    }

    #[test]
    fn use_is_recorded_at_most_once_a_minute_and_keeps_it_from_idling_out() {
        let mut events = created();
        let soon = now() + Duration::seconds(30);
        assert_eq!(
            given_when::<Session>(&events, SessionCommand::Use, soon).unwrap(),
            vec![]
        );
        let later = now() + Duration::minutes(20);
        let used = given_when::<Session>(&events, SessionCommand::Use, later).unwrap();
        assert_eq!(used.len(), 1);
        events.extend(used);
        let s = Session::fold(&events);
        // 45 minutes after creation, 25 after the recorded use: still live.
        assert_eq!(s.check(now() + Duration::minutes(45)), Ok(()));
        assert_eq!(
            s.check(now() + Duration::minutes(51)),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn an_idle_or_old_session_is_over_and_its_expiry_recorded_once() {
        let events = created();
        let idle = now() + Duration::minutes(31);
        assert_eq!(
            given_when::<Session>(&events, SessionCommand::Use, idle),
            Err(SessionError::Expired)
        );
        let expired = given_when::<Session>(&events, SessionCommand::Expire, idle).unwrap();
        assert_eq!(expired.len(), 1);
        let mut all = events.clone();
        all.extend(expired);
        assert_eq!(
            given_when::<Session>(&all, SessionCommand::Expire, idle).unwrap(),
            vec![]
        );
        assert_eq!(
            given_when::<Session>(&events, SessionCommand::Expire, now()).unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_revoked_session_is_over_and_revoking_again_changes_nothing() {
        let mut events = created();
        let revoke = SessionCommand::Revoke {
            reason: RevokeReason::ByAdmin,
        };
        events.extend(given_when::<Session>(&events, revoke.clone(), now()).unwrap());
        assert_eq!(
            Session::fold(&events).check(now()),
            Err(SessionError::Revoked)
        );
        assert_eq!(
            given_when::<Session>(&events, revoke, now()).unwrap(),
            vec![]
        );
        assert_eq!(
            given_when::<Session>(&events, SessionCommand::Use, now()),
            Err(SessionError::Revoked)
        );
    }

    #[test]
    fn a_step_up_is_fresh_for_five_minutes() {
        let mut events = created();
        let s = Session::fold(&events);
        assert!(s.freshly_verified(now() + Duration::minutes(5)));
        assert!(!s.freshly_verified(now() + Duration::minutes(6)));
        let later = now() + Duration::minutes(20);
        events.extend(
            given_when::<Session>(
                &events,
                SessionCommand::Verify {
                    method: Method::Password,
                },
                later,
            )
            .unwrap(),
        );
        assert!(Session::fold(&events).freshly_verified(later + Duration::minutes(4)));
    }

    #[test]
    fn an_idle_timeout_shorter_than_the_use_interval_is_refused() {
        let mut c = create();
        if let SessionCommand::Create(new) = &mut c {
            new.idle_timeout = Duration::seconds(60);
        }
        assert!(matches!(
            given_when::<Session>(&[], c, now()),
            Err(SessionError::Invalid {
                field: "idle_timeout",
                ..
            })
        ));
    }
}
