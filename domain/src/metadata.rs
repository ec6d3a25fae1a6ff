//! What every event carries besides its data: who did it, why, from where.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    Client,
    System,
    Anonymous,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
        }
    }
    pub fn client(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::Client,
            id: Some(id.into()),
        }
    }
    pub fn user(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::User,
            id: Some(id.into()),
        }
    }
}

/// The context of a command, stored with each event it produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub actor: Actor,
    /// The server's own id for the request or work (never the caller's).
    pub correlation_id: Uuid,
    /// The `X-Request-Id` the caller sent, if any: recorded apart from the
    /// correlation id, so that nobody can join another's correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

impl Metadata {
    /// Metadata for work the platform does on its own behalf.
    pub fn system(correlation_id: Uuid, now: OffsetDateTime) -> Self {
        Self {
            actor: Actor::system(),
            correlation_id,
            request_id: None,
            causation_id: None,
            source_ip: None,
            user_agent: None,
            organization: None,
            occurred_at: now,
        }
    }
}
