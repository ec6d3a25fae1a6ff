//! Data subject requests about users (subjects `user:…`): what the export
//! holds of them (their current record replayed from their stream, their
//! groups, the metadata of their credentials, never a hash), correction of
//! their profile by an event, and the erasure that deleting a user is.

use std::collections::BTreeSet;

use commands::CommandBus;
use commands::user::{UserFailure, UserPatch};
use domain::credentials::{
    Credentials, CredentialsEvent, PASSKEY_REGISTERED_V1, PASSKEY_USED_V1, TOTP_ENROLLED_V1,
};
use domain::group::GroupEvent;
use domain::user::{PASSWORD_SET_V1, ProfilePatch, User, UserEvent};
use domain::{Aggregate, Metadata};
use eventlog::{Direction, RecordedEvent};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{Erasure, PrivacyError, SubjectKeys, erase, rfc3339};

pub use domain::user::user_of_subject;

/// What the export says of a credential: that it exists, since when, and
/// what it requires; never its material.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CredentialRecord {
    /// `password`, `totp` or `passkey`.
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    pub must_change: bool,
    /// When it last signed the person in (not tracked for passwords).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

/// A user as their stream leaves them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserRecord {
    pub user_id: String,
    pub organization_id: String,
    /// Absent once erased.
    pub username: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone_number: Option<String>,
    pub phone_verified: bool,
    #[schema(value_type = Option<Object>)]
    pub profile: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    pub status: String,
    pub deleted: bool,
    pub created_at: String,
    pub updated_at: String,
    pub last_sign_in_at: Option<String>,
    pub credentials: Vec<CredentialRecord>,
    /// The groups the user is a direct member of, by id.
    pub groups: Vec<String>,
}

/// The record of the user `subject` names, from their stream and the
/// membership events among `events` (the subject's).
pub async fn user_record(
    bus_log: &std::sync::Arc<dyn eventlog::EventLog>,
    subject: &str,
    events: &[RecordedEvent],
) -> Result<Option<UserRecord>, PrivacyError> {
    let Some(id) = user_of_subject(subject) else {
        return Ok(None);
    };
    let stream = CommandBus::stream_name::<User>(&id.to_string());
    let history = bus_log
        .read_stream(&stream, Direction::Forwards, None, usize::MAX)
        .await?;
    if history.is_empty() {
        return Ok(None);
    }
    let mut user = User::default();
    for e in &history {
        user = user.evolve(&eventlog::decode::<UserEvent>(e)?);
    }
    let credentials_stream = CommandBus::stream_name::<Credentials>(&id.to_string());
    let mut credentials = Credentials::default();
    for e in &bus_log
        .read_stream(&credentials_stream, Direction::Forwards, None, usize::MAX)
        .await?
    {
        credentials = credentials.evolve(&eventlog::decode::<CredentialsEvent>(e)?);
    }
    let mut groups = BTreeSet::new();
    for e in events.iter().filter(|e| e.category() == "group") {
        match eventlog::decode::<GroupEvent>(e) {
            Ok(GroupEvent::UserAdded(m)) if m.user_id == id => {
                groups.insert(m.group_id.to_string());
            }
            Ok(GroupEvent::UserRemoved(m)) if m.user_id == id => {
                groups.remove(&m.group_id.to_string());
            }
            _ => {}
        }
    }
    let clear = |v: &Option<domain::Pii<String>>| v.as_ref().and_then(|p| p.value().cloned());
    Ok(Some(UserRecord {
        user_id: id.to_string(),
        organization_id: user.organization_id.to_string(),
        username: user.username.value().cloned(),
        email: clear(&user.email),
        email_verified: user.email_verified,
        phone_number: clear(&user.phone_number),
        phone_verified: user.phone_verified,
        profile: user
            .profile
            .value()
            .and_then(|p| serde_json::to_value(p).ok()),
        attributes: user
            .attributes
            .value()
            .and_then(|a| serde_json::to_value(a).ok()),
        status: user.status.as_str().to_owned(),
        deleted: user.deleted,
        created_at: rfc3339(user.created_at),
        updated_at: rfc3339(user.updated_at),
        last_sign_in_at: user.last_sign_in_at.map(rfc3339),
        credentials: user
            .password
            .iter()
            .map(|p| CredentialRecord {
                kind: "password".into(),
                created_at: rfc3339(p.set_at),
                must_change: p.must_change,
                last_used_at: None,
            })
            .chain(credentials.totp.iter().map(|t| CredentialRecord {
                kind: "totp".into(),
                created_at: rfc3339(t.enrolled_at),
                must_change: false,
                last_used_at: t.last_used_at.map(rfc3339),
            }))
            .chain(credentials.passkeys.iter().map(|p| CredentialRecord {
                kind: "passkey".into(),
                created_at: rfc3339(p.created_at),
                must_change: false,
                last_used_at: p.last_used_at.map(rfc3339),
            }))
            .collect(),
        groups: groups.into_iter().collect(),
    }))
}

/// An event's data as the export shows it: credential material withheld.
pub(crate) fn exported_data(e: &RecordedEvent, mut data: Value) -> Value {
    let field = match e.event_type.as_str() {
        PASSWORD_SET_V1 => "hash",
        TOTP_ENROLLED_V1 => "secret",
        PASSKEY_REGISTERED_V1 | PASSKEY_USED_V1 => "passkey",
        _ => return data,
    };
    if let Some(o) = data.as_object_mut()
        && o.contains_key(field)
    {
        o.insert(
            field.into(),
            serde_json::json!({ "$withheld": "credential" }),
        );
    }
    data
}

/// Why a user's deletion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeleteUserError {
    #[error(transparent)]
    User(#[from] UserFailure),
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
}

/// Deletes a user: the deletion is recorded (their claims given back),
/// then their subject is erased (their key deleted).
pub async fn delete_user(
    bus: &CommandBus,
    keys: &SubjectKeys,
    user_id: Uuid,
    if_revision: Option<u64>,
    metadata: &Metadata,
) -> Result<Erasure, DeleteUserError> {
    commands::user::delete(bus, user_id, if_revision, metadata).await?;
    Ok(erase(bus, keys, &domain::user::user_subject(user_id), metadata).await?)
}

/// Corrects a user's profile: the patch's fields replace theirs, by an
/// event.
pub async fn correct_profile(
    bus: &CommandBus,
    user_id: Uuid,
    corrected: ProfilePatch,
    metadata: &Metadata,
) -> Result<commands::Outcome, UserFailure> {
    let patch = UserPatch {
        profile_patch: Some(corrected),
        ..UserPatch::default()
    };
    commands::user::change(bus, user_id, None, patch, metadata).await
}

/// Records the deletion of user `user_id` unless they are deleted already
/// (or never were).
pub(crate) async fn delete_if_live(
    bus: &CommandBus,
    user_id: Uuid,
    metadata: &Metadata,
) -> Result<(), PrivacyError> {
    let (user, _) = bus.load::<User>(&user_id.to_string()).await?;
    if !user.exists() {
        return Ok(());
    }
    match commands::user::delete(bus, user_id, None, metadata).await {
        Ok(_) | Err(UserFailure::User(domain::user::UserError::NotFound)) => Ok(()),
        Err(UserFailure::Log(e)) => Err(PrivacyError::Log(e)),
        Err(e) => Err(PrivacyError::Correction {
            id: user_id,
            reason: e.to_string(),
        }),
    }
}
