//! Command handlers of people's grants to applications (see
//! `domain::grant`) and of their consents (`domain::consent`).
//!
//! Values carry the grant's id, so a presented value names its stream:
//!
//! - authorization code: `ac_{grant_id}_{secret}`
//! - refresh token: `rg_{grant_id}_{refresh_token_id}_{secret}`
//!
//! Only [`crypto::hash_secret`] of a secret is recorded.

use base64::Engine;
use domain::Metadata;
use domain::consent::{ConsentCommand, ConsentError, Consents};
use domain::grant::{
    CODE_LIFETIME, CodeIssued, Grant, GrantCommand, GrantError, IssuedAccess, NewRefresh,
    Redemption, RevokeReason, Rotation, Standing,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};
use crate::crypto;
use crate::registration::{take_id, take_secret};

pub const CODE_PREFIX: &str = "ac_";
pub const REFRESH_PREFIX: &str = "rg_";

/// `ac_{grant_id}_{secret}` -> the grant's id and the secret.
pub fn parse_code(value: &str) -> Option<(Uuid, String)> {
    let (id, rest) = take_id(value.strip_prefix(CODE_PREFIX)?)?;
    Some((id, take_secret(rest)?))
}

/// `rg_{grant_id}_{token_id}_{secret}` -> both ids and the secret.
pub fn parse_refresh(value: &str) -> Option<(Uuid, Uuid, String)> {
    let (grant_id, rest) = take_id(value.strip_prefix(REFRESH_PREFIX)?)?;
    let (token_id, rest) = take_id(rest)?;
    Some((grant_id, token_id, take_secret(rest)?))
}

/// Whether `value` looks like one of this module's refresh tokens.
pub fn is_grant_refresh(value: &str) -> bool {
    value.starts_with(REFRESH_PREFIX)
}

/// A PKCE code verifier, or an S256 challenge (RFC 7636 §4.1): 43 to 128
/// characters of `[A-Za-z0-9-._~]`.
pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The PKCE S256 transform (RFC 7636 §4.2): BASE64URL(SHA-256(verifier)).
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A new refresh token living `lifetime` from `now`: its value (shown
/// once) and what the grant records of it.
fn new_refresh(grant_id: Uuid, now: OffsetDateTime, lifetime: Duration) -> (String, NewRefresh) {
    let token_id = Uuid::now_v7();
    let secret = crypto::new_secret();
    let value = format!(
        "{REFRESH_PREFIX}{}_{}_{secret}",
        grant_id.simple(),
        token_id.simple()
    );
    (
        value,
        NewRefresh {
            token_id,
            hash: crypto::hash_secret(&secret),
            expires_at: now + lifetime,
        },
    )
}

/// What an authorization code is issued for; its secret, hash and expiry
/// are drawn here.
pub struct NewCode {
    pub organization_id: Uuid,
    pub client_id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub auth_time: OffsetDateTime,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub consent_since: Option<OffsetDateTime>,
}

/// Issues an authorization code (a new grant): answers its value, shown
/// once, and the grant's id.
pub async fn issue_code(
    bus: &CommandBus,
    code: NewCode,
    metadata: &Metadata,
) -> Result<(String, Uuid, Outcome), CommandError<GrantError>> {
    let grant_id = Uuid::now_v7();
    let secret = crypto::new_secret();
    let now = bus.clock().now();
    let issued = CodeIssued {
        grant_id,
        organization_id: code.organization_id,
        client_id: code.client_id,
        user_id: code.user_id,
        session_id: code.session_id,
        redirect_uri: code.redirect_uri,
        scope: code.scope,
        nonce: code.nonce,
        code_challenge: code.code_challenge,
        code_hash: crypto::hash_secret(&secret),
        auth_time: code.auth_time,
        amr: code.amr,
        acr: code.acr,
        consent_since: code.consent_since,
        issued_at: now,
        expires_at: now + CODE_LIFETIME,
    };
    let outcome = bus
        .execute_new::<Grant>(
            &grant_id.to_string(),
            GrantCommand::IssueCode(Box::new(issued)),
            metadata,
        )
        .await?;
    let value = format!("{CODE_PREFIX}{}_{secret}", grant_id.simple());
    Ok((value, grant_id, outcome))
}

/// The grant a code names, with the facts fixed at its issue (for signing
/// the access token before the redemption records it).
pub async fn code_facts(
    bus: &CommandBus,
    code_value: &str,
) -> Result<Grant, CommandError<GrantError>> {
    let (grant_id, _) =
        parse_code(code_value).ok_or(CommandError::Domain(GrantError::InvalidCode))?;
    facts(bus, grant_id).await
}

/// Whether a redemption earns a refresh token, and how long it lives.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// The client may use the refresh_token grant.
    pub allowed: bool,
    /// Even without `offline_access` in the grant.
    pub without_offline_access: bool,
    pub lifetime: Duration,
}

impl RefreshPolicy {
    fn earned(&self, scope: &str) -> bool {
        self.allowed
            && (self.without_offline_access || scope.split(' ').any(|s| s == "offline_access"))
    }
}

/// The access token a request signed, recorded by the grant's command,
/// and the secret that authenticated the client.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub issued: Option<IssuedAccess>,
    pub secret_id: Option<Uuid>,
}

/// What a token request earns.
#[derive(Debug)]
pub enum Redeemed {
    /// The grant as the redemption left it, and the refresh token, if one
    /// was earned.
    Granted {
        grant: Box<Grant>,
        refresh_token: Option<String>,
    },
    /// The code or refresh token had been used: the grant is now revoked.
    Replayed { grant_id: Uuid },
    /// What the grant stood on is gone: the grant is now revoked.
    Ended {
        grant_id: Uuid,
        reason: RevokeReason,
    },
}

/// The grant `id` as it is after this node's last command on it.
async fn current(bus: &CommandBus, id: Uuid) -> Result<Grant, CommandError<GrantError>> {
    bus.load::<Grant>(&id.to_string())
        .await
        .map(|(g, _)| g)
        .map_err(CommandError::Log)
}

/// The grant a code or refresh token names, as it is now.
pub async fn load(bus: &CommandBus, id: Uuid) -> Result<Grant, CommandError<GrantError>> {
    current(bus, id).await
}

/// The grant as this node last saw it, read if it never did: for the facts
/// fixed at its issue (client, person, session, scope, consent), never for
/// whether it is still usable, which its commands decide.
/// Read once, it stays cached for the command that follows.
pub async fn facts(bus: &CommandBus, id: Uuid) -> Result<Grant, CommandError<GrantError>> {
    match bus.load_cached::<Grant>(&id.to_string()).await {
        Ok(g) if g.issued.is_some() => Ok(g),
        Ok(_) => current(bus, id).await,
        Err(e) => Err(CommandError::Log(e)),
    }
}

/// The grant as the command that ended at `outcome` left it (from the
/// cache when nothing came after; else read).
async fn after(
    bus: &CommandBus,
    id: Uuid,
    outcome: &Outcome,
) -> Result<Grant, CommandError<GrantError>> {
    match bus.cached_at::<Grant>(&id.to_string(), outcome.revision) {
        Some(g) => Ok(g),
        None => current(bus, id).await,
    }
}

/// What a token request presents with an authorization code.
#[derive(Debug, Clone, Copy)]
pub struct CodeRequest<'a> {
    pub code: &'a str,
    pub client_id: Uuid,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a str,
}

/// Redeems an authorization code for the client, with the redirect URI
/// and PKCE verifier of the token request. A second redemption is
/// recorded and answered [`Redeemed::Replayed`] (the grant is revoked).
pub async fn redeem(
    bus: &CommandBus,
    request: CodeRequest<'_>,
    refresh: RefreshPolicy,
    access: Access,
    metadata: &Metadata,
) -> Result<Redeemed, CommandError<GrantError>> {
    let CodeRequest {
        code: code_value,
        client_id,
        redirect_uri,
        code_verifier,
    } = request;
    let (grant_id, secret) =
        parse_code(code_value).ok_or(CommandError::Domain(GrantError::InvalidCode))?;
    let before = facts(bus, grant_id).await?;
    let now = bus.clock().now();
    let earned = refresh.earned(&before.scope);
    let (refresh_value, new) = match earned {
        true => {
            let (v, n) = new_refresh(grant_id, now, refresh.lifetime);
            (Some(v), Some(n))
        }
        false => (None, None),
    };
    let redemption_id = Uuid::now_v7();
    let command = GrantCommand::Redeem(Box::new(Redemption {
        redemption_id,
        code_hash: crypto::hash_secret(&secret),
        client_id,
        redirect_uri: redirect_uri.to_owned(),
        verifier_challenge: s256(code_verifier),
        refresh: new,
        access: access.issued,
        secret_id: access.secret_id,
    }));
    let outcome = bus
        .execute::<Grant>(&grant_id.to_string(), command, metadata)
        .await?;
    let after = after(bus, grant_id, &outcome).await?;
    if after.redemption_id == Some(redemption_id) && after.is_usable() {
        Ok(Redeemed::Granted {
            grant: Box::new(after),
            refresh_token: refresh_value,
        })
    } else {
        Ok(Redeemed::Replayed { grant_id })
    }
}

/// What a refresh request presents.
#[derive(Debug, Clone)]
pub struct RefreshRequest<'a> {
    /// The refresh token's value.
    pub value: &'a str,
    pub client_id: Uuid,
    /// The scope of the access token to issue, narrowed by the caller.
    pub scope: String,
    /// How long the next refresh token lives unused.
    pub lifetime: Duration,
}

/// Rotates a refresh token: the next one and the grant as it now is. A
/// rotated-away token presented again is recorded and answered
/// [`Redeemed::Replayed`]; a grant whose session, consent or person is
/// gone (`standing`, as the caller found them) is revoked, recorded and
/// answered [`Redeemed::Ended`].
pub async fn refresh(
    bus: &CommandBus,
    request: RefreshRequest<'_>,
    access: Access,
    standing: Standing,
    metadata: &Metadata,
) -> Result<Redeemed, CommandError<GrantError>> {
    let (grant_id, token_id, secret) =
        parse_refresh(request.value).ok_or(CommandError::Domain(GrantError::InvalidRefresh))?;
    let (next_value, next) = new_refresh(grant_id, bus.clock().now(), request.lifetime);
    let next_id = next.token_id;
    let command = GrantCommand::Refresh(Box::new(Rotation {
        client_id: request.client_id,
        presented_token_id: token_id,
        presented_hash: crypto::hash_secret(&secret),
        refresh: next,
        scope: request.scope,
        access: access.issued,
        secret_id: access.secret_id,
        standing,
    }));
    let outcome = bus
        .execute::<Grant>(&grant_id.to_string(), command, metadata)
        .await?;
    let after = after(bus, grant_id, &outcome).await?;
    let ours = after
        .chain
        .current
        .as_ref()
        .is_some_and(|c| c.id == next_id);
    Ok(match after.revoked_because {
        _ if ours && after.is_usable() => Redeemed::Granted {
            grant: Box::new(after),
            refresh_token: Some(next_value),
        },
        Some(reason) => Redeemed::Ended { grant_id, reason },
        None => Redeemed::Replayed { grant_id },
    })
}

/// Ends a grant: its refresh tokens and access tokens stop working.
pub async fn revoke(
    bus: &CommandBus,
    grant_id: Uuid,
    reason: RevokeReason,
    metadata: &Metadata,
) -> Result<Outcome, CommandError<GrantError>> {
    bus.execute::<Grant>(
        &grant_id.to_string(),
        GrantCommand::Revoke { reason },
        metadata,
    )
    .await
}

/// Records an authorization request sent back with an error (a journal
/// fact of the day's `authfailures` stream).
pub async fn record_refusal(
    bus: &CommandBus,
    client_id: Uuid,
    organization_id: Uuid,
    error: &str,
    description: &str,
    metadata: &Metadata,
) -> Result<(), eventlog::Error> {
    let now = bus.clock().now();
    let fact = domain::grant::AuthorizationRefused {
        client_id,
        organization_id,
        error: error.to_owned(),
        description: description.to_owned(),
        at: now,
    };
    crate::journal::record(
        bus.log(),
        &domain::token::auth_failure_stream(now),
        &fact,
        metadata,
    )
    .await
    .map(|_| ())
}

/// A person's consents as they are now.
pub async fn consents(bus: &CommandBus, user_id: Uuid) -> Result<Consents, eventlog::Error> {
    bus.load::<Consents>(&user_id.to_string())
        .await
        .map(|(c, _)| c)
}

/// Records a person's consent to `scopes` for a client (added to what
/// they consented to before).
pub async fn give_consent(
    bus: &CommandBus,
    user_id: Uuid,
    organization_id: Uuid,
    client_id: Uuid,
    scopes: Vec<String>,
    metadata: &Metadata,
) -> Result<Outcome, CommandError<ConsentError>> {
    bus.execute::<Consents>(
        &user_id.to_string(),
        ConsentCommand::Give {
            user_id,
            organization_id,
            client_id,
            scopes,
        },
        metadata,
    )
    .await
}

/// Withdraws a person's consent for a client: the grants made under it
/// stop working at their next use.
pub async fn revoke_consent(
    bus: &CommandBus,
    user_id: Uuid,
    client_id: Uuid,
    metadata: &Metadata,
) -> Result<Outcome, CommandError<ConsentError>> {
    bus.execute::<Consents>(
        &user_id.to_string(),
        ConsentCommand::Revoke { user_id, client_id },
        metadata,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_their_grant_and_pkce_is_rfc_7636() {
        let id = Uuid::from_u128(7);
        let secret = crypto::new_secret();
        let code = format!("{CODE_PREFIX}{}_{secret}", id.simple());
        assert_eq!(parse_code(&code), Some((id, secret.clone())));
        assert_eq!(parse_code(&code.replace("ac_", "rt_")), None);
        let (value, n) = new_refresh(id, OffsetDateTime::UNIX_EPOCH, Duration::days(1));
        let (g, t, s) = parse_refresh(&value).unwrap_or_default();
        assert_eq!((g, t), (id, n.token_id));
        assert_eq!(crypto::hash_secret(&s), n.hash);
        // RFC 7636 appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
