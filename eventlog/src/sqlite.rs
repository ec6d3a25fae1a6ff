//! The embedded default: the log in one SQLite file (WAL).
//!
//! SQLite has one writer at a time, so every append goes through one writer
//! thread that takes whatever appends are waiting and commits them in one
//! transaction (group commit), each inside its own savepoint so that one
//! refused append never touches another. Positions are rowids assigned by
//! that writer, hence in commit order. Readers use their own connections.
//!
//! Tamper evidence (see [`crate::chain`]): the writer links each event to
//! its stream's previous one as it inserts it, and seals (anchors) the log
//! itself every `seal_every` events and within [`crate::chain::SEAL_WITHIN`]
//! of an append, a few blocks at a time between group commits (`tamper.rs`).
//!
//! Durability: `synchronous=NORMAL` (the default here) keeps every
//! acknowledged append across a crash of the process; `synchronous=full`
//! in the URL keeps it across a power loss too.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::chain::{self, Anchor, ChainInput, DEFAULT_SEAL_EVERY, GENESIS, Link};
use crate::clock::Clock;
use crate::data::EventData;
use crate::error::Error;
use crate::port::{Direction, EventLog};
use crate::types::{
    AppendResult, ExpectedRevision, Filter, NewEvent, Position, RecordedEvent, category_of,
    events_written, validate_append,
};
use crate::verify::VerifyReport;

const SCHEMA: &str = include_str!("../../migrations/eventlog/sqlite.sql");
/// The most appends one group commit takes.
const MAX_GROUP: usize = 1024;
/// A read of the whole log that starts at least this many positions
/// behind the last commit is a scan (see `readers`): rebuilds, replays,
/// subscriptions catching up from far back. Reads at the tail are not.
const SCAN_DISTANCE: u64 = 256;
/// The most blocks one automatic seal writes before the writer takes the
/// next appends (a log from before chains is backfilled a slice at a time).
const AUTO_SEAL_BLOCKS: usize = 4;

mod readers;
mod tamper;

use readers::{Access, Readers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    Normal,
    Full,
}

struct AppendRequest {
    stream: String,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendResult, Error>>,
}

/// What the writer thread does.
enum Request {
    Append(AppendRequest),
    Seal(oneshot::Sender<Result<Option<Anchor>, Error>>),
    Drop(String, oneshot::Sender<Result<u64, Error>>),
}

pub struct SqliteLog {
    writer: mpsc::Sender<Request>,
    readers: Readers,
    /// The position of the last event committed (0: none), kept by the
    /// writer.
    last: Arc<AtomicU64>,
    wakeups: watch::Receiver<u64>,
}

impl SqliteLog {
    /// Opens (creating if needed) the log in the file at `path`. The writer
    /// seals every `seal_every` events (0: only when asked).
    pub fn open(
        path: impl AsRef<Path>,
        sync: Synchronous,
        seal_every: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Backend(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match sync {
                Synchronous::Normal => "NORMAL",
                Synchronous::Full => "FULL",
            },
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        let has_chain = conn
            .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'chain'")?
            .exists([])?;
        if !has_chain {
            conn.execute_batch("ALTER TABLE events ADD COLUMN chain TEXT")?;
        }

        let last: i64 =
            conn.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
                r.get(0)
            })?;
        let last = Arc::new(AtomicU64::new(last.max(0) as u64));
        let (wake_tx, wakeups) = watch::channel(0u64);
        let (tx, rx) = mpsc::channel::<Request>();
        let written = Arc::clone(&last);
        std::thread::Builder::new()
            .name("eventlog-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, wake_tx, &written, seal_every, &*clock))
            .map_err(|e| Error::Backend(format!("starting the writer thread: {e}")))?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            writer: tx,
            readers: Readers::start(&path, (2 * threads).clamp(4, 16))?,
            last,
            wakeups,
        })
    }
}

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Request>,
    wake: watch::Sender<u64>,
    last: &AtomicU64,
    seal_every: u64,
    clock: &dyn Clock,
) {
    let block = if seal_every == 0 {
        DEFAULT_SEAL_EVERY
    } else {
        seal_every
    };
    let mut group = Vec::with_capacity(64);
    let mut seals = Vec::new();
    let mut drops = Vec::new();
    let mut unsealed = tamper::Unsealed::default();
    loop {
        // Wait for work, or until the unsealed events are due for a seal.
        let mut next = match unsealed.deadline(seal_every) {
            None => match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => break,
            },
            Some(at) => {
                match rx.recv_timeout(at.saturating_duration_since(crate::clock::monotonic())) {
                    Ok(r) => Some(r),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        while let Some(r) = next.take() {
            match r {
                Request::Append(a) => group.push(a),
                Request::Seal(reply) => seals.push(reply),
                Request::Drop(stream, reply) => drops.push((stream, reply)),
            }
            if group.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if !group.is_empty() {
            let outcomes = commit_group(&mut conn, &group, clock.now());
            // Subscribers are woken before any writer hears back, so that
            // whoever learns of an append finds the wake-up already counted.
            let written = outcomes.as_ref().map_or(0, |results| {
                events_written(group.iter().map(|a| a.events.len()), results)
            });
            if let Ok(results) = &outcomes
                && let Some(end) = results.iter().flatten().map(|r| r.position.commit).max()
            {
                last.fetch_max(end, Ordering::Release);
            }
            if written > 0 {
                wake.send_modify(|n| *n = n.wrapping_add(1));
                unsealed.add(written);
            }
            match outcomes {
                Ok(results) => {
                    for (req, result) in group.drain(..).zip(results) {
                        let _ = req.reply.send(result);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "event log group commit failed");
                    for req in group.drain(..) {
                        let _ = req.reply.send(Err(Error::Backend(e.to_string())));
                    }
                }
            }
        }
        for reply in seals.drain(..) {
            let result = tamper::seal(&mut conn, block, None, clock).map(|(anchor, _)| anchor);
            if result.is_ok() {
                unsealed = tamper::Unsealed::default();
            }
            let _ = reply.send(result);
        }
        for (stream, reply) in drops.drain(..) {
            let result = tamper::drop_stream(&mut conn, &stream, block, clock);
            if result.is_ok() {
                unsealed = tamper::Unsealed::default();
            }
            let _ = reply.send(result);
        }
        if unsealed.due(seal_every) {
            match tamper::seal(&mut conn, block, Some(AUTO_SEAL_BLOCKS), clock) {
                // Not caught up: stay due, so the next round seals on.
                Ok((_, false)) => {}
                Ok((_, true)) => unsealed = tamper::Unsealed::default(),
                Err(e) => {
                    tracing::warn!(error = %e, "sealing the event log failed; retrying later");
                    unsealed = tamper::Unsealed::default();
                }
            }
        }
    }
    // Closing: anchor what was appended since the last seal.
    if seal_every > 0
        && unsealed.events > 0
        && let Err(e) = tamper::seal(&mut conn, block, None, clock)
    {
        tracing::warn!(error = %e, "sealing the event log at close failed");
    }
}

/// One transaction for the whole group; a savepoint per append.
fn commit_group(
    conn: &mut Connection,
    group: &[AppendRequest],
    recorded_at: OffsetDateTime,
) -> Result<Vec<Result<AppendResult, Error>>, Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = unix_micros(recorded_at);
    let mut results = Vec::with_capacity(group.len());
    for req in group {
        tx.execute_batch("SAVEPOINT append")?;
        let r = append_one(&tx, req, now);
        if r.is_err() {
            tx.execute_batch("ROLLBACK TO append")?;
        }
        tx.execute_batch("RELEASE append")?;
        results.push(r);
    }
    tx.commit()?;
    Ok(results)
}

fn append_one(conn: &Connection, req: &AppendRequest, now: i64) -> Result<AppendResult, Error> {
    let head: Option<(i64, Option<String>)> = conn
        .prepare_cached(
            "SELECT revision, chain FROM events WHERE stream = ?1 ORDER BY revision DESC LIMIT 1",
        )?
        .query_row([&req.stream], |r| Ok((r.get(0)?, r.get(1).ok().flatten())))
        .optional()?;
    let current = head.as_ref().map(|(r, _)| *r as u64);
    // The link to continue from; none while the head awaits its link from
    // `seal` (a log from before chains), and then this append waits too.
    let mut link: Option<Link> = match &head {
        None => Some(GENESIS),
        Some((_, chain)) => chain.as_deref().and_then(chain::from_hex),
    };

    if let Some(done) = already_appended(conn, &req.stream, &req.events)? {
        return Ok(done);
    }
    if !req.expected.accepts(current) {
        return Err(Error::WrongExpectedRevision {
            stream: req.stream.clone(),
            expected: req.expected,
            actual: current,
        });
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO events (event_id, stream, revision, category, event_type, subject, data, metadata, recorded_at, chain)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let category = category_of(&req.stream);
    let mut revision = current.map_or(0, |c| c + 1);
    let mut position = 0i64;
    for e in &req.events {
        let metadata = serde_json::to_string(&e.metadata)
            .map_err(|err| Error::InvalidAppend(err.to_string()))?;
        let data = e.data.to_string();
        link = link.map(|prev| {
            chain::link(
                &prev,
                &ChainInput {
                    stream: &req.stream,
                    revision,
                    id: e.id,
                    event_type: &e.event_type,
                    subject: e.subject.as_deref(),
                    data: &data,
                    metadata: &metadata,
                    recorded_at: now,
                },
            )
        });
        let r = insert.execute(params![
            e.id.as_bytes().as_slice(),
            req.stream,
            revision as i64,
            category,
            e.event_type,
            e.subject,
            data,
            metadata,
            now,
            link.as_ref().map(chain::to_hex),
        ]);
        match r {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(Error::DuplicateEventId(e.id));
            }
            Err(other) => return Err(other.into()),
        }
        position = conn.last_insert_rowid();
        revision += 1;
    }
    Ok(AppendResult {
        next_expected_revision: revision - 1,
        position: Position::new(position as u64, position as u64),
    })
}

/// If the append's events are already stored, in this stream, one after the
/// other, the append is a retry of one that succeeded: return its result. If
/// the first id is stored anywhere else, the append is refused.
fn already_appended(
    conn: &Connection,
    stream: &str,
    events: &[NewEvent],
) -> Result<Option<AppendResult>, Error> {
    let mut find =
        conn.prepare_cached("SELECT stream, revision, position FROM events WHERE event_id = ?1")?;
    let mut lookup = |id: &Uuid| -> Result<Option<(String, i64, i64)>, Error> {
        Ok(find
            .query_row([id.as_bytes().as_slice()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?)
    };
    let Some(first) = events.first() else {
        return Ok(None);
    };
    let Some((s, first_rev, _)) = lookup(&first.id)? else {
        return Ok(None);
    };
    if s != stream {
        return Err(Error::DuplicateEventId(first.id));
    }
    let mut last = None;
    for (i, e) in events.iter().enumerate() {
        match lookup(&e.id)? {
            Some((s2, rev, pos)) if s2 == stream && rev == first_rev + i as i64 => {
                last = Some((rev, pos));
            }
            _ => return Err(Error::DuplicateEventId(e.id)),
        }
    }
    Ok(last.map(|(rev, pos)| AppendResult {
        next_expected_revision: rev as u64,
        position: Position::new(pos as u64, pos as u64),
    }))
}

fn unix_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

const COLUMNS: &str =
    "position, event_id, stream, revision, event_type, subject, data, metadata, recorded_at";

fn row_to_event(row: &Row<'_>) -> rusqlite::Result<Result<RecordedEvent, Error>> {
    let position: i64 = row.get(0)?;
    let id: Vec<u8> = row.get(1)?;
    let data: String = row.get(6)?;
    let metadata: String = row.get(7)?;
    let micros: i64 = row.get(8)?;
    let stream: String = row.get(2)?;
    let revision: i64 = row.get(3)?;
    let event_type: String = row.get(4)?;
    let subject: Option<String> = row.get(5)?;
    Ok((|| {
        let corrupt = |what: &str| Error::Corrupt(format!("event at position {position}: {what}"));
        Ok(RecordedEvent {
            id: Uuid::from_slice(&id).map_err(|_| corrupt("bad event id"))?,
            stream,
            revision: revision as u64,
            position: Position::new(position as u64, position as u64),
            event_type,
            data: EventData::from_text(data),
            metadata: serde_json::from_str(&metadata).map_err(|_| corrupt("bad metadata"))?,
            subject,
            recorded_at: OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000)
                .map_err(|_| corrupt("bad timestamp"))?,
        })
    })())
}

fn collect(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<RecordedEvent>, Error> {
    let rows = stmt.query_map(params, row_to_event)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

/// The WHERE clause of a filtered read; parameters from ?2 on.
fn filter_sql(filter: &Filter) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut params = Vec::new();
    if !filter.categories.is_empty() {
        let marks: Vec<String> = filter
            .categories
            .iter()
            .map(|c| {
                params.push(c.clone());
                format!("?{}", params.len() + 1)
            })
            .collect();
        sql.push_str(&format!(" AND category IN ({})", marks.join(", ")));
    }
    if !filter.type_prefixes.is_empty() {
        let likes: Vec<String> = filter
            .type_prefixes
            .iter()
            .map(|p| {
                params.push(format!("{}%", escape_like(p)));
                format!("event_type LIKE ?{} ESCAPE '\\'", params.len() + 1)
            })
            .collect();
        sql.push_str(&format!(" AND ({})", likes.join(" OR ")));
    }
    (sql, params)
}

pub(crate) fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        validate_append(stream, &events)?;
        let (reply, rx) = oneshot::channel();
        let req = AppendRequest {
            stream: stream.to_owned(),
            expected,
            events,
            reply,
        };
        self.writer
            .send(Request::Append(req))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn seal(&self) -> Result<Option<Anchor>, Error> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Request::Seal(reply))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn drop_stream(&self, stream: &str) -> Result<u64, Error> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Request::Drop(stream.to_owned(), reply))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn verify(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<VerifyReport, Error> {
        // The check runs on a reader thread; its progress comes back here.
        let (tx, mut rx) = watch::channel(0u64);
        let check = self.readers.run(Access::Scan, move |c| {
            tamper::verify(c, &|n| {
                let _ = tx.send(n);
            })
        });
        tokio::pin!(check);
        let mut told = 0;
        let report = loop {
            tokio::select! {
                report = &mut check => break report,
                changed = rx.changed() => match changed {
                    Ok(()) => {
                        told = *rx.borrow_and_update();
                        progress(told);
                    }
                    Err(_) => break check.await,
                },
            }
        };
        let last = *rx.borrow();
        if last != told {
            progress(last);
        }
        report
    }

    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let stream = stream.to_owned();
        // The limit is written into the statement, not bound: SQLite plans
        // an ORDER BY with a LIMIT by the limit's value, so a statement
        // with a bound limit is compiled again on every run.
        let limit = limit.min(i64::MAX as usize);
        self.readers.run(Access::Point, move |c| match direction {
            Direction::Forwards => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE stream = ?1 AND revision >= ?2 ORDER BY revision LIMIT {limit}"
                );
                collect(
                    &mut c.prepare_cached(&sql)?,
                    params![stream, from.unwrap_or(0) as i64],
                )
            }
            Direction::Backwards => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE stream = ?1 AND revision <= ?2 ORDER BY revision DESC LIMIT {limit}"
                );
                let from = from.map_or(i64::MAX, |f| f.min(i64::MAX as u64) as i64);
                collect(&mut c.prepare_cached(&sql)?, params![stream, from])
            }
        })
        .await
    }

    async fn read_all(
        &self,
        after: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let (clause, fparams) = filter_sql(filter);
        let behind = self
            .last
            .load(Ordering::Acquire)
            .saturating_sub(after.commit);
        let access = if behind >= SCAN_DISTANCE {
            Access::Scan
        } else {
            Access::Point
        };
        self.readers.run(access, move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE position > ?1{clause} ORDER BY position LIMIT {}",
                limit.min(i64::MAX as usize)
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let mut values: Vec<rusqlite::types::Value> =
                vec![rusqlite::types::Value::Integer(after.commit.min(i64::MAX as u64) as i64)];
            values.extend(fparams.into_iter().map(rusqlite::types::Value::Text));
            collect(&mut stmt, rusqlite::params_from_iter(values))
        })
        .await
    }

    async fn read_subject(&self, subject: &str) -> Result<Vec<RecordedEvent>, Error> {
        let subject = subject.to_owned();
        self.readers
            .run(Access::Point, move |c| {
                let sql =
                    format!("SELECT {COLUMNS} FROM events WHERE subject = ?1 ORDER BY position");
                collect(&mut c.prepare_cached(&sql)?, [subject])
            })
            .await
    }

    async fn head(&self) -> Result<Option<Position>, Error> {
        self.readers
            .run(Access::Point, |c| {
                let p: Option<i64> = c
                    .prepare_cached("SELECT max(position) FROM events")?
                    .query_row([], |r| r.get(0))?;
                Ok(p.map(|p| Position::new(p as u64, p as u64)))
            })
            .await
    }

    async fn count_after(&self, after: Position) -> Result<u64, Error> {
        self.readers
            .run(Access::Point, move |c| {
                let n: i64 = c
                    .prepare_cached("SELECT count(*) FROM events WHERE position > ?1")?
                    .query_row([after.commit.min(i64::MAX as u64) as i64], |r| r.get(0))?;
                Ok(n as u64)
            })
            .await
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.clone()
    }

    fn counts_cheaply(&self) -> bool {
        true
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
