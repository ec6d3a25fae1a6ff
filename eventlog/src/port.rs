use async_trait::async_trait;
use tokio::sync::watch;

use crate::chain::Anchor;
use crate::error::Error;
use crate::types::{AppendResult, ExpectedRevision, Filter, NewEvent, Position, RecordedEvent};
use crate::verify::VerifyReport;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

/// The event store port. Every adapter passes the same contract suite
/// (`eventlog/tests/contract.rs`).
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if the stream is where
    /// `expected` says. Re-appending events whose ids are already stored at the
    /// same place in the same stream succeeds and returns the original result.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error>;

    /// Reads up to `limit` events of one stream. Forwards starts at revision
    /// `from` (default 0), backwards at `from` (default: the last event), both
    /// inclusive. A missing stream reads as empty.
    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error>;

    /// Reads up to `limit` events of the whole log strictly after `after`, in
    /// position order, keeping those that pass `filter`.
    async fn read_all(
        &self,
        after: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error>;

    /// Every event about one subject, in position order, through the subject
    /// index (never a scan of the log).
    async fn read_subject(&self, subject: &str) -> Result<Vec<RecordedEvent>, Error>;

    /// The position of the last event a reader can see now, if any.
    async fn head(&self) -> Result<Option<Position>, Error>;

    /// How many events a reader can see strictly after `after`.
    async fn count_after(&self, after: Position) -> Result<u64, Error>;

    /// Whether [`EventLog::count_after`] counts through an index (cheap over
    /// the whole log) rather than by reading each event.
    fn counts_cheaply(&self) -> bool;

    /// A counter bumped whenever new events may be readable: after each local
    /// commit, and on a notification from another process. Subscriptions wait
    /// on it instead of polling.
    fn wakeups(&self) -> watch::Receiver<u64>;

    /// Extends the tamper-evidence anchors (see [`crate::chain`]) over every
    /// event a reader can see now, in blocks of at most `seal_every` events,
    /// first giving a chain link to any event stored before links existed.
    /// Returns once everything readable at the call is anchored, by this call
    /// or a concurrent one: the last anchor this call wrote, if any. The SQL
    /// adapters also seal on their own every `seal_every` events and within
    /// [`crate::chain::SEAL_WITHIN`] of an append, so calling this is only
    /// needed before a check or a backup. Safe to call concurrently, from any
    /// number of processes. (On SQLite it runs on the writer thread: appends
    /// wait while it links a large log from before chains.)
    async fn seal(&self) -> Result<Option<Anchor>, Error>;

    /// Checks every readable event, in one snapshot, against its chain link
    /// and the anchors, and reports the first event changed, removed or
    /// inserted (see [`VerifyReport`]). Reads the whole log twice; calls
    /// `progress` now and then with how many events it has checked. Never
    /// writes.
    async fn verify(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<VerifyReport, Error>;

    /// Drops a whole stream, as a retention rule does: its events are
    /// deleted and only their chain links kept (with the stream's name and
    /// their revisions), so that the anchors still check. Seals first; a
    /// stream with an event no anchor covers even then (appended meanwhile)
    /// is refused with [`Error::NotSealed`] and left whole. Answers how many
    /// events were dropped (0 for a stream that is not there). Appending to
    /// the name later starts a new stream at revision 0.
    async fn drop_stream(&self, stream: &str) -> Result<u64, Error>;

    /// Which adapter this is, for logs and metrics.
    fn backend(&self) -> &'static str;
}
