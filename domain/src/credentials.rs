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
pub const PASSKEY_REGISTERED_V1: &str = "credentials.passkey_registered.v1";
pub const PASSKEY_USED_V1: &str = "credentials.passkey_used.v1";
pub const PASSKEY_RENAMED_V1: &str = "credentials.passkey_renamed.v1";
pub const PASSKEY_REMOVED_V1: &str = "credentials.passkey_removed.v1";

/// The most passkeys one person may hold.
pub const MAX_PASSKEYS: usize = 20;
/// The longest passkey name.
pub const MAX_PASSKEY_NAME_LEN: usize = 100;

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

/// A passkey (WebAuthn credential) registered. `credential_id` is the
/// authenticator's id for it (base64url); `passkey` is the relying party's
/// record of it (public key, counter, flags) as the WebAuthn library
/// serializes it; its name is the person's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyRegistered {
    pub user_id: Uuid,
    pub passkey_id: Uuid,
    pub credential_id: String,
    pub name: Pii<String>,
    pub passkey: Pii<Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A passkey signed the person in; `passkey` is its record when the
/// counter or flags changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyUsed {
    pub user_id: Uuid,
    pub passkey_id: Uuid,
    #[serde(default)]
    pub passkey: Option<Pii<Value>>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyRenamed {
    pub user_id: Uuid,
    pub passkey_id: Uuid,
    pub name: Pii<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyRemoved {
    pub user_id: Uuid,
    pub passkey_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsEvent {
    TotpEnrolled(TotpEnrolled),
    TotpUsed(TotpUsed),
    TotpRemoved(TotpRemoved),
    PasskeyRegistered(PasskeyRegistered),
    PasskeyUsed(PasskeyUsed),
    PasskeyRenamed(PasskeyRenamed),
    PasskeyRemoved(PasskeyRemoved),
}

impl CredentialsEvent {
    pub fn user_id(&self) -> Uuid {
        match self {
            Self::TotpEnrolled(e) => e.user_id,
            Self::TotpUsed(e) => e.user_id,
            Self::TotpRemoved(e) => e.user_id,
            Self::PasskeyRegistered(e) => e.user_id,
            Self::PasskeyUsed(e) => e.user_id,
            Self::PasskeyRenamed(e) => e.user_id,
            Self::PasskeyRemoved(e) => e.user_id,
        }
    }
}

impl DomainEvent for CredentialsEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::TotpEnrolled(_) => TOTP_ENROLLED_V1,
            Self::TotpUsed(_) => TOTP_USED_V1,
            Self::TotpRemoved(_) => TOTP_REMOVED_V1,
            Self::PasskeyRegistered(_) => PASSKEY_REGISTERED_V1,
            Self::PasskeyUsed(_) => PASSKEY_USED_V1,
            Self::PasskeyRenamed(_) => PASSKEY_RENAMED_V1,
            Self::PasskeyRemoved(_) => PASSKEY_REMOVED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Structs of ids, strings and numbers: serializing cannot fail.
        match self {
            Self::TotpEnrolled(e) => serde_json::to_value(e),
            Self::TotpUsed(e) => serde_json::to_value(e),
            Self::TotpRemoved(e) => serde_json::to_value(e),
            Self::PasskeyRegistered(e) => serde_json::to_value(e),
            Self::PasskeyUsed(e) => serde_json::to_value(e),
            Self::PasskeyRenamed(e) => serde_json::to_value(e),
            Self::PasskeyRemoved(e) => serde_json::to_value(e),
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
            PASSKEY_REGISTERED_V1 => decode_as(event_type, data).map(Self::PasskeyRegistered),
            PASSKEY_USED_V1 => decode_as(event_type, data).map(Self::PasskeyUsed),
            PASSKEY_RENAMED_V1 => decode_as(event_type, data).map(Self::PasskeyRenamed),
            PASSKEY_REMOVED_V1 => decode_as(event_type, data).map(Self::PasskeyRemoved),
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
    UseTotp {
        step: u64,
    },
    /// Idempotent.
    RemoveTotp,
    RegisterPasskey {
        user_id: Uuid,
        passkey_id: Uuid,
        credential_id: String,
        name: String,
        passkey: Value,
    },
    /// A passkey signed in; its new record when that changed.
    UsePasskey {
        passkey_id: Uuid,
        passkey: Option<Value>,
    },
    RenamePasskey {
        passkey_id: Uuid,
        name: String,
    },
    /// Idempotent.
    RemovePasskey {
        passkey_id: Uuid,
    },
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
            Self::RegisterPasskey {
                passkey_id,
                credential_id,
                ..
            } => f
                .debug_struct("RegisterPasskey")
                .field("passkey_id", passkey_id)
                .field("credential_id", credential_id)
                .finish_non_exhaustive(),
            Self::UsePasskey { passkey_id, .. } => f
                .debug_struct("UsePasskey")
                .field("passkey_id", passkey_id)
                .finish_non_exhaustive(),
            Self::RenamePasskey { passkey_id, .. } => f
                .debug_struct("RenamePasskey")
                .field("passkey_id", passkey_id)
                .finish_non_exhaustive(),
            Self::RemovePasskey { passkey_id } => f
                .debug_struct("RemovePasskey")
                .field("passkey_id", passkey_id)
                .finish(),
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
    #[error("no such passkey")]
    NoPasskey,
    #[error("this passkey is already registered")]
    PasskeyExists,
    #[error("a person may hold at most {MAX_PASSKEYS} passkeys")]
    TooManyPasskeys,
}

/// A registered passkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyCredential {
    pub id: Uuid,
    pub credential_id: String,
    pub name: Pii<String>,
    pub passkey: Pii<Value>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

fn valid_name(name: &str) -> Result<String, CredentialsError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_PASSKEY_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(CredentialsError::Invalid {
            field: "name",
            reason: "must be 1 to 100 characters, none of them control characters",
        });
    }
    Ok(name.to_owned())
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
    pub passkeys: Vec<PasskeyCredential>,
}

impl Credentials {
    pub fn passkey(&self, id: Uuid) -> Option<&PasskeyCredential> {
        self.passkeys.iter().find(|p| p.id == id)
    }

    /// The passkey an authenticator knows by `credential_id` (base64url).
    pub fn passkey_by_credential(&self, credential_id: &str) -> Option<&PasskeyCredential> {
        self.passkeys
            .iter()
            .find(|p| p.credential_id == credential_id)
    }
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
            CredentialsEvent::PasskeyRegistered(e) => self.passkeys.push(PasskeyCredential {
                id: e.passkey_id,
                credential_id: e.credential_id.clone(),
                name: e.name.clone(),
                passkey: e.passkey.clone(),
                created_at: e.at,
                last_used_at: None,
            }),
            CredentialsEvent::PasskeyUsed(e) => {
                if let Some(p) = self.passkeys.iter_mut().find(|p| p.id == e.passkey_id) {
                    p.last_used_at = Some(e.at);
                    if let Some(record) = &e.passkey {
                        p.passkey = record.clone();
                    }
                }
            }
            CredentialsEvent::PasskeyRenamed(e) => {
                if let Some(p) = self.passkeys.iter_mut().find(|p| p.id == e.passkey_id) {
                    p.name = e.name.clone();
                }
            }
            CredentialsEvent::PasskeyRemoved(e) => self.passkeys.retain(|p| p.id != e.passkey_id),
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
            CredentialsCommand::RegisterPasskey {
                user_id,
                passkey_id,
                credential_id,
                name,
                passkey,
            } => {
                let name = valid_name(&name)?;
                if credential_id.is_empty() || credential_id.len() > 1400 {
                    return Err(CredentialsError::Invalid {
                        field: "credential_id",
                        reason: "must be 1 to 1400 characters of base64url",
                    });
                }
                if self.passkey_by_credential(&credential_id).is_some()
                    || self.passkey(passkey_id).is_some()
                {
                    return Err(CredentialsError::PasskeyExists);
                }
                if self.passkeys.len() >= MAX_PASSKEYS {
                    return Err(CredentialsError::TooManyPasskeys);
                }
                Ok(vec![CredentialsEvent::PasskeyRegistered(
                    PasskeyRegistered {
                        user_id: self.user_id.unwrap_or(user_id),
                        passkey_id,
                        credential_id,
                        name: Pii::new(name),
                        passkey: Pii::new(passkey),
                        at: now,
                    },
                )])
            }
            CredentialsCommand::UsePasskey {
                passkey_id,
                passkey,
            } => {
                let (Some(user_id), Some(_)) = (self.user_id, self.passkey(passkey_id)) else {
                    return Err(CredentialsError::NoPasskey);
                };
                Ok(vec![CredentialsEvent::PasskeyUsed(PasskeyUsed {
                    user_id,
                    passkey_id,
                    passkey: passkey.map(Pii::new),
                    at: now,
                })])
            }
            CredentialsCommand::RenamePasskey { passkey_id, name } => {
                let (Some(user_id), Some(current)) = (self.user_id, self.passkey(passkey_id))
                else {
                    return Err(CredentialsError::NoPasskey);
                };
                let name = valid_name(&name)?;
                if current.name.value() == Some(&name) {
                    return Ok(vec![]);
                }
                Ok(vec![CredentialsEvent::PasskeyRenamed(PasskeyRenamed {
                    user_id,
                    passkey_id,
                    name: Pii::new(name),
                    at: now,
                })])
            }
            CredentialsCommand::RemovePasskey { passkey_id } => {
                Ok(match (self.user_id, self.passkey(passkey_id)) {
                    (Some(user_id), Some(_)) => {
                        vec![CredentialsEvent::PasskeyRemoved(PasskeyRemoved {
                            user_id,
                            passkey_id,
                            at: now,
                        })]
                    }
                    _ => vec![],
                })
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

    fn register(id: u128, credential: &str) -> CredentialsCommand {
        CredentialsCommand::RegisterPasskey {
            user_id: Uuid::from_u128(7),
            passkey_id: Uuid::from_u128(id),
            credential_id: credential.into(),
            name: " Laptop ".into(),
            passkey: serde_json::json!({"cred": {"counter": 0}}),
        }
    }

    #[test]
    fn passkeys_are_registered_once_named_used_and_removed() {
        let mut events = given_when::<Credentials>(&[], register(1, "abc"), now()).unwrap();
        assert_eq!(
            given_when::<Credentials>(&events, register(2, "abc"), now()),
            Err(CredentialsError::PasskeyExists),
            "one credential, one passkey"
        );
        let used = given_when::<Credentials>(
            &events,
            CredentialsCommand::UsePasskey {
                passkey_id: Uuid::from_u128(1),
                passkey: Some(serde_json::json!({"cred": {"counter": 3}})),
            },
            now(),
        )
        .unwrap();
        events.extend(used);
        let c = Credentials::fold(&events);
        let p = c.passkey_by_credential("abc").unwrap();
        assert_eq!(p.name.value().map(String::as_str), Some("Laptop"));
        assert_eq!(p.passkey.value().unwrap()["cred"]["counter"], 3);
        assert_eq!(p.last_used_at, Some(now()));
        assert!(matches!(
            given_when::<Credentials>(
                &events,
                CredentialsCommand::RenamePasskey {
                    passkey_id: Uuid::from_u128(1),
                    name: "\u{7}".into()
                },
                now()
            ),
            Err(CredentialsError::Invalid { field: "name", .. })
        ));
        events.extend(
            given_when::<Credentials>(
                &events,
                CredentialsCommand::RemovePasskey {
                    passkey_id: Uuid::from_u128(1),
                },
                now(),
            )
            .unwrap(),
        );
        assert!(Credentials::fold(&events).passkeys.is_empty());
        assert_eq!(
            given_when::<Credentials>(
                &events,
                CredentialsCommand::UsePasskey {
                    passkey_id: Uuid::from_u128(1),
                    passkey: None
                },
                now()
            ),
            Err(CredentialsError::NoPasskey)
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
