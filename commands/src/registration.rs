//! Command handlers of registration tokens and the auth tokens they
//! generate (see `domain::registration`).
//!
//! Token values carry their ids, so a presented value names the stream to
//! load and no hash index is needed:
//!
//! - registration token: `rt_{registration_token_id}_{secret}`
//! - auth token: `at_{auth_token_id}_{secret}`
//! - refresh token: `rf_{auth_token_id}_{refresh_token_id}_{secret}`
//!
//! Ids are written in the simple form (32 lowercase hex digits); the secret
//! is [`crypto::new_secret`] (43 base64url characters, which may themselves
//! contain `_`). Only [`crypto::hash_secret`] of a secret is recorded, and a
//! value is shown once, in the struct its handler returns (whose `Debug`
//! hides it).

use std::time::Duration;

use domain::client::Client;
use domain::registration::{
    AuthToken, AuthTokenCommand, AuthTokenError, AuthTokenEvent, AuthTokenIssued, InstanceInfo,
    RegistrationToken, RegistrationTokenCommand, RegistrationTokenError, RegistrationTokenEvent,
};
use domain::{DomainEvent, Metadata};
use eventlog::Direction;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};
use crate::crypto;

pub const REGISTRATION_TOKEN_PREFIX: &str = "rt_";
pub const AUTH_TOKEN_PREFIX: &str = "at_";
pub const REFRESH_TOKEN_PREFIX: &str = "rf_";

/// The length of an id in a token value (`Uuid::simple`).
const ID_LEN: usize = 32;
/// The length of [`crypto::new_secret`]: 32 bytes in base64url without
/// padding.
const SECRET_LEN: usize = 43;
/// How many times a follow-up step that must not be lost (issuing the auth
/// token of a recorded consumption, reading back a refresh decision) is
/// tried on transient log errors.
const FOLLOW_UP_ATTEMPTS: u32 = 5;

// --- token values --------------------------------------------------------------

fn registration_token_value(id: Uuid, secret: &str) -> String {
    format!("{REGISTRATION_TOKEN_PREFIX}{}_{secret}", id.simple())
}

fn auth_token_value(id: Uuid, secret: &str) -> String {
    format!("{AUTH_TOKEN_PREFIX}{}_{secret}", id.simple())
}

fn refresh_token_value(auth_token_id: Uuid, refresh_token_id: Uuid, secret: &str) -> String {
    format!(
        "{REFRESH_TOKEN_PREFIX}{}_{}_{secret}",
        auth_token_id.simple(),
        refresh_token_id.simple()
    )
}

/// `{32 lowercase hex}_` at the start of `s`: the id and what follows.
pub(crate) fn take_id(s: &str) -> Option<(Uuid, &str)> {
    let hex = s.get(..ID_LEN)?;
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let id = Uuid::try_parse(hex).ok()?;
    let rest = s.get(ID_LEN..)?.strip_prefix('_')?;
    Some((id, rest))
}

/// A secret as [`crypto::new_secret`] draws it, and nothing else.
pub(crate) fn take_secret(s: &str) -> Option<String> {
    let well_formed = s.len() == SECRET_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| s.to_owned())
}

/// `rt_{id}_{secret}` -> the registration token's id and the secret.
pub fn parse_registration_token(value: &str) -> Option<(Uuid, String)> {
    let (id, rest) = take_id(value.strip_prefix(REGISTRATION_TOKEN_PREFIX)?)?;
    Some((id, take_secret(rest)?))
}

/// `at_{id}_{secret}` -> the auth token's id and the secret.
pub fn parse_auth_token(value: &str) -> Option<(Uuid, String)> {
    let (id, rest) = take_id(value.strip_prefix(AUTH_TOKEN_PREFIX)?)?;
    Some((id, take_secret(rest)?))
}

/// `rf_{auth_token_id}_{refresh_token_id}_{secret}` -> both ids and the
/// secret.
pub fn parse_refresh_token(value: &str) -> Option<(Uuid, Uuid, String)> {
    let (auth_token_id, rest) = take_id(value.strip_prefix(REFRESH_TOKEN_PREFIX)?)?;
    let (refresh_token_id, rest) = take_id(rest)?;
    Some((auth_token_id, refresh_token_id, take_secret(rest)?))
}

// --- results -------------------------------------------------------------------

/// Why an application's request (consume, exchange, refresh) failed. The API
/// sends [`RegistrationFailure::code`] with the message of the domain error.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationFailure {
    /// Also a malformed value, an unknown id or a wrong secret
    /// (`NotFound`: "invalid registration token").
    #[error(transparent)]
    RegistrationToken(RegistrationTokenError),
    /// Also a malformed auth or refresh token value (`InvalidCredential`).
    #[error(transparent)]
    AuthToken(AuthTokenError),
    #[error("the stream kept changing under the command ({attempts} attempts)")]
    Contention { attempts: usize },
    #[error(transparent)]
    Log(eventlog::Error),
}

impl From<CommandError<RegistrationTokenError>> for RegistrationFailure {
    fn from(e: CommandError<RegistrationTokenError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::RegistrationToken(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            // Registration commands carry no precondition on a revision.
            CommandError::Stale { .. } => Self::Contention { attempts: 1 },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

impl From<CommandError<AuthTokenError>> for RegistrationFailure {
    fn from(e: CommandError<AuthTokenError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::AuthToken(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            // Registration commands carry no precondition on a revision.
            CommandError::Stale { .. } => Self::Contention { attempts: 1 },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

/// What an administrator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRegistrationToken {
    pub organization_id: Uuid,
    /// The application (OAuth client) the auth tokens will belong to.
    pub client_id: Uuid,
    pub description: String,
    /// How many auth tokens it may generate: 1 to `MAX_COUNT`.
    pub count: u64,
    pub expires_at: OffsetDateTime,
    /// The administrator's actor id.
    pub created_by: String,
}

/// A registration token just created: the only time its value exists.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedRegistrationToken {
    pub id: Uuid,
    /// `rt_…`, to show once; only the hash of its secret is stored.
    pub value: String,
    pub organization_id: Uuid,
    pub client_id: Uuid,
    pub count: u64,
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for CreatedRegistrationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedRegistrationToken")
            .field("id", &self.id)
            .field("value", &"<redacted>")
            .field("organization_id", &self.organization_id)
            .field("client_id", &self.client_id)
            .field("count", &self.count)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The auth token an instance received for consuming a registration token.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedAuthToken {
    pub id: Uuid,
    /// `at_…`, to hand to the instance once.
    pub value: String,
    pub registration_token_id: Uuid,
    pub client_id: Uuid,
    pub organization_id: Uuid,
}

impl std::fmt::Debug for IssuedAuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedAuthToken")
            .field("id", &self.id)
            .field("value", &"<redacted>")
            .field("registration_token_id", &self.registration_token_id)
            .field("client_id", &self.client_id)
            .field("organization_id", &self.organization_id)
            .finish()
    }
}

/// What an exchange or a refresh grants: the API issues an access token for
/// `client_id` bound to the instance `auth_token_id`, and hands back the new
/// refresh token.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthTokenGrant {
    pub auth_token_id: Uuid,
    pub client_id: Uuid,
    pub organization_id: Uuid,
    /// `rf_…`, to hand to the instance once.
    pub refresh_token_value: String,
}

impl std::fmt::Debug for AuthTokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthTokenGrant")
            .field("auth_token_id", &self.auth_token_id)
            .field("client_id", &self.client_id)
            .field("organization_id", &self.organization_id)
            .field("refresh_token_value", &"<redacted>")
            .finish()
    }
}

/// The two ways a well-formed refresh lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The presented token was current: it is used now, `grant` holds the
    /// next one.
    Refreshed {
        outcome: Outcome,
        grant: AuthTokenGrant,
    },
    /// The presented token had been used before: the reuse is recorded and
    /// the chain revoked. Answer `invalid_grant`, issue nothing.
    ReuseDetected {
        outcome: Outcome,
        auth_token_id: Uuid,
        client_id: Uuid,
        organization_id: Uuid,
    },
}

// --- handlers ------------------------------------------------------------------

/// Creates a registration token for an application of an organization. The
/// application must exist in that organization and not be deleted
/// (`UnknownClient`).
pub async fn create(
    bus: &CommandBus,
    new: NewRegistrationToken,
    metadata: &Metadata,
) -> Result<(Outcome, CreatedRegistrationToken), CommandError<RegistrationTokenError>> {
    let (client, _) = bus
        .load::<Client>(&new.client_id.to_string())
        .await
        .map_err(CommandError::Log)?;
    if !client.exists || client.deleted || client.organization_id != new.organization_id {
        return Err(CommandError::Domain(RegistrationTokenError::UnknownClient));
    }
    let id = Uuid::now_v7();
    let secret = crypto::new_secret();
    let command = RegistrationTokenCommand::Create {
        id,
        organization_id: new.organization_id,
        client_id: new.client_id,
        description: new.description,
        count: new.count,
        expires_at: new.expires_at,
        hash: crypto::hash_secret(&secret),
        created_by: new.created_by,
    };
    let outcome = bus
        .execute::<RegistrationToken>(&id.to_string(), command, metadata)
        .await?;
    Ok((
        outcome,
        CreatedRegistrationToken {
            id,
            value: registration_token_value(id, &secret),
            organization_id: new.organization_id,
            client_id: new.client_id,
            count: new.count,
            expires_at: new.expires_at,
        },
    ))
}

/// Revokes a registration token: no further consumption. Auth tokens it
/// already generated keep working (delete them one by one).
pub async fn revoke(
    bus: &CommandBus,
    id: Uuid,
    metadata: &Metadata,
) -> Result<Outcome, CommandError<RegistrationTokenError>> {
    bus.execute::<RegistrationToken>(&id.to_string(), RegistrationTokenCommand::Revoke, metadata)
        .await
}

/// An instance consumes a registration token and gets its own auth token.
///
/// Two appends: the consumption on `regtoken-{id}` (which enforces the
/// count, expiry and revocation; batched with the consumptions other
/// instances make meanwhile, see [`CommandBus::execute_batched`]), then the
/// auth token on the new stream `authtoken-{auth_token_id}`. The consumption is the source of truth for
/// the count. The second append is retried on transient errors (issuing is
/// idempotent); if it still fails, or the process dies between the two, the
/// consumption stays recorded with an auth token that was never delivered:
/// one count is lost, and the administrator sees a consumption whose auth
/// token does not exist.
///
/// The returned outcome is the auth token's append (the later of the two);
/// its position is `None` only when a retry found the token already issued.
pub async fn consume(
    bus: &CommandBus,
    value: &str,
    instance: InstanceInfo,
    metadata: &Metadata,
) -> Result<(Outcome, IssuedAuthToken), RegistrationFailure> {
    let invalid = || RegistrationFailure::RegistrationToken(RegistrationTokenError::NotFound);
    let (registration_token_id, secret) = parse_registration_token(value).ok_or_else(invalid)?;
    let stream_id = registration_token_id.to_string();
    let token = registration_token_facts(bus, &stream_id)
        .await?
        .ok_or_else(invalid)?;
    if !crypto::secret_matches(&secret, &token.hash) {
        return Err(invalid());
    }

    let mut instance = instance;
    // Every personal value gets a subject: the person the user name names,
    // or, for a device named without one, the installation itself.
    instance.subject = bus.person_ids().and_then(|ids| {
        ids.subject(
            token.organization_id,
            instance.user_name.value().map_or("", String::as_str),
        )
        .or_else(|| {
            (!instance.device_name.trim().is_empty())
                .then(|| ids.installation_subject(token.organization_id, &instance.instance_id))
        })
    });
    let auth_token_id = Uuid::now_v7();
    let consume = RegistrationTokenCommand::Consume {
        auth_token_id,
        instance: instance.clone(),
    };
    bus.execute_batched::<RegistrationToken>(&stream_id, consume, metadata)
        .await?;

    let auth_secret = crypto::new_secret();
    let issue = AuthTokenCommand::Issue {
        id: auth_token_id,
        registration_token_id,
        organization_id: token.organization_id,
        client_id: token.client_id,
        hash: crypto::hash_secret(&auth_secret),
        instance,
    };
    let outcome = match issue_auth_token(bus, auth_token_id, issue, metadata).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(
                %registration_token_id,
                %auth_token_id,
                error = %e,
                "a consumption was recorded but its auth token could not be issued"
            );
            return Err(e.into());
        }
    };
    Ok((
        outcome,
        IssuedAuthToken {
            id: auth_token_id,
            value: auth_token_value(auth_token_id, &auth_secret),
            registration_token_id,
            client_id: token.client_id,
            organization_id: token.organization_id,
        },
    ))
}

fn is_transient<E: std::error::Error>(e: &CommandError<E>) -> bool {
    matches!(
        e,
        CommandError::Contention { .. } | CommandError::Log(eventlog::Error::Backend(_))
    )
}

async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
}

async fn issue_auth_token(
    bus: &CommandBus,
    auth_token_id: Uuid,
    command: AuthTokenCommand,
    metadata: &Metadata,
) -> Result<Outcome, CommandError<AuthTokenError>> {
    let id = auth_token_id.to_string();
    let mut attempt = 0;
    loop {
        match bus
            .execute_new::<AuthToken>(&id, command.clone(), metadata)
            .await
        {
            Err(e) if is_transient(&e) && attempt + 1 < FOLLOW_UP_ATTEMPTS => {
                tracing::warn!(%auth_token_id, error = %e, attempt, "retrying the auth token's issue");
                pause(attempt).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// An instance exchanges its auth token, once, for its first refresh token.
/// A second exchange is refused and revokes every token of the instance.
pub async fn exchange(
    bus: &CommandBus,
    auth_token_value: &str,
    scope: &str,
    metadata: &Metadata,
) -> Result<(Outcome, AuthTokenGrant), RegistrationFailure> {
    let (auth_token_id, secret) = parse_auth_token(auth_token_value).ok_or(
        RegistrationFailure::AuthToken(AuthTokenError::InvalidCredential),
    )?;
    let token = issued_auth_token(bus, auth_token_id).await?;
    let refresh_token_id = Uuid::now_v7();
    let refresh_secret = crypto::new_secret();
    let command = AuthTokenCommand::Exchange {
        hash: crypto::hash_secret(&secret),
        refresh_token_id,
        refresh_hash: crypto::hash_secret(&refresh_secret),
        scope: scope.to_owned(),
    };
    let outcome = bus
        .execute::<AuthToken>(&auth_token_id.to_string(), command, metadata)
        .await?;
    if reuse_recorded(bus, &outcome).await? {
        tracing::warn!(
            %auth_token_id,
            "an exchanged auth token was presented again: its tokens are revoked"
        );
        return Err(RegistrationFailure::AuthToken(
            AuthTokenError::AlreadyExchanged,
        ));
    }
    Ok((
        outcome,
        AuthTokenGrant {
            auth_token_id,
            client_id: token.client_id,
            organization_id: token.organization_id,
            refresh_token_value: refresh_token_value(
                auth_token_id,
                refresh_token_id,
                &refresh_secret,
            ),
        },
    ))
}

/// An instance presents its refresh token for the next one.
///
/// The domain answers a reused token with `Ok([ReuseDetected])` so that the
/// bus records it; [`CommandBus::execute`] reports only how many events it
/// appended, so this reads back the one event the command appended to tell
/// the two apart.
pub async fn refresh(
    bus: &CommandBus,
    refresh_value: &str,
    scope: Option<&str>,
    metadata: &Metadata,
) -> Result<RefreshOutcome, RegistrationFailure> {
    let (auth_token_id, presented_token_id, secret) = parse_refresh_token(refresh_value).ok_or(
        RegistrationFailure::AuthToken(AuthTokenError::InvalidCredential),
    )?;
    let token = issued_auth_token(bus, auth_token_id).await?;
    let new_token_id = Uuid::now_v7();
    let new_secret = crypto::new_secret();
    let command = AuthTokenCommand::Refresh {
        presented_token_id,
        presented_hash: crypto::hash_secret(&secret),
        new_token_id,
        new_hash: crypto::hash_secret(&new_secret),
        scope: scope.map(str::to_owned),
    };
    let outcome = bus
        .execute::<AuthToken>(&auth_token_id.to_string(), command, metadata)
        .await?;
    if reuse_recorded(bus, &outcome).await? {
        tracing::warn!(
            %auth_token_id,
            refresh_token_id = %presented_token_id,
            "a used refresh token was presented again: the chain is revoked"
        );
        return Ok(RefreshOutcome::ReuseDetected {
            outcome,
            auth_token_id,
            client_id: token.client_id,
            organization_id: token.organization_id,
        });
    }
    Ok(RefreshOutcome::Refreshed {
        outcome,
        grant: AuthTokenGrant {
            auth_token_id,
            client_id: token.client_id,
            organization_id: token.organization_id,
            refresh_token_value: refresh_token_value(auth_token_id, new_token_id, &new_secret),
        },
    })
}

/// Revokes the chain a refresh token belongs to (RFC 7009): its refresh
/// tokens and the access tokens issued from it stop working. A token that
/// is malformed, unknown, used or already revoked changes nothing (the
/// caller answers 200 alike). Answers the chain's id when it was revoked.
pub async fn revoke_refresh(
    bus: &CommandBus,
    refresh_value: &str,
    metadata: &Metadata,
) -> Result<Option<Uuid>, RegistrationFailure> {
    let Some((auth_token_id, presented_token_id, secret)) = parse_refresh_token(refresh_value)
    else {
        return Ok(None);
    };
    let command = AuthTokenCommand::Revoke {
        presented_token_id,
        presented_hash: crypto::hash_secret(&secret),
    };
    match bus
        .execute::<AuthToken>(&auth_token_id.to_string(), command, metadata)
        .await
    {
        Ok(outcome) if outcome.events > 0 => Ok(Some(auth_token_id)),
        Ok(_) | Err(CommandError::Domain(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The chain a refresh token belongs to, when the token is its live one
/// (for introspection: nothing is recorded).
pub async fn live_refresh(
    bus: &CommandBus,
    refresh_value: &str,
) -> Result<Option<AuthToken>, RegistrationFailure> {
    let Some((auth_token_id, token_id, secret)) = parse_refresh_token(refresh_value) else {
        return Ok(None);
    };
    let (chain, _) = bus
        .load::<AuthToken>(&auth_token_id.to_string())
        .await
        .map_err(RegistrationFailure::Log)?;
    Ok(chain
        .refresh_is_current(token_id, &crypto::hash_secret(&secret))
        .then_some(chain))
}

/// Records corrected instance values on one auth token (rectification).
pub async fn correct_instance(
    bus: &CommandBus,
    auth_token_id: Uuid,
    user_name: Option<String>,
    device_name: Option<String>,
    metadata: &Metadata,
) -> Result<Outcome, CommandError<AuthTokenError>> {
    bus.execute::<AuthToken>(
        &auth_token_id.to_string(),
        AuthTokenCommand::CorrectInstance {
            user_name,
            device_name,
        },
        metadata,
    )
    .await
}

/// Deletes an instance's auth token: its refresh tokens stop working.
pub async fn delete_auth_token(
    bus: &CommandBus,
    id: Uuid,
    metadata: &Metadata,
) -> Result<Outcome, CommandError<AuthTokenError>> {
    bus.execute::<AuthToken>(&id.to_string(), AuthTokenCommand::Delete, metadata)
        .await
}

/// The first event of `stream`, if any.
///
/// The facts a handler needs besides the decision (a token's hash, client
/// and organization) never change after a stream's first event, so reading
/// that one event costs the same however long the stream has grown, where
/// [`CommandBus::load`] would fold all of it.
async fn first_event<E: DomainEvent>(
    bus: &CommandBus,
    stream: &str,
) -> Result<Option<E>, RegistrationFailure> {
    let page = bus
        .log()
        .read_stream(stream, Direction::Forwards, Some(0), 1)
        .await
        .map_err(RegistrationFailure::Log)?;
    page.first()
        .map(eventlog::decode)
        .transpose()
        .map_err(RegistrationFailure::Log)
}

/// What a consumption needs to know of a registration token besides the
/// decision: its hash, application and organization. They never change once
/// the token exists, so the state the bus has cached serves as well as the
/// stream's first event.
struct RegistrationTokenFacts {
    hash: String,
    organization_id: Uuid,
    client_id: Uuid,
}

async fn registration_token_facts(
    bus: &CommandBus,
    id: &str,
) -> Result<Option<RegistrationTokenFacts>, RegistrationFailure> {
    if let Some(token) = bus
        .cached::<RegistrationToken>(id)
        .filter(|token| token.exists)
    {
        return Ok(Some(RegistrationTokenFacts {
            hash: token.hash,
            organization_id: token.organization_id,
            client_id: token.client_id,
        }));
    }
    let stream = CommandBus::stream_name::<RegistrationToken>(id);
    Ok(match first_event(bus, &stream).await? {
        Some(RegistrationTokenEvent::Created(created)) => Some(RegistrationTokenFacts {
            hash: created.hash,
            organization_id: created.organization_id,
            client_id: created.client_id,
        }),
        _ => None,
    })
}

/// The auth token's immutable facts, read before a command so that a failed
/// read cannot lose a decision already recorded.
async fn issued_auth_token(
    bus: &CommandBus,
    id: Uuid,
) -> Result<AuthTokenIssued, RegistrationFailure> {
    let stream = CommandBus::stream_name::<AuthToken>(&id.to_string());
    match first_event(bus, &stream).await? {
        Some(AuthTokenEvent::Issued(issued)) => Ok(issued),
        _ => Err(RegistrationFailure::AuthToken(AuthTokenError::NotFound)),
    }
}

/// Whether the one event a refresh appended records a reuse.
async fn reuse_recorded(bus: &CommandBus, outcome: &Outcome) -> Result<bool, RegistrationFailure> {
    let Some(revision) = outcome.revision.filter(|_| outcome.events > 0) else {
        return Ok(false);
    };
    let mut attempt = 0;
    loop {
        let read = bus
            .log()
            .read_stream(&outcome.stream, Direction::Forwards, Some(revision), 1)
            .await;
        match read {
            Ok(page) => {
                let Some(recorded) = page.first() else {
                    return Err(RegistrationFailure::Log(eventlog::Error::Corrupt(format!(
                        "{}@{revision} was appended but cannot be read",
                        outcome.stream
                    ))));
                };
                let event: AuthTokenEvent =
                    eventlog::decode(recorded).map_err(RegistrationFailure::Log)?;
                return Ok(AuthTokenEvent::reuse_detected(std::slice::from_ref(&event)));
            }
            Err(eventlog::Error::Backend(_)) if attempt + 1 < FOLLOW_UP_ATTEMPTS => {
                pause(attempt).await;
                attempt += 1;
            }
            Err(e) => return Err(RegistrationFailure::Log(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_ids_and_parse_back() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let secret = crypto::new_secret();
        assert_eq!(secret.len(), SECRET_LEN);

        let rt = registration_token_value(a, &secret);
        assert!(rt.starts_with("rt_") && rt.contains(&a.simple().to_string()));
        assert_eq!(parse_registration_token(&rt), Some((a, secret.clone())));
        let at = auth_token_value(a, &secret);
        assert_eq!(parse_auth_token(&at), Some((a, secret.clone())));
        let rf = refresh_token_value(a, b, &secret);
        assert_eq!(parse_refresh_token(&rf), Some((a, b, secret.clone())));

        // Each kind parses only as itself.
        assert_eq!(parse_auth_token(&rt), None);
        assert_eq!(parse_registration_token(&at), None);
        assert_eq!(parse_refresh_token(&at), None);
        assert_eq!(parse_auth_token(&rf), None);
    }

    #[test]
    fn secrets_with_underscores_parse() {
        let id = Uuid::now_v7();
        let secret = format!("_{}_", "a".repeat(SECRET_LEN - 2));
        let value = registration_token_value(id, &secret);
        assert_eq!(parse_registration_token(&value), Some((id, secret.clone())));
        let value = refresh_token_value(id, id, &secret);
        assert_eq!(parse_refresh_token(&value), Some((id, id, secret)));
    }

    #[test]
    fn malformed_values_are_refused() {
        let id = Uuid::now_v7().simple().to_string();
        let secret = "A".repeat(SECRET_LEN);
        for bad in [
            String::new(),
            "rt_".into(),
            format!("rt_{id}"),
            format!("rt_{id}_"),
            format!("rt_{id}{secret}"),
            format!("rt_{id}_{secret}x"),
            format!("rt_{id}_{}", &secret[1..]),
            format!("rt_{id}_{}!", &secret[1..]),
            format!("rt_{}_{secret}", id.to_uppercase()),
            format!("rt_{}_{secret}", &id[1..]),
            format!("rt_{}_{secret}", Uuid::now_v7().hyphenated()),
            format!("RT_{id}_{secret}"),
            format!(" rt_{id}_{secret}"),
            format!("rt_{}é_{secret}", &id[2..]),
        ] {
            assert_eq!(parse_registration_token(&bad), None, "{bad}");
        }
        assert!(parse_registration_token(&format!("rt_{id}_{secret}")).is_some());
        assert_eq!(parse_refresh_token(&format!("rf_{id}_{secret}")), None);
        assert_eq!(parse_refresh_token(&format!("rf_{id}__{secret}")), None);
    }

    #[test]
    fn returned_values_never_print() {
        let value = "rt_very-secret-value".to_owned();
        let created = CreatedRegistrationToken {
            id: Uuid::nil(),
            value: value.clone(),
            organization_id: Uuid::nil(),
            client_id: Uuid::nil(),
            count: 1,
            expires_at: OffsetDateTime::UNIX_EPOCH,
        };
        let issued = IssuedAuthToken {
            id: Uuid::nil(),
            value: value.clone(),
            registration_token_id: Uuid::nil(),
            client_id: Uuid::nil(),
            organization_id: Uuid::nil(),
        };
        let grant = AuthTokenGrant {
            auth_token_id: Uuid::nil(),
            client_id: Uuid::nil(),
            organization_id: Uuid::nil(),
            refresh_token_value: value.clone(),
        };
        let refreshed = RefreshOutcome::Refreshed {
            outcome: Outcome {
                stream: "authtoken-x".into(),
                revision: Some(2),
                position: None,
                events: 1,
            },
            grant: grant.clone(),
        };
        for printed in [
            format!("{created:?}"),
            format!("{issued:?}"),
            format!("{grant:?}"),
            format!("{refreshed:?}"),
        ] {
            assert!(!printed.contains("very-secret"), "{printed}");
            assert!(printed.contains("<redacted>"));
        }
    }
}
