//! One read of the log's tail shared by every subscription that follows
//! the whole log: [`SharedTail`] keeps the latest events read in memory, so
//! that when a commit wakes the projections the first of them reads the
//! new events and the others take the same ones, instead of each crossing
//! to the store for them (and each reading again to learn that nothing
//! more came).
//!
//! Only whole-log reads (`Filter::all()`) at or near the tail are served
//! from memory (the latest [`KEPT`] events, at most about [`KEPT_BYTES`]
//! of their data); every other read goes to the log. The events kept are a
//! contiguous run: every event strictly after `from` up to the last one,
//! as one read answered it (a log never later shows an event below a
//! position it has shown, see [`crate::Position`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::chain::Anchor;
use crate::clock::monotonic;
use crate::error::Error;
use crate::port::{Direction, EventLog};
use crate::types::{AppendResult, ExpectedRevision, Filter, NewEvent, Position, RecordedEvent};
use crate::verify::VerifyReport;

/// The most events kept, and about the most bytes of their data.
const KEPT: usize = 4096;
const KEPT_BYTES: usize = 32 << 20;

/// About how much memory an event's data holds: its text, or a guess for
/// a parsed tree (measuring one would cost a serialization).
fn weight(e: &RecordedEvent) -> usize {
    match e.data.stored() {
        crate::data::Stored::Text(t) => t.len(),
        crate::data::Stored::Tree(_) => 4096,
    }
}

/// How long an answer "nothing after the last event kept" stands without a
/// new read, if no wake-up came since the read that found the end. (A
/// wake-up is the live path; this bounds a read that a notification never
/// announces, as an older transaction finishing on PostgreSQL.)
const FRESH_FOR: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Kept {
    /// The events strictly after this position up to the last one, none
    /// missing; `None` before the first read.
    from: Option<Position>,
    events: VecDeque<RecordedEvent>,
    /// The [`weight`] of the events kept.
    bytes: usize,
    /// The wake-up count seen before the read that last reached the end of
    /// the log, and when that read began.
    reached_end: Option<(u64, Instant)>,
}

impl Kept {
    fn end(&self) -> Option<Position> {
        self.events.back().map(|e| e.position).or(self.from)
    }

    /// What memory answers for a read strictly after `after`: up to `limit`
    /// kept events, or none if the last read found nothing more and no
    /// wake-up has come since; `None` when only the log can answer.
    fn serve(&self, after: Position, limit: usize, wakeups: u64) -> Option<Vec<RecordedEvent>> {
        let (from, end) = (self.from?, self.end()?);
        if after < from || after > end {
            return None;
        }
        if after == end {
            return match self.reached_end {
                Some((seen, at))
                    if seen == wakeups && monotonic().saturating_duration_since(at) < FRESH_FOR =>
                {
                    Some(Vec::new())
                }
                _ => None,
            };
        }
        let start = self.events.partition_point(|e| e.position <= after);
        Some(self.events.range(start..).take(limit).cloned().collect())
    }

    /// Keeps what a read strictly after `after` answered, if it continues
    /// the run (or starts one past it).
    fn keep(
        &mut self,
        after: Position,
        page: &[RecordedEvent],
        limit: usize,
        seen: (u64, Instant),
    ) {
        match self.end() {
            Some(end) if end == after => {}
            Some(end) if after < end => return,
            _ => {
                self.from = Some(after);
                self.events.clear();
                self.bytes = 0;
            }
        }
        self.bytes += page.iter().map(weight).sum::<usize>();
        self.events.extend(page.iter().cloned());
        while self.events.len() > KEPT || (self.bytes > KEPT_BYTES && self.events.len() > 1) {
            if let Some(dropped) = self.events.pop_front() {
                self.bytes -= weight(&dropped);
                self.from = Some(dropped.position);
            }
        }
        self.reached_end = (page.len() < limit).then_some(seen);
    }
}

/// A log whose whole-log reads near the tail are shared (see the module).
pub struct SharedTail {
    log: Arc<dyn EventLog>,
    kept: Mutex<Kept>,
    /// Held while reading the tail, so that readers arriving meanwhile wait
    /// for that read instead of making their own.
    reading: tokio::sync::Mutex<()>,
    wakeups: watch::Receiver<u64>,
}

impl SharedTail {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        let wakeups = log.wakeups();
        Self {
            log,
            kept: Mutex::new(Kept::default()),
            reading: tokio::sync::Mutex::new(()),
            wakeups,
        }
    }

    fn serve(&self, after: Position, limit: usize) -> Result<Option<Vec<RecordedEvent>>, Error> {
        let count = *self.wakeups.borrow();
        let kept = self.kept.lock().map_err(|_| Error::Closed)?;
        Ok(kept.serve(after, limit, count))
    }

    /// Whether a read after `after` is behind the events kept (a projection
    /// catching up): it goes to the log without waiting for the tail.
    fn behind(&self, after: Position) -> Result<bool, Error> {
        let kept = self.kept.lock().map_err(|_| Error::Closed)?;
        Ok(kept.from.is_some_and(|from| after < from))
    }
}

#[async_trait]
impl EventLog for SharedTail {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        self.log.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        self.log.read_stream(stream, direction, from, limit).await
    }

    async fn read_all(
        &self,
        after: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        if !filter.is_all() || limit == 0 || self.behind(after)? {
            return self.log.read_all(after, filter, limit).await;
        }
        if let Some(events) = self.serve(after, limit)? {
            return Ok(events);
        }
        let _reading = self.reading.lock().await;
        if let Some(events) = self.serve(after, limit)? {
            return Ok(events);
        }
        let seen = (*self.wakeups.borrow(), monotonic());
        let page = self.log.read_all(after, filter, limit).await?;
        self.kept
            .lock()
            .map_err(|_| Error::Closed)?
            .keep(after, &page, limit, seen);
        Ok(page)
    }

    async fn read_subject(&self, subject: &str) -> Result<Vec<RecordedEvent>, Error> {
        self.log.read_subject(subject).await
    }

    async fn head(&self) -> Result<Option<Position>, Error> {
        self.log.head().await
    }

    async fn count_after(&self, after: Position) -> Result<u64, Error> {
        self.log.count_after(after).await
    }

    fn counts_cheaply(&self) -> bool {
        self.log.counts_cheaply()
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.log.wakeups()
    }

    async fn seal(&self) -> Result<Option<Anchor>, Error> {
        self.log.seal().await
    }

    async fn verify(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<VerifyReport, Error> {
        self.log.verify(progress).await
    }

    async fn drop_stream(&self, stream: &str) -> Result<u64, Error> {
        self.log.drop_stream(stream).await
    }

    fn backend(&self) -> &'static str {
        self.log.backend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::sqlite::{SqliteLog, Synchronous};

    /// `n` events whose data is `{"text": text}`.
    fn events(n: usize, text: &str) -> Vec<NewEvent> {
        let at = time::macros::datetime!(2026-12-01 12:00 UTC);
        (0..n)
            .map(|_| {
                let meta = domain::Metadata::system(uuid::Uuid::now_v7(), at);
                NewEvent::new(
                    "thing.happened.v1",
                    serde_json::json!({ "text": text }),
                    meta,
                )
            })
            .collect()
    }

    fn positions(events: &[RecordedEvent]) -> Vec<Position> {
        events.iter().map(|e| e.position).collect()
    }

    fn kept(tail: &SharedTail) -> (Option<Position>, usize) {
        let kept = tail.kept.lock().unwrap();
        (kept.from, kept.events.len())
    }

    #[tokio::test]
    async fn whole_log_reads_at_the_tail_are_shared_and_never_stale() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            SqliteLog::open(
                dir.path().join("log.db"),
                Synchronous::Normal,
                0,
                Arc::new(ManualClock::new(
                    time::macros::datetime!(2026-12-01 12:00 UTC),
                )),
            )
            .unwrap(),
        );
        let tail = SharedTail::new(Arc::clone(&log));
        let all = Filter::all();
        log.append("thing-1", ExpectedRevision::Any, events(10, ""))
            .await
            .unwrap();

        // Two reads that continue each other keep one run of ten events.
        let first = tail.read_all(Position::START, &all, 4).await.unwrap();
        let direct = log.read_all(Position::START, &all, 4).await.unwrap();
        assert_eq!(positions(&first), positions(&direct));
        let rest = tail.read_all(first[3].position, &all, 100).await.unwrap();
        assert_eq!(rest.len(), 6);
        assert_eq!(kept(&tail), (Some(Position::START), 10));
        // A read inside the run is answered from it, as the log would.
        let middle = tail.read_all(first[1].position, &all, 3).await.unwrap();
        let direct = log.read_all(first[1].position, &all, 3).await.unwrap();
        assert_eq!(positions(&middle), positions(&direct));
        assert_eq!(middle[0].data, direct[0].data);

        // At the end: nothing, until an append, which the next read shows.
        let end = rest[5].position;
        assert!(tail.read_all(end, &all, 100).await.unwrap().is_empty());
        log.append("thing-2", ExpectedRevision::Any, events(1, ""))
            .await
            .unwrap();
        let new = tail.read_all(end, &all, 100).await.unwrap();
        assert_eq!(new.len(), 1, "a commit after the last read is never hidden");
        assert_eq!(new[0].stream, "thing-2");

        // A filtered read goes to the log and leaves the run as it was.
        let other = Filter::categories(["thing"]);
        assert_eq!(
            tail.read_all(Position::START, &other, 3)
                .await
                .unwrap()
                .len(),
            3
        );
        assert_eq!(kept(&tail).1, 11);

        // Past the most kept, the oldest leave; a read behind them goes to
        // the log and still answers everything.
        log.append("thing-3", ExpectedRevision::Any, events(KEPT, ""))
            .await
            .unwrap();
        let mut after = new[0].position;
        loop {
            let page = tail.read_all(after, &all, 1000).await.unwrap();
            match page.last() {
                Some(last) => after = last.position,
                None => break,
            }
        }
        let (from, len) = kept(&tail);
        assert_eq!(len, KEPT);
        assert!(from > Some(end));
        let behind = tail.read_all(Position::START, &all, 20).await.unwrap();
        assert_eq!(behind.len(), 20);
        assert_eq!(positions(&behind[..4]), positions(&first));
        assert_eq!(kept(&tail), (from, KEPT));

        // Large events: the run keeps about KEPT_BYTES of their data.
        let big = events(40, &"x".repeat(1 << 20));
        log.append("thing-4", ExpectedRevision::Any, big)
            .await
            .unwrap();
        let mut read = 0;
        loop {
            let page = tail.read_all(after, &all, 10).await.unwrap();
            match page.last() {
                Some(last) => after = last.position,
                None => break,
            }
            read += page.len();
        }
        assert_eq!(read, 40);
        let kept_bytes = tail.kept.lock().unwrap().bytes;
        assert!(kept_bytes <= KEPT_BYTES, "{kept_bytes}");
        assert!(kept(&tail).1 < 40);
    }
}
