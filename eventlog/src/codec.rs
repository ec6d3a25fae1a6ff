//! Typed helpers between domain events and the log's envelope.

use domain::{DomainEvent, Metadata};

use crate::error::Error;
use crate::types::{NewEvent, RecordedEvent};

/// Wraps a domain event into an event to append.
pub fn encode<E: DomainEvent>(event: &E, metadata: &Metadata) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7(),
        event_type: event.event_type().to_owned(),
        data: event.to_data(),
        metadata: metadata.clone(),
        subject: event.subject(),
    }
}

/// Reads a stored event as a domain event, upcasting older versions.
pub fn decode<E: DomainEvent>(recorded: &RecordedEvent) -> Result<E, Error> {
    let corrupt = |e: &dyn std::fmt::Display| {
        Error::Corrupt(format!(
            "{}@{} ({}): {e}",
            recorded.stream, recorded.revision, recorded.position
        ))
    };
    let data = recorded.data.value().map_err(|e| corrupt(&e))?;
    E::decode(&recorded.event_type, &data).map_err(|e| corrupt(&e))
}
