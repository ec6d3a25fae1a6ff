//! The events of the user aggregate ([`crate::user`]): each carries the
//! user's id, the time, and its personal values as [`Pii`]; each has the
//! user's subject. Re-exported by [`crate::user`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{DecodeError, DomainEvent};
use crate::pii::Pii;
use crate::registration::decode_as;
use crate::user::user_subject;
use crate::user_profile::{Attributes, Profile};

pub const CREATED_V1: &str = "user.created.v1";
pub const USERNAME_CHANGED_V1: &str = "user.username_changed.v1";
pub const EMAIL_CHANGED_V1: &str = "user.email_changed.v1";
pub const PHONE_CHANGED_V1: &str = "user.phone_changed.v1";
pub const VERIFICATION_CHANGED_V1: &str = "user.verification_changed.v1";
pub const PROFILE_CHANGED_V1: &str = "user.profile_changed.v1";
pub const ATTRIBUTES_CHANGED_V1: &str = "user.attributes_changed.v1";
pub const DEACTIVATED_V1: &str = "user.deactivated.v1";
pub const REACTIVATED_V1: &str = "user.reactivated.v1";
pub const PASSWORD_SET_V1: &str = "user.password_set.v1";
pub const PASSWORD_CLEARED_V1: &str = "user.password_cleared.v1";
pub const PASSWORD_CHANGE_REQUIRED_V1: &str = "user.password_change_required.v1";
pub const SIGNED_IN_V1: &str = "user.signed_in.v1";
pub const DELETED_V1: &str = "user.deleted.v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub username: Pii<String>,
    pub username_claim: String,
    #[serde(default)]
    pub email: Option<Pii<String>>,
    #[serde(default)]
    pub email_claim: Option<String>,
    pub email_verified: bool,
    #[serde(default)]
    pub phone_number: Option<Pii<String>>,
    pub phone_verified: bool,
    pub profile: Pii<Profile>,
    pub attributes: Pii<Attributes>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// `released_claim` is the claim the user no longer holds (None when the
/// new username normalizes to the old one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsernameChanged {
    pub user_id: Uuid,
    pub username: Pii<String>,
    pub claim: String,
    #[serde(default)]
    pub released_claim: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// `verified` is whether the address (as it is now) is verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailChanged {
    pub user_id: Uuid,
    #[serde(default)]
    pub email: Option<Pii<String>>,
    #[serde(default)]
    pub claim: Option<String>,
    #[serde(default)]
    pub released_claim: Option<String>,
    pub verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneChanged {
    pub user_id: Uuid,
    #[serde(default)]
    pub phone_number: Option<Pii<String>>,
    pub verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The verification of an unchanged email address or phone number changed:
/// both flags as they are now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationChanged {
    pub user_id: Uuid,
    pub email_verified: bool,
    pub phone_verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileChanged {
    pub user_id: Uuid,
    pub profile: Pii<Profile>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributesChanged {
    pub user_id: Uuid,
    pub attributes: Pii<Attributes>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The bare fact of something happening to the user at a time: deactivated,
/// reactivated, password cleared, signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFact {
    pub user_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordSet {
    pub user_id: Uuid,
    pub hash: Pii<String>,
    pub must_change: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordChangeRequired {
    pub user_id: Uuid,
    pub required: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The user was erased; `released_claims` are the reservations to release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeleted {
    pub user_id: Uuid,
    pub released_claims: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEvent {
    Created(UserCreated),
    UsernameChanged(UsernameChanged),
    EmailChanged(EmailChanged),
    PhoneChanged(PhoneChanged),
    VerificationChanged(VerificationChanged),
    ProfileChanged(ProfileChanged),
    AttributesChanged(AttributesChanged),
    Deactivated(UserFact),
    Reactivated(UserFact),
    PasswordSet(PasswordSet),
    PasswordCleared(UserFact),
    PasswordChangeRequired(PasswordChangeRequired),
    SignedIn(UserFact),
    Deleted(UserDeleted),
}

impl UserEvent {
    /// The user the event is about.
    pub fn user_id(&self) -> Uuid {
        match self {
            Self::Created(e) => e.user_id,
            Self::UsernameChanged(e) => e.user_id,
            Self::EmailChanged(e) => e.user_id,
            Self::PhoneChanged(e) => e.user_id,
            Self::VerificationChanged(e) => e.user_id,
            Self::ProfileChanged(e) => e.user_id,
            Self::AttributesChanged(e) => e.user_id,
            Self::Deactivated(e)
            | Self::Reactivated(e)
            | Self::PasswordCleared(e)
            | Self::SignedIn(e) => e.user_id,
            Self::PasswordSet(e) => e.user_id,
            Self::PasswordChangeRequired(e) => e.user_id,
            Self::Deleted(e) => e.user_id,
        }
    }

    /// When it happened.
    pub fn at(&self) -> OffsetDateTime {
        match self {
            Self::Created(e) => e.at,
            Self::UsernameChanged(e) => e.at,
            Self::EmailChanged(e) => e.at,
            Self::PhoneChanged(e) => e.at,
            Self::VerificationChanged(e) => e.at,
            Self::ProfileChanged(e) => e.at,
            Self::AttributesChanged(e) => e.at,
            Self::Deactivated(e)
            | Self::Reactivated(e)
            | Self::PasswordCleared(e)
            | Self::SignedIn(e) => e.at,
            Self::PasswordSet(e) => e.at,
            Self::PasswordChangeRequired(e) => e.at,
            Self::Deleted(e) => e.at,
        }
    }
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => CREATED_V1,
            Self::UsernameChanged(_) => USERNAME_CHANGED_V1,
            Self::EmailChanged(_) => EMAIL_CHANGED_V1,
            Self::PhoneChanged(_) => PHONE_CHANGED_V1,
            Self::VerificationChanged(_) => VERIFICATION_CHANGED_V1,
            Self::ProfileChanged(_) => PROFILE_CHANGED_V1,
            Self::AttributesChanged(_) => ATTRIBUTES_CHANGED_V1,
            Self::Deactivated(_) => DEACTIVATED_V1,
            Self::Reactivated(_) => REACTIVATED_V1,
            Self::PasswordSet(_) => PASSWORD_SET_V1,
            Self::PasswordCleared(_) => PASSWORD_CLEARED_V1,
            Self::PasswordChangeRequired(_) => PASSWORD_CHANGE_REQUIRED_V1,
            Self::SignedIn(_) => SIGNED_IN_V1,
            Self::Deleted(_) => DELETED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Structs of strings, flags and string-keyed maps: serializing
        // cannot fail.
        match self {
            Self::Created(e) => serde_json::to_value(e),
            Self::UsernameChanged(e) => serde_json::to_value(e),
            Self::EmailChanged(e) => serde_json::to_value(e),
            Self::PhoneChanged(e) => serde_json::to_value(e),
            Self::VerificationChanged(e) => serde_json::to_value(e),
            Self::ProfileChanged(e) => serde_json::to_value(e),
            Self::AttributesChanged(e) => serde_json::to_value(e),
            Self::Deactivated(e)
            | Self::Reactivated(e)
            | Self::PasswordCleared(e)
            | Self::SignedIn(e) => serde_json::to_value(e),
            Self::PasswordSet(e) => serde_json::to_value(e),
            Self::PasswordChangeRequired(e) => serde_json::to_value(e),
            Self::Deleted(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            CREATED_V1 => decode_as(event_type, data).map(Self::Created),
            USERNAME_CHANGED_V1 => decode_as(event_type, data).map(Self::UsernameChanged),
            EMAIL_CHANGED_V1 => decode_as(event_type, data).map(Self::EmailChanged),
            PHONE_CHANGED_V1 => decode_as(event_type, data).map(Self::PhoneChanged),
            VERIFICATION_CHANGED_V1 => decode_as(event_type, data).map(Self::VerificationChanged),
            PROFILE_CHANGED_V1 => decode_as(event_type, data).map(Self::ProfileChanged),
            ATTRIBUTES_CHANGED_V1 => decode_as(event_type, data).map(Self::AttributesChanged),
            DEACTIVATED_V1 => decode_as(event_type, data).map(Self::Deactivated),
            REACTIVATED_V1 => decode_as(event_type, data).map(Self::Reactivated),
            PASSWORD_SET_V1 => decode_as(event_type, data).map(Self::PasswordSet),
            PASSWORD_CLEARED_V1 => decode_as(event_type, data).map(Self::PasswordCleared),
            PASSWORD_CHANGE_REQUIRED_V1 => {
                decode_as(event_type, data).map(Self::PasswordChangeRequired)
            }
            SIGNED_IN_V1 => decode_as(event_type, data).map(Self::SignedIn),
            DELETED_V1 => decode_as(event_type, data).map(Self::Deleted),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        Some(user_subject(self.user_id()))
    }
}
