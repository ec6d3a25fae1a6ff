//! A read-only handle on the log: what the query side and the HTTP edge are
//! given, so that appending stays the command side's (which holds the log
//! itself, behind the command bus).

use std::sync::Arc;

use crate::error::Error;
use crate::port::{Direction, EventLog};
use crate::types::{Filter, Position, RecordedEvent};

/// The log, for reading only.
#[derive(Clone)]
pub struct LogReader(Arc<dyn EventLog>);

impl LogReader {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        Self(log)
    }

    /// See [`EventLog::read_stream`].
    pub async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        self.0.read_stream(stream, direction, from, limit).await
    }

    /// See [`EventLog::read_all`].
    pub async fn read_all(
        &self,
        after: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        self.0.read_all(after, filter, limit).await
    }

    /// See [`EventLog::read_subject`].
    pub async fn read_subject(&self, subject: &str) -> Result<Vec<RecordedEvent>, Error> {
        self.0.read_subject(subject).await
    }

    /// See [`EventLog::head`].
    pub async fn head(&self) -> Result<Option<Position>, Error> {
        self.0.head().await
    }

    /// See [`EventLog::count_after`].
    pub async fn count_after(&self, after: Position) -> Result<u64, Error> {
        self.0.count_after(after).await
    }

    /// See [`EventLog::counts_cheaply`].
    pub fn counts_cheaply(&self) -> bool {
        self.0.counts_cheaply()
    }

    /// The adapter's name (`sqlite`, `postgres`, `kurrentdb`).
    pub fn backend(&self) -> &'static str {
        self.0.backend()
    }
}
