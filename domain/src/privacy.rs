//! Data subject requests as facts: a subject was looked up by name, their
//! data was exported or erased.
//! They belong to no aggregate: each is recorded in the subject's own
//! `privacy-…` stream, with the subject set, so that the subject index (and
//! so every later export) shows them, and the audit trail holds who asked
//! and when.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::decider::{DecodeError, DomainEvent};
use crate::registration::decode_as;

pub const SUBJECT_EXPORTED_V1: &str = "privacy.subject_exported.v1";
pub const SUBJECT_ERASED_V1: &str = "privacy.subject_erased.v1";
pub const SUBJECT_FOUND_V1: &str = "privacy.subject_found.v1";

/// The longest subject id accepted from a caller.
pub const MAX_SUBJECT_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectExported {
    pub subject: String,
    /// How many events the export held.
    pub events: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
}

/// Someone looked the subject up by a user name within an organization and
/// found them (the name itself is not recorded: it is what was asked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectFound {
    pub subject: String,
    pub organization_id: uuid::Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub found_at: OffsetDateTime,
}

/// The subject's key was deleted: their personal values read as erased from
/// now on, everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectErased {
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub erased_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivacyEvent {
    Found(SubjectFound),
    Exported(SubjectExported),
    Erased(SubjectErased),
}

impl DomainEvent for PrivacyEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Found(_) => SUBJECT_FOUND_V1,
            Self::Exported(_) => SUBJECT_EXPORTED_V1,
            Self::Erased(_) => SUBJECT_ERASED_V1,
        }
    }

    fn to_data(&self) -> Value {
        match self {
            Self::Found(e) => serde_json::to_value(e),
            Self::Exported(e) => serde_json::to_value(e),
            Self::Erased(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            SUBJECT_FOUND_V1 => decode_as(event_type, data).map(Self::Found),
            SUBJECT_EXPORTED_V1 => decode_as(event_type, data).map(Self::Exported),
            SUBJECT_ERASED_V1 => decode_as(event_type, data).map(Self::Erased),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        Some(match self {
            Self::Found(e) => e.subject.clone(),
            Self::Exported(e) => e.subject.clone(),
            Self::Erased(e) => e.subject.clone(),
        })
    }
}

/// Whether a caller-supplied subject id is acceptable: 1 to
/// [`MAX_SUBJECT_LEN`] visible ASCII characters.
pub fn is_valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= MAX_SUBJECT_LEN
        && subject.bytes().all(|b| b.is_ascii_graphic())
}

/// The stream a subject's requests are recorded in: `privacy-` and the
/// subject with every byte outside `[A-Za-z0-9_]` replaced by `_`, plus a
/// short hash of the subject so that two subjects never share a stream.
pub fn privacy_stream(subject: &str) -> String {
    let safe: String = subject
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    // FNV-1a: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in subject.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("privacy-{safe}_{h:016x}")
}

/// Names people by keyed pseudonyms (`person:` and 32 hex digits), so that
/// no stream name, index or log line carries a name. The command side is
/// handed one; the privacy crate holds the keyed implementation.
pub trait Pseudonyms: Send + Sync {
    /// The subject a user name names within an organization; None for a
    /// blank name (no person is named).
    fn subject(&self, organization: uuid::Uuid, user_name: &str) -> Option<String>;
    /// The subject of an installation named by its device alone: the device
    /// name is still someone's. Never equal to a user name's subject.
    fn installation_subject(&self, organization: uuid::Uuid, instance_id: &str) -> String;
    /// The claim (a reservation stream's id: 64 lowercase hex digits) of a
    /// normalized unique value of `kind` (`username`, `email`) within an
    /// organization: keyed, so the log never shows which value is taken.
    fn claim(&self, organization: uuid::Uuid, kind: &str, normalized: &str) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_safe_distinct_and_stable() {
        // Stored streams are named this way: the name may never change.
        assert_eq!(
            privacy_stream("person:ab12"),
            "privacy-person_ab12_994af7edc1dfa792"
        );
        assert_ne!(privacy_stream("a:b"), privacy_stream("a_b"));
    }

    #[test]
    fn subjects_are_checked() {
        assert!(is_valid_subject("person:0f3a"));
        assert!(!is_valid_subject(""));
        assert!(!is_valid_subject("a b"));
        assert!(!is_valid_subject(&"x".repeat(201)));
    }

    #[test]
    fn requests_name_their_subject() {
        let e = PrivacyEvent::Erased(SubjectErased {
            subject: "person:1".into(),
            erased_at: OffsetDateTime::UNIX_EPOCH,
        });
        assert_eq!(e.subject().as_deref(), Some("person:1"));
        let back = PrivacyEvent::decode(e.event_type(), e.to_data()).unwrap();
        assert_eq!(back, e);
        let found = PrivacyEvent::Found(SubjectFound {
            subject: "person:2".into(),
            organization_id: uuid::Uuid::nil(),
            found_at: OffsetDateTime::UNIX_EPOCH,
        });
        assert_eq!(found.event_type(), "privacy.subject_found.v1");
        assert_eq!(found.subject().as_deref(), Some("person:2"));
        let back = PrivacyEvent::decode(found.event_type(), found.to_data()).unwrap();
        assert_eq!(back, found);
    }
}
