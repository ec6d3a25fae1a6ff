//! The log in PostgreSQL.
//!
//! Each append is one call of the `idp_append` function: one round trip and
//! one short transaction, with a per-stream advisory lock taken before the
//! first write. The global order is `(tx_id, seq)` and readers only read
//! below the xmin of a current snapshot (see `migrations/eventlog/postgres.sql`),
//! which is what makes "never find a committed event below a position
//! already passed" hold under concurrent writers.
//!
//! Live delivery: after a commit the adapter wakes local subscribers at once
//! and asks a notifier task to send one `NOTIFY` outside any append
//! transaction; notifications requested while one is in flight are
//! coalesced into the next. A listener task turns other processes'
//! notifications into wake-ups.
//!
//! Tamper evidence (see [`crate::chain`]): `idp_append` links each event to
//! its stream's previous one inside the append; a sealer task anchors the
//! *readable* log every `seal_every` events appended here and within
//! [`crate::chain::SEAL_WITHIN`] of an append (`tamper.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, Row};
use time::OffsetDateTime;
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::chain::{Anchor, DEFAULT_SEAL_EVERY};
use crate::data::EventData;
use crate::error::Error;
use crate::port::{Direction, EventLog};
use crate::sqlite::escape_like;
use crate::types::{
    AppendResult, ExpectedRevision, Filter, NewEvent, Position, RecordedEvent, category_of,
    validate_append,
};
use crate::verify::VerifyReport;

const SCHEMA: &str = include_str!("../../migrations/eventlog/postgres.sql");
const CHANNEL: &str = "idp_events";
/// A constant key for the session advisory lock that serializes schema set-up.
const SCHEMA_LOCK: i64 = 0x0069_6470_5f6c_6f67; // "idp_log"

/// How many group commits may be in flight at once.
const WRITERS: usize = 2;
/// The most appends one group commit takes.
const MAX_GROUP: usize = 64;

mod tamper;

pub struct PostgresLog {
    pool: PgPool,
    /// Events per anchor.
    seal_block: u64,
    writer: mpsc::UnboundedSender<AppendRequest>,
    wakeups: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

struct EncodedEvent {
    id: Uuid,
    event_type: String,
    subject: Option<String>,
    data: String,
    meta: String,
}

struct AppendRequest {
    stream: String,
    expected: ExpectedRevision,
    events: Vec<EncodedEvent>,
    reply: oneshot::Sender<Result<AppendResult, Error>>,
}

/// What the writers share: where requests come from, where to signal commits.
struct WriterShared {
    pool: PgPool,
    requests: Mutex<mpsc::UnboundedReceiver<AppendRequest>>,
    wake: watch::Sender<u64>,
    notify: Arc<Notify>,
    /// Events appended here since the sealer last looked, and its bell.
    unsealed: Arc<AtomicU64>,
    seal_kick: Arc<Notify>,
}

impl Drop for PostgresLog {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PostgresLog {
    /// Connects, creates the schema if needed, and starts the notifier,
    /// listener and sealer tasks. The sealer anchors every `seal_every`
    /// events (0: no sealer, seal only when asked).
    pub async fn connect(url: &str, max_connections: u32, seal_every: u64) -> Result<Self, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        {
            let mut conn = pool.acquire().await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(SCHEMA_LOCK)
                .execute(&mut *conn)
                .await?;
            let created = sqlx::raw_sql(SCHEMA).execute(&mut *conn).await;
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(SCHEMA_LOCK)
                .execute(&mut *conn)
                .await?;
            created?;
        }
        let (wake, wakeups) = watch::channel(0u64);
        let notify = Arc::new(Notify::new());
        let (writer, requests) = mpsc::unbounded_channel();
        let unsealed = Arc::new(AtomicU64::new(0));
        let seal_kick = Arc::new(Notify::new());
        let shared = Arc::new(WriterShared {
            pool: pool.clone(),
            requests: Mutex::new(requests),
            wake,
            notify: Arc::clone(&notify),
            unsealed: Arc::clone(&unsealed),
            seal_kick: Arc::clone(&seal_kick),
        });
        let mut tasks = vec![
            tokio::spawn(notifier_loop(pool.clone(), notify)),
            tokio::spawn(listener_loop(url.to_owned(), Arc::clone(&shared))),
        ];
        for _ in 0..WRITERS {
            tasks.push(tokio::spawn(writer_loop(Arc::clone(&shared))));
        }
        if seal_every > 0 {
            tasks.push(tokio::spawn(tamper::sealer_loop(
                pool.clone(),
                unsealed,
                seal_kick,
                seal_every,
            )));
        }
        Ok(Self {
            pool,
            seal_block: if seal_every == 0 {
                DEFAULT_SEAL_EVERY
            } else {
                seal_every
            },
            writer,
            wakeups,
            tasks,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn notifier_loop(pool: PgPool, notify: Arc<Notify>) {
    loop {
        notify.notified().await;
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "event log notification failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn listener_loop(url: String, shared: Arc<WriterShared>) {
    let wake = &shared.wake;
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "event log listener cannot connect");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "event log listener cannot LISTEN");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Anything may have been missed while (re)connecting.
        wake.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            match listener.recv().await {
                Ok(_) => wake.send_modify(|n| *n = n.wrapping_add(1)),
                Err(e) => {
                    tracing::warn!(error = %e, "event log listener lost its connection");
                    break;
                }
            }
        }
    }
}

/// Takes whatever appends are waiting (up to [`MAX_GROUP`]) and commits
/// them in one transaction; a lone append goes through `idp_append`.
async fn writer_loop(shared: Arc<WriterShared>) {
    loop {
        let mut group = Vec::new();
        {
            let mut rx = shared.requests.lock().await;
            match rx.recv().await {
                Some(first) => group.push(first),
                None => return,
            }
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
        }
        let results = if group.len() == 1 {
            append_one(&shared.pool, &group[0]).await.map(|r| vec![r])
        } else {
            match append_group(&shared.pool, &group).await {
                // An id raced in from elsewhere failed the whole group: find
                // which append it was by committing them one by one.
                Err(e) if is_unique_violation(&e) => {
                    let mut each = Vec::with_capacity(group.len());
                    for req in &group {
                        each.push(append_one(&shared.pool, req).await.unwrap_or_else(Err));
                    }
                    Ok(each)
                }
                other => other.map_err(Error::from),
            }
        };
        // Local subscribers are woken before any writer hears back, so that
        // whoever learns of an append finds the wake-up already counted.
        let written = results.as_ref().map_or(0, |results| {
            crate::types::events_written(group.iter().map(|a| a.events.len()), results)
        });
        if written > 0 {
            shared.wake.send_modify(|n| *n = n.wrapping_add(1));
            shared.notify.notify_one();
            shared.unsealed.fetch_add(written, Ordering::Relaxed);
            shared.seal_kick.notify_one();
        }
        match results {
            Ok(results) => {
                for (req, result) in group.into_iter().zip(results) {
                    let _ = req.reply.send(result);
                }
            }
            Err(e) => {
                let text = e.to_string();
                for req in group {
                    let _ = req.reply.send(Err(Error::Backend(text.clone())));
                }
            }
        }
    }
}

fn expected_args(expected: ExpectedRevision) -> (i32, i64) {
    match expected {
        ExpectedRevision::Any => (0, 0),
        ExpectedRevision::NoStream => (1, 0),
        ExpectedRevision::StreamExists => (2, 0),
        ExpectedRevision::Exact(n) => (3, clamp(n)),
    }
}

/// Columns of events, flattened across appends.
#[derive(Default)]
struct EventColumns {
    ids: Vec<Uuid>,
    types: Vec<String>,
    subjects: Vec<Option<String>>,
    data: Vec<String>,
    meta: Vec<String>,
}

impl EventColumns {
    fn push(&mut self, events: &[EncodedEvent]) {
        for e in events {
            self.ids.push(e.id);
            self.types.push(e.event_type.clone());
            self.subjects.push(e.subject.clone());
            self.data.push(e.data.clone());
            self.meta.push(e.meta.clone());
        }
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

async fn append_one(
    pool: &PgPool,
    req: &AppendRequest,
) -> Result<Result<AppendResult, Error>, Error> {
    let (kind, exp) = expected_args(req.expected);
    let mut cols = EventColumns::default();
    cols.push(&req.events);
    let row = sqlx::query(
        "SELECT outcome, revision, tx, seq, dup_id FROM idp_append($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&req.stream)
    .bind(category_of(&req.stream))
    .bind(kind)
    .bind(exp)
    .bind(&cols.ids)
    .bind(&cols.types)
    .bind(&cols.subjects)
    .bind(&cols.data)
    .bind(&cols.meta)
    .fetch_one(pool)
    .await;
    match row {
        Ok(row) => Ok(outcome(&row, req)),
        Err(e) if is_unique_violation(&e) => Ok(Err(Error::DuplicateEventId(
            req.events.first().map(|e| e.id).unwrap_or_default(),
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn append_group(
    pool: &PgPool,
    group: &[AppendRequest],
) -> Result<Vec<Result<AppendResult, Error>>, sqlx::Error> {
    let mut streams = Vec::with_capacity(group.len());
    let mut categories = Vec::with_capacity(group.len());
    let mut kinds = Vec::with_capacity(group.len());
    let mut expected = Vec::with_capacity(group.len());
    let mut counts = Vec::with_capacity(group.len());
    let mut cols = EventColumns::default();
    for req in group {
        let (kind, exp) = expected_args(req.expected);
        streams.push(req.stream.clone());
        categories.push(category_of(&req.stream).to_owned());
        kinds.push(kind);
        expected.push(exp);
        counts.push(req.events.len() as i32);
        cols.push(&req.events);
    }
    let rows = sqlx::query(
        "SELECT idx, outcome, revision, tx, seq, dup_id
           FROM idp_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ORDER BY idx",
    )
    .bind(&streams)
    .bind(&categories)
    .bind(&kinds)
    .bind(&expected)
    .bind(&counts)
    .bind(&cols.ids)
    .bind(&cols.types)
    .bind(&cols.subjects)
    .bind(&cols.data)
    .bind(&cols.meta)
    .fetch_all(pool)
    .await?;
    if rows.len() != group.len() {
        return Err(sqlx::Error::Protocol(format!(
            "idp_append_batch answered {} of {} appends",
            rows.len(),
            group.len()
        )));
    }
    Ok(rows
        .iter()
        .zip(group)
        .map(|(row, req)| outcome(row, req))
        .collect())
}

/// One append's outcome row, as the port's result.
fn outcome(row: &PgRow, req: &AppendRequest) -> Result<AppendResult, Error> {
    let outcome: String = row.try_get("outcome")?;
    let revision: Option<i64> = row.try_get("revision")?;
    match outcome.as_str() {
        "ok" | "idempotent" => {
            let tx: String = row.try_get("tx")?;
            let seq: i64 = row.try_get("seq")?;
            Ok(AppendResult {
                next_expected_revision: revision.unwrap_or(0) as u64,
                position: Position::new(parse_u64(&tx)?, seq as u64),
            })
        }
        "conflict" => Err(Error::WrongExpectedRevision {
            stream: req.stream.clone(),
            expected: req.expected,
            actual: revision.filter(|r| *r >= 0).map(|r| r as u64),
        }),
        "duplicate" => {
            let id: Option<Uuid> = row.try_get("dup_id")?;
            Err(Error::DuplicateEventId(
                id.or_else(|| req.events.first().map(|e| e.id))
                    .unwrap_or_default(),
            ))
        }
        other => Err(Error::Backend(format!(
            "the append function answered {other:?}"
        ))),
    }
}

fn parse_u64(s: &str) -> Result<u64, Error> {
    s.parse()
        .map_err(|_| Error::Corrupt(format!("bad transaction id {s:?}")))
}

const COLUMNS: &str = "tx_id::text AS tx, seq, event_id, stream, revision, event_type, subject, data, metadata, \
     (extract(epoch FROM recorded_at) * 1000000)::bigint AS micros";

/// Rows a reader may see: only transactions below the snapshot's xmin.
const VISIBLE: &str = "tx_id < pg_snapshot_xmin(pg_current_snapshot())";

fn row_to_event(row: &PgRow) -> Result<RecordedEvent, Error> {
    let tx: String = row.try_get("tx")?;
    let seq: i64 = row.try_get("seq")?;
    let position = Position::new(parse_u64(&tx)?, seq as u64);
    let corrupt = |what: &str| Error::Corrupt(format!("event at position {position}: {what}"));
    let data: String = row.try_get("data")?;
    let metadata: String = row.try_get("metadata")?;
    let micros: i64 = row.try_get("micros")?;
    let revision: i64 = row.try_get("revision")?;
    Ok(RecordedEvent {
        id: row.try_get::<Uuid, _>("event_id")?,
        stream: row.try_get("stream")?,
        revision: revision as u64,
        position,
        event_type: row.try_get("event_type")?,
        data: EventData::from_text(data),
        metadata: serde_json::from_str(&metadata).map_err(|_| corrupt("bad metadata"))?,
        subject: row.try_get("subject")?,
        recorded_at: OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000)
            .map_err(|_| corrupt("bad timestamp"))?,
    })
}

fn rows_to_events(rows: Vec<PgRow>) -> Result<Vec<RecordedEvent>, Error> {
    rows.iter().map(row_to_event).collect()
}

fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

#[async_trait]
impl EventLog for PostgresLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        validate_append(stream, &events)?;
        let mut encoded = Vec::with_capacity(events.len());
        for e in &events {
            let meta = serde_json::to_string(&e.metadata)
                .map_err(|err| Error::InvalidAppend(err.to_string()))?;
            encoded.push(EncodedEvent {
                id: e.id,
                event_type: e.event_type.clone(),
                subject: e.subject.clone(),
                data: e.data.to_string(),
                meta,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(AppendRequest {
                stream: stream.to_owned(),
                expected,
                events: encoded,
                reply,
            })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let limit = clamp(limit as u64);
        let rows = match direction {
            Direction::Forwards => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM events WHERE stream = $1 AND revision >= $2 ORDER BY revision LIMIT $3"
                )))
                .bind(stream)
                .bind(clamp(from.unwrap_or(0)))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            Direction::Backwards => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM events WHERE stream = $1 AND revision <= $2 ORDER BY revision DESC LIMIT $3"
                )))
                .bind(stream)
                .bind(from.map_or(i64::MAX, clamp))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows_to_events(rows)
    }

    async fn read_all(
        &self,
        after: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let mut sql = format!(
            "SELECT {COLUMNS} FROM events WHERE (tx_id, seq) > ($1::text::xid8, $2) AND {VISIBLE}"
        );
        if !filter.categories.is_empty() {
            sql.push_str(" AND category = ANY($4)");
        }
        if !filter.type_prefixes.is_empty() {
            sql.push_str(" AND event_type LIKE ANY($5)");
        }
        sql.push_str(" ORDER BY tx_id, seq LIMIT $3");
        let prefixes: Vec<String> = filter
            .type_prefixes
            .iter()
            .map(|p| format!("{}%", escape_like(p)))
            .collect();
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(after.commit.to_string())
            .bind(clamp(after.prepare))
            .bind(clamp(limit as u64))
            .bind(&filter.categories)
            .bind(&prefixes)
            .fetch_all(&self.pool)
            .await?;
        rows_to_events(rows)
    }

    async fn read_subject(&self, subject: &str) -> Result<Vec<RecordedEvent>, Error> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM events WHERE subject = $1 ORDER BY tx_id, seq"
        )))
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows_to_events(rows)
    }

    async fn head(&self) -> Result<Option<Position>, Error> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT tx_id::text AS tx, seq FROM events WHERE {VISIBLE} ORDER BY tx_id DESC, seq DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let tx: String = r.try_get("tx")?;
            let seq: i64 = r.try_get("seq")?;
            Ok(Position::new(parse_u64(&tx)?, seq as u64))
        })
        .transpose()
    }

    async fn count_after(&self, after: Position) -> Result<u64, Error> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM events WHERE (tx_id, seq) > ($1::text::xid8, $2) AND {VISIBLE}"
        )))
        .bind(after.commit.to_string())
        .bind(clamp(after.prepare))
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    async fn seal(&self) -> Result<Option<Anchor>, Error> {
        tamper::seal(&self.pool, self.seal_block).await
    }

    async fn verify(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<VerifyReport, Error> {
        tamper::verify(&self.pool, progress).await
    }

    async fn drop_stream(&self, stream: &str) -> Result<u64, Error> {
        tamper::drop_stream(&self.pool, stream, self.seal_block).await
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.clone()
    }

    fn counts_cheaply(&self) -> bool {
        true
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

/// Creates a fresh, empty database next to the one `admin_url` names and
/// returns its URL (for tests and benchmarks that need isolation).
pub async fn create_scratch_database(admin_url: &str, name: &str) -> Result<String, Error> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let (without_query, query) = match admin_url.split_once('?') {
        Some((u, q)) => (u, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let base = match without_query.rsplit_once('/') {
        Some((base, _)) => base.to_owned(),
        None => return Err(Error::UnsupportedUrl(admin_url.to_owned())),
    };
    Ok(format!("{base}/{name}{query}"))
}
