//! The decider shape every aggregate follows, and the event trait the event
//! log's codec relies on.

use serde_json::Value;
use time::OffsetDateTime;

/// An event of one aggregate, with a stable, versioned type string such as
/// `organization.created.v1`. Old versions are upcast in [`DomainEvent::decode`].
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// The stable type string stored with the event.
    fn event_type(&self) -> &'static str;
    /// The JSON body stored with the event.
    fn to_data(&self) -> Value;
    /// Decodes a stored event, upcasting older versions of the same fact,
    /// from a JSON tree (`&Value`) or straight from the stored text.
    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError>;
    /// The person this event is about, if any (indexed by the log).
    fn subject(&self) -> Option<String> {
        None
    }
}

/// Implements [`DomainEvent`] for a fact of one event type, whose struct
/// is the event's data: `single_event!(Type, TYPE_V1)`, or with the person
/// it is about: `single_event!(Type, TYPE_V1, |e: &Type| …)`.
#[macro_export]
macro_rules! single_event {
    ($ty:ty, $name:expr) => {
        $crate::single_event!($ty, $name, |_: &$ty| None);
    };
    ($ty:ty, $name:expr, $subject:expr) => {
        impl $crate::decider::DomainEvent for $ty {
            fn event_type(&self) -> &'static str {
                $name
            }

            fn to_data(&self) -> serde_json::Value {
                serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
            }

            fn decode<'de, D: serde::Deserializer<'de>>(
                event_type: &str,
                data: D,
            ) -> Result<Self, $crate::decider::DecodeError> {
                if event_type != $name {
                    return Err($crate::decider::DecodeError::UnknownType(
                        event_type.to_owned(),
                    ));
                }
                <Self as serde::Deserialize>::deserialize(data)
                    .map_err(|e| $crate::decider::DecodeError::malformed(event_type, e))
            }

            fn subject(&self) -> Option<String> {
                let subject: fn(&$ty) -> Option<String> = $subject;
                subject(self)
            }
        }
    };
}

/// A stored event this code cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("malformed {event_type}: {reason}")]
    Malformed { event_type: String, reason: String },
}

impl DecodeError {
    pub fn malformed(event_type: &str, err: impl std::fmt::Display) -> Self {
        Self::Malformed {
            event_type: event_type.to_owned(),
            reason: err.to_string(),
        }
    }
}

/// An aggregate: the consistency boundary one stream holds.
///
/// `decide` refuses or accepts a command against the current state and
/// returns the events that record the decision; `evolve` folds one event into
/// the state. Both are pure.
pub trait Aggregate: Default + Send + Sync + 'static {
    type Event: DomainEvent;
    type Command: Send;
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stream category, e.g. `organization` for streams `organization-{id}`.
    const CATEGORY: &'static str;

    fn evolve(self, event: &Self::Event) -> Self;

    fn decide(
        &self,
        command: Self::Command,
        now: OffsetDateTime,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds a whole history.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        events.into_iter().fold(Self::default(), Self::evolve)
    }
}

/// Given past events, when a command, then these events or this error: the
/// one helper every domain test uses.
pub fn given_when<A: Aggregate>(
    given: &[A::Event],
    when: A::Command,
    now: OffsetDateTime,
) -> Result<Vec<A::Event>, A::Error> {
    A::fold(given).decide(when, now)
}
