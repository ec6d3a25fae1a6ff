//! The log in KurrentDB (formerly EventStoreDB), through its gRPC client.
//!
//! Streams, revisions, optimistic concurrency and `$all` positions are the
//! server's own; this adapter only maps them onto the port:
//!
//! - An event is stored as a JSON event of our event type, with our data, and
//!   with custom metadata holding an [`Envelope`]: our [`Metadata`] and the
//!   event's subject.
//! - Positions are the server's `$all` positions (`commit`, `prepare`). For
//!   the ordinary (implicitly committed) appends this adapter makes, both
//!   halves are the event's log position.
//! - Reads of `$all` leave out system events (types or streams starting with
//!   `$`) so that readers see the same log as with the SQL adapters.
//! - Re-appending the same event ids at the same place is recognised by the
//!   server (idempotent writes). Unlike the SQL adapters, the server does not
//!   refuse an id already stored in *another* stream: there is no global index
//!   of event ids to check against, so [`Error::DuplicateEventId`] never comes
//!   from this adapter.
//! - There is no secondary index either: [`EventLog::read_subject`],
//!   [`EventLog::count_after`] and (to a lesser degree) [`EventLog::head`]
//!   read `$all`. That is acceptable for now; a projection into a subject
//!   stream would remove the scan.
//!
//! Reading `$all` needs a user allowed to (the default ACL: `$admins` or
//! `$ops`), so the connection string carries credentials unless the server
//! runs insecure.
//!
//! Live delivery: local appends bump the wake-up counter at once; a
//! background task holds a `$all` subscription from the end and bumps the
//! counter on every (non-system) event, whoever wrote it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::Metadata;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, ReadAllOptions,
    ReadStreamOptions, StreamPosition, StreamState, SubscribeToAllOptions, SubscriptionEvent,
    SubscriptionFilter,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::port::{Direction, EventLog};
use crate::types::{
    AppendResult, ExpectedRevision, Filter, NewEvent, Position, RecordedEvent, validate_append,
};

/// Events asked of the server per page when scanning `$all`.
const SCAN_PAGE: usize = 4096;
/// The smallest page of a `read_all` (a page restarts at the last event of
/// the one before, inclusively, so a page must hold at least two).
const MIN_PAGE: usize = 64;
/// How long the wake-up task waits before subscribing again after a failure.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// What the custom metadata of every event holds.
#[derive(Serialize)]
struct EnvelopeRef<'a> {
    metadata: &'a Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
}

#[derive(Deserialize)]
struct Envelope {
    metadata: Metadata,
    #[serde(default)]
    subject: Option<String>,
}

/// Just the subject of an envelope, for the subject scan.
#[derive(Deserialize)]
struct SubjectOnly {
    #[serde(default)]
    subject: Option<String>,
}

pub struct KurrentLog {
    client: Client,
    wake: Arc<watch::Sender<u64>>,
    wakeups: watch::Receiver<u64>,
    watcher: JoinHandle<()>,
}

impl Drop for KurrentLog {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl From<kurrentdb::Error> for Error {
    fn from(e: kurrentdb::Error) -> Self {
        Error::Backend(format!("kurrentdb: {e}"))
    }
}

impl KurrentLog {
    /// Connects to the server an `esdb://` / `kurrentdb://` (or `+discover`)
    /// connection string names, checks that `$all` can be read, and starts
    /// the wake-up task.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        // The error text never repeats the URL: it may hold a password.
        let settings: ClientSettings = url.parse().map_err(|e| {
            Error::UnsupportedUrl(format!("not a valid KurrentDB connection string: {e}"))
        })?;
        let client = Client::new(settings)
            .map_err(|e| Error::Backend(format!("kurrentdb: creating the client: {e}")))?;
        // Fail now rather than at the first append if the server cannot be
        // reached or the credentials cannot read `$all`.
        last_user_position(&client).await?;

        let (wake, wakeups) = watch::channel(0u64);
        let wake = Arc::new(wake);
        let watcher = tokio::spawn(watch_all(client.clone(), Arc::clone(&wake)));
        Ok(Self {
            client,
            wake,
            wakeups,
            watcher,
        })
    }

    /// The underlying client (for tools and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads `$all` forwards strictly after `after`, page by page, handing
    /// every non-system event to `visit` until it answers `false` or the log
    /// ends. `server_filter` only narrows what the server sends; `visit`
    /// decides.
    async fn scan<F>(
        &self,
        after: Position,
        server_filter: Option<SubscriptionFilter>,
        page: usize,
        mut visit: F,
    ) -> Result<(), Error>
    where
        F: FnMut(&kurrentdb::RecordedEvent) -> Result<bool, Error> + Send,
    {
        let page = page.max(2);
        let mut from = after;
        loop {
            let mut options = ReadAllOptions::default()
                .position(StreamPosition::Position(to_kurrent(from)))
                .forwards()
                .max_count(page);
            if let Some(f) = &server_filter {
                options = options.filter(f.clone());
            }
            let mut stream = self.client.read_all(&options).await?;
            let mut received = 0usize;
            let mut last = from;
            while let Some(resolved) = stream.next().await? {
                received += 1;
                let Some(raw) = resolved.event.as_ref() else {
                    continue;
                };
                let position = from_kurrent(raw.position);
                // A read from a position includes the event at that position.
                if position <= from {
                    continue;
                }
                last = position;
                if is_system(raw) {
                    continue;
                }
                if !visit(raw)? {
                    return Ok(());
                }
            }
            if received < page || last == from {
                return Ok(());
            }
            from = last;
        }
    }

    /// Reads one stream as the server returns it; a missing (or deleted)
    /// stream reads as empty.
    async fn read_raw(
        &self,
        stream: &str,
        options: &ReadStreamOptions,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, Error> {
        let mut read = self.client.read_stream(stream, options).await?;
        let mut out = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => out.extend(resolved.event),
                Ok(None) => return Ok(out),
                Err(kurrentdb::Error::ResourceNotFound | kurrentdb::Error::ResourceDeleted) => {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The position of an event this adapter appended, when the server did
    /// not say it (an idempotent retry): read it back from the stream.
    async fn position_of(
        &self,
        stream: &str,
        revision: u64,
        id: uuid::Uuid,
    ) -> Result<Position, Error> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Position(revision))
            .forwards()
            .max_count(1);
        match self.read_raw(stream, &options).await?.pop() {
            Some(raw) if raw.id == id => return Ok(from_kurrent(raw.position)),
            _ => {}
        }
        Err(Error::Backend(format!(
            "kurrentdb: an idempotent append to {stream} reported revision {revision}, \
             which does not hold event {id}"
        )))
    }
}

/// Bumps the wake-up counter on every event of `$all`, for as long as the log
/// lives (the task is aborted on drop), subscribing again after a failure.
async fn watch_all(client: Client, wake: Arc<watch::Sender<u64>>) {
    let bump = || wake.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        let options = SubscribeToAllOptions::default()
            .position(StreamPosition::End)
            .filter(SubscriptionFilter::on_event_type().exclude_system_events());
        let mut subscription = client.subscribe_to_all(&options).await;
        loop {
            match subscription.next_subscription_event().await {
                Ok(SubscriptionEvent::EventAppeared(_)) => bump(),
                // (Re)subscribed: anything may have been missed meanwhile.
                Ok(SubscriptionEvent::Confirmed(_)) => bump(),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "event log subscription to $all lost");
                    break;
                }
            }
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

/// The position of the last non-system event, reading `$all` backwards.
async fn last_user_position(client: &Client) -> Result<Option<Position>, Error> {
    const PAGE: usize = 256;
    let mut from = StreamPosition::End;
    loop {
        let options = ReadAllOptions::default()
            .position(from)
            .backwards()
            .max_count(PAGE)
            .filter(SubscriptionFilter::on_event_type().exclude_system_events());
        let mut stream = client.read_all(&options).await?;
        let mut received = 0usize;
        let mut last = None;
        while let Some(resolved) = stream.next().await? {
            received += 1;
            let Some(raw) = resolved.event.as_ref() else {
                continue;
            };
            if !is_system(raw) {
                return Ok(Some(from_kurrent(raw.position)));
            }
            last = Some(raw.position);
        }
        match last {
            // A backwards read from a position starts below it.
            Some(p) if received >= PAGE => from = StreamPosition::Position(p),
            _ => return Ok(None),
        }
    }
}

fn to_kurrent(p: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

fn from_kurrent(p: kurrentdb::Position) -> Position {
    Position::new(p.commit, p.prepare)
}

/// Server bookkeeping: system event types and system streams.
fn is_system(raw: &kurrentdb::RecordedEvent) -> bool {
    raw.event_type.starts_with('$') || raw.stream_id().starts_with('$')
}

/// What the server may filter on for `filter`: a superset of what passes it
/// (the exact test is [`Filter::matches`], applied to what comes back).
fn server_filter(filter: &Filter) -> SubscriptionFilter {
    if !filter.categories.is_empty() {
        // A stream of category `c` is named `c` or `c-…`: both start with `c`.
        filter
            .categories
            .iter()
            .fold(SubscriptionFilter::on_stream_name(), |f, c| f.add_prefix(c))
    } else if !filter.type_prefixes.is_empty() {
        filter
            .type_prefixes
            .iter()
            .fold(SubscriptionFilter::on_event_type(), |f, p| f.add_prefix(p))
    } else {
        SubscriptionFilter::on_event_type().exclude_system_events()
    }
}

fn to_event_data(e: &NewEvent) -> Result<EventData, Error> {
    let envelope = EnvelopeRef {
        metadata: &e.metadata,
        subject: e.subject.as_deref(),
    };
    EventData::json(&e.event_type, &e.data)
        .and_then(|d| d.id(e.id).metadata_as_json(&envelope))
        .map_err(|err| Error::InvalidAppend(err.to_string()))
}

/// When the server recorded the event. The client rounds its `created` to
/// the second; the raw `created` property (100 ns ticks since the Unix
/// epoch) keeps the precision.
fn recorded_at(raw: &kurrentdb::RecordedEvent) -> Option<OffsetDateTime> {
    let nanos = match raw
        .metadata
        .get("created")
        .and_then(|t| t.parse::<i128>().ok())
    {
        Some(ticks) => ticks.checked_mul(100)?,
        None => i128::from(raw.created.timestamp_nanos_opt()?),
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

fn decode(raw: &kurrentdb::RecordedEvent) -> Result<RecordedEvent, Error> {
    let position = from_kurrent(raw.position);
    let stream = raw.stream_id();
    let corrupt = |what: &str| {
        Error::Corrupt(format!(
            "event {stream}@{} at position {position}: {what}",
            raw.revision
        ))
    };
    let envelope: Envelope =
        serde_json::from_slice(&raw.custom_metadata).map_err(|_| corrupt("bad metadata"))?;
    let data = String::from_utf8(raw.data.to_vec()).map_err(|_| corrupt("bad data"))?;
    Ok(RecordedEvent {
        id: raw.id,
        stream: stream.to_owned(),
        revision: raw.revision,
        position,
        event_type: raw.event_type.clone(),
        data: crate::EventData::from_text(data),
        metadata: envelope.metadata,
        subject: envelope.subject,
        recorded_at: recorded_at(raw).ok_or_else(|| corrupt("bad timestamp"))?,
    })
}

fn unsupported(what: &str) -> Error {
    Error::Backend(format!(
        "{what} the hash chain is not supported on KurrentDB: the server's own log is immutable \
         (events cannot be changed or removed in place), so there is no chain to keep"
    ))
}

#[async_trait]
impl EventLog for KurrentLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        validate_append(stream, &events)?;
        let state = match expected {
            ExpectedRevision::Any => StreamState::Any,
            ExpectedRevision::NoStream => StreamState::NoStream,
            ExpectedRevision::StreamExists => StreamState::StreamExists,
            ExpectedRevision::Exact(n) => StreamState::StreamRevision(n),
        };
        let last_id = events.last().map(|e| e.id);
        let data = events
            .iter()
            .map(to_event_data)
            .collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().stream_state(state);
        let written = match self.client.append_to_stream(stream, &options, data).await {
            Ok(w) => w,
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                return Err(Error::WrongExpectedRevision {
                    stream: stream.to_owned(),
                    expected,
                    actual: match current {
                        CurrentRevision::Current(r) => Some(r),
                        CurrentRevision::NoStream => None,
                    },
                });
            }
            Err(e) => return Err(e.into()),
        };
        let revision = written.next_expected_version;
        let position = if written.position == kurrentdb::Position::start() {
            // The server answers an idempotent retry without a position
            // (the client turns "no position" into the start).
            match last_id {
                Some(id) => self.position_of(stream, revision, id).await?,
                None => Position::START,
            }
        } else {
            // For a multi-event append the server reports the transaction
            // (first event) and the last event's log position; on `$all` the
            // last event sits at (its log position, its log position).
            let last = written.position.commit.max(written.position.prepare);
            self.wake.send_modify(|n| *n = n.wrapping_add(1));
            Position::new(last, last)
        };
        Ok(AppendResult {
            next_expected_revision: revision,
            position,
        })
    }

    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // `position` sets the direction for `Start`/`End`, so it goes first.
        let options = match (direction, from) {
            (Direction::Forwards, from) => ReadStreamOptions::default()
                .position(from.map_or(StreamPosition::Start, StreamPosition::Position))
                .forwards(),
            (Direction::Backwards, None) => {
                ReadStreamOptions::default().position(StreamPosition::End)
            }
            (Direction::Backwards, Some(from)) => {
                // The server reads backwards over the revisions
                // `from - limit + 1 ..= from`, which misses events when
                // `from` lies beyond the end: start at the last event then.
                let last = ReadStreamOptions::default()
                    .position(StreamPosition::End)
                    .max_count(1);
                let Some(last) = self.read_raw(stream, &last).await?.pop() else {
                    return Ok(Vec::new());
                };
                ReadStreamOptions::default()
                    .position(StreamPosition::Position(from.min(last.revision)))
                    .backwards()
            }
        }
        .max_count(limit);
        self.read_raw(stream, &options)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn read_all(
        &self,
        after: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let page = limit.saturating_add(1).clamp(MIN_PAGE, SCAN_PAGE);
        self.scan(after, Some(server_filter(filter)), page, |raw| {
            if filter.matches(raw.stream_id(), &raw.event_type) {
                out.push(decode(raw)?);
            }
            Ok(out.len() < limit)
        })
        .await?;
        Ok(out)
    }

    /// KurrentDB has no subject index: this scans the whole of `$all` and
    /// keeps the events whose envelope names `subject`. Acceptable for now.
    async fn read_subject(&self, subject: &str) -> Result<Vec<RecordedEvent>, Error> {
        let mut out = Vec::new();
        let exclude_system = SubscriptionFilter::on_event_type().exclude_system_events();
        self.scan(Position::START, Some(exclude_system), SCAN_PAGE, |raw| {
            // Events this adapter did not write have no envelope: not ours.
            let theirs = serde_json::from_slice::<SubjectOnly>(&raw.custom_metadata)
                .ok()
                .and_then(|s| s.subject);
            if theirs.as_deref() == Some(subject) {
                out.push(decode(raw)?);
            }
            Ok(true)
        })
        .await?;
        Ok(out)
    }

    async fn head(&self) -> Result<Option<Position>, Error> {
        last_user_position(&self.client).await
    }

    /// Counts by reading `$all` forwards from `after`: O(n) in the events
    /// after it.
    async fn count_after(&self, after: Position) -> Result<u64, Error> {
        let mut n = 0u64;
        let exclude_system = SubscriptionFilter::on_event_type().exclude_system_events();
        self.scan(after, Some(exclude_system), SCAN_PAGE, |_| {
            n += 1;
            Ok(true)
        })
        .await?;
        Ok(n)
    }

    async fn seal(&self) -> Result<Option<crate::chain::Anchor>, Error> {
        Err(unsupported("sealing"))
    }

    async fn verify(
        &self,
        _progress: &(dyn Fn(u64) + Sync),
    ) -> Result<crate::verify::VerifyReport, Error> {
        Err(unsupported("verifying"))
    }

    /// KurrentDB deletes the stream itself (a soft delete: the name can be
    /// appended to again); it keeps no anchors of ours to account for.
    async fn drop_stream(&self, stream: &str) -> Result<u64, Error> {
        let present = self
            .read_stream(stream, Direction::Backwards, None, 1)
            .await?
            .first()
            .map_or(0, |e| e.revision + 1);
        if present == 0 {
            return Ok(0);
        }
        self.client
            .delete_stream(stream, &kurrentdb::DeleteStreamOptions::default())
            .await
            .map_err(|e| Error::Backend(format!("kurrentdb: {e}")))?;
        Ok(present)
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.clone()
    }

    /// Counting reads every event after the position.
    fn counts_cheaply(&self) -> bool {
        false
    }

    fn backend(&self) -> &'static str {
        "kurrentdb"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Actor;

    #[test]
    fn the_envelope_round_trips() {
        let metadata = Metadata::system(uuid::Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH);
        let json = serde_json::to_vec(&EnvelopeRef {
            metadata: &metadata,
            subject: Some("user-1"),
        })
        .unwrap();
        let back: Envelope = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.metadata, metadata);
        assert_eq!(back.subject.as_deref(), Some("user-1"));
        let only: SubjectOnly = serde_json::from_slice(&json).unwrap();
        assert_eq!(only.subject.as_deref(), Some("user-1"));

        let mut m = metadata.clone();
        m.actor = Actor::user("u");
        let json = serde_json::to_vec(&EnvelopeRef {
            metadata: &m,
            subject: None,
        })
        .unwrap();
        let back: Envelope = serde_json::from_slice(&json).unwrap();
        assert_eq!((back.metadata, back.subject), (m, None));
    }

    #[tokio::test]
    async fn a_bad_connection_string_is_refused_without_echoing_it() {
        match KurrentLog::connect("esdb://admin:s3cret@localhost:2113?tls=perhaps").await {
            Err(Error::UnsupportedUrl(msg)) => assert!(!msg.contains("s3cret"), "{msg}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("connected with a bad connection string"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error() {
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            KurrentLog::connect("esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=2"),
        )
        .await
        .expect("connect gives up");
        assert!(matches!(r, Err(Error::Backend(_))));
    }
}
