//! The projection runner: one task per projection, each a catch-up
//! subscription to the whole log from its checkpoint. A batch of events and
//! the new checkpoint are committed in one transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use eventlog::{EventLog, Filter, Position, RecordedEvent, Subscription};
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::{Dialect, ReadDb};

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

/// A read model fed by the log.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// A stable name: the checkpoint's key.
    fn name(&self) -> &'static str;
    /// Raising it rebuilds the read model from the start of the log.
    fn version(&self) -> u32;
    /// Whether `apply` wants this event (the others still move the checkpoint).
    fn handles(&self, event: &RecordedEvent) -> bool;
    /// Applies one event inside the runner's transaction.
    async fn apply(
        &self,
        conn: &mut AnyConnection,
        dialect: Dialect,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;
    /// Applies the events of one batch that it `handles`, in log order,
    /// inside the runner's transaction. The default applies them one by
    /// one; a projection with many rows per batch writes them in fewer
    /// statements.
    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        dialect: Dialect,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for e in events {
            self.apply(conn, dialect, e).await?;
        }
        Ok(())
    }
    /// Deletes every row this projection wrote, before a rebuild.
    async fn reset(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectionStatus {
    pub name: &'static str,
    pub version: u32,
    pub position: Position,
}

pub(crate) fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub struct Runner {
    log: Arc<dyn EventLog>,
    db: ReadDb,
    projections: Vec<Arc<dyn Projection>>,
    batch: usize,
}

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
    running: Vec<Running>,
    shutdown: watch::Sender<bool>,
}

impl Runner {
    pub fn new(log: Arc<dyn EventLog>, db: ReadDb, projections: Vec<Arc<dyn Projection>>) -> Self {
        Self {
            log,
            db,
            projections,
            batch: 500,
        }
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Loads each checkpoint (resetting projections whose version changed)
    /// and starts one task per projection.
    pub async fn start(self) -> Result<RunnerHandle, ProjectionError> {
        let (shutdown, stop_rx) = watch::channel(false);
        let mut running = Vec::new();
        for p in self.projections {
            let from = prepare_checkpoint(&self.db, p.as_ref()).await?;
            let (tx, rx) = watch::channel(from);
            let task = tokio::spawn(run_projection(
                Arc::clone(&self.log),
                self.db.clone(),
                Arc::clone(&p),
                from,
                self.batch,
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
            running,
            shutdown,
        })
    }
}

/// Where a projection resumes: its checkpoint, or the start of the log after
/// a reset when it has none or its version changed.
async fn prepare_checkpoint(db: &ReadDb, p: &dyn Projection) -> Result<Position, ProjectionError> {
    let row = sqlx::query(
        "SELECT version, commit_pos, prepare_pos FROM projection_checkpoints WHERE name = $1",
    )
    .bind(p.name())
    .fetch_optional(&db.pool)
    .await?;
    if let Some(row) = &row {
        let version: i64 = row.try_get(0)?;
        if version == i64::from(p.version()) {
            let commit: i64 = row.try_get(1)?;
            let prepare: i64 = row.try_get(2)?;
            return Ok(Position::new(commit as u64, prepare as u64));
        }
        tracing::warn!(
            projection = p.name(),
            from = version,
            to = p.version(),
            "projection version changed: rebuilding from the start of the log"
        );
    }
    let mut tx = db.pool.begin().await?;
    p.reset(&mut tx).await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
    save_checkpoint(&mut tx, p, Position::START, 0).await?;
    tx.commit().await?;
    Ok(Position::START)
}

async fn save_checkpoint(
    conn: &mut AnyConnection,
    p: &dyn Projection,
    at: Position,
    applied: u64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, version, commit_pos, prepare_pos, events_applied, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, commit_pos = excluded.commit_pos,
             prepare_pos = excluded.prepare_pos,
             events_applied = projection_checkpoints.events_applied + excluded.events_applied,
             updated_at = excluded.updated_at",
    )
    .bind(p.name())
    .bind(i64::from(p.version()))
    .bind(at.commit as i64)
    .bind(at.prepare as i64)
    .bind(applied as i64)
    .bind(now_text())
    .execute(conn)
    .await?;
    Ok(())
}

async fn apply_batch(
    db: &ReadDb,
    p: &dyn Projection,
    batch: &[RecordedEvent],
) -> Result<Position, ProjectionError> {
    let mut tx = db.pool.begin().await?;
    let handled: Vec<&RecordedEvent> = batch.iter().filter(|e| p.handles(e)).collect();
    if !handled.is_empty() {
        p.apply_batch(&mut tx, db.dialect, &handled).await?;
    }
    let last = batch.last().map_or(Position::START, |e| e.position);
    save_checkpoint(&mut tx, p, last, handled.len() as u64).await?;
    tx.commit().await?;
    Ok(last)
}

async fn run_projection(
    log: Arc<dyn EventLog>,
    db: ReadDb,
    p: Arc<dyn Projection>,
    from: Position,
    batch_size: usize,
    position: watch::Sender<Position>,
    mut stop: watch::Receiver<bool>,
) {
    let name = p.name();
    let mut committed = from;
    let mut sub = Subscription::new(Arc::clone(&log), committed, Filter::all(), batch_size);
    let mut last_count = Instant::now() - Duration::from_secs(60);
    loop {
        let batch = tokio::select! {
            _ = stop.changed() => break,
            b = sub.next_batch() => b,
        };
        let result = match batch {
            Ok(batch) if batch.is_empty() => continue,
            Ok(batch) => apply_batch(&db, p.as_ref(), &batch)
                .await
                .map(|at| (at, batch)),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok((at, batch)) => {
                committed = at;
                position.send_replace(at);
                metrics::counter!("idp_projection_events_total", "projection" => name)
                    .increment(batch.len() as u64);
                let behind = batch.len() >= batch_size;
                let lag_seconds = match batch.last() {
                    Some(last) if behind => (OffsetDateTime::now_utc() - last.recorded_at)
                        .as_seconds_f64()
                        .max(0.0),
                    _ => 0.0,
                };
                metrics::gauge!("idp_projection_lag_seconds", "projection" => name)
                    .set(lag_seconds);
                if !behind {
                    metrics::gauge!("idp_projection_lag_events", "projection" => name).set(0.0);
                } else if last_count.elapsed() > Duration::from_secs(1) {
                    last_count = Instant::now();
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
                sub = Subscription::new(Arc::clone(&log), committed, Filter::all(), batch_size);
            }
        }
    }
}

impl RunnerHandle {
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
