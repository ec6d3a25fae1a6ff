use std::sync::Arc;

use domain::{Aggregate, Metadata};
use eventlog::{Direction, EventLog, ExpectedRevision, Position};

use crate::clock::Clock;
use crate::locks::StreamLocks;

const PAGE: usize = 1000;
const STRIPES: usize = 4096;

/// What an executed command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub stream: String,
    /// The stream's revision after the command (`None`: the stream is empty).
    pub revision: Option<u64>,
    /// Where the command's last event landed in the log; `None` when the
    /// command decided that nothing needed to happen.
    pub position: Option<Position>,
    pub events: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(E),
    /// Other processes kept changing the stream; the command was decided
    /// `attempts` times without landing.
    #[error("the stream kept changing under the command ({attempts} attempts)")]
    Contention { attempts: usize },
    #[error(transparent)]
    Log(eventlog::Error),
}

/// Loads a stream, folds it, decides, and appends with `Exact(revision)`;
/// on a revision conflict (another process wrote) it reloads and decides
/// again, a bounded number of times.
pub struct CommandBus {
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    locks: StreamLocks,
    max_attempts: usize,
}

impl CommandBus {
    pub fn new(log: Arc<dyn EventLog>, clock: Arc<dyn Clock>) -> Self {
        Self {
            log,
            clock,
            locks: StreamLocks::new(STRIPES),
            max_attempts: 32,
        }
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn stream_name<A: Aggregate>(id: &str) -> String {
        format!("{}-{id}", A::CATEGORY)
    }

    /// Loads the aggregate `id` and its revision.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<(A, Option<u64>), eventlog::Error> {
        let stream = Self::stream_name::<A>(id);
        let mut state = A::default();
        let mut revision = None;
        loop {
            let from = revision.map_or(0, |r: u64| r + 1);
            let page = self
                .log
                .read_stream(&stream, Direction::Forwards, Some(from), PAGE)
                .await?;
            let n = page.len();
            for recorded in &page {
                let event: A::Event = eventlog::decode(recorded)?;
                state = state.evolve(&event);
                revision = Some(recorded.revision);
            }
            if n < PAGE {
                return Ok((state, revision));
            }
        }
    }

    /// Executes `command` against aggregate `id`.
    pub async fn execute<A>(
        &self,
        id: &str,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Outcome, CommandError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone,
    {
        let stream = Self::stream_name::<A>(id);
        let _serialized = self.locks.lock(&stream).await;
        for attempt in 0..self.max_attempts {
            let (state, revision) = self.load::<A>(id).await.map_err(CommandError::Log)?;
            let now = self.clock.now();
            let events = state
                .decide(command.clone(), now)
                .map_err(CommandError::Domain)?;
            if events.is_empty() {
                return Ok(Outcome {
                    stream,
                    revision,
                    position: None,
                    events: 0,
                });
            }
            let mut meta = metadata.clone();
            meta.occurred_at = now;
            let new_events: Vec<_> = events.iter().map(|e| eventlog::encode(e, &meta)).collect();
            let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            match self.log.append(&stream, expected, new_events).await {
                Ok(r) => {
                    metrics::counter!("idp_commands_total", "category" => A::CATEGORY).increment(1);
                    return Ok(Outcome {
                        stream,
                        revision: Some(r.next_expected_revision),
                        position: Some(r.position),
                        events: events.len(),
                    });
                }
                Err(eventlog::Error::WrongExpectedRevision { .. }) => {
                    metrics::counter!("idp_command_conflicts_total", "category" => A::CATEGORY)
                        .increment(1);
                    // Another process wrote; a short random pause keeps two
                    // busy writers from colliding in lockstep.
                    let pause = rand::random_range(0..=(attempt as u64 + 1) * 200);
                    tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
                    continue;
                }
                Err(e) => return Err(CommandError::Log(e)),
            }
        }
        Err(CommandError::Contention {
            attempts: self.max_attempts,
        })
    }
}
