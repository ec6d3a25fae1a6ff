//! Rebuilding projections beside the live ones: one pass over the log fills
//! the next generation of every selected projection (see `generation`),
//! each batch and the next generations' checkpoints in one transaction, and
//! each projection is switched in once it has caught up with the head. An
//! interrupted rebuild resumes from the next generation's checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlog::{EventLog, Filter, Position, RecordedEvent};
use tokio::task::JoinHandle;

use crate::db::{BulkWriter, ReadDb};
use crate::generation::{self, Switched, Tables, next_key, read_checkpoint};
use crate::runner::{Projection, ProjectionError};

/// Events per transaction when rebuilding: large batches amortise the
/// commit and the checkpoint writes.
pub const REBUILD_BATCH: usize = 5_000;

/// Where a rebuild is: events read so far, and how many there are to read
/// (grows while writes arrive), and what it is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub read: u64,
    pub total: u64,
    pub at: Position,
    pub step: Step,
}

/// What a rebuild is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Reading the log into the next generations.
    Applying,
    /// Building `index` of a next generation on SQLite, after its rows:
    /// `built` of `of` are done.
    Indexing {
        projection: &'static str,
        index: String,
        built: usize,
        of: usize,
    },
}

/// What a finished rebuild did.
#[derive(Clone, Debug, PartialEq)]
pub struct RebuildSummary {
    /// Events read from the log (each applied to every projection that
    /// had not yet applied it).
    pub events: u64,
    pub seconds: f64,
    /// Where each projection was switched in (or found switched by another
    /// process).
    pub switched_at: Vec<(&'static str, Position)>,
}

/// Reports a rebuild's progress as log lines, at most one per `every`
/// after the first (a rebuild the server runs at start has no terminal to
/// draw a bar on), and its end.
pub(crate) struct ProgressLog {
    projections: String,
    every: Duration,
    started: Instant,
    last: std::sync::Mutex<Option<Instant>>,
}

/// How often a rebuild at start says where it is.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(10);

impl ProgressLog {
    pub(crate) fn new(projections: &[Arc<dyn Projection>], every: Duration) -> Self {
        let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
        Self {
            projections: names.join(", "),
            every,
            started: eventlog::clock::monotonic(),
            last: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn report(&self, p: &Progress) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < self.every) {
            return;
        }
        *last = Some(eventlog::clock::monotonic());
        let seconds = self.started.elapsed().as_secs_f64();
        match &p.step {
            Step::Applying if p.read == 0 => tracing::info!(
                projections = %self.projections,
                total = p.total,
                "rebuilding read models from the log"
            ),
            Step::Applying => {
                let rate = p.read as f64 / seconds.max(0.001);
                let left = p.total.saturating_sub(p.read) as f64;
                tracing::info!(
                    projections = %self.projections,
                    read = p.read,
                    total = p.total,
                    events_per_second = rate.round() as u64,
                    eta_seconds = (left / rate.max(1.0)).ceil() as u64,
                    "rebuilding read models: reading the log"
                );
            }
            Step::Indexing {
                projection,
                index,
                built,
                of,
            } => tracing::info!(
                projection = %projection,
                index = %index,
                built,
                of,
                "rebuilding read models: building indexes"
            ),
        }
    }

    pub(crate) fn finished(&self, summary: &RebuildSummary) {
        tracing::info!(
            projections = %self.projections,
            events = summary.events,
            seconds = summary.seconds,
            "read models rebuilt and switched in"
        );
    }
}

struct Slot {
    p: Arc<dyn Projection>,
    /// The next generation's checkpoint.
    at: Position,
    done: bool,
}

fn read_page(log: &Arc<dyn EventLog>, after: Position, batch: usize) -> ReadAhead {
    let log = Arc::clone(log);
    tokio::spawn(async move { log.read_all(after, &Filter::all(), batch).await })
}

type ReadAhead = JoinHandle<Result<Vec<RecordedEvent>, eventlog::Error>>;

/// Rebuilds `projections` beside their live tables and switches each in
/// when it has caught up with the log; the live tables keep serving (and
/// a live runner keeps feeding them) until then. Calls `progress` after
/// each batch.
pub async fn rebuild(
    log: &Arc<dyn EventLog>,
    db: &ReadDb,
    projections: &[Arc<dyn Projection>],
    batch: usize,
    progress: &(dyn Fn(&Progress) + Send + Sync),
) -> Result<RebuildSummary, ProjectionError> {
    let started = eventlog::clock::monotonic();
    let batch = batch.max(1);
    let mut writer = BulkWriter::open(db).await?;
    let mut slots = Vec::with_capacity(projections.len());
    for p in projections {
        if slots.iter().any(|s: &Slot| s.p.name() == p.name()) {
            continue;
        }
        let at = generation::prepare_next(db, &mut writer, p.as_ref()).await?;
        slots.push(Slot {
            p: Arc::clone(p),
            at,
            done: false,
        });
    }
    let mut after = lowest(&slots);
    let mut read = 0u64;
    let mut total = log.count_after(after).await?;
    let mut counted = eventlog::clock::monotonic();
    progress(&Progress {
        read,
        total,
        at: after,
        step: Step::Applying,
    });
    // The next page is read while the current one is applied.
    let mut pending = Some(read_page(log, after, batch));
    while slots.iter().any(|s| !s.done) {
        let page = match pending.take() {
            Some(p) => p.await.map_err(|e| ProjectionError::Db(e.to_string()))??,
            None => Vec::new(),
        };
        let short = page.len() < batch;
        if let Some(last) = page.last().map(|e| e.position) {
            pending = Some(read_page(log, last, batch));
            if !apply_next(db, &mut writer, &mut slots, &page, last).await? {
                // Another process moved a next generation: start again
                // from the checkpoints as they are now.
                if let Some(p) = pending.take() {
                    p.abort();
                }
                reload(db, &mut slots).await?;
                after = lowest(&slots);
                pending = Some(read_page(log, after, batch));
                continue;
            }
            after = last;
            read += page.len() as u64;
            if counted.elapsed() > Duration::from_secs(2) {
                counted = eventlog::clock::monotonic();
                total = read + log.count_after(after).await?;
            }
            total = total.max(read);
            progress(&Progress {
                read,
                total,
                at: after,
                step: Step::Applying,
            });
        }
        if short {
            // Caught up with the head as of that read.
            for s in slots.iter_mut().filter(|s| !s.done) {
                let name = s.p.name();
                let building = |index: &str, built: usize, of: usize| {
                    progress(&Progress {
                        read,
                        total: total.max(read),
                        at: after,
                        step: Step::Indexing {
                            projection: name,
                            index: index.to_owned(),
                            built,
                            of,
                        },
                    });
                };
                generation::index_next(db, &mut writer, s.p.as_ref(), &building).await?;
                if generation::switch(db, &mut writer, s.p.as_ref()).await? == Switched::Done {
                    s.done = true;
                }
            }
            if page.is_empty() && slots.iter().any(|s| !s.done) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if pending.is_none() {
            pending = Some(read_page(log, after, batch));
        }
    }
    if let Some(p) = pending.take() {
        p.abort();
    }
    writer.finish().await?;
    let total = total.max(read);
    progress(&Progress {
        read,
        total,
        at: after,
        step: Step::Applying,
    });
    Ok(RebuildSummary {
        events: read,
        seconds: started.elapsed().as_secs_f64(),
        switched_at: slots.iter().map(|s| (s.p.name(), s.at)).collect(),
    })
}

fn lowest(slots: &[Slot]) -> Position {
    slots
        .iter()
        .filter(|s| !s.done)
        .map(|s| s.at)
        .min()
        .unwrap_or(Position::START)
}

/// Applies one page to every next generation that has not seen it, in one
/// transaction; false (nothing written) if a checkpoint was moved by
/// someone else.
async fn apply_next(
    db: &ReadDb,
    writer: &mut BulkWriter,
    slots: &mut [Slot],
    page: &[RecordedEvent],
    last: Position,
) -> Result<bool, ProjectionError> {
    let tables = Tables::next(db.dialect);
    let mut tx = writer.begin().await?;
    for s in slots.iter().filter(|s| !s.done && s.at < last) {
        let handled: Vec<&RecordedEvent> = page
            .iter()
            .filter(|e| e.position > s.at && s.p.handles(e))
            .collect();
        let key = next_key(s.p.name());
        if !generation::advance(
            &mut tx,
            &key,
            s.p.version(),
            s.at,
            last,
            handled.len() as u64,
        )
        .await?
        {
            tx.rollback().await?;
            return Ok(false);
        }
        if !handled.is_empty() {
            s.p.apply_batch(&mut tx, tables, &handled).await?;
        }
    }
    tx.commit().await?;
    writer.committed();
    for s in slots.iter_mut().filter(|s| !s.done && s.at < last) {
        s.at = last;
    }
    Ok(true)
}

/// Reads the next generations' checkpoints again; a projection whose next
/// generation is gone because another process switched it in is done.
async fn reload(db: &ReadDb, slots: &mut [Slot]) -> Result<(), ProjectionError> {
    let mut conn = db.pool.acquire().await?;
    for s in slots.iter_mut().filter(|s| !s.done) {
        let version = s.p.version();
        match read_checkpoint(&mut conn, &next_key(s.p.name())).await? {
            Some(cp) if cp.version == version => s.at = cp.at,
            _ => match read_checkpoint(&mut conn, s.p.name()).await? {
                Some(live) if live.version == version => {
                    s.at = live.at;
                    s.done = true;
                }
                _ => {
                    return Err(ProjectionError::Db(format!(
                        "the next generation of {} was removed by another process",
                        s.p.name()
                    )));
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What was logged, as text.
    #[derive(Clone, Default)]
    struct Logged(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logged {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(every: Duration, steps: &[Progress]) -> String {
        let logged = Logged::default();
        let writer = logged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let projections: Vec<Arc<dyn Projection>> =
                vec![Arc::new(crate::audit::AuditProjection)];
            let said = ProgressLog::new(&projections, every);
            for p in steps {
                said.report(p);
            }
            said.finished(&RebuildSummary {
                events: 800,
                seconds: 1.5,
                switched_at: Vec::new(),
            });
        });
        String::from_utf8(logged.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_rebuild_at_start_says_where_it_is_now_and_then() {
        let reading = |read| Progress {
            read,
            total: 1000,
            at: Position::START,
            step: Step::Applying,
        };
        let indexing = Progress {
            step: Step::Indexing {
                projection: "audit",
                index: "audit_by_actor__next".into(),
                built: 0,
                of: 8,
            },
            ..reading(800)
        };
        let steps = [reading(0), reading(400), reading(800), indexing];

        // The first report at once, the others not before the interval.
        let text = logged(Duration::from_secs(3600), &steps);
        assert!(
            text.contains("from the log projections=audit total=1000"),
            "{text}"
        );
        assert!(!text.contains("reading the log"), "{text}");
        assert!(!text.contains("building indexes"), "{text}");
        assert!(
            text.contains("read models rebuilt and switched in")
                && text.contains("events=800 seconds=1.5"),
            "{text}"
        );

        let text = logged(Duration::ZERO, &steps);
        assert_eq!(text.matches("reading the log").count(), 2, "{text}");
        assert!(text.contains("read=800 total=1000"), "{text}");
        assert!(
            text.contains(
                "building indexes projection=audit index=audit_by_actor__next built=0 of=8"
            ),
            "{text}"
        );
    }
}
