use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::Error;
use crate::types::{AppendResult, ExpectedRevision, Filter, NewEvent, Position, RecordedEvent};

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

    /// A counter bumped whenever new events may be readable: after each local
    /// commit, and on a notification from another process. Subscriptions wait
    /// on it instead of polling.
    fn wakeups(&self) -> watch::Receiver<u64>;

    /// Which adapter this is, for logs and metrics.
    fn backend(&self) -> &'static str;
}
