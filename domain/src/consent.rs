//! A person's consents: which scopes they allowed each application, in one
//! stream per person (`consent-{user_id}`). A later request for the same or
//! fewer scopes needs no new consent; withdrawing one ends the grants that
//! stand on it (a grant records when its consent was given, `since`, and
//! is refused once that consent is gone).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::registration::decode_as;

pub const GIVEN_V1: &str = "consent.given.v1";
pub const REVOKED_V1: &str = "consent.revoked.v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentGiven {
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub client_id: Uuid,
    /// Every scope now consented to for the client (those before included).
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRevoked {
    pub user_id: Uuid,
    pub client_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentEvent {
    Given(ConsentGiven),
    Revoked(ConsentRevoked),
}

impl DomainEvent for ConsentEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Given(_) => GIVEN_V1,
            Self::Revoked(_) => REVOKED_V1,
        }
    }

    fn to_data(&self) -> Value {
        match self {
            Self::Given(e) => serde_json::to_value(e),
            Self::Revoked(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            GIVEN_V1 => decode_as(event_type, data).map(Self::Given),
            REVOKED_V1 => decode_as(event_type, data).map(Self::Revoked),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        let user = match self {
            Self::Given(e) => e.user_id,
            Self::Revoked(e) => e.user_id,
        };
        Some(format!("user:{user}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentCommand {
    Give {
        user_id: Uuid,
        organization_id: Uuid,
        client_id: Uuid,
        scopes: Vec<String>,
    },
    Revoke {
        user_id: Uuid,
        client_id: Uuid,
    },
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConsentError {
    #[error("there is no consent for this client")]
    NotFound,
}

/// One client's consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConsent {
    pub scopes: Vec<String>,
    /// When it was first given (after any withdrawal): grants name it.
    pub since: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl ClientConsent {
    /// Whether every scope of `scope` (space-separated) is consented to.
    pub fn covers(&self, scope: &str) -> bool {
        scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .all(|s| self.scopes.iter().any(|c| c == s))
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Consents {
    pub by_client: BTreeMap<Uuid, ClientConsent>,
}

impl Aggregate for Consents {
    type Event = ConsentEvent;
    type Command = ConsentCommand;
    type Error = ConsentError;
    const CATEGORY: &'static str = "consent";

    fn evolve(mut self, event: &ConsentEvent) -> Self {
        match event {
            ConsentEvent::Given(e) => {
                let since = self.by_client.get(&e.client_id).map_or(e.at, |c| c.since);
                self.by_client.insert(
                    e.client_id,
                    ClientConsent {
                        scopes: e.scopes.clone(),
                        since,
                        updated_at: e.at,
                    },
                );
            }
            ConsentEvent::Revoked(e) => {
                self.by_client.remove(&e.client_id);
            }
        }
        self
    }

    fn decide(
        &self,
        command: ConsentCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<ConsentEvent>, ConsentError> {
        match command {
            ConsentCommand::Give {
                user_id,
                organization_id,
                client_id,
                scopes,
            } => {
                let mut all: Vec<String> = self
                    .by_client
                    .get(&client_id)
                    .map(|c| c.scopes.clone())
                    .unwrap_or_default();
                let before = all.len();
                for s in scopes {
                    if !s.is_empty() && !all.contains(&s) {
                        all.push(s);
                    }
                }
                if before == all.len() && self.by_client.contains_key(&client_id) {
                    return Ok(vec![]);
                }
                Ok(vec![ConsentEvent::Given(ConsentGiven {
                    user_id,
                    organization_id,
                    client_id,
                    scopes: all,
                    at: now,
                })])
            }
            ConsentCommand::Revoke { user_id, client_id } => {
                if !self.by_client.contains_key(&client_id) {
                    return Err(ConsentError::NotFound);
                }
                Ok(vec![ConsentEvent::Revoked(ConsentRevoked {
                    user_id,
                    client_id,
                    at: now,
                })])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn give(scopes: &[&str]) -> ConsentCommand {
        ConsentCommand::Give {
            user_id: Uuid::from_u128(1),
            organization_id: Uuid::from_u128(2),
            client_id: Uuid::from_u128(3),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn run(
        state: Consents,
        c: ConsentCommand,
        at: OffsetDateTime,
    ) -> (Consents, Vec<ConsentEvent>) {
        let events = state.decide(c, at).unwrap_or_default();
        let state = events.iter().fold(state, |s, e| s.evolve(e));
        (state, events)
    }

    #[test]
    fn consent_grows_and_a_covered_request_records_nothing() {
        let t0 = datetime!(2026-12-01 12:00 UTC);
        let (s, e) = run(Consents::default(), give(&["openid", "email"]), t0);
        assert_eq!(e.len(), 1);
        let c = &s.by_client[&Uuid::from_u128(3)];
        assert!(c.covers("openid email") && c.covers("openid") && !c.covers("openid profile"));
        let (s, e) = run(s, give(&["email"]), t0 + time::Duration::hours(1));
        assert!(e.is_empty());
        let (s, e) = run(s, give(&["profile"]), t0 + time::Duration::hours(2));
        assert_eq!(e.len(), 1);
        let c = &s.by_client[&Uuid::from_u128(3)];
        assert!(c.covers("openid email profile"));
        assert_eq!(c.since, t0, "widening keeps the grants made before");
    }

    #[test]
    fn withdrawing_a_consent_gives_the_next_one_a_new_since() {
        let t0 = datetime!(2026-12-01 12:00 UTC);
        let (s, _) = run(Consents::default(), give(&["openid"]), t0);
        let revoke = ConsentCommand::Revoke {
            user_id: Uuid::from_u128(1),
            client_id: Uuid::from_u128(3),
        };
        let (s, e) = run(s, revoke.clone(), t0 + time::Duration::hours(1));
        assert_eq!(e.len(), 1);
        assert!(s.by_client.is_empty());
        assert_eq!(s.decide(revoke, t0), Err(ConsentError::NotFound));
        let t2 = t0 + time::Duration::hours(2);
        let (s, _) = run(s, give(&["openid"]), t2);
        assert_eq!(s.by_client[&Uuid::from_u128(3)].since, t2);
    }
}
