//! A person's grant to an application (OpenID Connect authorization code
//! flow): the code the authorization endpoint issues, its one redemption,
//! and the refresh chain that follows, in one stream (`grant-{id}`), so
//! that a code's single use, refresh rotation and reuse detection are
//! decided against one consistency boundary.
//!
//! The code and refresh tokens enter only as hex SHA-256 of their secrets.
//! A second redemption of a code, or a used refresh token presented again,
//! is recorded (`Ok` with the event, so the bus appends it) and revokes
//! the grant: every token issued under it stops working.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::refresh_chain::{Presented, RefreshChain};
use crate::registration::{constant_time_eq, decode_as, is_sha256_hex};

pub const CODE_ISSUED_V1: &str = "grant.code_issued.v1";
pub const CODE_REDEEMED_V1: &str = "grant.code_redeemed.v1";
pub const CODE_REPLAYED_V1: &str = "grant.code_replayed.v1";
pub const REFRESHED_V1: &str = "grant.refreshed.v1";
pub const REUSE_DETECTED_V1: &str = "grant.reuse_detected.v1";
pub const REVOKED_V1: &str = "grant.revoked.v1";

/// How long an authorization code may wait for its redemption.
pub const CODE_LIFETIME: Duration = Duration::seconds(60);

/// The refresh token a redemption or a refresh hands out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRefresh {
    pub token_id: Uuid,
    /// Hex SHA-256 of the token's secret part.
    pub hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// The access token a redemption or a refresh issued: recorded with the
/// grant's event (the one record of its issue), so that a grant's tokens
/// are known from its stream alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedAccess {
    pub jti: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// What an authorization code is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeIssued {
    pub grant_id: Uuid,
    pub organization_id: Uuid,
    pub client_id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub redirect_uri: String,
    /// The scope granted (space-separated).
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The PKCE challenge (S256 only).
    pub code_challenge: String,
    /// Hex SHA-256 of the code's secret part.
    pub code_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub auth_time: OffsetDateTime,
    /// Authentication method references (RFC 8176) of the session.
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// When the consent this grant stands on was given (none for a client
    /// that needs no consent): revoking that consent ends the grant.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub consent_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRedeemed {
    /// Names this redemption, so its caller can tell it was theirs.
    pub redemption_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<NewRefresh>,
    /// The access token issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<IssuedAccess>,
    /// The client secret that authenticated the request, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A redeemed code was presented again: the grant is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeReplayed {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refreshed {
    pub previous_token_id: Uuid,
    pub refresh: NewRefresh,
    /// The scope of the access token this refresh issued.
    pub scope: String,
    /// The access token issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<IssuedAccess>,
    /// The client secret that authenticated the request, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A rotated-away refresh token was presented again: the grant is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReuseDetected {
    pub token_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Why a grant was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The client revoked one of its tokens (RFC 7009).
    Client,
    /// The session it was issued in was ended (logout, revocation).
    SessionEnded,
    /// The person withdrew their consent.
    ConsentRevoked,
    /// The person can no longer sign in (deactivated, deleted).
    UserInactive,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::SessionEnded => "session_ended",
            Self::ConsentRevoked => "consent_revoked",
            Self::UserInactive => "user_inactive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub reason: RevokeReason,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantEvent {
    CodeIssued(Box<CodeIssued>),
    CodeRedeemed(CodeRedeemed),
    CodeReplayed(CodeReplayed),
    Refreshed(Refreshed),
    ReuseDetected(ReuseDetected),
    Revoked(Revoked),
}

impl DomainEvent for GrantEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::CodeIssued(_) => CODE_ISSUED_V1,
            Self::CodeRedeemed(_) => CODE_REDEEMED_V1,
            Self::CodeReplayed(_) => CODE_REPLAYED_V1,
            Self::Refreshed(_) => REFRESHED_V1,
            Self::ReuseDetected(_) => REUSE_DETECTED_V1,
            Self::Revoked(_) => REVOKED_V1,
        }
    }

    fn to_data(&self) -> Value {
        match self {
            Self::CodeIssued(e) => serde_json::to_value(e),
            Self::CodeRedeemed(e) => serde_json::to_value(e),
            Self::CodeReplayed(e) => serde_json::to_value(e),
            Self::Refreshed(e) => serde_json::to_value(e),
            Self::ReuseDetected(e) => serde_json::to_value(e),
            Self::Revoked(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            CODE_ISSUED_V1 => decode_as(event_type, data).map(|e| Self::CodeIssued(Box::new(e))),
            CODE_REDEEMED_V1 => decode_as(event_type, data).map(Self::CodeRedeemed),
            CODE_REPLAYED_V1 => decode_as(event_type, data).map(Self::CodeReplayed),
            REFRESHED_V1 => decode_as(event_type, data).map(Self::Refreshed),
            REUSE_DETECTED_V1 => decode_as(event_type, data).map(Self::ReuseDetected),
            REVOKED_V1 => decode_as(event_type, data).map(Self::Revoked),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        match self {
            Self::CodeIssued(e) => Some(format!("user:{}", e.user_id)),
            _ => None,
        }
    }
}

/// A code redemption: what the token request presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    pub redemption_id: Uuid,
    /// Hex SHA-256 of the presented code's secret part.
    pub code_hash: String,
    pub client_id: Uuid,
    pub redirect_uri: String,
    /// BASE64URL(SHA-256(code_verifier)), as the token request computed it.
    pub verifier_challenge: String,
    /// The refresh token to hand out, when the grant earns one.
    pub refresh: Option<NewRefresh>,
    /// The access token signed for this redemption, handed out only if
    /// the redemption is recorded.
    pub access: Option<IssuedAccess>,
    pub secret_id: Option<Uuid>,
}

/// A refresh: the token presented and what replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub client_id: Uuid,
    pub presented_token_id: Uuid,
    /// Hex SHA-256 of the presented token's secret part.
    pub presented_hash: String,
    pub refresh: NewRefresh,
    /// The scope asked for, already narrowed by the caller; checked here
    /// again against the grant.
    pub scope: String,
    /// The access token signed for this refresh.
    pub access: Option<IssuedAccess>,
    pub secret_id: Option<Uuid>,
    /// What the grant stands on, as the caller found it.
    pub standing: Standing,
}

/// What a grant stands on, as found when it is used: its session, the
/// person's consent to its client, the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The session it was issued in was revoked (or is unknown).
    pub session_ended: bool,
    /// When the person's current consent to the client was given, if
    /// they have one.
    pub consent_since: Option<OffsetDateTime>,
    /// The person may still sign in.
    pub person_active: bool,
}

impl Grant {
    /// Why the grant may no longer be used although nothing of its own
    /// ended it: its session was ended, the consent it was made under
    /// withdrawn (or withdrawn and given again), its person deactivated.
    pub fn ended_by(&self, standing: &Standing) -> Option<RevokeReason> {
        let issued = self.issued.as_ref()?;
        if standing.session_ended {
            return Some(RevokeReason::SessionEnded);
        }
        if issued.consent_since.is_some() && issued.consent_since != standing.consent_since {
            return Some(RevokeReason::ConsentRevoked);
        }
        if !standing.person_active {
            return Some(RevokeReason::UserInactive);
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantCommand {
    IssueCode(Box<CodeIssued>),
    Redeem(Box<Redemption>),
    Refresh(Box<Rotation>),
    Revoke { reason: RevokeReason },
}

/// Why a grant command was refused. Every redemption and refresh refusal
/// is `invalid_grant` on the wire (RFC 6749 §5.2).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GrantError {
    #[error("the authorization code is not valid")]
    InvalidCode,
    #[error("the authorization code has expired")]
    CodeExpired,
    #[error("the authorization code was issued to another client")]
    OtherClient,
    #[error("redirect_uri is not the one the authorization request used")]
    RedirectMismatch,
    #[error("code_verifier does not match the code_challenge (PKCE)")]
    PkceMismatch,
    #[error("the refresh token is not valid")]
    InvalidRefresh,
    #[error("the refresh token has expired")]
    RefreshExpired,
    #[error(
        "the grant was revoked ({}): sign in again",
        .0.map_or("a code or refresh token was used twice", RevokeReason::as_str)
    )]
    Revoked(Option<RevokeReason>),
    #[error("the scope `{0}` was not part of the original grant")]
    ScopeNotGranted(String),
    #[error("the grant already exists")]
    AlreadyExists,
    #[error("hashes must be 64 lowercase hex characters (SHA-256)")]
    InvalidHash,
}

/// A person's grant to one client.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Grant {
    pub issued: Option<Box<CodeIssued>>,
    /// The redemption that spent the code, once it is spent.
    pub redemption_id: Option<Uuid>,
    pub chain: RefreshChain,
    /// When the live refresh token stops working.
    pub refresh_expires_at: Option<OffsetDateTime>,
    /// The scope of the latest token (narrowed by refreshes).
    pub scope: String,
    pub revoked: bool,
    /// Why, when it was revoked by decision rather than by a replay.
    pub revoked_because: Option<RevokeReason>,
}

impl Grant {
    /// Whether tokens issued under this grant still work.
    pub fn is_usable(&self) -> bool {
        self.issued.is_some() && !self.revoked
    }

    fn decide_redeem(
        &self,
        r: Redemption,
        now: OffsetDateTime,
    ) -> Result<Vec<GrantEvent>, GrantError> {
        let issued = self.issued.as_ref().ok_or(GrantError::InvalidCode)?;
        if !constant_time_eq(issued.code_hash.as_bytes(), r.code_hash.as_bytes()) {
            return Err(GrantError::InvalidCode);
        }
        if self.revoked {
            return Err(GrantError::Revoked(self.revoked_because));
        }
        if self.redemption_id.is_some() {
            // RFC 6749 §4.1.2: a code used twice revokes what it issued.
            return Ok(vec![GrantEvent::CodeReplayed(CodeReplayed { at: now })]);
        }
        if now >= issued.expires_at {
            return Err(GrantError::CodeExpired);
        }
        if issued.client_id != r.client_id {
            return Err(GrantError::OtherClient);
        }
        if issued.redirect_uri != r.redirect_uri {
            return Err(GrantError::RedirectMismatch);
        }
        if !constant_time_eq(
            issued.code_challenge.as_bytes(),
            r.verifier_challenge.as_bytes(),
        ) {
            return Err(GrantError::PkceMismatch);
        }
        if r.refresh.as_ref().is_some_and(|n| !is_sha256_hex(&n.hash)) {
            return Err(GrantError::InvalidHash);
        }
        Ok(vec![GrantEvent::CodeRedeemed(CodeRedeemed {
            redemption_id: r.redemption_id,
            refresh: r.refresh,
            access: r.access,
            secret_id: r.secret_id,
            at: now,
        })])
    }

    fn decide_refresh(
        &self,
        r: Rotation,
        now: OffsetDateTime,
    ) -> Result<Vec<GrantEvent>, GrantError> {
        let Rotation {
            client_id,
            presented_token_id,
            presented_hash,
            refresh,
            scope,
            access,
            secret_id,
            standing,
        } = r;
        let issued = self.issued.as_ref().ok_or(GrantError::InvalidRefresh)?;
        if issued.client_id != client_id {
            return Err(GrantError::InvalidRefresh);
        }
        if self.revoked {
            return Err(GrantError::Revoked(self.revoked_because));
        }
        if !is_sha256_hex(&refresh.hash) {
            return Err(GrantError::InvalidHash);
        }
        match self.chain.presented(presented_token_id, &presented_hash) {
            Presented::Current => {
                // Only the holder of the live token learns (and records)
                // that what the grant stood on is gone.
                if let Some(reason) = self.ended_by(&standing) {
                    return Ok(vec![GrantEvent::Revoked(Revoked { reason, at: now })]);
                }
                if self.refresh_expires_at.is_some_and(|t| now >= t) {
                    return Err(GrantError::RefreshExpired);
                }
                let granted = &issued.scope;
                if let Some(extra) = scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .find(|s| !granted.split(' ').any(|g| g == *s))
                {
                    return Err(GrantError::ScopeNotGranted(extra.to_owned()));
                }
                Ok(vec![GrantEvent::Refreshed(Refreshed {
                    previous_token_id: presented_token_id,
                    refresh,
                    scope,
                    access,
                    secret_id,
                    at: now,
                })])
            }
            Presented::Reused => Ok(vec![GrantEvent::ReuseDetected(ReuseDetected {
                token_id: presented_token_id,
                at: now,
            })]),
            Presented::Invalid => Err(GrantError::InvalidRefresh),
        }
    }
}

impl Aggregate for Grant {
    type Event = GrantEvent;
    type Command = GrantCommand;
    type Error = GrantError;
    const CATEGORY: &'static str = "grant";

    fn evolve(mut self, event: &GrantEvent) -> Self {
        match event {
            GrantEvent::CodeIssued(e) => {
                self.scope = e.scope.clone();
                self.issued = Some(e.clone());
            }
            GrantEvent::CodeRedeemed(e) => {
                self.redemption_id = Some(e.redemption_id);
                if let Some(r) = &e.refresh {
                    self.chain.rotate(r.token_id, &r.hash);
                    self.refresh_expires_at = Some(r.expires_at);
                }
            }
            GrantEvent::Refreshed(e) => {
                self.chain.rotate(e.refresh.token_id, &e.refresh.hash);
                self.refresh_expires_at = Some(e.refresh.expires_at);
                self.scope = e.scope.clone();
            }
            GrantEvent::CodeReplayed(_) | GrantEvent::ReuseDetected(_) => self.revoked = true,
            GrantEvent::Revoked(e) => {
                self.revoked = true;
                self.revoked_because = Some(e.reason);
            }
        }
        self
    }

    fn decide(
        &self,
        command: GrantCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<GrantEvent>, GrantError> {
        match command {
            GrantCommand::IssueCode(code) => {
                if self.issued.is_some() {
                    return Err(GrantError::AlreadyExists);
                }
                if !is_sha256_hex(&code.code_hash) {
                    return Err(GrantError::InvalidHash);
                }
                Ok(vec![GrantEvent::CodeIssued(code)])
            }
            GrantCommand::Redeem(r) => self.decide_redeem(*r, now),
            GrantCommand::Refresh(r) => self.decide_refresh(*r, now),
            GrantCommand::Revoke { reason } => {
                if self.issued.is_none() {
                    return Err(GrantError::InvalidRefresh);
                }
                Ok(if self.revoked {
                    vec![]
                } else {
                    vec![GrantEvent::Revoked(Revoked { reason, at: now })]
                })
            }
        }
    }
}

pub const AUTHORIZATION_REFUSED_V1: &str = "authorization.refused.v1";

/// An authorization request sent back to its client with an error (RFC
/// 6749 §4.1.2.1): a journal fact of the day's `authfailures` stream, with
/// the source address and user agent in its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRefused {
    pub client_id: Uuid,
    pub organization_id: Uuid,
    /// The OAuth error code (`invalid_request`, `login_required`, …).
    pub error: String,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

crate::single_event!(AuthorizationRefused, AUTHORIZATION_REFUSED_V1);

#[cfg(test)]
#[path = "grant_tests.rs"]
mod tests;
