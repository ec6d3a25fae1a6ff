//! Personal data in one place: per-subject encryption of `Pii<T>` values
//! (vault.rs, log.rs), keyed pseudonyms for people (pseudonyms.rs), the
//! stores opened with them (stores.rs: every crate that reads or writes
//! events opens its log there), and the data subject requests built on
//! them: export by replaying the subject's events through the subject
//! index, correction as events, erasure by deleting the subject's key. Each
//! request is itself an event in the subject's `privacy-…` stream. The
//! export's format is documented in docs/SUBJECT_EXPORT.md.
//!
//! It must never hand out a log that writes personal values in the clear,
//! nor log a personal value.

#![forbid(unsafe_code)]
// Unit tests read the wall clock freely; server code takes it from a Clock.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod key_store;
pub mod log;
pub mod people;
pub mod pseudonyms;
pub mod stores;
pub mod vault;

use std::collections::BTreeMap;
use std::sync::Arc;

use commands::{CommandBus, Outcome, journal, registration};
use domain::auth_token::{AUTH_TOKEN_ISSUED_V1, AuthToken, AuthTokenEvent};
use domain::privacy::{
    PrivacyEvent, SUBJECT_ERASED_V1, SubjectErased, SubjectExported, SubjectFound, privacy_stream,
};
use domain::{Aggregate, Metadata};
use eventlog::{Direction, EventLog, Position, RecordedEvent};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

pub use log::PiiLog;
pub use pseudonyms::PersonIds;
pub use stores::{StoreError, StoreSettings, Stores, make_private, open_stores};
pub use vault::SubjectKeys;

/// The `schema` of an export document.
pub const EXPORT_SCHEMA: &str = "idp.subject-export.v1";

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("subject ids are 1 to 200 visible ASCII characters")]
    InvalidSubject,
    #[error("no event names this subject")]
    UnknownSubject,
    #[error("name at least one value to correct (user_name, device_name)")]
    NothingToCorrect,
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("subject keys: {0}")]
    Keys(#[from] vault::VaultError),
    #[error("correcting auth token {id}: {reason}")]
    Correction { id: Uuid, reason: String },
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// One event about the subject, as stored (personal values in their stored
/// forms: `{"$pii": v}`, or `{"$pii_erased": true}` after erasure).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportedEvent {
    pub position: String,
    pub event_id: String,
    pub stream: String,
    pub revision: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: String,
    pub recorded_at: String,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl TryFrom<&RecordedEvent> for ExportedEvent {
    type Error = eventlog::Error;

    fn try_from(e: &RecordedEvent) -> Result<Self, eventlog::Error> {
        let m = &e.metadata;
        let data = e.data.value().map_err(|err| e.corrupt(err))?;
        Ok(Self {
            position: e.position.to_string(),
            event_id: e.id.to_string(),
            stream: e.stream.clone(),
            revision: e.revision,
            event_type: e.event_type.clone(),
            occurred_at: rfc3339(m.occurred_at),
            recorded_at: rfc3339(e.recorded_at),
            actor_kind: projections::audit::actor_kind_str(m.actor.kind).to_owned(),
            actor_id: m.actor.id.clone(),
            source_ip: m.source_ip.clone(),
            user_agent: m.user_agent.clone(),
            data: people::exported_data(e, data.into_owned()),
        })
    }
}

/// One installation the subject's name was given for, as the replay of its
/// auth token's stream leaves it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InstanceRecord {
    pub auth_token_id: String,
    pub organization_id: String,
    pub client_id: String,
    pub registration_token_id: String,
    pub instance_id: String,
    pub device_name: String,
    /// Absent once erased.
    pub user_name: Option<String>,
    pub app_version: String,
    pub created_at: Option<String>,
    pub exchanged: bool,
    pub last_used_at: Option<String>,
    pub deleted: bool,
    pub chain_revoked: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErasureRecord {
    pub erased_at: String,
    pub actor_kind: String,
    pub actor_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubjectData {
    pub instances: Vec<InstanceRecord>,
    /// The user the subject is (subjects `user:…`), replayed from their
    /// stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<people::UserRecord>,
}

/// Everything held about one subject.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubjectExport {
    pub schema: &'static str,
    pub subject: String,
    pub generated_at: String,
    /// Present when the subject was erased.
    pub erasure: Option<ErasureRecord>,
    /// The subject's current data, replayed from their events.
    pub current: SubjectData,
    /// Every event about the subject, in log order.
    pub events: Vec<ExportedEvent>,
}

pub fn check_subject(subject: &str) -> Result<(), PrivacyError> {
    if domain::privacy::is_valid_subject(subject) {
        Ok(())
    } else {
        Err(PrivacyError::InvalidSubject)
    }
}

/// The auth tokens the subject's events name.
fn auth_tokens_named(events: &[RecordedEvent]) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for e in events
        .iter()
        .filter(|e| e.event_type == AUTH_TOKEN_ISSUED_V1)
    {
        if let Ok(AuthTokenEvent::Issued(i)) = eventlog::decode::<AuthTokenEvent>(e)
            && !ids.contains(&i.id)
        {
            ids.push(i.id);
        }
    }
    ids
}

/// Builds the export: the subject's events through the subject index, plus
/// the streams of the auth tokens those events name (their exchanges and
/// refreshes), replayed into the current data. Never scans the log.
pub async fn export(
    log: &Arc<dyn EventLog>,
    subject: &str,
    now: OffsetDateTime,
) -> Result<SubjectExport, PrivacyError> {
    check_subject(subject)?;
    let mut events = log.read_subject(subject).await?;
    let mut instances = Vec::new();
    for id in auth_tokens_named(&events) {
        let stream = CommandBus::stream_name::<AuthToken>(&id.to_string());
        let history = log
            .read_stream(&stream, Direction::Forwards, None, usize::MAX)
            .await?;
        let mut state = AuthToken::default();
        for e in &history {
            state = state.evolve(&eventlog::decode::<AuthTokenEvent>(e)?);
        }
        if let Some(i) = &state.instance {
            instances.push(InstanceRecord {
                auth_token_id: state.id.to_string(),
                organization_id: state.organization_id.to_string(),
                client_id: state.client_id.to_string(),
                registration_token_id: state.registration_token_id.to_string(),
                instance_id: i.instance_id.clone(),
                device_name: i.device_name.clone(),
                user_name: i.user_name.value().cloned(),
                app_version: i.app_version.clone(),
                created_at: state.issued_at.map(rfc3339),
                exchanged: state.exchanged,
                last_used_at: state.last_used_at.map(rfc3339),
                deleted: state.deleted,
                chain_revoked: state.chain_revoked,
            });
        }
        events.extend(history);
    }
    let user = people::user_record(log, subject, &events).await?;
    // One entry per event, in log order.
    let by_position: BTreeMap<Position, RecordedEvent> =
        events.into_iter().map(|e| (e.position, e)).collect();
    let erasure = by_position
        .values()
        .rfind(|e| e.event_type == SUBJECT_ERASED_V1)
        .map(|e| ErasureRecord {
            erased_at: rfc3339(e.metadata.occurred_at),
            actor_kind: projections::audit::actor_kind_str(e.metadata.actor.kind).to_owned(),
            actor_id: e.metadata.actor.id.clone(),
        });
    Ok(SubjectExport {
        schema: EXPORT_SCHEMA,
        subject: subject.to_owned(),
        generated_at: rfc3339(now),
        erasure,
        current: SubjectData { instances, user },
        events: by_position
            .values()
            .map(ExportedEvent::try_from)
            .collect::<Result<_, _>>()?,
    })
}

/// The organizations whose events name `subject` (the metadata's, or the
/// `organization_id` an event's data records): an organization's admin may
/// act on a subject only when all of them are its own.
pub async fn organizations_of(bus: &CommandBus, subject: &str) -> Result<Vec<Uuid>, PrivacyError> {
    let log = bus.log();
    check_subject(subject)?;
    let mut found: Vec<Uuid> = Vec::new();
    for e in log.read_subject(subject).await? {
        let from_data = e.data.value().ok().and_then(|v| {
            v.get("organization_id")
                .and_then(serde_json::Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
        });
        for org in [e.metadata.organization, from_data].into_iter().flatten() {
            if !found.contains(&org) {
                found.push(org);
            }
        }
    }
    Ok(found)
}

/// The export of a known subject, recorded as handed out to whoever
/// `metadata` names (an access request is itself audited).
/// How many events name `subject`, a person looked up by name within
/// `organization_id`; the lookup is recorded (`privacy.subject_found.v1`,
/// without the name) when it finds someone.
pub async fn found(
    bus: &CommandBus,
    subject: &str,
    organization_id: Uuid,
    metadata: &Metadata,
) -> Result<usize, PrivacyError> {
    let log = bus.log();
    let events = log.read_subject(subject).await?.len();
    if events == 0 {
        return Err(PrivacyError::UnknownSubject);
    }
    let event = PrivacyEvent::Found(SubjectFound {
        subject: subject.to_owned(),
        organization_id,
        found_at: metadata.occurred_at,
    });
    journal::record(log, &privacy_stream(subject), &event, metadata).await?;
    Ok(events)
}

pub async fn hand_out(
    bus: &CommandBus,
    subject: &str,
    metadata: &Metadata,
) -> Result<SubjectExport, PrivacyError> {
    let log = bus.log();
    let doc = export(log, subject, metadata.occurred_at).await?;
    if doc.events.is_empty() {
        return Err(PrivacyError::UnknownSubject);
    }
    let event = PrivacyEvent::Exported(SubjectExported {
        subject: doc.subject.clone(),
        events: doc.events.len() as u64,
        exported_at: metadata.occurred_at,
    });
    journal::record(log, &privacy_stream(&doc.subject), &event, metadata).await?;
    Ok(doc)
}

/// Records corrected values on every instance of the subject; returns the
/// auth tokens that changed and the outcome of the last change.
pub async fn correct(
    bus: &CommandBus,
    subject: &str,
    user_name: Option<String>,
    device_name: Option<String>,
    metadata: &Metadata,
) -> Result<(Vec<Uuid>, Option<Outcome>), PrivacyError> {
    check_subject(subject)?;
    if user_name.is_none() && device_name.is_none() {
        return Err(PrivacyError::NothingToCorrect);
    }
    let events = bus.log().read_subject(subject).await?;
    let mut changed = Vec::new();
    let mut last = None;
    for id in auth_tokens_named(&events) {
        let out = registration::correct_instance(
            bus,
            id,
            user_name.clone(),
            device_name.clone(),
            metadata,
        )
        .await
        .map_err(|e| PrivacyError::Correction {
            id,
            reason: e.to_string(),
        })?;
        if out.events > 0 {
            changed.push(id);
            last = Some(out);
        }
    }
    Ok((changed, last))
}

/// What an erasure did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub subject: String,
    pub erased_at: String,
    /// False when the subject had no key (never encrypted, or already erased).
    pub key_deleted: bool,
    #[serde(skip)]
    pub position: Position,
}

/// Erases a subject: records the erasure (so the audit trail keeps who and
/// when), then deletes their key. Nothing in the log changes; the read
/// models drop the person's values when they apply the erasure event.
/// A subject no event names and no key belongs to is unknown.
pub async fn erase(
    bus: &CommandBus,
    keys: &SubjectKeys,
    subject: &str,
    metadata: &Metadata,
) -> Result<Erasure, PrivacyError> {
    let log = bus.log();
    check_subject(subject)?;
    // A subject nothing is held about (a mistyped id) is refused rather
    // than recorded as erased. Erasing again is allowed: the first erasure
    // names the subject, and a key left by a failed attempt is deleted.
    // The key is looked up first: a subject with one is known without
    // reading (and opening) every event about them.
    if keys.key(subject).await?.is_none() && log.read_subject(subject).await?.is_empty() {
        return Err(PrivacyError::UnknownSubject);
    }
    // A user erased as a subject is deleted too: their username and email
    // are given back, and they can no longer be changed or sign in.
    if let Some(user_id) = people::user_of_subject(subject) {
        people::delete_if_live(bus, user_id, metadata).await?;
    }
    let erased_at = metadata.occurred_at;
    let event = PrivacyEvent::Erased(SubjectErased {
        subject: subject.to_owned(),
        erased_at,
    });
    let out = journal::record(log, &privacy_stream(subject), &event, metadata).await?;
    let key_deleted = keys.erase(subject).await?;
    tracing::info!(%subject, key_deleted, "data subject erased");
    Ok(Erasure {
        subject: subject.to_owned(),
        erased_at: rfc3339(erased_at),
        key_deleted,
        position: out.position,
    })
}
