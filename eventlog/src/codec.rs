//! Typed helpers between domain events and the log's envelope.

use domain::{DomainEvent, Metadata};

use crate::data::Stored;
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
    match recorded.data.stored() {
        Stored::Tree(v) => E::decode(&recorded.event_type, v).map_err(|e| recorded.corrupt(e)),
        Stored::Text(t) => {
            let mut de = serde_json::Deserializer::from_str(t);
            let event =
                E::decode(&recorded.event_type, &mut de).map_err(|e| recorded.corrupt(e))?;
            de.end().map_err(|e| recorded.corrupt(e))?;
            Ok(event)
        }
    }
}

#[cfg(test)]
mod tests {
    use domain::Metadata;
    use domain::organization::{OrganizationEvent, OrganizationRenamed};
    use time::OffsetDateTime;

    use super::*;
    use crate::data::EventData;
    use crate::types::Position;

    fn recorded(data: EventData) -> RecordedEvent {
        RecordedEvent {
            id: uuid::Uuid::now_v7(),
            stream: "organization-1".into(),
            revision: 3,
            position: Position::new(9, 9),
            event_type: "organization.renamed.v1".into(),
            data,
            metadata: Metadata::system(uuid::Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH),
            subject: None,
            recorded_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn stored_text_and_a_tree_decode_to_the_same_event() {
        let renamed = OrganizationEvent::Renamed(OrganizationRenamed {
            name: "Acme \"East\"".into(),
        });
        let tree = encode(
            &renamed,
            &Metadata::system(uuid::Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH),
        )
        .data;
        let text = EventData::from_text(tree.to_string());
        assert_eq!(
            decode::<OrganizationEvent>(&recorded(text)).unwrap(),
            renamed
        );
        assert_eq!(
            decode::<OrganizationEvent>(&recorded(tree.into())).unwrap(),
            renamed
        );
    }

    #[test]
    fn text_that_is_not_one_json_value_is_corrupt_and_names_the_event() {
        for bad in [r#"{"name":"a"} trailing"#, r#"{"name":"#, r#"{"name":1}"#] {
            let err = decode::<OrganizationEvent>(&recorded(EventData::from_text(bad.into())));
            match err {
                Err(Error::Corrupt(why)) => assert!(why.contains("organization-1@3"), "{why}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
