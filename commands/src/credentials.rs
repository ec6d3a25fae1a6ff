//! Command handlers of a person's credentials beside the password
//! (`domain::credentials`): enrolling an authenticator app with a code it
//! shows, verifying a code once, removing it; and a step-up on a session.

use domain::Metadata;
use domain::credentials::{Credentials, CredentialsCommand, CredentialsError};
use domain::session::{Session, SessionCommand, SessionError};
use domain::sign_in::FailureReason;
use domain::sign_in_policy::Method;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};
use crate::totp;

/// Why a credential command did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialFailure {
    #[error(transparent)]
    Credentials(CredentialsError),
    #[error(transparent)]
    Session(SessionError),
    /// The code does not match the secret around now.
    #[error("the code is not right")]
    WrongCode,
    #[error("the stream kept changing under the command ({attempts} attempts)")]
    Contention { attempts: usize },
    #[error(transparent)]
    Log(#[from] eventlog::Error),
}

impl From<CommandError<CredentialsError>> for CredentialFailure {
    fn from(e: CommandError<CredentialsError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::Credentials(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { .. } => Self::Contention { attempts: 1 },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

impl From<CommandError<SessionError>> for CredentialFailure {
    fn from(e: CommandError<SessionError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::Session(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { .. } => Self::Contention { attempts: 1 },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

type Result<T> = std::result::Result<T, CredentialFailure>;

/// The credentials of `user_id` as the log has them now.
pub async fn load(bus: &CommandBus, user_id: Uuid) -> Result<Credentials> {
    Ok(bus.load::<Credentials>(&user_id.to_string()).await?.0)
}

/// Enrols `secret` (base32) for `user_id`, confirmed by `code`, a code the
/// app computed from it now; the code is used up by the enrolment.
pub async fn enrol_totp(
    bus: &CommandBus,
    user_id: Uuid,
    secret: String,
    code: &str,
    meta: &Metadata,
) -> Result<Outcome> {
    let now = bus.clock().now().unix_timestamp();
    let step = totp::matching_step(&secret, code, now).ok_or(CredentialFailure::WrongCode)?;
    let command = CredentialsCommand::EnrolTotp {
        user_id,
        secret,
        step,
    };
    Ok(bus
        .execute::<Credentials>(&user_id.to_string(), command, meta)
        .await?)
}

/// Checks a TOTP code of `user_id` and uses it up. `Ok(Err(reason))` is a
/// refusal to count against the throttle.
pub async fn verify_totp(
    bus: &CommandBus,
    user_id: Uuid,
    code: &str,
    meta: &Metadata,
) -> Result<std::result::Result<(), FailureReason>> {
    let credentials = load(bus, user_id).await?;
    let Some(secret) = credentials
        .totp
        .as_ref()
        .and_then(|t| t.secret.value().cloned())
    else {
        return Ok(Err(FailureReason::NoCredential));
    };
    let now = bus.clock().now().unix_timestamp();
    let Some(step) = totp::matching_step(&secret, code, now) else {
        return Ok(Err(FailureReason::WrongCredential));
    };
    match bus
        .execute::<Credentials>(
            &user_id.to_string(),
            CredentialsCommand::UseTotp { step },
            meta,
        )
        .await
    {
        Ok(_) => Ok(Ok(())),
        Err(CommandError::Domain(CredentialsError::TotpReplayed)) => {
            Ok(Err(FailureReason::Replayed))
        }
        Err(CommandError::Domain(CredentialsError::NoTotp)) => Ok(Err(FailureReason::NoCredential)),
        Err(e) => Err(e.into()),
    }
}

/// Removes the authenticator app of `user_id` (nothing if none).
pub async fn remove_totp(bus: &CommandBus, user_id: Uuid, meta: &Metadata) -> Result<Outcome> {
    Ok(bus
        .execute::<Credentials>(&user_id.to_string(), CredentialsCommand::RemoveTotp, meta)
        .await?)
}

/// Records that the person of session `id` proved again who they are.
pub async fn step_up(
    bus: &CommandBus,
    session_id: Uuid,
    method: Method,
    meta: &Metadata,
) -> Result<Session> {
    bus.execute::<Session>(
        &session_id.to_string(),
        SessionCommand::Verify { method },
        meta,
    )
    .await?;
    Ok(bus.load::<Session>(&session_id.to_string()).await?.0)
}

/// A passkey to record.
#[derive(Clone, Debug)]
pub struct NewPasskey {
    pub user_id: Uuid,
    pub passkey_id: Uuid,
    /// The authenticator's id for it, base64url.
    pub credential_id: String,
    pub name: String,
    /// The relying party's record of it, as the WebAuthn library keeps it.
    pub passkey: serde_json::Value,
}

pub async fn register_passkey(bus: &CommandBus, p: NewPasskey, meta: &Metadata) -> Result<Outcome> {
    let command = CredentialsCommand::RegisterPasskey {
        user_id: p.user_id,
        passkey_id: p.passkey_id,
        credential_id: p.credential_id,
        name: p.name,
        passkey: p.passkey,
    };
    Ok(bus
        .execute::<Credentials>(&p.user_id.to_string(), command, meta)
        .await?)
}

/// Records that a passkey signed its person in (with its new record when
/// the counter or flags changed).
pub async fn use_passkey(
    bus: &CommandBus,
    user_id: Uuid,
    passkey_id: Uuid,
    passkey: Option<serde_json::Value>,
    meta: &Metadata,
) -> Result<Outcome> {
    let command = CredentialsCommand::UsePasskey {
        passkey_id,
        passkey,
    };
    Ok(bus
        .execute::<Credentials>(&user_id.to_string(), command, meta)
        .await?)
}

pub async fn rename_passkey(
    bus: &CommandBus,
    user_id: Uuid,
    passkey_id: Uuid,
    name: String,
    meta: &Metadata,
) -> Result<Outcome> {
    let command = CredentialsCommand::RenamePasskey { passkey_id, name };
    Ok(bus
        .execute::<Credentials>(&user_id.to_string(), command, meta)
        .await?)
}

pub async fn remove_passkey(
    bus: &CommandBus,
    user_id: Uuid,
    passkey_id: Uuid,
    meta: &Metadata,
) -> Result<Outcome> {
    let command = CredentialsCommand::RemovePasskey { passkey_id };
    Ok(bus
        .execute::<Credentials>(&user_id.to_string(), command, meta)
        .await?)
}
