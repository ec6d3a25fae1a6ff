//! The user: a person of an organization, known by a username, perhaps an
//! email address and a phone number, described by OpenID Connect profile
//! claims and attributes, and signing in with a password or otherwise.
//!
//! Every personal value is a [`Pii`] in the events, and every event of a user
//! carries the user's own subject ([`user_subject`]), so that the privacy
//! layer encrypts them under the user's key and erasing that key erases them
//! everywhere.
//!
//! Usernames and email addresses are unique within an organization. The
//! command side decides that with a reservation stream per value (see
//! [`crate::reservation`]) named by a keyed hash of the organization, the
//! kind and the [`normalize_identifier`] form, claimed before the value is
//! recorded here. This aggregate records which claims the user holds, so
//! that a change or a deletion says which ones to release.
//!
//! The password enters only as a PHC string the command side computed; the
//! password itself never reaches the domain.
//!
//! The commands, the events and the value rules are files of their own
//! (`user_command.rs`, `user_event.rs`, `user_profile.rs`), all re-exported
//! here: `domain::user::*` is the whole aggregate.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use crate::decider::Aggregate;
use crate::pii::Pii;
use crate::reservation::is_valid_claim;

pub use crate::user_command::*;
pub use crate::user_contacts::*;
pub use crate::user_event::*;
pub use crate::user_profile::*;

/// The longest PHC string accepted as a password hash.
pub const MAX_PASSWORD_HASH_LEN: usize = 512;

/// The subject of every event of the user `id`: the key their personal
/// values are encrypted under, and what their data export looks up.
pub fn user_subject(id: Uuid) -> String {
    format!("user:{}", id.simple())
}

/// The form uniqueness of usernames and email addresses is decided on:
/// trimmed, NFKC, lowercased (Unicode `to_lowercase`), NFKC again. So
/// "ＡＤＭＩＮ" (fullwidth) and "Admin" are the same name. There is no case
/// folding beyond lowercasing: "ß" stays "ß" and "ẞ" becomes "ß", but
/// neither equals "ss".
/// The user a subject names (the inverse of [`user_subject`]).
pub fn user_of_subject(subject: &str) -> Option<Uuid> {
    Uuid::try_parse(subject.strip_prefix("user:")?).ok()
}

pub fn normalize_identifier(s: &str) -> String {
    let lowered = s.trim().nfkc().collect::<String>().to_lowercase();
    lowered.nfkc().collect()
}

// --- errors ------------------------------------------------------------------

/// Why a user command was refused. `Invalid` names the field (`email`,
/// `profile.birthdate`, `attributes.department`), never its value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UserError {
    #[error("the user already exists (user ids are never reused, even after deletion)")]
    AlreadyExists,
    #[error("the user does not exist")]
    NotFound,
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("the user is deactivated")]
    Deactivated,
    #[error("the user has no password")]
    NoPassword,
}

fn invalid(field: &str, reason: &str) -> UserError {
    UserError::Invalid {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn check_claim(field: &str, claim: &str) -> Result<(), UserError> {
    if is_valid_claim(claim) {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be a reservation claim (lowercase hex)",
        ))
    }
}

/// A PHC string: `$`, then visible ASCII, at most [`MAX_PASSWORD_HASH_LEN`].
fn check_password_hash(hash: &str) -> Result<(), UserError> {
    let ok = hash.len() > 1
        && hash.len() <= MAX_PASSWORD_HASH_LEN
        && hash.starts_with('$')
        && hash.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(invalid("password", "the hash must be a PHC string ($id$…)"))
    }
}

fn validate_email_and_claim(
    email: Option<String>,
    claim: Option<String>,
) -> Result<(Option<String>, Option<String>), UserError> {
    let email = email.as_deref().map(validate_email).transpose()?;
    if let Some(claim) = &claim {
        check_claim("email_claim", claim)?;
        if email.is_none() {
            return Err(invalid("email_claim", "there is no email address to claim"));
        }
    }
    Ok((email, claim))
}

fn check_verified(field: &str, verified: bool, present: bool) -> Result<(), UserError> {
    if verified && !present {
        return Err(invalid(field, "there is nothing to verify"));
    }
    Ok(())
}

/// Whether a stored optional personal value equals a new one.
fn same_value(current: &Option<Pii<String>>, new: &Option<String>) -> bool {
    match (current, new) {
        (None, None) => true,
        (Some(Pii::Value(a)), Some(b)) => a == b,
        _ => false,
    }
}

// --- state, decide, evolve -----------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Deactivated,
}

impl UserStatus {
    /// As stored and shown: `active`, `deactivated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deactivated => "deactivated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordCredential {
    /// The PHC string.
    pub hash: Pii<String>,
    pub set_at: OffsetDateTime,
    /// The user must choose a new password at their next sign-in.
    pub must_change: bool,
}

/// The user as their stream folds. Once deleted, the personal values are
/// dropped from the state too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Whether the stream holds a creation (still true once deleted: ids are
    /// never reused).
    pub created: bool,
    pub id: Uuid,
    pub organization_id: Uuid,
    /// [`user_subject`] of the id.
    pub subject: String,
    pub username: Pii<String>,
    pub username_claim: Option<String>,
    pub email: Option<Pii<String>>,
    pub email_claim: Option<String>,
    pub email_verified: bool,
    pub phone_number: Option<Pii<String>>,
    pub phone_verified: bool,
    pub profile: Pii<Profile>,
    pub attributes: Pii<Attributes>,
    pub status: UserStatus,
    pub password: Option<PasswordCredential>,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_sign_in_at: Option<OffsetDateTime>,
    pub deleted: bool,
}

impl Default for User {
    fn default() -> Self {
        Self {
            created: false,
            id: Uuid::nil(),
            organization_id: Uuid::nil(),
            subject: String::new(),
            username: Pii::Erased,
            username_claim: None,
            email: None,
            email_claim: None,
            email_verified: false,
            phone_number: None,
            phone_verified: false,
            profile: Pii::new(Profile::default()),
            attributes: Pii::new(Attributes::new()),
            status: UserStatus::Active,
            password: None,
            created_by: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            last_sign_in_at: None,
            deleted: false,
        }
    }
}

impl User {
    /// Created and not deleted.
    pub fn exists(&self) -> bool {
        self.created && !self.deleted
    }

    pub fn is_active(&self) -> bool {
        self.exists() && self.status == UserStatus::Active
    }

    /// The claims the user holds: the username's, then the email's.
    pub fn claims(&self) -> Vec<String> {
        self.username_claim
            .iter()
            .chain(self.email_claim.iter())
            .cloned()
            .collect()
    }

    fn fact(&self, now: OffsetDateTime) -> UserFact {
        UserFact {
            user_id: self.id,
            at: now,
        }
    }

    /// One event per changed field group, in this order: username, email,
    /// phone, verification, profile, attributes. Everything is checked
    /// before anything is recorded.
    fn change(&self, c: UserChanges, now: OffsetDateTime) -> Result<Vec<UserEvent>, UserError> {
        let user_id = self.id;
        let username = match c.username {
            Some(NewUsername { username, claim }) => {
                let username = validate_username(&username)?;
                check_claim("username_claim", &claim)?;
                let same = self.username.value() == Some(&username)
                    && self.username_claim.as_ref() == Some(&claim);
                (!same).then_some((username, claim))
            }
            None => None,
        };
        let email = match c.email {
            Some(NewEmail { email, claim }) => {
                let (email, claim) = validate_email_and_claim(email, claim)?;
                let same = same_value(&self.email, &email) && self.email_claim == claim;
                (!same).then_some((email, claim))
            }
            None => None,
        };
        let phone = match c.phone_number {
            Some(phone) => {
                let phone = phone.as_deref().map(validate_phone_number).transpose()?;
                (!same_value(&self.phone_number, &phone)).then_some(phone)
            }
            None => None,
        };
        // A new address or number starts unverified unless said otherwise.
        let new_email = email.as_ref().filter(|(e, _)| !same_value(&self.email, e));
        let email_verified = c
            .email_verified
            .unwrap_or(new_email.is_none() && self.email_verified);
        let email_present = email
            .as_ref()
            .map_or(self.email.is_some(), |(e, _)| e.is_some());
        check_verified("email_verified", email_verified, email_present)?;
        let phone_verified = c
            .phone_verified
            .unwrap_or(phone.is_none() && self.phone_verified);
        let phone_present = phone
            .as_ref()
            .map_or(self.phone_number.is_some(), Option::is_some);
        check_verified("phone_verified", phone_verified, phone_present)?;
        let current_profile = self.profile.value().cloned().unwrap_or_default();
        let profile = match (c.profile, c.profile_patch) {
            (None, None) => None,
            (whole, patch) => {
                let base = whole.unwrap_or(current_profile);
                let p = patch.map_or(base.clone(), |patch| patch.apply(&base));
                let p = validate_profile(p)?;
                (self.profile.value() != Some(&p)).then_some(p)
            }
        };
        let current_attributes = self.attributes.value().cloned().unwrap_or_default();
        let attributes = match (c.attributes, c.attributes_patch) {
            (None, None) => None,
            (whole, patch) => {
                let mut a = whole.unwrap_or(current_attributes);
                for (name, value) in patch.unwrap_or_default() {
                    match value {
                        Some(v) => a.insert(name, v),
                        None => a.remove(&name),
                    };
                }
                let a = validate_attributes(a)?;
                (self.attributes.value() != Some(&a)).then_some(a)
            }
        };

        let mut events = Vec::new();
        if let Some((username, claim)) = username {
            events.push(UserEvent::UsernameChanged(UsernameChanged {
                user_id,
                username: Pii::new(username),
                released_claim: self.username_claim.clone().filter(|old| *old != claim),
                claim,
                at: now,
            }));
        }
        let verification_changed = (email.is_none() && email_verified != self.email_verified)
            || (phone.is_none() && phone_verified != self.phone_verified);
        if let Some((email, claim)) = email {
            events.push(UserEvent::EmailChanged(EmailChanged {
                user_id,
                email: email.map(Pii::new),
                released_claim: self
                    .email_claim
                    .clone()
                    .filter(|old| claim.as_ref() != Some(old)),
                claim,
                verified: email_verified,
                at: now,
            }));
        }
        if let Some(phone) = phone {
            events.push(UserEvent::PhoneChanged(PhoneChanged {
                user_id,
                phone_number: phone.map(Pii::new),
                verified: phone_verified,
                at: now,
            }));
        }
        if verification_changed {
            events.push(UserEvent::VerificationChanged(VerificationChanged {
                user_id,
                email_verified,
                phone_verified,
                at: now,
            }));
        }
        if let Some(profile) = profile {
            events.push(UserEvent::ProfileChanged(ProfileChanged {
                user_id,
                profile: Pii::new(profile),
                at: now,
            }));
        }
        if let Some(attributes) = attributes {
            events.push(UserEvent::AttributesChanged(AttributesChanged {
                user_id,
                attributes: Pii::new(attributes),
                at: now,
            }));
        }
        Ok(events)
    }
}

impl Aggregate for User {
    type Event = UserEvent;
    type Command = UserCommand;
    type Error = UserError;
    const CATEGORY: &'static str = "user";

    fn evolve(mut self, event: &UserEvent) -> Self {
        match event {
            UserEvent::Created(e) => {
                self.created = true;
                self.id = e.user_id;
                self.organization_id = e.organization_id;
                self.subject = user_subject(e.user_id);
                self.username = e.username.clone();
                self.username_claim = Some(e.username_claim.clone());
                self.email = e.email.clone();
                self.email_claim = e.email_claim.clone();
                self.email_verified = e.email_verified;
                self.phone_number = e.phone_number.clone();
                self.phone_verified = e.phone_verified;
                self.profile = e.profile.clone();
                self.attributes = e.attributes.clone();
                self.created_by = e.created_by.clone();
                self.created_at = e.at;
            }
            UserEvent::UsernameChanged(e) => {
                self.username = e.username.clone();
                self.username_claim = Some(e.claim.clone());
            }
            UserEvent::EmailChanged(e) => {
                self.email = e.email.clone();
                self.email_claim = e.claim.clone();
                self.email_verified = e.verified;
            }
            UserEvent::PhoneChanged(e) => {
                self.phone_number = e.phone_number.clone();
                self.phone_verified = e.verified;
            }
            UserEvent::VerificationChanged(e) => {
                self.email_verified = e.email_verified;
                self.phone_verified = e.phone_verified;
            }
            UserEvent::ProfileChanged(e) => self.profile = e.profile.clone(),
            UserEvent::AttributesChanged(e) => self.attributes = e.attributes.clone(),
            UserEvent::Deactivated(_) => self.status = UserStatus::Deactivated,
            UserEvent::Reactivated(_) => self.status = UserStatus::Active,
            UserEvent::PasswordSet(e) => {
                self.password = Some(PasswordCredential {
                    hash: e.hash.clone(),
                    set_at: e.at,
                    must_change: e.must_change,
                });
            }
            UserEvent::PasswordCleared(_) => self.password = None,
            UserEvent::PasswordChangeRequired(e) => {
                if let Some(p) = &mut self.password {
                    p.must_change = e.required;
                }
            }
            UserEvent::SignedIn(e) => {
                self.last_sign_in_at = Some(e.at);
                return self;
            }
            UserEvent::Deleted(_) => {
                self.deleted = true;
                self.username = Pii::Erased;
                self.username_claim = None;
                self.email = None;
                self.email_claim = None;
                self.phone_number = None;
                self.profile = Pii::Erased;
                self.attributes = Pii::Erased;
                self.password = None;
            }
        }
        self.updated_at = event.at();
        self
    }

    fn decide(
        &self,
        command: UserCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::Create {
                id,
                organization_id,
                username,
                username_claim,
                email,
                email_claim,
                email_verified,
                phone_number,
                phone_verified,
                profile,
                attributes,
                created_by,
                password,
            } => {
                if self.created {
                    return Err(UserError::AlreadyExists);
                }
                let username = validate_username(&username)?;
                check_claim("username_claim", &username_claim)?;
                let (email, email_claim) = validate_email_and_claim(email, email_claim)?;
                let phone_number = phone_number
                    .as_deref()
                    .map(validate_phone_number)
                    .transpose()?;
                check_verified("email_verified", email_verified, email.is_some())?;
                check_verified("phone_verified", phone_verified, phone_number.is_some())?;
                if let Some(p) = &password {
                    check_password_hash(&p.hash)?;
                }
                let mut events = vec![UserEvent::Created(UserCreated {
                    user_id: id,
                    organization_id,
                    username: Pii::new(username),
                    username_claim,
                    email: email.map(Pii::new),
                    email_claim,
                    email_verified,
                    phone_number: phone_number.map(Pii::new),
                    phone_verified,
                    profile: Pii::new(validate_profile(profile)?),
                    attributes: Pii::new(validate_attributes(attributes)?),
                    created_by,
                    at: now,
                })];
                if let Some(p) = password {
                    events.push(UserEvent::PasswordSet(PasswordSet {
                        user_id: id,
                        hash: Pii::new(p.hash),
                        must_change: p.must_change,
                        at: now,
                    }));
                }
                Ok(events)
            }
            _ if !self.exists() => Err(UserError::NotFound),
            UserCommand::Change { changes } => self.change(changes, now),
            UserCommand::Deactivate => Ok(match self.status {
                UserStatus::Deactivated => vec![],
                UserStatus::Active => vec![UserEvent::Deactivated(self.fact(now))],
            }),
            UserCommand::Reactivate => Ok(match self.status {
                UserStatus::Active => vec![],
                UserStatus::Deactivated => vec![UserEvent::Reactivated(self.fact(now))],
            }),
            UserCommand::SetPassword { hash, must_change } => {
                check_password_hash(&hash)?;
                Ok(vec![UserEvent::PasswordSet(PasswordSet {
                    user_id: self.id,
                    hash: Pii::new(hash),
                    must_change,
                    at: now,
                })])
            }
            UserCommand::ClearPassword => Ok(match self.password {
                None => vec![],
                Some(_) => vec![UserEvent::PasswordCleared(self.fact(now))],
            }),
            UserCommand::RequirePasswordChange { required } => match &self.password {
                None => Err(UserError::NoPassword),
                Some(p) if p.must_change == required => Ok(vec![]),
                Some(_) => Ok(vec![UserEvent::PasswordChangeRequired(
                    PasswordChangeRequired {
                        user_id: self.id,
                        required,
                        at: now,
                    },
                )]),
            },
            UserCommand::RecordSignIn => match self.status {
                UserStatus::Deactivated => Err(UserError::Deactivated),
                UserStatus::Active => Ok(vec![UserEvent::SignedIn(self.fact(now))]),
            },
            UserCommand::Delete => Ok(vec![UserEvent::Deleted(UserDeleted {
                user_id: self.id,
                released_claims: self.claims(),
                at: now,
            })]),
        }
    }
}

#[cfg(test)]
#[path = "user_tests.rs"]
mod tests;
