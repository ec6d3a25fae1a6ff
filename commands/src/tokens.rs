//! Issuing and revoking access tokens: what a grant's token claims (decided
//! from the grant and the time, no I/O), signing it with the key ring the
//! caller keeps current, and the journal facts recorded before a token is
//! handed out or once it is revoked.

use std::sync::Arc;

use domain::Metadata;
use domain::client::Client;
use domain::token::{TokenEvent, TokenIssued, TokenRevoked, revocation_stream, token_stream};
use eventlog::{AppendResult, EventLog};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::bus::CommandBus;
use crate::journal;
use crate::jwt::AccessTokenClaims;

pub use domain::token::{AUTH_TOKEN_CLAIM, GRANT_CLAIM};

/// What an access token is issued for.
pub struct Grant<'a> {
    pub client_id: Uuid,
    pub client: &'a Client,
    pub grant_type: &'a str,
    pub scope: &'a str,
    pub audience: &'a str,
    pub auth_method: &'a str,
    /// The secret that authenticated the client, if one did.
    pub secret_id: Option<Uuid>,
    /// The instance the token acts for (registration-token installs).
    pub auth_token_id: Option<Uuid>,
    /// The person and their grant the token acts for (authorization code).
    pub person: Option<Person>,
    /// What the subject's access adds (its roles and permissions); a name
    /// the token registers itself (`sub`, `scope`, …) is never taken from
    /// here.
    pub claims: Map<String, Value>,
}

/// A person a token is issued for, and the grant it stands on.
#[derive(Debug, Clone, Copy)]
pub struct Person {
    pub user_id: Uuid,
    pub grant_id: Uuid,
}

/// The claims every token sets itself.
pub const REGISTERED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "client_id",
    "scope",
    "jti",
    "iat",
    "exp",
    "nbf",
    "typ",
    AUTH_TOKEN_CLAIM,
    GRANT_CLAIM,
];

/// The claims of the token `grant` earns at `now`, and the fact to record
/// for it. It lives as long as its client's access token lifetime.
pub fn decide(
    issuer: &str,
    grant: &Grant<'_>,
    jti: Uuid,
    now: OffsetDateTime,
) -> (AccessTokenClaims, TokenIssued) {
    let lifetime = i64::from(grant.client.settings.access_token_lifetime_secs);
    let mut extra: Map<String, Value> = grant
        .claims
        .iter()
        .filter(|(k, _)| !REGISTERED_CLAIMS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let sub = match (grant.person, grant.auth_token_id) {
        (Some(p), _) => {
            extra.insert(GRANT_CLAIM.into(), Value::String(p.grant_id.to_string()));
            p.user_id.to_string()
        }
        (None, Some(id)) => {
            extra.insert(AUTH_TOKEN_CLAIM.into(), Value::String(id.to_string()));
            id.to_string()
        }
        (None, None) => grant.client_id.to_string(),
    };
    let claims = AccessTokenClaims {
        iss: issuer.to_owned(),
        sub,
        aud: grant.audience.to_owned().into(),
        client_id: grant.client_id.to_string(),
        scope: grant.scope.to_owned(),
        jti: jti.to_string(),
        iat: now.unix_timestamp(),
        exp: now.unix_timestamp() + lifetime,
        extra,
    };
    let issued = TokenIssued {
        jti,
        client_id: grant.client_id,
        organization_id: grant.client.organization_id,
        grant_type: grant.grant_type.to_owned(),
        scope: grant.scope.to_owned(),
        audience: grant.audience.to_owned(),
        secret_id: grant.secret_id,
        auth_token_id: grant.auth_token_id,
        grant_id: grant.person.map(|p| p.grant_id),
        auth_method: grant.auth_method.to_owned(),
        issued_at: now,
        expires_at: now + time::Duration::seconds(lifetime),
    };
    (claims, issued)
}

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("signing: {0}")]
    Keys(#[from] jose::KeyError),
    #[error(transparent)]
    Log(#[from] eventlog::Error),
}

/// Signs the access token `grant` earns now without recording it: for a
/// caller that records the issue with its own command (a person's grant
/// records its tokens in its own events) and hands the token out only once
/// that command holds.
pub fn sign_unrecorded(
    issuer: &str,
    grant: &Grant<'_>,
    sign: impl FnOnce(&AccessTokenClaims) -> Result<String, jose::KeyError>,
    now: OffsetDateTime,
) -> Result<(String, AccessTokenClaims, TokenIssued), jose::KeyError> {
    let (claims, issued) = decide(issuer, grant, Uuid::now_v7(), now);
    let token = sign(&claims)?;
    metrics::counter!("idp_tokens_issued_total", "grant_type" => grant.grant_type.to_owned())
        .increment(1);
    Ok((token, claims, issued))
}

/// Issues the access token `grant` earns now: decides its claims, signs
/// them with `sign` (the active key of the caller's ring) and records the
/// issue in the log before returning the token.
pub async fn issue(
    bus: &CommandBus,
    issuer: &str,
    grant: &Grant<'_>,
    sign: impl FnOnce(&AccessTokenClaims) -> Result<String, jose::KeyError>,
    metadata: &Metadata,
) -> Result<(String, AccessTokenClaims), IssueError> {
    let (claims, issued) = decide(issuer, grant, Uuid::now_v7(), bus.clock().now());
    let token = sign(&claims)?;
    record_issued(bus.log(), issued, metadata).await?;
    metrics::counter!("idp_tokens_issued_total", "grant_type" => grant.grant_type.to_owned())
        .increment(1);
    Ok((token, claims))
}

/// Revokes the access token `jti` of `client_id`, alive until
/// `expires_at`: the revocation is recorded for every node to apply.
pub async fn revoke(
    bus: &CommandBus,
    jti: Uuid,
    client_id: Uuid,
    expires_at: OffsetDateTime,
    metadata: &Metadata,
) -> Result<AppendResult, eventlog::Error> {
    let now = bus.clock().now();
    record_revoked(bus.log(), jti, client_id, expires_at, now, metadata).await
}

/// Records an issued token; the token is handed out only once this holds.
async fn record_issued(
    log: &Arc<dyn EventLog>,
    issued: TokenIssued,
    metadata: &Metadata,
) -> Result<AppendResult, eventlog::Error> {
    let stream = token_stream(issued.jti, issued.issued_at);
    journal::record(log, &stream, &TokenEvent::Issued(issued), metadata).await
}

/// Records the revocation of a token that lives until `expires_at`.
async fn record_revoked(
    log: &Arc<dyn EventLog>,
    jti: Uuid,
    client_id: Uuid,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
    metadata: &Metadata,
) -> Result<AppendResult, eventlog::Error> {
    let event = TokenEvent::Revoked(TokenRevoked {
        jti,
        client_id,
        expires_at,
    });
    journal::record(log, &revocation_stream(now), &event, metadata).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::client::ClientSettings;

    #[test]
    fn a_grant_earns_claims_bound_to_its_client_instance_and_lifetime() {
        let client = Client {
            organization_id: Uuid::from_u128(9),
            settings: ClientSettings {
                access_token_lifetime_secs: 600,
                ..ClientSettings::default()
            },
            ..Client::default()
        };
        let now = time::macros::datetime!(2026-12-01 12:00 UTC);
        let grant = Grant {
            client_id: Uuid::from_u128(1),
            client: &client,
            grant_type: "refresh_token",
            scope: "read",
            audience: "https://idp.example",
            auth_method: "none",
            secret_id: None,
            auth_token_id: Some(Uuid::from_u128(2)),
            person: None,
            claims: Map::from_iter([
                ("roles".to_owned(), serde_json::json!(["support"])),
                ("sub".to_owned(), serde_json::json!("someone else")),
            ]),
        };
        let (claims, issued) = decide("https://idp.example", &grant, Uuid::from_u128(3), now);
        assert_eq!(claims.exp - claims.iat, 600);
        assert_eq!(claims.sub, Uuid::from_u128(2).to_string());
        assert_eq!(claims.extra["roles"], serde_json::json!(["support"]));
        assert_eq!(
            claims.extra[AUTH_TOKEN_CLAIM],
            Uuid::from_u128(2).to_string()
        );
        assert_eq!(claims.jti, issued.jti.to_string());
        assert_eq!(issued.organization_id, Uuid::from_u128(9));
        assert_eq!(
            issued.expires_at - issued.issued_at,
            time::Duration::seconds(600)
        );
        let own = Grant {
            auth_token_id: None,
            claims: Map::new(),
            ..grant
        };
        let (claims, _) = decide("https://idp.example", &own, Uuid::from_u128(4), now);
        assert_eq!(claims.sub, Uuid::from_u128(1).to_string());
        assert!(claims.extra.is_empty());
    }
}
