//! The commands of the user aggregate ([`crate::user`]). Their `Debug`
//! never prints a personal value or the password hash: commands may be
//! logged. Re-exported by [`crate::user`].

use std::fmt;

use uuid::Uuid;

use crate::user_profile::{Address, AttributeValue, Attributes, Profile};

/// Shown in place of a personal value or a secret.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

fn redacted<T>(value: &Option<T>) -> Option<Redacted> {
    value.as_ref().map(|_| Redacted)
}

/// Claims are the names of reservation streams (keyed hashes the command
/// side computes, see [`crate::reservation`]); they are not personal.
// A command lives for one decision: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum UserCommand {
    Create {
        id: Uuid,
        organization_id: Uuid,
        username: String,
        username_claim: String,
        email: Option<String>,
        /// None when email addresses need not be unique; never without an
        /// email address.
        email_claim: Option<String>,
        email_verified: bool,
        phone_number: Option<String>,
        phone_verified: bool,
        profile: Profile,
        attributes: Attributes,
        /// The actor id of whoever created the user.
        created_by: String,
        /// An initial password (a PHC string computed by the command side),
        /// recorded in the same append as the creation.
        password: Option<InitialPassword>,
    },
    Change {
        changes: UserChanges,
    },
    /// The user may no longer sign in. Idempotent.
    Deactivate,
    /// Idempotent.
    Reactivate,
    SetPassword {
        /// A PHC string (`$argon2id$…`) computed by the command side.
        hash: String,
        must_change: bool,
    },
    /// Idempotent.
    ClearPassword,
    RequirePasswordChange {
        required: bool,
    },
    RecordSignIn,
    /// Erasure: records which claims to release; the user's key is deleted
    /// by the privacy layer.
    Delete,
}

impl fmt::Debug for UserCommand {
    /// Never prints a personal value or the password hash: commands may be
    /// logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create {
                id,
                organization_id,
                username_claim,
                email,
                email_claim,
                email_verified,
                phone_number,
                phone_verified,
                created_by,
                password,
                ..
            } => f
                .debug_struct("Create")
                .field("id", id)
                .field("organization_id", organization_id)
                .field("username", &Redacted)
                .field("username_claim", username_claim)
                .field("email", &redacted(email))
                .field("email_claim", email_claim)
                .field("email_verified", email_verified)
                .field("phone_number", &redacted(phone_number))
                .field("phone_verified", phone_verified)
                .field("profile", &Redacted)
                .field("attributes", &Redacted)
                .field("created_by", created_by)
                .field("password", password)
                .finish(),
            Self::Change { changes } => f.debug_struct("Change").field("changes", changes).finish(),
            Self::Deactivate => f.write_str("Deactivate"),
            Self::Reactivate => f.write_str("Reactivate"),
            Self::SetPassword { must_change, .. } => f
                .debug_struct("SetPassword")
                .field("hash", &Redacted)
                .field("must_change", must_change)
                .finish(),
            Self::ClearPassword => f.write_str("ClearPassword"),
            Self::RequirePasswordChange { required } => f
                .debug_struct("RequirePasswordChange")
                .field("required", required)
                .finish(),
            Self::RecordSignIn => f.write_str("RecordSignIn"),
            Self::Delete => f.write_str("Delete"),
        }
    }
}

/// The password a user is created with.
#[derive(Clone, PartialEq, Eq)]
pub struct InitialPassword {
    /// A PHC string (`$argon2id$…`).
    pub hash: String,
    pub must_change: bool,
}

impl fmt::Debug for InitialPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitialPassword")
            .field("hash", &Redacted)
            .field("must_change", &self.must_change)
            .finish()
    }
}

/// A new username and the claim on it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUsername {
    pub username: String,
    pub claim: String,
}

impl fmt::Debug for NewUsername {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUsername")
            .field("username", &Redacted)
            .field("claim", &self.claim)
            .finish()
    }
}

/// A new email address (None removes it) and the claim on it (None when
/// email addresses need not be unique).
#[derive(Clone, PartialEq, Eq)]
pub struct NewEmail {
    pub email: Option<String>,
    pub claim: Option<String>,
}

impl fmt::Debug for NewEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEmail")
            .field("email", &redacted(&self.email))
            .field("claim", &self.claim)
            .finish()
    }
}

/// What a change sets; None leaves a field as it is. A value equal to the
/// current one records nothing. A new email address or phone number is
/// unverified unless the same change says otherwise.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    pub username: Option<NewUsername>,
    pub email: Option<NewEmail>,
    /// `Some(None)` removes the phone number.
    pub phone_number: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub phone_verified: Option<bool>,
    /// Replaces the whole profile.
    pub profile: Option<Profile>,
    /// Replaces all the attributes.
    pub attributes: Option<Attributes>,
    /// Changes some profile fields of the profile as it is when the change
    /// is decided (after `profile`, if both are given).
    pub profile_patch: Option<ProfilePatch>,
    /// Sets (`Some`) or removes (`None`) some attributes of those the user
    /// has when the change is decided (after `attributes`).
    pub attributes_patch: Option<AttributesPatch>,
}

/// Attribute changes: a name to its new value, or to None to remove it.
pub type AttributesPatch = std::collections::BTreeMap<String, Option<AttributeValue>>;

/// Changes to some profile fields: absent leaves a field, `Some(None)`
/// clears it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProfilePatch {
    pub given_name: Option<Option<String>>,
    pub family_name: Option<Option<String>>,
    pub middle_name: Option<Option<String>>,
    pub nickname: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub gender: Option<Option<String>>,
    pub birthdate: Option<Option<String>>,
    pub address: Option<Option<Address>>,
    pub locale: Option<Option<String>>,
    pub zoneinfo: Option<Option<String>>,
    pub picture: Option<Option<String>>,
    pub contacts: Option<crate::user::Contacts>,
}

impl ProfilePatch {
    /// `profile` with these changes.
    pub fn apply(&self, profile: &Profile) -> Profile {
        let mut p = profile.clone();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { p.$f = v.clone(); } )* };
        }
        if let Some(c) = &self.contacts {
            p.contacts = c.clone();
        }
        set!(
            given_name,
            family_name,
            middle_name,
            nickname,
            name,
            gender,
            birthdate,
            address,
            locale,
            zoneinfo,
            picture
        );
        p
    }
}

impl fmt::Debug for ProfilePatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProfilePatch(<redacted>)")
    }
}

impl fmt::Debug for UserChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserChanges")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("phone_number", &self.phone_number.as_ref().map(redacted))
            .field("email_verified", &self.email_verified)
            .field("phone_verified", &self.phone_verified)
            .field("profile", &redacted(&self.profile))
            .field("attributes", &redacted(&self.attributes))
            .field("profile_patch", &self.profile_patch)
            .field("attributes_patch", &redacted(&self.attributes_patch))
            .finish()
    }
}
