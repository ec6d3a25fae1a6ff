//! The organization: the tenant every other object belongs to.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};

pub const MAX_NAME_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganizationCommand {
    Create { id: Uuid, name: String },
    Rename { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationCreated {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationRenamed {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganizationEvent {
    Created(OrganizationCreated),
    Renamed(OrganizationRenamed),
}

pub const CREATED_V1: &str = "organization.created.v1";
pub const RENAMED_V1: &str = "organization.renamed.v1";

impl DomainEvent for OrganizationEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => CREATED_V1,
            Self::Renamed(_) => RENAMED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Serializing plain structs of strings cannot fail.
        match self {
            Self::Created(e) => serde_json::to_value(e),
            Self::Renamed(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        let malformed = |e| DecodeError::malformed(event_type, e);
        match event_type {
            CREATED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::Created)
                .map_err(malformed),
            RENAMED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::Renamed)
                .map_err(malformed),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrganizationError {
    #[error("the organization already exists")]
    AlreadyExists,
    #[error("the organization does not exist")]
    NotFound,
    #[error("the name must be 1 to {MAX_NAME_LEN} characters and not blank")]
    InvalidName,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: Option<Uuid>,
    pub name: String,
}

fn valid_name(name: &str) -> Result<String, OrganizationError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_LEN {
        return Err(OrganizationError::InvalidName);
    }
    Ok(trimmed.to_owned())
}

impl Aggregate for Organization {
    type Event = OrganizationEvent;
    type Command = OrganizationCommand;
    type Error = OrganizationError;
    const CATEGORY: &'static str = "organization";

    fn evolve(mut self, event: &OrganizationEvent) -> Self {
        match event {
            OrganizationEvent::Created(e) => {
                self.id = Some(e.id);
                self.name = e.name.clone();
            }
            OrganizationEvent::Renamed(e) => self.name = e.name.clone(),
        }
        self
    }

    fn decide(
        &self,
        command: OrganizationCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<OrganizationEvent>, OrganizationError> {
        match command {
            OrganizationCommand::Create { id, name } => {
                if self.id.is_some() {
                    return Err(OrganizationError::AlreadyExists);
                }
                Ok(vec![OrganizationEvent::Created(OrganizationCreated {
                    id,
                    name: valid_name(&name)?,
                    created_at: now,
                })])
            }
            OrganizationCommand::Rename { name } => {
                if self.id.is_none() {
                    return Err(OrganizationError::NotFound);
                }
                let name = valid_name(&name)?;
                if name == self.name {
                    return Ok(vec![]);
                }
                Ok(vec![OrganizationEvent::Renamed(OrganizationRenamed {
                    name,
                })])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::given_when;

    fn created(name: &str) -> OrganizationEvent {
        OrganizationEvent::Created(OrganizationCreated {
            id: Uuid::nil(),
            name: name.into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn create_records_the_trimmed_name() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let events = given_when::<Organization>(
            &[],
            OrganizationCommand::Create {
                id: Uuid::nil(),
                name: "  Acme ".into(),
            },
            now,
        )
        .unwrap();
        assert_eq!(events, vec![created("Acme")]);
    }

    #[test]
    fn create_twice_is_refused() {
        let r = given_when::<Organization>(
            &[created("Acme")],
            OrganizationCommand::Create {
                id: Uuid::nil(),
                name: "Other".into(),
            },
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(r, Err(OrganizationError::AlreadyExists));
    }

    #[test]
    fn rename_to_the_same_name_records_nothing() {
        let r = given_when::<Organization>(
            &[created("Acme")],
            OrganizationCommand::Rename {
                name: "Acme".into(),
            },
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(r, Ok(vec![]));
    }

    #[test]
    fn blank_or_missing_is_refused() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            given_when::<Organization>(
                &[created("Acme")],
                OrganizationCommand::Rename { name: "  ".into() },
                now
            ),
            Err(OrganizationError::InvalidName)
        );
        assert_eq!(
            given_when::<Organization>(&[], OrganizationCommand::Rename { name: "x".into() }, now),
            Err(OrganizationError::NotFound)
        );
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let e = created("Acme");
        let back = OrganizationEvent::decode(e.event_type(), e.to_data()).unwrap();
        assert_eq!(back, e);
        assert!(matches!(
            OrganizationEvent::decode("organization.exploded.v1", &Value::Null),
            Err(DecodeError::UnknownType(_))
        ));
    }
}
