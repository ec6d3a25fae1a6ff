use std::fmt;
use std::str::FromStr;

use domain::Metadata;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::data::EventData;
use crate::error::Error;

/// A place in the global order of the log. Ordered by `commit`, then
/// `prepare` (the two halves EventStoreDB uses; the SQL adapters use
/// `(position, position)` on SQLite and `(transaction id, sequence)` on
/// PostgreSQL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub commit: u64,
    pub prepare: u64,
}

impl Position {
    /// Before the first event.
    pub const START: Position = Position {
        commit: 0,
        prepare: 0,
    };

    pub fn new(commit: u64, prepare: u64) -> Self {
        Self { commit, prepare }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.commit == self.prepare {
            write!(f, "{}", self.commit)
        } else {
            write!(f, "{}/{}", self.commit, self.prepare)
        }
    }
}

impl FromStr for Position {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidAppend(format!("not a log position: {s:?}"));
        match s.split_once('/') {
            Some((c, p)) => Ok(Position::new(
                c.parse().map_err(|_| bad())?,
                p.parse().map_err(|_| bad())?,
            )),
            None => {
                let n = s.parse().map_err(|_| bad())?;
                Ok(Position::new(n, n))
            }
        }
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Optimistic concurrency for an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedRevision {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

impl ExpectedRevision {
    /// Whether a stream currently at `current` satisfies this expectation.
    pub fn accepts(self, current: Option<u64>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current.is_none(),
            Self::StreamExists => current.is_some(),
            Self::Exact(n) => current == Some(n),
        }
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("stream exists"),
            Self::Exact(n) => write!(f, "revision {n}"),
        }
    }
}

/// An event to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub id: Uuid,
    pub event_type: String,
    pub data: Value,
    pub metadata: Metadata,
    pub subject: Option<String>,
}

impl NewEvent {
    pub fn new(event_type: impl Into<String>, data: Value, metadata: Metadata) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            data,
            metadata,
            subject: None,
        }
    }

    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub id: Uuid,
    pub stream: String,
    pub revision: u64,
    pub position: Position,
    pub event_type: String,
    pub data: EventData,
    pub metadata: Metadata,
    pub subject: Option<String>,
    /// When the log committed it (the store's clock).
    pub recorded_at: OffsetDateTime,
}

impl RecordedEvent {
    /// The version suffix of the type string (`user.registered.v2` -> 2).
    pub fn schema_version(&self) -> u32 {
        schema_version_of(&self.event_type)
    }

    pub fn category(&self) -> &str {
        category_of(&self.stream)
    }

    /// The error for this event's data when it cannot be read, naming the
    /// event (`stream@revision (position)`).
    pub fn corrupt(&self, why: impl fmt::Display) -> Error {
        Error::Corrupt(format!(
            "{}@{} ({}): {why}",
            self.stream, self.revision, self.position
        ))
    }
}

pub fn schema_version_of(event_type: &str) -> u32 {
    event_type
        .rsplit_once(".v")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1)
}

/// What a successful append returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// The revision of the last event appended: pass it as `Exact` next time.
    pub next_expected_revision: u64,
    /// The log position of the last event appended.
    pub position: Position,
}

/// A filter for reads of the whole log: an event passes when its stream's
/// category is one of `categories` (or the list is empty) and its type starts
/// with one of `type_prefixes` (or the list is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub categories: Vec<String>,
    pub type_prefixes: Vec<String>,
}

impl Filter {
    pub fn all() -> Self {
        Self::default()
    }
    pub fn categories<I: IntoIterator<Item = S>, S: Into<String>>(c: I) -> Self {
        Self {
            categories: c.into_iter().map(Into::into).collect(),
            type_prefixes: vec![],
        }
    }
    pub fn type_prefixes<I: IntoIterator<Item = S>, S: Into<String>>(p: I) -> Self {
        Self {
            categories: vec![],
            type_prefixes: p.into_iter().map(Into::into).collect(),
        }
    }
    pub fn is_all(&self) -> bool {
        self.categories.is_empty() && self.type_prefixes.is_empty()
    }
    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        (self.categories.is_empty() || self.categories.iter().any(|c| c == category_of(stream)))
            && (self.type_prefixes.is_empty()
                || self.type_prefixes.iter().any(|p| event_type.starts_with(p)))
    }
}

/// How many events a group commit wrote: the `sizes` of its appends whose
/// own result is a success.
pub(crate) fn events_written<T, E>(
    sizes: impl IntoIterator<Item = usize>,
    results: &[Result<T, E>],
) -> u64 {
    sizes
        .into_iter()
        .zip(results)
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n as u64)
        .sum()
}

/// The category of a stream: what comes before its first `-`.
pub fn category_of(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(c, _)| c)
}

pub const MAX_STREAM_NAME: usize = 255;

pub fn validate_stream_name(stream: &str) -> Result<(), Error> {
    if stream.is_empty() || stream.len() > MAX_STREAM_NAME || stream.starts_with('$') {
        return Err(Error::InvalidAppend(format!(
            "stream name must be 1 to {MAX_STREAM_NAME} bytes and not start with `$`"
        )));
    }
    Ok(())
}

/// Checks an append request before it reaches a backend.
pub(crate) fn validate_append(stream: &str, events: &[NewEvent]) -> Result<(), Error> {
    validate_stream_name(stream)?;
    if events.is_empty() {
        return Err(Error::InvalidAppend(
            "an append needs at least one event".into(),
        ));
    }
    for e in events {
        if e.event_type.is_empty() || e.event_type.len() > 200 {
            return Err(Error::InvalidAppend(
                "event type must be 1 to 200 bytes".into(),
            ));
        }
    }
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::InvalidAppend(
            "an event id appears twice in one append".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_print_and_parse() {
        let p = Position::new(7, 7);
        assert_eq!(p.to_string(), "7");
        assert_eq!("7".parse::<Position>().unwrap(), p);
        let q = Position::new(900, 12);
        assert_eq!(q.to_string(), "900/12");
        assert_eq!("900/12".parse::<Position>().unwrap(), q);
        assert!("x".parse::<Position>().is_err());
        assert!(Position::new(1, 9) < Position::new(2, 0));
    }

    #[test]
    fn expected_revision_matrix() {
        use ExpectedRevision::*;
        assert!(Any.accepts(None) && Any.accepts(Some(3)));
        assert!(NoStream.accepts(None) && !NoStream.accepts(Some(0)));
        assert!(!StreamExists.accepts(None) && StreamExists.accepts(Some(0)));
        assert!(Exact(2).accepts(Some(2)) && !Exact(2).accepts(Some(1)) && !Exact(0).accepts(None));
    }

    #[test]
    fn filters_and_categories() {
        assert_eq!(category_of("client-1234-5"), "client");
        assert_eq!(category_of("nocat"), "nocat");
        let f = Filter {
            categories: vec!["client".into()],
            type_prefixes: vec!["client.secret".into()],
        };
        assert!(f.matches("client-1", "client.secret_created.v1"));
        assert!(!f.matches("user-1", "client.secret_created.v1"));
        assert!(!f.matches("client-1", "client.created.v1"));
        assert_eq!(schema_version_of("user.registered.v2"), 2);
        assert_eq!(schema_version_of("odd"), 1);
    }
}
