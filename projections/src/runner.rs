//! The projection runner: one task per projection, each a catch-up
//! subscription to the whole log from its checkpoint. A batch of events and
//! the new checkpoint are committed in one transaction.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use eventlog::clock::{Clock, SystemClock};
use eventlog::{EventLog, Filter, Position, RecordedEvent, SharedTail, Subscription};
use sqlx::AnyConnection;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::AccessGeneration;
use crate::db::ReadDb;
use crate::generation::{Tables, advance, put_checkpoint, read_checkpoint};
use crate::rebuild::{PROGRESS_EVERY, Progress, ProgressLog, REBUILD_BATCH, rebuild};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read-model database: {0}")]
    Db(String),
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("projection {projection} cannot apply {event}: {reason}")]
    Apply {
        projection: &'static str,
        event: String,
        reason: String,
    },
}

impl From<sqlx::Error> for ProjectionError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.to_string())
    }
}

/// How many events a runner may read past its stored checkpoint without
/// writing it, while none of them is its projection's.
const UNSTORED_EVENTS: usize = 10_000;
/// And for how long.
const UNSTORED_FOR: time::Duration = time::Duration::seconds(1);

/// A read model fed by the log.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// A stable name: the checkpoint's key.
    fn name(&self) -> &'static str;
    /// Raising it rebuilds the read model from the start of the log, beside
    /// the old one (see [`crate::rebuild`]).
    fn version(&self) -> u32;
    /// Every table this projection writes (and nothing else does): a
    /// rebuild creates their next generation from their DDL and switches
    /// them together.
    fn tables(&self) -> &'static [&'static str];
    /// Whether `apply` wants this event (the others still move the checkpoint).
    fn handles(&self, event: &RecordedEvent) -> bool;
    /// Whether what it holds decides what someone holds (roles, groups):
    /// then every batch it handles with an event that
    /// [`Self::event_changes_access`], applied here or by another process,
    /// moves the runner's [`crate::AccessGeneration`] once it is committed,
    /// and so does switching in a rebuild of it.
    fn changes_access(&self) -> bool {
        false
    }
    /// Whether applying `event` may change what someone holds; by default,
    /// any event of a projection that [`Self::changes_access`].
    fn event_changes_access(&self, _event: &RecordedEvent) -> bool {
        self.changes_access()
    }
    /// Applies one event inside the runner's transaction, to the generation
    /// of its tables that `tables` names.
    async fn apply(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;
    /// Applies the events of one batch that it `handles`, in log order,
    /// inside the runner's transaction. The default applies them one by
    /// one; a projection with many rows per batch writes them in fewer
    /// statements.
    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for e in events {
            self.apply(conn, tables, e).await?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectionStatus {
    pub name: &'static str,
    pub version: u32,
    pub position: Position,
}

/// The read models' own bookkeeping time (a checkpoint's `updated_at`, a
/// migration's `applied_at`): for operators reading the tables, never
/// decided with, so the wall clock.
pub(crate) fn now_text() -> String {
    SystemClock.now().format(&Rfc3339).unwrap_or_default()
}

pub struct Runner {
    log: Arc<dyn EventLog>,
    db: ReadDb,
    projections: Vec<Arc<dyn Projection>>,
    batch: usize,
    rebuild_when_behind: u64,
    /// For how far behind the log a projection is, in seconds.
    clock: Arc<dyn Clock>,
    access: Arc<AccessGeneration>,
}

/// A projection at least this many events behind the log at start, and
/// behind by at least a third of the log, is rebuilt rather than caught
/// up: applying events one batch at a time to tables with all their
/// indexes costs about four times what a rebuild pays per event
/// (docs/PERFORMANCE.md), and a rebuild reads the whole log once. Only on
/// logs that count cheaply (SQLite, PostgreSQL): on KurrentDB, counting the
/// log to decide would read all of it.
pub const REBUILD_WHEN_BEHIND: u64 = 100_000;

struct Running {
    name: &'static str,
    version: u32,
    position: watch::Receiver<Position>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// A started runner: ask it where projections are, wait for a position,
/// stop it.
pub struct RunnerHandle {
    log: Arc<dyn EventLog>,
    /// The live runners' shared read of the log's tail.
    tail: Arc<dyn EventLog>,
    running: Vec<Running>,
    shutdown: watch::Sender<bool>,
    access: Arc<AccessGeneration>,
}

impl Runner {
    pub fn new(log: Arc<dyn EventLog>, db: ReadDb, projections: Vec<Arc<dyn Projection>>) -> Self {
        Self {
            log,
            db,
            projections,
            // Events per transaction at most: a subscription hands over what
            // is there, so live batches stay small, and a runner that is far
            // behind commits a tenth as often as with 500 (half the time to
            // catch up a million events; docs/PERFORMANCE.md).
            batch: 5000,
            rebuild_when_behind: REBUILD_WHEN_BEHIND,
            clock: Arc::new(SystemClock),
            access: Arc::default(),
        }
    }

    /// The clock the lag is measured by (the one the log stamps events with).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many events behind (and at least a third of the log) a
    /// projection must be at start to be rebuilt instead of caught up.
    pub fn with_rebuild_when_behind(mut self, events: u64) -> Self {
        self.rebuild_when_behind = events.max(1);
        self
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Whether `p`, at `at`, is far enough behind the log to be rebuilt
    /// rather than caught up (see [`REBUILD_WHEN_BEHIND`]). `log_events`
    /// keeps the count of the whole log once one start has needed it.
    /// False where counting the log reads every event.
    async fn far_behind(
        &self,
        p: &dyn Projection,
        at: Position,
        log_events: &mut Option<u64>,
    ) -> Result<bool, ProjectionError> {
        if !self.log.counts_cheaply() {
            return Ok(false);
        }
        let behind = self.log.count_after(at).await?;
        if behind < self.rebuild_when_behind {
            return Ok(false);
        }
        let total = match *log_events {
            Some(n) => n,
            None => *log_events.insert(self.log.count_after(Position::START).await?),
        };
        let far = behind.saturating_mul(3) >= total;
        if far {
            tracing::info!(
                projection = p.name(),
                behind,
                of = total,
                "far behind the log: rebuilding beside the tables, which are served until the switch"
            );
        }
        Ok(far)
    }

    /// Loads each checkpoint and starts one task per projection. A
    /// projection whose version changed is first rebuilt beside its old
    /// tables, which queries keep reading (frozen: nothing feeds them) until
    /// the rebuilt ones are switched in; until then it reports the start of
    /// the log as its position, so the server is not ready and a
    /// read-your-writes wait waits for the switch.
    pub async fn start(self) -> Result<RunnerHandle, ProjectionError> {
        let (shutdown, stop_rx) = watch::channel(false);
        let log_has_events = self.log.head().await?.is_some();
        let mut starts = Vec::with_capacity(self.projections.len());
        let mut log_events = None;
        for p in &self.projections {
            let mut start = prepare_checkpoint(&self.db, p.as_ref(), log_has_events).await?;
            if let Start::Live(at) = start
                && self.far_behind(p.as_ref(), at, &mut log_events).await?
            {
                start = Start::Rebuild;
            }
            starts.push(start);
        }
        // Every projection to rebuild is rebuilt in one pass over the log.
        let group: Vec<Arc<dyn Projection>> = self
            .projections
            .iter()
            .zip(&starts)
            .filter(|(_, s)| **s == Start::Rebuild)
            .map(|(p, _)| Arc::clone(p))
            .collect();
        let rebuilt = (!group.is_empty()).then(|| {
            let (done, rebuilt) = watch::channel(false);
            tokio::spawn(rebuild_together(
                Arc::clone(&self.log),
                self.db.clone(),
                group,
                Arc::clone(&self.access),
                stop_rx.clone(),
                done,
            ));
            rebuilt
        });
        // The live runners follow the log through one shared read of its tail.
        let tail: Arc<dyn EventLog> = Arc::new(SharedTail::new(Arc::clone(&self.log)));
        let mut running = Vec::new();
        for (p, start) in self.projections.into_iter().zip(starts) {
            let (tx, rx) = watch::channel(match start {
                Start::Live(at) => at,
                Start::Rebuild => Position::START,
            });
            let task = tokio::spawn(run_projection(
                Arc::clone(&self.log),
                Arc::clone(&tail),
                self.db.clone(),
                Arc::clone(&p),
                start,
                rebuilt.clone(),
                self.batch,
                Arc::clone(&self.clock),
                Arc::clone(&self.access),
                tx,
                stop_rx.clone(),
            ));
            running.push(Running {
                name: p.name(),
                version: p.version(),
                position: rx,
                task: std::sync::Mutex::new(Some(task)),
            });
        }
        Ok(RunnerHandle {
            log: self.log,
            tail,
            running,
            shutdown,
            access: self.access,
        })
    }
}

/// How a projection's task begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Follow the log from this checkpoint.
    Live(Position),
    /// Rebuild beside the live tables first (the version changed).
    Rebuild,
}

/// Where a projection resumes: its checkpoint; a rebuild when its version
/// changed, or when it has none and the log has events (a new read
/// database: a rebuild writes in bulk and builds indexes after the rows);
/// the start of the log over empty tables otherwise.
async fn prepare_checkpoint(
    db: &ReadDb,
    p: &dyn Projection,
    log_has_events: bool,
) -> Result<Start, ProjectionError> {
    let mut conn = db.pool.acquire().await?;
    let checkpoint = read_checkpoint(&mut conn, p.name()).await?;
    if checkpoint.is_none() && log_has_events {
        tracing::info!(
            projection = p.name(),
            "no checkpoint over a log with events: building the read model as a rebuild does"
        );
        return Ok(Start::Rebuild);
    }
    if let Some(cp) = checkpoint {
        if cp.version == p.version() {
            return Ok(Start::Live(cp.at));
        }
        tracing::warn!(
            projection = p.name(),
            from = cp.version,
            to = p.version(),
            "projection version changed: rebuilding beside the old tables, which are served until the switch"
        );
        return Ok(Start::Rebuild);
    }
    drop(conn);
    let mut tx = db.begin_write().await?;
    if read_checkpoint(&mut tx, p.name()).await?.is_none() {
        for t in p.tables() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {t}")))
                .execute(&mut *tx)
                .await?;
        }
        put_checkpoint(&mut tx, p.name(), p.version(), Position::START).await?;
    }
    tx.commit().await?;
    Ok(Start::Live(Position::START))
}

/// Applies one batch to the live tables and moves the checkpoint from
/// `from`, in one transaction. `None` (nothing written) when the checkpoint
/// is no longer at `from`: another process moved it or switched in a
/// rebuilt generation.
async fn apply_batch(
    db: &ReadDb,
    p: &dyn Projection,
    access: &AccessGeneration,
    from: Position,
    batch: &[RecordedEvent],
) -> Result<Option<Position>, ProjectionError> {
    let Some(last) = batch.last().map(|e| e.position) else {
        return Ok(Some(from));
    };
    let handled: Vec<&RecordedEvent> = batch.iter().filter(|e| p.handles(e)).collect();
    let mut tx = db.begin_write().await?;
    if !advance(
        &mut tx,
        p.name(),
        p.version(),
        from,
        last,
        handled.len() as u64,
    )
    .await?
    {
        tx.rollback().await?;
        // Another process applied this batch (or more): what it changed is
        // committed, so what this process cached from before must go.
        if handled.iter().any(|e| p.event_changes_access(e)) {
            access.changed();
        }
        return Ok(None);
    }
    if !handled.is_empty() {
        p.apply_batch(&mut tx, Tables::live(db.dialect), &handled)
            .await?;
    }
    tx.commit().await?;
    if handled.iter().any(|e| p.event_changes_access(e)) {
        // After the commit: whoever took the number before it may have read
        // the rows from before.
        access.changed();
    }
    Ok(Some(last))
}

/// Rebuilds `p` beside its live tables until it is switched in (retrying
/// after a failure), then returns its live checkpoint; `None` when told to
/// stop first.
async fn rebuild_first(
    log: &Arc<dyn EventLog>,
    db: &ReadDb,
    p: &Arc<dyn Projection>,
    access: &AccessGeneration,
    stop: &mut watch::Receiver<bool>,
) -> Option<Position> {
    let said = ProgressLog::new(std::slice::from_ref(p), PROGRESS_EVERY);
    let report = |at: &Progress| said.report(at);
    loop {
        let result = tokio::select! {
            _ = stop.changed() => return None,
            r = rebuild(log, db, std::slice::from_ref(p), REBUILD_BATCH, &report) => r,
        };
        let (summary, checkpoint) = match result {
            Ok(summary) => (
                Some(summary),
                match db.pool.acquire().await {
                    Ok(mut conn) => read_checkpoint(&mut conn, p.name()).await,
                    Err(e) => Err(e.into()),
                },
            ),
            Err(e) => (None, Err(e)),
        };
        match checkpoint {
            Ok(Some(cp)) if cp.version == p.version() => {
                if let Some(summary) = &summary {
                    said.finished(summary);
                }
                if p.changes_access() {
                    access.changed();
                }
                return Some(cp.at);
            }
            Ok(_) => tracing::error!(
                projection = p.name(),
                "rebuilt projection was replaced by another version; rebuilding again"
            ),
            Err(e) => {
                tracing::error!(projection = p.name(), error = %e, "projection rebuild failed; resuming it")
            }
        }
        tokio::select! {
            _ = stop.changed() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Rebuilds `group` in one pass, retrying after a failure, and says so on
/// `done` once every one of them is switched in.
async fn rebuild_together(
    log: Arc<dyn EventLog>,
    db: ReadDb,
    group: Vec<Arc<dyn Projection>>,
    access: Arc<AccessGeneration>,
    mut stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
) {
    let said = ProgressLog::new(&group, PROGRESS_EVERY);
    let report = |at: &Progress| said.report(at);
    loop {
        let result = tokio::select! {
            _ = stop.changed() => return,
            r = rebuild(&log, &db, &group, REBUILD_BATCH, &report) => r,
        };
        match result {
            Ok(summary) => {
                said.finished(&summary);
                if group.iter().any(|p| p.changes_access()) {
                    access.changed();
                }
                done.send_replace(true);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "building read models at start failed; resuming")
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_projection(
    log: Arc<dyn EventLog>,
    tail: Arc<dyn EventLog>,
    db: ReadDb,
    p: Arc<dyn Projection>,
    start: Start,
    rebuilt: Option<watch::Receiver<bool>>,
    batch_size: usize,
    clock: Arc<dyn Clock>,
    access: Arc<AccessGeneration>,
    position: watch::Sender<Position>,
    mut stop: watch::Receiver<bool>,
) {
    let name = p.name();
    let mut committed = match start {
        Start::Live(at) => at,
        Start::Rebuild => {
            if let Some(mut rebuilt) = rebuilt {
                tokio::select! {
                    _ = stop.changed() => return,
                    r = rebuilt.wait_for(|done| *done) => if r.is_err() { return },
                }
            }
            // Switched in by the group, unless another version took it over
            // meanwhile: then on its own, as before.
            let live = match db.pool.acquire().await {
                Ok(mut conn) => read_checkpoint(&mut conn, name).await.ok().flatten(),
                Err(_) => None,
            };
            match live.filter(|cp| cp.version == p.version()) {
                Some(cp) => cp.at,
                None => match rebuild_first(&log, &db, &p, &access, &mut stop).await {
                    Some(at) => at,
                    None => return,
                },
            }
        }
    };
    position.send_replace(committed);
    let mut sub = Subscription::new(Arc::clone(&tail), committed, Filter::all(), batch_size);
    let mut last_count = eventlog::clock::monotonic() - Duration::from_secs(60);
    // `committed` is how far this runner has read; `stored` the checkpoint
    // as written. A batch the projection has nothing to do with moves only
    // the first, for a while: its checkpoint is written with the next rows,
    // or after UNSTORED_FOR (re-reading a few skipped events after a
    // restart changes nothing).
    let mut stored = committed;
    let mut stored_at = clock.now();
    let mut unstored = 0usize;
    loop {
        let batch = tokio::select! {
            _ = stop.changed() => break,
            b = sub.next_batch() => b,
        };
        if let Ok(batch) = &batch
            && let Some(last) = batch.last()
            && !batch.iter().any(|e| p.handles(e))
            && unstored + batch.len() < UNSTORED_EVENTS
            && clock.now() - stored_at < UNSTORED_FOR
        {
            unstored += batch.len();
            committed = last.position;
            position.send_replace(committed);
            continue;
        }
        let result = match batch {
            Ok(batch) if batch.is_empty() => continue,
            Ok(batch) => apply_batch(&db, p.as_ref(), &access, stored, &batch)
                .await
                .map(|at| (at, batch)),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok((None, _)) => {
                // The checkpoint moved under this runner: continue from it.
                match reload(&db, p.as_ref()).await {
                    Ok(Some(at)) => {
                        tracing::info!(projection = name, from = %committed, to = %at, "checkpoint moved by another process (a switched-in rebuild or another node); continuing from it");
                        committed = at;
                        (stored, stored_at, unstored) = (at, clock.now(), 0);
                        position.send_replace(at);
                        sub = Subscription::new(
                            Arc::clone(&tail),
                            committed,
                            Filter::all(),
                            batch_size,
                        );
                    }
                    Ok(None) => {
                        tracing::error!(
                            projection = name,
                            version = p.version(),
                            "the read model now belongs to another version of this projection; this process stops feeding it"
                        );
                        break;
                    }
                    Err(e) => {
                        tracing::error!(projection = name, error = %e, "cannot reload the checkpoint; retrying");
                        tokio::select! {
                            _ = stop.changed() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        sub = Subscription::new(
                            Arc::clone(&tail),
                            committed,
                            Filter::all(),
                            batch_size,
                        );
                    }
                }
            }
            Ok((Some(at), batch)) => {
                committed = at;
                (stored, stored_at, unstored) = (at, clock.now(), 0);
                position.send_replace(at);
                metrics::counter!("idp_projection_events_total", "projection" => name)
                    .increment(batch.len() as u64);
                let behind = batch.len() >= batch_size;
                let lag_seconds = match batch.last() {
                    Some(last) if behind => {
                        (clock.now() - last.recorded_at).as_seconds_f64().max(0.0)
                    }
                    _ => 0.0,
                };
                metrics::gauge!("idp_projection_lag_seconds", "projection" => name)
                    .set(lag_seconds);
                if !behind {
                    metrics::gauge!("idp_projection_lag_events", "projection" => name).set(0.0);
                } else if last_count.elapsed() > Duration::from_secs(1) {
                    last_count = eventlog::clock::monotonic();
                    if let Ok(n) = log.count_after(at).await {
                        metrics::gauge!("idp_projection_lag_events", "projection" => name)
                            .set(n as f64);
                    }
                }
            }
            Err(e) => {
                tracing::error!(projection = name, error = %e, "projection failed; retrying from its checkpoint");
                metrics::counter!("idp_projection_errors_total", "projection" => name).increment(1);
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                committed = stored;
                unstored = 0;
                sub = Subscription::new(Arc::clone(&tail), committed, Filter::all(), batch_size);
            }
        }
    }
    // A graceful stop writes down how far it read.
    if committed > stored
        && let Err(e) = store_checkpoint(&db, p.as_ref(), stored, committed).await
    {
        tracing::warn!(projection = name, error = %e, "cannot store the checkpoint at stop; the next start reads a few events again");
    }
}

/// Moves the checkpoint from `from` to `to` past events the projection does
/// not handle (nothing else is written); false if it was no longer at
/// `from`.
async fn store_checkpoint(
    db: &ReadDb,
    p: &dyn Projection,
    from: Position,
    to: Position,
) -> Result<bool, ProjectionError> {
    let mut tx = db.begin_write().await?;
    if !advance(&mut tx, p.name(), p.version(), from, to, 0).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// The live checkpoint of `p`, if it was written by this version.
async fn reload(db: &ReadDb, p: &dyn Projection) -> Result<Option<Position>, ProjectionError> {
    let mut conn = db.pool.acquire().await?;
    Ok(read_checkpoint(&mut conn, p.name())
        .await?
        .filter(|cp| cp.version == p.version())
        .map(|cp| cp.at))
}

impl RunnerHandle {
    /// The log, read through the live runners' shared read of its tail: a
    /// subscription of the whole log that follows through it takes the
    /// events the runners read at each commit instead of reading them again.
    pub fn tail(&self) -> Arc<dyn EventLog> {
        Arc::clone(&self.tail)
    }

    /// The number that moves whenever what someone holds may have changed
    /// in the read models (see [`AccessGeneration`]).
    pub fn access_generation(&self) -> u64 {
        self.access.get()
    }

    pub fn statuses(&self) -> Vec<ProjectionStatus> {
        self.running
            .iter()
            .map(|r| ProjectionStatus {
                name: r.name,
                version: r.version,
                position: *r.position.borrow(),
            })
            .collect()
    }

    /// The lowest checkpoint of all projections.
    pub fn position(&self) -> Position {
        self.running
            .iter()
            .map(|r| *r.position.borrow())
            .min()
            .unwrap_or(Position::START)
    }

    /// Waits until every projection has applied the log up to `at` (for
    /// read-your-writes); false if `timeout` passes first.
    pub async fn wait_for(&self, at: Position, timeout: Duration) -> bool {
        let all = async {
            for r in &self.running {
                let mut rx = r.position.clone();
                if rx.wait_for(|p| *p >= at).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }

    /// Whether every projection has reached the head of the log.
    pub async fn caught_up(&self) -> Result<bool, ProjectionError> {
        let Some(head) = self.log.head().await? else {
            return Ok(true);
        };
        Ok(self.position() >= head)
    }

    fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        self.running
            .iter()
            .filter_map(|r| r.task.lock().ok().and_then(|mut t| t.take()))
            .collect()
    }

    /// Asks every projection to stop after its current batch, and waits.
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        for t in self.take_tasks() {
            let _ = t.await;
        }
    }

    /// Stops every projection at once, wherever it is (a crash, for tests).
    pub async fn abort(&self) {
        for t in self.take_tasks() {
            t.abort();
            let _ = t.await;
        }
    }
}
