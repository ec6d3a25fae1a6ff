use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Error;
use crate::port::EventLog;
use crate::types::{Filter, Position, RecordedEvent};

/// How long a caught-up subscription waits for a wake-up before it looks at
/// the log anyway (a safety net for lost notifications, not the live path).
const IDLE_RECHECK: Duration = Duration::from_millis(200);

/// A catch-up subscription to the whole log: history from a position, then
/// live events, with no gap and no duplicate at the switch.
///
/// History and live delivery are the same loop: read strictly after the last
/// delivered position; when a read comes back empty, wait for the log's
/// wake-up counter. The counter is looked at before each read, so a commit
/// that lands between the read and the wait is never missed.
///
/// A filtered subscription also remembers how far the log has been scanned,
/// not only the last event it matched: otherwise every read would scan again
/// all the unmatched events written since that match (the per-token journal
/// between two client changes, say), and grow slower as the log grows.
pub struct Subscription {
    log: Arc<dyn EventLog>,
    filter: Filter,
    after: Position,
    /// Where the next read starts: at or after the last buffered event.
    scanned: Position,
    batch: usize,
    buffer: VecDeque<RecordedEvent>,
    wakeups: watch::Receiver<u64>,
}

impl Subscription {
    pub fn new(log: Arc<dyn EventLog>, after: Position, filter: Filter, batch: usize) -> Self {
        let wakeups = log.wakeups();
        Self {
            log,
            filter,
            after,
            scanned: after,
            batch: batch.max(1),
            buffer: VecDeque::new(),
            wakeups,
        }
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> Position {
        self.after
    }

    /// The next event, waiting for one if the subscription has caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent, Error> {
        loop {
            if let Some(e) = self.buffer.pop_front() {
                self.after = e.position;
                return Ok(e);
            }
            self.fill().await?;
        }
    }

    /// Up to `batch` events that are readable now, waiting only when none is.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, Error> {
        if self.buffer.is_empty() {
            self.fill().await?;
        }
        let batch: Vec<RecordedEvent> = self.buffer.drain(..).collect();
        if let Some(last) = batch.last() {
            self.after = last.position;
        }
        Ok(batch)
    }

    /// Like [`Self::next_batch`] but gives up after `timeout` with an empty batch.
    pub async fn next_batch_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<RecordedEvent>, Error> {
        match tokio::time::timeout(timeout, self.next_batch()).await {
            Ok(r) => r,
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Reads the next page; if there is none, waits for a wake-up and tries
    /// again, until something arrives.
    async fn fill(&mut self) -> Result<(), Error> {
        loop {
            self.wakeups.borrow_and_update();
            // The head before the read: a page that is not full holds every
            // matching event up to it, so the next read may start there.
            let head = if self.filter.is_all() {
                None
            } else {
                self.log.head().await?
            };
            let page = self
                .log
                .read_all(self.scanned, &self.filter, self.batch)
                .await?;
            if let Some(last) = page.last() {
                self.scanned = last.position;
            }
            if page.len() < self.batch
                && let Some(head) = head
            {
                self.scanned = self.scanned.max(head);
            }
            if !page.is_empty() {
                self.buffer.extend(page);
                return Ok(());
            }
            match tokio::time::timeout(IDLE_RECHECK, self.wakeups.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => return Err(Error::Closed),
            }
        }
    }
}
