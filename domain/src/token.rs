//! Facts about tokens and client authentication: journal events, not an
//! aggregate. They go to day-bucketed streams (`tokens-20261129-3`,
//! `revocations-20261129`, `authfailures-20261129`) or, for used client
//! assertions, one stream per assertion (`clientassertion-…`), so that a
//! retention policy can drop whole streams by age: per-token events are
//! most of an identity provider's log.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{DecodeError, DomainEvent};

/// The claim that binds an access token to the instance (auth token) it
/// was issued to.
pub const AUTH_TOKEN_CLAIM: &str = "auth_token_id";

/// The claim that binds an access token to the person's grant (the
/// authorization code and its refresh chain) it was issued under: the
/// token dies with the grant.
pub const GRANT_CLAIM: &str = "grant_id";

pub const ISSUED_V1: &str = "token.issued.v1";
pub const REVOKED_V1: &str = "token.revoked.v1";
pub const CLIENT_AUTH_FAILED_V1: &str = "client.authentication_failed.v1";
pub const ASSERTION_USED_V1: &str = "client.assertion_used.v1";

/// An access token was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    pub jti: Uuid,
    pub client_id: Uuid,
    pub organization_id: Uuid,
    pub grant_type: String,
    pub scope: String,
    pub audience: String,
    /// Which secret authenticated the client, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<Uuid>,
    /// The instance (auth token) the token acts for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_id: Option<Uuid>,
    /// The person's grant the token was issued under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<Uuid>,
    pub auth_method: String,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// An access token was revoked before it expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub jti: Uuid,
    pub client_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Failed client authentications from one source address (the event's
/// metadata), counted: `count` failures between `window_start` and
/// `window_end`, or one (events from before counting). The throttle
/// (`domain::throttle`) records one per source and window, and one whenever
/// a wait begins, so that every node and a restarted one impose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAuthFailed {
    /// The client id as presented, in its canonical form when it is a
    /// GUID; it may name no client at all.
    pub client_id: String,
    pub auth_method: String,
    /// The reason of the last failure counted.
    pub reason: String,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
    /// Failures in a row from this source so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub window_start: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub window_end: Option<OffsetDateTime>,
    /// The source's attempts are not checked before this.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub blocked_until: Option<OffsetDateTime>,
}

impl ClientAuthFailed {
    /// One failure, not counted with others.
    pub fn single(client_id: String, auth_method: String, reason: String) -> Self {
        Self {
            client_id,
            auth_method,
            reason,
            count: 1,
            failures: None,
            window_start: None,
            window_end: None,
            blocked_until: None,
        }
    }
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// A client assertion (RFC 7523 `private_key_jwt`) was accepted. Its stream
/// is named after the client and the assertion's `jti`, and appended with
/// `NoStream`: a replayed assertion finds the stream taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAssertionUsed {
    pub client_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEvent {
    Issued(TokenIssued),
    Revoked(TokenRevoked),
    ClientAuthFailed(ClientAuthFailed),
    AssertionUsed(ClientAssertionUsed),
}

impl DomainEvent for TokenEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Issued(_) => ISSUED_V1,
            Self::Revoked(_) => REVOKED_V1,
            Self::ClientAuthFailed(_) => CLIENT_AUTH_FAILED_V1,
            Self::AssertionUsed(_) => ASSERTION_USED_V1,
        }
    }

    fn to_data(&self) -> Value {
        match self {
            Self::Issued(e) => serde_json::to_value(e),
            Self::Revoked(e) => serde_json::to_value(e),
            Self::ClientAuthFailed(e) => serde_json::to_value(e),
            Self::AssertionUsed(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        let malformed = |e| DecodeError::malformed(event_type, e);
        match event_type {
            ISSUED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::Issued)
                .map_err(malformed),
            REVOKED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::Revoked)
                .map_err(malformed),
            CLIENT_AUTH_FAILED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::ClientAuthFailed)
                .map_err(malformed),
            ASSERTION_USED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::AssertionUsed)
                .map_err(malformed),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

/// How many streams a day's token events are spread over, so that
/// concurrent grants do not queue behind one stream.
pub const TOKEN_SHARDS: u32 = 8;

/// The day-bucketed stream a token's events go to.
pub fn token_stream(jti: Uuid, at: OffsetDateTime) -> String {
    let shard = (jti.as_u128() % u128::from(TOKEN_SHARDS)) as u32;
    format!("tokens-{}-{shard}", day(at))
}

/// The day-bucketed stream of failed client authentications.
pub fn auth_failure_stream(at: OffsetDateTime) -> String {
    format!("authfailures-{}", day(at))
}

/// Where revocations go: their own day-bucketed category, small enough to
/// load whole at start.
pub fn revocation_stream(at: OffsetDateTime) -> String {
    format!("revocations-{}", day(at))
}

/// The categories of the day-bucketed journal streams. Their events are
/// most of the log and only ever appended there (as `JOURNAL_EVENT_TYPES`);
/// read models may index them more sparingly than aggregate events.
pub const JOURNAL_CATEGORIES: &[&str] = &["tokens", "revocations", "authfailures"];

/// The event types appended to journal streams, and to no other stream.
pub const JOURNAL_EVENT_TYPES: &[&str] = &[
    ISSUED_V1,
    REVOKED_V1,
    CLIENT_AUTH_FAILED_V1,
    crate::sign_in::STEP_FAILED_V1,
    crate::sign_in::UNLOCKED_V1,
    crate::sign_in::ACCOUNT_SLOWED_V1,
    crate::sign_in::CODE_SEND_COUNTED_V1,
    crate::grant::AUTHORIZATION_REFUSED_V1,
];

fn day(at: OffsetDateTime) -> String {
    let d = at.date();
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bucketed_by_day() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let s = token_stream(Uuid::from_u128(11), at);
        assert!(s.starts_with("tokens-20261118-"), "{s}");
        assert!(s.ends_with("-3"));
        assert_eq!(auth_failure_stream(at), "authfailures-20261118");
    }

    #[test]
    fn journal_streams_are_in_journal_categories() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        for s in [
            token_stream(Uuid::from_u128(5), at),
            auth_failure_stream(at),
            revocation_stream(at),
        ] {
            let category = s.split_once('-').map_or(s.as_str(), |(c, _)| c);
            assert!(JOURNAL_CATEGORIES.contains(&category), "{s}");
        }
        assert!(!JOURNAL_EVENT_TYPES.contains(&ASSERTION_USED_V1));
    }

    #[test]
    fn events_round_trip() {
        let e = TokenEvent::Revoked(TokenRevoked {
            jti: Uuid::nil(),
            client_id: Uuid::nil(),
            expires_at: OffsetDateTime::UNIX_EPOCH,
        });
        assert_eq!(TokenEvent::decode(e.event_type(), e.to_data()).unwrap(), e);
    }
}
