//! Command handlers of sessions (`domain::session`): authenticating a
//! request by its session cookie, and revoking.
//!
//! A session cookie is `{session id}.{secret}`; the log keeps only the
//! secret's SHA-256, compared in constant time. Every check reads the
//! session's stream and its user's from the log, so a revocation or a
//! deactivation on any node ends the session everywhere at once.

use domain::Metadata;
use domain::session::{RevokeReason, Session, SessionCommand, SessionError};
use domain::user::User;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};

/// Why a session does not authenticate, or could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum SessionFailure {
    #[error(transparent)]
    Session(SessionError),
    /// The user is deactivated or erased.
    #[error("the user may not use the session")]
    UserInactive,
    #[error("the stream kept changing under the command ({attempts} attempts)")]
    Contention { attempts: usize },
    #[error(transparent)]
    Log(#[from] eventlog::Error),
}

impl From<CommandError<SessionError>> for SessionFailure {
    fn from(e: CommandError<SessionError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::Session(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { .. } => Self::Contention { attempts: 1 },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

type Result<T> = std::result::Result<T, SessionFailure>;

/// The cookie value of a session: its id (32 hex digits), a dot, its
/// secret.
pub fn cookie_value(id: Uuid, secret: &str) -> String {
    format!("{}.{secret}", id.simple())
}

/// The id and secret a cookie value holds, if it is of that shape.
pub fn parse_cookie(value: &str) -> Option<(Uuid, &str)> {
    let (id, secret) = value.split_once('.')?;
    if id.len() != 32 || secret.is_empty() || secret.len() > 128 {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, secret))
}

/// The session a cookie carries, if it may be used now: its secret
/// matches, it is neither revoked nor expired, its user is active. Its use
/// is recorded (at most once a minute); an expiry found here is recorded.
pub async fn authenticate(bus: &CommandBus, cookie: &str, meta: &Metadata) -> Result<Session> {
    let (id, secret) =
        parse_cookie(cookie).ok_or(SessionFailure::Session(SessionError::NotFound))?;
    let (session, _) = bus.load::<Session>(&id.to_string()).await?;
    // An unknown id and a wrong secret are the same answer.
    if !session.created || !crypto::secret_matches(secret, &session.secret_hash) {
        return Err(SessionFailure::Session(SessionError::NotFound));
    }
    let now = bus.clock().now();
    if let Err(e) = session.check(now) {
        if e == SessionError::Expired {
            record_expiry(bus, id, meta).await;
        }
        return Err(SessionFailure::Session(e));
    }
    let (user, _) = bus.load::<User>(&session.user_id.to_string()).await?;
    if !user.is_active() {
        return Err(SessionFailure::UserInactive);
    }
    match bus
        .execute::<Session>(&id.to_string(), SessionCommand::Use, meta)
        .await
    {
        Ok(_) => {}
        // Revoked or expired since it was read: over.
        Err(CommandError::Domain(e)) => return Err(SessionFailure::Session(e)),
        Err(e) => tracing::warn!(error = %e, "the use of a session could not be recorded"),
    }
    Ok(session)
}

async fn record_expiry(bus: &CommandBus, id: Uuid, meta: &Metadata) {
    if let Err(e) = bus
        .execute::<Session>(&id.to_string(), SessionCommand::Expire, meta)
        .await
    {
        tracing::warn!(error = %e, "the expiry of a session could not be recorded");
    }
}

/// The session `id` as the log has it now.
pub async fn load(bus: &CommandBus, id: Uuid) -> Result<Session> {
    let (session, _) = bus.load::<Session>(&id.to_string()).await?;
    if !session.created {
        return Err(SessionFailure::Session(SessionError::NotFound));
    }
    Ok(session)
}

/// Revokes a session (nothing if it is already over).
pub async fn revoke(
    bus: &CommandBus,
    id: Uuid,
    reason: RevokeReason,
    meta: &Metadata,
) -> Result<Outcome> {
    Ok(bus
        .execute::<Session>(&id.to_string(), SessionCommand::Revoke { reason }, meta)
        .await?)
}

/// Records that a code went to an address being added in session `id`:
/// its keyed digest, until `expires_at`.
pub async fn send_address_code(
    bus: &CommandBus,
    id: Uuid,
    digest: String,
    expires_at: time::OffsetDateTime,
    meta: &Metadata,
) -> Result<Outcome> {
    let command = SessionCommand::SendAddressCode { digest, expires_at };
    Ok(bus
        .execute::<Session>(&id.to_string(), command, meta)
        .await?)
}

/// Records a wrong code for the address being added in session `id`.
pub async fn fail_address_code(bus: &CommandBus, id: Uuid, meta: &Metadata) -> Result<Outcome> {
    Ok(bus
        .execute::<Session>(&id.to_string(), SessionCommand::FailAddressCode, meta)
        .await?)
}

/// Spends the code with `digest` of session `id`: once, while it works.
pub async fn use_address_code(
    bus: &CommandBus,
    id: Uuid,
    digest: String,
    meta: &Metadata,
) -> Result<Outcome> {
    let command = SessionCommand::UseAddressCode { digest };
    Ok(bus
        .execute::<Session>(&id.to_string(), command, meta)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_holds_the_id_and_the_secret() {
        let id = Uuid::from_u128(0xabc);
        let v = cookie_value(id, "s3cret");
        assert_eq!(parse_cookie(&v), Some((id, "s3cret")));
        assert_eq!(parse_cookie("nodot"), None);
        assert_eq!(parse_cookie(&format!("{}.", id.simple())), None);
        assert_eq!(
            parse_cookie(&format!("{id}.x")),
            None,
            "hyphenated ids are not ours"
        );
    }
}
