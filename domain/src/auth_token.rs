//! The auth token: one installed instance's credential and its whole
//! refresh chain, in one stream (`authtoken-{id}`), so that the single
//! exchange, refresh rotation and reuse detection are decided against one
//! consistency boundary. It is born from a registration token's consumption
//! (see `registration`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::pii::Pii;
use crate::refresh_chain::{Presented, RefreshChain};
use crate::registration::{InstanceInfo, constant_time_eq, decode_as, is_sha256_hex};

pub const AUTH_TOKEN_ISSUED_V1: &str = "auth_token.issued.v1";
pub const AUTH_TOKEN_EXCHANGED_V1: &str = "auth_token.exchanged.v1";
pub const AUTH_TOKEN_REFRESHED_V1: &str = "auth_token.refreshed.v1";
pub const AUTH_TOKEN_REUSE_DETECTED_V1: &str = "auth_token.reuse_detected.v1";
pub const AUTH_TOKEN_DELETED_V1: &str = "auth_token.deleted.v1";
pub const AUTH_TOKEN_INSTANCE_CORRECTED_V1: &str = "auth_token.instance_corrected.v1";
pub const AUTH_TOKEN_REVOKED_V1: &str = "auth_token.revoked.v1";

// --- auth token: commands, events, errors --------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthTokenCommand {
    /// Records the auth token a consumption generated. Issuing the same id
    /// with the same hash again is a no-op, so the command side may retry it.
    Issue {
        id: Uuid,
        registration_token_id: Uuid,
        organization_id: Uuid,
        client_id: Uuid,
        /// Hex SHA-256 of the auth token's secret part.
        hash: String,
        instance: InstanceInfo,
    },
    /// The instance trades its auth token, once, for the first refresh token.
    Exchange {
        /// Hex SHA-256 of the presented auth token's secret part.
        hash: String,
        refresh_token_id: Uuid,
        refresh_hash: String,
        /// The scope granted, which no refresh may widen.
        scope: String,
    },
    /// The client revokes the chain through one of its refresh tokens
    /// (RFC 7009): the chain and the access tokens issued from it end.
    Revoke {
        presented_token_id: Uuid,
        presented_hash: String,
    },
    /// The instance presents a refresh token and gets the next one.
    Refresh {
        presented_token_id: Uuid,
        /// Hex SHA-256 of the presented refresh token's secret part.
        presented_hash: String,
        new_token_id: Uuid,
        new_hash: String,
        /// The scope asked for, which must be part of the grant (RFC 6749
        /// §6); None asks for all of it.
        scope: Option<String>,
    },
    Delete,
    /// Records corrected instance values (a data subject's right to
    /// rectification); a field left `None` keeps its value.
    CorrectInstance {
        user_name: Option<String>,
        device_name: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthTokenIssued {
    pub id: Uuid,
    pub registration_token_id: Uuid,
    pub organization_id: Uuid,
    pub client_id: Uuid,
    pub hash: String,
    pub instance: InstanceInfo,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthTokenExchanged {
    pub refresh_token_id: Uuid,
    pub refresh_hash: String,
    /// The scope granted; absent in events from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub exchanged_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthTokenRefreshed {
    pub previous_token_id: Uuid,
    pub refresh_token_id: Uuid,
    pub refresh_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub refreshed_at: OffsetDateTime,
}

/// A refresh token that had already been used was presented again: someone
/// else holds a copy. The whole chain is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthTokenReuseDetected {
    /// The refresh token presented a second time.
    pub token_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub detected_at: OffsetDateTime,
}

/// The client revoked the chain (RFC 7009).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthTokenRevoked {
    /// The refresh token the client presented.
    pub token_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthTokenDeleted {
    #[serde(with = "time::serde::rfc3339")]
    pub deleted_at: OffsetDateTime,
}

/// Corrected instance values. Only the corrected fields are present; the
/// subject stays the instance's (the pseudonym names the person, not the
/// spelling of their name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthTokenInstanceCorrected {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<Pii<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::pii::marked_string::option"
    )]
    pub device_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub corrected_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthTokenEvent {
    Issued(AuthTokenIssued),
    Exchanged(AuthTokenExchanged),
    Refreshed(AuthTokenRefreshed),
    ReuseDetected(AuthTokenReuseDetected),
    Deleted(AuthTokenDeleted),
    InstanceCorrected(AuthTokenInstanceCorrected),
    Revoked(AuthTokenRevoked),
}

impl AuthTokenEvent {
    /// Whether a decision recorded a reuse. `Refresh` answers reuse with
    /// `Ok([ReuseDetected])` so that the bus appends it (an `Err` would write
    /// nothing); whoever runs the command must check this and refuse the
    /// request (`invalid_grant`).
    pub fn reuse_detected(events: &[AuthTokenEvent]) -> bool {
        matches!(events.last(), Some(AuthTokenEvent::ReuseDetected(_)))
    }
}

impl DomainEvent for AuthTokenEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Issued(_) => AUTH_TOKEN_ISSUED_V1,
            Self::Exchanged(_) => AUTH_TOKEN_EXCHANGED_V1,
            Self::Refreshed(_) => AUTH_TOKEN_REFRESHED_V1,
            Self::ReuseDetected(_) => AUTH_TOKEN_REUSE_DETECTED_V1,
            Self::Deleted(_) => AUTH_TOKEN_DELETED_V1,
            Self::InstanceCorrected(_) => AUTH_TOKEN_INSTANCE_CORRECTED_V1,
            Self::Revoked(_) => AUTH_TOKEN_REVOKED_V1,
        }
    }

    fn to_data(&self) -> Value {
        match self {
            Self::Issued(e) => serde_json::to_value(e),
            Self::Exchanged(e) => serde_json::to_value(e),
            Self::Refreshed(e) => serde_json::to_value(e),
            Self::ReuseDetected(e) => serde_json::to_value(e),
            Self::Deleted(e) => serde_json::to_value(e),
            Self::InstanceCorrected(e) => serde_json::to_value(e),
            Self::Revoked(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            AUTH_TOKEN_ISSUED_V1 => decode_as(event_type, data).map(Self::Issued),
            AUTH_TOKEN_EXCHANGED_V1 => decode_as(event_type, data).map(Self::Exchanged),
            AUTH_TOKEN_REFRESHED_V1 => decode_as(event_type, data).map(Self::Refreshed),
            AUTH_TOKEN_REUSE_DETECTED_V1 => decode_as(event_type, data).map(Self::ReuseDetected),
            AUTH_TOKEN_DELETED_V1 => decode_as(event_type, data).map(Self::Deleted),
            AUTH_TOKEN_INSTANCE_CORRECTED_V1 => {
                decode_as(event_type, data).map(Self::InstanceCorrected)
            }
            AUTH_TOKEN_REVOKED_V1 => decode_as(event_type, data).map(Self::Revoked),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        match self {
            Self::Issued(e) => e.instance.subject.clone(),
            Self::InstanceCorrected(e) => e.subject.clone(),
            _ => None,
        }
    }
}

/// Why an auth token command was refused. Every exchange and refresh
/// refusal is `invalid_grant` on the wire (RFC 6749 section 5.2).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthTokenError {
    #[error("the auth token does not exist")]
    NotFound,
    #[error("the auth token already exists")]
    AlreadyExists,
    #[error("the auth token was deleted by your administrator")]
    Deleted,
    #[error("the presented token is not valid")]
    InvalidCredential,
    #[error(
        "the auth token was already exchanged: an auth token can be used once, and every \
         token issued from it is now revoked"
    )]
    AlreadyExchanged,
    #[error(
        "the refresh token chain was revoked because a used refresh token was presented \
         again: the instance needs a new auth token"
    )]
    ChainRevoked,
    #[error(
        "the refresh token chain was revoked because its auth token was exchanged a second \
         time: the instance needs a new auth token"
    )]
    ChainRevokedByReplay,
    #[error("the refresh token was revoked: the instance needs a new auth token")]
    Revoked,
    #[error("the scope `{0}` was not part of the original grant")]
    ScopeNotGranted(String),
    #[error("the token hash must be 64 lowercase hex characters (SHA-256)")]
    InvalidHash,
    #[error("invalid instance information: {0}")]
    InvalidInstance(String),
}

// --- auth token: state, decide, evolve -------------------------------------------

/// Why a chain no longer works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBecause {
    /// A used refresh token was presented again.
    RefreshReused,
    /// The auth token was exchanged a second time.
    AuthTokenReplayed,
    /// The client revoked it (RFC 7009).
    Revoked,
}

impl RevokedBecause {
    fn error(self) -> AuthTokenError {
        match self {
            Self::RefreshReused => AuthTokenError::ChainRevoked,
            Self::AuthTokenReplayed => AuthTokenError::ChainRevokedByReplay,
            Self::Revoked => AuthTokenError::Revoked,
        }
    }
}

/// One instance's credential and its refresh chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthToken {
    pub exists: bool,
    pub id: Uuid,
    pub registration_token_id: Uuid,
    pub organization_id: Uuid,
    pub client_id: Uuid,
    /// Hex SHA-256 of the auth token's secret part.
    pub hash: String,
    pub instance: Option<InstanceInfo>,
    pub issued_at: Option<OffsetDateTime>,
    pub exchanged: bool,
    /// The live refresh token and those rotated away.
    pub chain: RefreshChain,
    pub chain_revoked: bool,
    /// Why the chain was revoked, once it is.
    pub revoked_because: Option<RevokedBecause>,
    /// The scope the exchange granted (None before it, or for an exchange
    /// recorded before the scope was).
    pub granted_scope: Option<String>,
    pub deleted: bool,
    /// The last exchange or refresh.
    pub last_used_at: Option<OffsetDateTime>,
}

impl Default for AuthToken {
    fn default() -> Self {
        Self {
            exists: false,
            id: Uuid::nil(),
            registration_token_id: Uuid::nil(),
            organization_id: Uuid::nil(),
            client_id: Uuid::nil(),
            hash: String::new(),
            instance: None,
            issued_at: None,
            exchanged: false,
            chain: RefreshChain::default(),
            chain_revoked: false,
            revoked_because: None,
            granted_scope: None,
            deleted: false,
            last_used_at: None,
        }
    }
}

impl AuthToken {
    /// Whether refresh tokens of this chain still work.
    pub fn is_usable(&self) -> bool {
        self.exists && !self.deleted && !self.chain_revoked
    }

    /// Whether `(token_id, hash)` is the chain's live refresh token (for
    /// introspection: nothing is decided or recorded).
    pub fn refresh_is_current(&self, token_id: Uuid, hash: &str) -> bool {
        self.is_usable() && self.chain.is_current(token_id, hash)
    }

    fn must_be_current(&self) -> Result<(), AuthTokenError> {
        if !self.exists {
            return Err(AuthTokenError::NotFound);
        }
        if self.deleted {
            return Err(AuthTokenError::Deleted);
        }
        Ok(())
    }

    fn decide_refresh(
        &self,
        presented_token_id: Uuid,
        presented_hash: &str,
        new_token_id: Uuid,
        new_hash: String,
        scope: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Vec<AuthTokenEvent>, AuthTokenError> {
        self.must_be_current()?;
        if self.chain_revoked {
            return Err(self
                .revoked_because
                .unwrap_or(RevokedBecause::RefreshReused)
                .error());
        }
        if !is_sha256_hex(&new_hash) {
            return Err(AuthTokenError::InvalidHash);
        }
        match self.chain.presented(presented_token_id, presented_hash) {
            Presented::Current => {
                // A refresh never widens the grant. A chain exchanged before
                // grants were recorded has no scope to compare with.
                if let (Some(asked), Some(granted)) = (scope, &self.granted_scope)
                    && let Some(extra) = asked
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .find(|s| !granted.split(' ').any(|g| g == *s))
                {
                    return Err(AuthTokenError::ScopeNotGranted(extra.to_owned()));
                }
                Ok(vec![AuthTokenEvent::Refreshed(AuthTokenRefreshed {
                    previous_token_id: presented_token_id,
                    refresh_token_id: new_token_id,
                    refresh_hash: new_hash,
                    refreshed_at: now,
                })])
            }
            Presented::Reused => Ok(vec![AuthTokenEvent::ReuseDetected(
                AuthTokenReuseDetected {
                    token_id: presented_token_id,
                    detected_at: now,
                },
            )]),
            Presented::Invalid => Err(AuthTokenError::InvalidCredential),
        }
    }
}

impl Aggregate for AuthToken {
    type Event = AuthTokenEvent;
    type Command = AuthTokenCommand;
    type Error = AuthTokenError;
    const CATEGORY: &'static str = "authtoken";

    fn evolve(mut self, event: &AuthTokenEvent) -> Self {
        match event {
            AuthTokenEvent::Issued(e) => {
                self.exists = true;
                self.id = e.id;
                self.registration_token_id = e.registration_token_id;
                self.organization_id = e.organization_id;
                self.client_id = e.client_id;
                self.hash = e.hash.clone();
                self.instance = Some(e.instance.clone());
                self.issued_at = Some(e.issued_at);
            }
            AuthTokenEvent::Exchanged(e) => {
                self.exchanged = true;
                self.granted_scope = e.scope.clone();
                self.chain.rotate(e.refresh_token_id, &e.refresh_hash);
                self.last_used_at = Some(e.exchanged_at);
            }
            AuthTokenEvent::Refreshed(e) => {
                self.chain.rotate(e.refresh_token_id, &e.refresh_hash);
                self.last_used_at = Some(e.refreshed_at);
            }
            AuthTokenEvent::ReuseDetected(e) => {
                self.chain_revoked = true;
                self.revoked_because = Some(if e.token_id == self.id {
                    RevokedBecause::AuthTokenReplayed
                } else {
                    RevokedBecause::RefreshReused
                });
            }
            AuthTokenEvent::Revoked(_) => {
                self.chain_revoked = true;
                self.revoked_because = Some(RevokedBecause::Revoked);
            }
            AuthTokenEvent::Deleted(_) => self.deleted = true,
            AuthTokenEvent::InstanceCorrected(e) => {
                if let Some(instance) = &mut self.instance {
                    if let Some(user_name) = &e.user_name {
                        instance.user_name = user_name.clone();
                    }
                    if let Some(device_name) = &e.device_name {
                        instance.device_name = device_name.clone();
                    }
                }
            }
        }
        self
    }

    /// `Refresh` presenting a used refresh token returns
    /// `Ok([ReuseDetected])`, not an error, so that the reuse is recorded:
    /// see [`AuthTokenEvent::reuse_detected`].
    fn decide(
        &self,
        command: AuthTokenCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<AuthTokenEvent>, AuthTokenError> {
        match command {
            AuthTokenCommand::Issue {
                id,
                registration_token_id,
                organization_id,
                client_id,
                hash,
                instance,
            } => {
                if self.exists {
                    // A retried issue after an append whose outcome was unknown.
                    let same = self.id == id
                        && self.registration_token_id == registration_token_id
                        && constant_time_eq(self.hash.as_bytes(), hash.as_bytes());
                    return if same {
                        Ok(vec![])
                    } else {
                        Err(AuthTokenError::AlreadyExists)
                    };
                }
                if !is_sha256_hex(&hash) {
                    return Err(AuthTokenError::InvalidHash);
                }
                instance
                    .validate()
                    .map_err(AuthTokenError::InvalidInstance)?;
                Ok(vec![AuthTokenEvent::Issued(AuthTokenIssued {
                    id,
                    registration_token_id,
                    organization_id,
                    client_id,
                    hash,
                    instance,
                    issued_at: now,
                })])
            }
            AuthTokenCommand::Exchange {
                hash,
                refresh_token_id,
                refresh_hash,
                scope,
            } => {
                self.must_be_current()?;
                if !constant_time_eq(self.hash.as_bytes(), hash.as_bytes()) {
                    return Err(AuthTokenError::InvalidCredential);
                }
                if self.exchanged {
                    // A second exchange means the auth token leaked: like a
                    // replayed authorization code (RFC 6749 section 4.1.2),
                    // every token issued from it is revoked, and the
                    // revocation is recorded (`Ok`, as for refresh reuse).
                    return if self.chain_revoked {
                        Err(AuthTokenError::AlreadyExchanged)
                    } else {
                        Ok(vec![AuthTokenEvent::ReuseDetected(
                            AuthTokenReuseDetected {
                                token_id: self.id,
                                detected_at: now,
                            },
                        )])
                    };
                }
                if !is_sha256_hex(&refresh_hash) {
                    return Err(AuthTokenError::InvalidHash);
                }
                Ok(vec![AuthTokenEvent::Exchanged(AuthTokenExchanged {
                    refresh_token_id,
                    refresh_hash,
                    scope: Some(scope),
                    exchanged_at: now,
                })])
            }
            AuthTokenCommand::Refresh {
                presented_token_id,
                presented_hash,
                new_token_id,
                new_hash,
                scope,
            } => self.decide_refresh(
                presented_token_id,
                &presented_hash,
                new_token_id,
                new_hash,
                scope.as_deref(),
                now,
            ),
            AuthTokenCommand::Revoke {
                presented_token_id,
                presented_hash,
            } => {
                // RFC 7009 §2.2: a token that is not (or no longer) good
                // needs nothing, and the answer does not say which.
                if self.refresh_is_current(presented_token_id, &presented_hash) {
                    Ok(vec![AuthTokenEvent::Revoked(AuthTokenRevoked {
                        token_id: presented_token_id,
                        revoked_at: now,
                    })])
                } else {
                    Ok(vec![])
                }
            }
            AuthTokenCommand::Delete => {
                if !self.exists {
                    return Err(AuthTokenError::NotFound);
                }
                Ok(if self.deleted {
                    vec![]
                } else {
                    vec![AuthTokenEvent::Deleted(AuthTokenDeleted {
                        deleted_at: now,
                    })]
                })
            }
            AuthTokenCommand::CorrectInstance {
                user_name,
                device_name,
            } => {
                let Some(current) = self.instance.as_ref().filter(|_| self.exists) else {
                    return Err(AuthTokenError::NotFound);
                };
                let user_name = user_name.filter(|u| current.user_name.value() != Some(u));
                let device_name = device_name.filter(|d| *d != current.device_name);
                if user_name.is_none() && device_name.is_none() {
                    return Ok(vec![]);
                }
                let mut corrected = current.clone();
                if let Some(u) = &user_name {
                    corrected.user_name = Pii::new(u.clone());
                }
                if let Some(d) = &device_name {
                    corrected.device_name = d.clone();
                }
                corrected
                    .validate()
                    .map_err(AuthTokenError::InvalidInstance)?;
                Ok(vec![AuthTokenEvent::InstanceCorrected(
                    AuthTokenInstanceCorrected {
                        user_name: user_name.map(Pii::new),
                        device_name,
                        subject: current.subject.clone(),
                        corrected_at: now,
                    },
                )])
            }
        }
    }
}
