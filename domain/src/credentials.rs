//! A person's sign-in credentials beside their password: an authenticator
//! app's TOTP secret (RFC 6238) for now. One stream per user
//! (`credentials-{user id}`), every event under the user's subject, every
//! secret a [`Pii`] so that it is encrypted under the user's key and erased
//! with it.
//!
//! A TOTP code is accepted once: the aggregate keeps the time step of the
//! last accepted code and refuses any step at or before it, so a code seen
//! over a shoulder cannot be replayed in its own step or the next, on any
//! node.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::pii::Pii;
use crate::registration::decode_as;
use crate::user::user_subject;

pub const TOTP_ENROLLED_V1: &str = "credentials.totp_enrolled.v1";
pub const TOTP_USED_V1: &str = "credentials.totp_used.v1";
pub const TOTP_REMOVED_V1: &str = "credentials.totp_removed.v1";

/// The longest TOTP secret accepted (base32 text).
pub const MAX_TOTP_SECRET_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrolled {
    pub user_id: Uuid,
    /// The shared secret, base32 (RFC 4648, no padding).
    pub secret: Pii<String>,
    /// The time step of the code that confirmed the enrolment (used up).
    pub step: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpUsed {
    pub user_id: Uuid,
    pub step: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpRemoved {
    pub user_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsEvent {
    TotpEnrolled(TotpEnrolled),
    TotpUsed(TotpUsed),
    TotpRemoved(TotpRemoved),
}

impl CredentialsEvent {
    pub fn user_id(&self) -> Uuid {
        match self {
            Self::TotpEnrolled(e) => e.user_id,
            Self::TotpUsed(e) => e.user_id,
            Self::TotpRemoved(e) => e.user_id,
        }
    }
}

impl DomainEvent for CredentialsEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::TotpEnrolled(_) => TOTP_ENROLLED_V1,
            Self::TotpUsed(_) => TOTP_USED_V1,
            Self::TotpRemoved(_) => TOTP_REMOVED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Structs of ids, strings and numbers: serializing cannot fail.
        match self {
            Self::TotpEnrolled(e) => serde_json::to_value(e),
            Self::TotpUsed(e) => serde_json::to_value(e),
            Self::TotpRemoved(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            TOTP_ENROLLED_V1 => decode_as(event_type, data).map(Self::TotpEnrolled),
            TOTP_USED_V1 => decode_as(event_type, data).map(Self::TotpUsed),
            TOTP_REMOVED_V1 => decode_as(event_type, data).map(Self::TotpRemoved),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        Some(user_subject(self.user_id()))
    }
}

#[derive(Clone)]
pub enum CredentialsCommand {
    /// Enrols (or replaces) the TOTP secret, confirmed by a code of `step`.
    EnrolTotp {
        user_id: Uuid,
        secret: String,
        step: u64,
    },
    /// A code of `step` was verified: accepted once.
    UseTotp { step: u64 },
    /// Idempotent.
    RemoveTotp,
}

impl std::fmt::Debug for CredentialsCommand {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EnrolTotp { user_id, step, .. } => f
                .debug_struct("EnrolTotp")
                .field("user_id", user_id)
                .field("secret", &"<redacted>")
                .field("step", step)
                .finish(),
            Self::UseTotp { step } => f.debug_struct("UseTotp").field("step", step).finish(),
            Self::RemoveTotp => f.write_str("RemoveTotp"),
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("no authenticator app is enrolled")]
    NoTotp,
    #[error("this code was already used")]
    TotpReplayed,
    #[error("invalid {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

/// An enrolled authenticator app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpCredential {
    pub secret: Pii<String>,
    pub enrolled_at: OffsetDateTime,
    /// The step of the last accepted code.
    pub last_step: u64,
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub user_id: Option<Uuid>,
    pub totp: Option<TotpCredential>,
}

fn is_base32(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TOTP_SECRET_LEN
        && s.bytes().all(|b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
}

impl Aggregate for Credentials {
    type Event = CredentialsEvent;
    type Command = CredentialsCommand;
    type Error = CredentialsError;
    const CATEGORY: &'static str = "credentials";

    fn evolve(mut self, event: &CredentialsEvent) -> Self {
        self.user_id = Some(event.user_id());
        match event {
            CredentialsEvent::TotpEnrolled(e) => {
                self.totp = Some(TotpCredential {
                    secret: e.secret.clone(),
                    enrolled_at: e.at,
                    last_step: e.step,
                    last_used_at: None,
                });
            }
            CredentialsEvent::TotpUsed(e) => {
                if let Some(t) = &mut self.totp {
                    t.last_step = t.last_step.max(e.step);
                    t.last_used_at = Some(e.at);
                }
            }
            CredentialsEvent::TotpRemoved(_) => self.totp = None,
        }
        self
    }

    fn decide(
        &self,
        command: CredentialsCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<CredentialsEvent>, CredentialsError> {
        match command {
            CredentialsCommand::EnrolTotp {
                user_id,
                secret,
                step,
            } => {
                if !is_base32(&secret) {
                    return Err(CredentialsError::Invalid {
                        field: "secret",
                        reason: "must be base32 (A-Z, 2-7), at most 128 characters",
                    });
                }
                Ok(vec![CredentialsEvent::TotpEnrolled(TotpEnrolled {
                    user_id: self.user_id.unwrap_or(user_id),
                    secret: Pii::new(secret),
                    step,
                    at: now,
                })])
            }
            CredentialsCommand::UseTotp { step } => {
                let (Some(user_id), Some(totp)) = (self.user_id, &self.totp) else {
                    return Err(CredentialsError::NoTotp);
                };
                if step <= totp.last_step {
                    return Err(CredentialsError::TotpReplayed);
                }
                Ok(vec![CredentialsEvent::TotpUsed(TotpUsed {
                    user_id,
                    step,
                    at: now,
                })])
            }
            CredentialsCommand::RemoveTotp => Ok(match (self.user_id, &self.totp) {
                (Some(user_id), Some(_)) => {
                    vec![CredentialsEvent::TotpRemoved(TotpRemoved {
                        user_id,
                        at: now,
                    })]
                }
                _ => vec![],
            }),
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

    fn enrolled() -> Vec<CredentialsEvent> {
        given_when::<Credentials>(
            &[],
            CredentialsCommand::EnrolTotp {
                user_id: Uuid::from_u128(7),
                secret: "JBSWY3DPEHPK3PXP".into(),
                step: 100,
            },
            now(),
        )
        .unwrap()
    }

    #[test]
    fn an_enrolment_keeps_the_secret_as_personal_data_of_the_user() {
        let events = enrolled();
        assert_eq!(events[0].subject(), Some(user_subject(Uuid::from_u128(7))));
        let data = events[0].to_data().to_string();
        assert!(data.contains("\"$pii\""), "{data}");
        assert!(
            !format!(
                "{:?}",
                CredentialsCommand::EnrolTotp {
                    user_id: Uuid::nil(),
                    secret: "JBSWY3DPEHPK3PXP".into(),
                    step: 1
                }
            )
            .contains("JBSWY3DPEHPK3PXP")
        );
    }

    #[test]
    fn a_code_is_accepted_once_and_never_an_older_one() {
        let mut events = enrolled();
        assert_eq!(
            given_when::<Credentials>(&events, CredentialsCommand::UseTotp { step: 100 }, now()),
            Err(CredentialsError::TotpReplayed),
            "the enrolling code is used up"
        );
        let used =
            given_when::<Credentials>(&events, CredentialsCommand::UseTotp { step: 101 }, now())
                .unwrap();
        events.extend(used);
        for step in [99, 100, 101] {
            assert_eq!(
                given_when::<Credentials>(&events, CredentialsCommand::UseTotp { step }, now()),
                Err(CredentialsError::TotpReplayed)
            );
        }
        assert!(
            given_when::<Credentials>(&events, CredentialsCommand::UseTotp { step: 102 }, now())
                .is_ok()
        );
    }

    #[test]
    fn removal_is_idempotent_and_leaves_nothing_to_use() {
        let mut events = enrolled();
        events.extend(
            given_when::<Credentials>(&events, CredentialsCommand::RemoveTotp, now()).unwrap(),
        );
        assert_eq!(
            given_when::<Credentials>(&events, CredentialsCommand::RemoveTotp, now()).unwrap(),
            vec![]
        );
        assert_eq!(
            given_when::<Credentials>(&events, CredentialsCommand::UseTotp { step: 500 }, now()),
            Err(CredentialsError::NoTotp)
        );
    }

    #[test]
    fn a_secret_must_be_base32() {
        let r = given_when::<Credentials>(
            &[],
            CredentialsCommand::EnrolTotp {
                user_id: Uuid::nil(),
                secret: "not base32!".into(),
                step: 1,
            },
            now(),
        );
        assert!(matches!(
            r,
            Err(CredentialsError::Invalid {
                field: "secret",
                ..
            })
        ));
    }
}
