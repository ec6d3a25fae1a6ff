//! Registration tokens and the auth tokens they generate.
//!
//! An administrator creates a [`RegistrationToken`] for one application (an
//! OAuth client) of an organization: a description, a count (how many auth
//! tokens it may generate) and an expiration date. Each installation of the
//! application *consumes* it once and receives its own [`AuthToken`], bound
//! to that instance; the instance exchanges the auth token once for a refresh
//! token and from then on lives on refresh tokens that rotate on every use,
//! with reuse detection (RFC 9700 section 4.14.2).
//!
//! Two aggregates, two consistency boundaries:
//!
//! - `regtoken-{id}` holds the count. Its state is a handful of fields
//!   whatever the number of consumptions: who consumed it is in the events
//!   (for the administrator's view), never in the state.
//! - `authtoken-{id}` holds one instance's credential and its whole refresh
//!   chain, so that rotation and reuse detection are decided against one
//!   stream.
//!
//! Secrets enter here only as the hex SHA-256 of their value; the command
//! side draws them and checks the presented ones.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::pii::Pii;

pub use crate::auth_token::*;

/// The most auth tokens one registration token may generate.
pub const MAX_COUNT: u64 = 10_000_000;
pub const MAX_DESCRIPTION_LEN: usize = 200;
/// The longest value of each [`InstanceInfo`] field, in characters.
pub const MAX_INSTANCE_FIELD_LEN: usize = 200;

pub const REGTOKEN_CREATED_V1: &str = "registration_token.created.v1";
pub const REGTOKEN_CONSUMED_V1: &str = "registration_token.consumed.v1";
pub const REGTOKEN_REVOKED_V1: &str = "registration_token.revoked.v1";

// --- shared values -----------------------------------------------------------

/// What an installation says about itself when it consumes a registration
/// token. The user name names a person, and the device name often does:
/// both are personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The installation's own identifier: 1 to 200 characters, not blank.
    pub instance_id: String,
    /// At most 200 characters; may be empty. Personal (a device is often
    /// named after its owner): stored as a personal value, empty once
    /// erased.
    #[serde(default, with = "crate::pii::marked_string")]
    pub device_name: String,
    /// At most 200 characters; may be empty.
    pub user_name: Pii<String>,
    /// At most 200 characters; may be empty.
    #[serde(default)]
    pub app_version: String,
    /// The person the user name names (`person:…`, a keyed pseudonym set by
    /// the command side): the subject of the events that carry this
    /// instance, and the key their personal values are encrypted under.
    /// None when the user name is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl InstanceInfo {
    /// Checks the lengths; the reason names the field.
    pub fn validate(&self) -> Result<(), String> {
        let too_long = |s: &str| s.chars().count() > MAX_INSTANCE_FIELD_LEN;
        if self.instance_id.trim().is_empty() || too_long(&self.instance_id) {
            return Err(format!(
                "instance_id must be 1 to {MAX_INSTANCE_FIELD_LEN} characters and not blank"
            ));
        }
        let user_name = self.user_name.value().map_or("", String::as_str);
        for (field, value) in [
            ("device_name", self.device_name.as_str()),
            ("user_name", user_name),
            ("app_version", self.app_version.as_str()),
        ] {
            if too_long(value) {
                return Err(format!(
                    "{field} must be at most {MAX_INSTANCE_FIELD_LEN} characters"
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Byte-wise equality whose time depends only on the lengths: every byte is
/// compared, differences are OR-ed into an accumulator. The lengths of the
/// values compared here (hex SHA-256) are public.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff = std::hint::black_box(diff | (x ^ y));
    }
    diff == 0
}

pub(crate) fn decode_as<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    event_type: &str,
    data: D,
) -> Result<T, DecodeError> {
    // From a borrowed tree or straight from the stored text: no copy first.
    T::deserialize(data).map_err(|e| DecodeError::malformed(event_type, e))
}

// --- registration token: commands, events, errors ------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationTokenCommand {
    Create {
        id: Uuid,
        organization_id: Uuid,
        client_id: Uuid,
        description: String,
        count: u64,
        expires_at: OffsetDateTime,
        /// The hex SHA-256 of the token's secret part; never the secret.
        hash: String,
        /// The actor id of the administrator.
        created_by: String,
    },
    /// One installation consumes the token; `auth_token_id` names the auth
    /// token the command side issues for it.
    Consume {
        auth_token_id: Uuid,
        instance: InstanceInfo,
    },
    Revoke,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationTokenCreated {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub client_id: Uuid,
    pub description: String,
    pub count: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationTokenConsumed {
    pub auth_token_id: Uuid,
    pub instance: InstanceInfo,
    #[serde(with = "time::serde::rfc3339")]
    pub consumed_at: OffsetDateTime,
    /// The ordinal of this consumption, 1-based (for the administrator's
    /// view: "3 of 50").
    pub used_after: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationTokenRevoked {
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationTokenEvent {
    Created(RegistrationTokenCreated),
    Consumed(RegistrationTokenConsumed),
    Revoked(RegistrationTokenRevoked),
}

impl DomainEvent for RegistrationTokenEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => REGTOKEN_CREATED_V1,
            Self::Consumed(_) => REGTOKEN_CONSUMED_V1,
            Self::Revoked(_) => REGTOKEN_REVOKED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Plain structs with string keys: serializing cannot fail.
        match self {
            Self::Created(e) => serde_json::to_value(e),
            Self::Consumed(e) => serde_json::to_value(e),
            Self::Revoked(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            REGTOKEN_CREATED_V1 => decode_as(event_type, data).map(Self::Created),
            REGTOKEN_CONSUMED_V1 => decode_as(event_type, data).map(Self::Consumed),
            REGTOKEN_REVOKED_V1 => decode_as(event_type, data).map(Self::Revoked),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        match self {
            Self::Consumed(c) => c.instance.subject.clone(),
            _ => None,
        }
    }
}

/// Why a registration token command was refused. The messages of
/// `Expired`, `Exhausted` and `Revoked` are shown to applications as they
/// are.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RegistrationTokenError {
    /// Unknown id, or (on the command side) a secret that does not match:
    /// the caller cannot tell the two apart.
    #[error("invalid registration token")]
    NotFound,
    #[error("the registration token already exists")]
    AlreadyExists,
    #[error(
        "the registration token has expired: request a new registration token from your administrator"
    )]
    Expired,
    #[error(
        "the registration token's count is used up: every auth token it could generate has \
         been issued; your administrator can see which instances used it"
    )]
    Exhausted,
    #[error("the registration token was revoked by your administrator")]
    Revoked,
    #[error("the count must be between 1 and {MAX_COUNT}")]
    InvalidCount,
    #[error("the expiration date must be in the future")]
    InvalidExpiry,
    #[error("the description is too long: at most {MAX_DESCRIPTION_LEN} characters")]
    InvalidDescription,
    #[error("invalid instance information: {0}")]
    InvalidInstance(String),
    #[error("the token hash must be 64 lowercase hex characters (SHA-256)")]
    InvalidHash,
    /// Checked by the command side against the client aggregate when a
    /// token is created: the application must exist in the organization and
    /// not be deleted.
    #[error("the application does not exist in this organization")]
    UnknownClient,
}

// --- registration token: state, decide, evolve ---------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationTokenStatus {
    Active,
    Expired,
    Exhausted,
    Revoked,
}

impl RegistrationTokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Exhausted => "exhausted",
            Self::Revoked => "revoked",
        }
    }
}

/// The registration token as its stream folds: a fixed set of fields, cheap
/// to clone however many times it was consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationToken {
    pub exists: bool,
    pub id: Uuid,
    pub organization_id: Uuid,
    pub client_id: Uuid,
    pub description: String,
    pub count: u64,
    /// How many auth tokens it has generated.
    pub used: u64,
    pub expires_at: OffsetDateTime,
    /// Hex SHA-256 of the token's secret part.
    pub hash: String,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub revoked_at: Option<OffsetDateTime>,
}

impl Default for RegistrationToken {
    fn default() -> Self {
        Self {
            exists: false,
            id: Uuid::nil(),
            organization_id: Uuid::nil(),
            client_id: Uuid::nil(),
            description: String::new(),
            count: 0,
            used: 0,
            expires_at: OffsetDateTime::UNIX_EPOCH,
            hash: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            created_by: String::new(),
            revoked_at: None,
        }
    }
}

impl RegistrationToken {
    /// The status at `now` of a token that exists: revoked wins, then
    /// expired, then exhausted.
    pub fn status(&self, now: OffsetDateTime) -> RegistrationTokenStatus {
        if self.revoked_at.is_some() {
            RegistrationTokenStatus::Revoked
        } else if now >= self.expires_at {
            RegistrationTokenStatus::Expired
        } else if self.used >= self.count {
            RegistrationTokenStatus::Exhausted
        } else {
            RegistrationTokenStatus::Active
        }
    }

    /// How many auth tokens it may still generate (ignoring expiry and
    /// revocation).
    pub fn remaining(&self) -> u64 {
        self.count.saturating_sub(self.used)
    }
}

impl Aggregate for RegistrationToken {
    type Event = RegistrationTokenEvent;
    type Command = RegistrationTokenCommand;
    type Error = RegistrationTokenError;
    const CATEGORY: &'static str = "regtoken";

    fn evolve(mut self, event: &RegistrationTokenEvent) -> Self {
        match event {
            RegistrationTokenEvent::Created(e) => {
                self.exists = true;
                self.id = e.id;
                self.organization_id = e.organization_id;
                self.client_id = e.client_id;
                self.description = e.description.clone();
                self.count = e.count;
                self.used = 0;
                self.expires_at = e.expires_at;
                self.hash = e.hash.clone();
                self.created_at = e.created_at;
                self.created_by = e.created_by.clone();
            }
            RegistrationTokenEvent::Consumed(_) => self.used = self.used.saturating_add(1),
            RegistrationTokenEvent::Revoked(e) => self.revoked_at = Some(e.revoked_at),
        }
        self
    }

    /// Consume is checked in this order: the token exists, the instance
    /// information is well formed, then revoked, expired (even with counts
    /// left), exhausted.
    fn decide(
        &self,
        command: RegistrationTokenCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<RegistrationTokenEvent>, RegistrationTokenError> {
        match command {
            RegistrationTokenCommand::Create {
                id,
                organization_id,
                client_id,
                description,
                count,
                expires_at,
                hash,
                created_by,
            } => {
                if self.exists {
                    return Err(RegistrationTokenError::AlreadyExists);
                }
                if !(1..=MAX_COUNT).contains(&count) {
                    return Err(RegistrationTokenError::InvalidCount);
                }
                if expires_at <= now {
                    return Err(RegistrationTokenError::InvalidExpiry);
                }
                let description = description.trim();
                if description.chars().count() > MAX_DESCRIPTION_LEN {
                    return Err(RegistrationTokenError::InvalidDescription);
                }
                if !is_sha256_hex(&hash) {
                    return Err(RegistrationTokenError::InvalidHash);
                }
                Ok(vec![RegistrationTokenEvent::Created(
                    RegistrationTokenCreated {
                        id,
                        organization_id,
                        client_id,
                        description: description.to_owned(),
                        count,
                        expires_at,
                        hash,
                        created_at: now,
                        created_by,
                    },
                )])
            }
            RegistrationTokenCommand::Consume {
                auth_token_id,
                instance,
            } => {
                if !self.exists {
                    return Err(RegistrationTokenError::NotFound);
                }
                instance
                    .validate()
                    .map_err(RegistrationTokenError::InvalidInstance)?;
                match self.status(now) {
                    RegistrationTokenStatus::Revoked => Err(RegistrationTokenError::Revoked),
                    RegistrationTokenStatus::Expired => Err(RegistrationTokenError::Expired),
                    RegistrationTokenStatus::Exhausted => Err(RegistrationTokenError::Exhausted),
                    RegistrationTokenStatus::Active => Ok(vec![RegistrationTokenEvent::Consumed(
                        RegistrationTokenConsumed {
                            auth_token_id,
                            instance,
                            consumed_at: now,
                            used_after: self.used + 1,
                        },
                    )]),
                }
            }
            RegistrationTokenCommand::Revoke => {
                if !self.exists {
                    return Err(RegistrationTokenError::NotFound);
                }
                Ok(if self.revoked_at.is_some() {
                    vec![]
                } else {
                    vec![RegistrationTokenEvent::Revoked(RegistrationTokenRevoked {
                        revoked_at: now,
                    })]
                })
            }
        }
    }
}

#[cfg(test)]
#[path = "registration_tests.rs"]
mod tests;
