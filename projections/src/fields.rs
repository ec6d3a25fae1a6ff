//! Small conversions every read model uses.

use eventlog::RecordedEvent;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A time as stored in the read models: RFC 3339 UTC text, which sorts as
/// the times do.
pub(crate) fn text(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The aggregate id of an event's stream (`client-{id}` -> `{id}`).
pub(crate) fn id_of(e: &RecordedEvent) -> &str {
    e.stream.split_once('-').map_or("", |(_, id)| id)
}
