use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::{Aggregate, Metadata};
use eventlog::{Direction, EventLog, ExpectedRevision, Position};

use crate::clock::Clock;
use crate::locks::StreamLocks;

const PAGE: usize = 1000;
const STRIPES: usize = 4096;
/// How many aggregates' states the bus keeps between commands.
const CACHED_STREAMS: usize = 10_000;

/// The folded state of an aggregate after its last known event.
#[derive(Clone)]
struct Cached {
    state: Arc<dyn Any + Send + Sync>,
    revision: Option<u64>,
}

/// States of recently commanded aggregates, so a hot stream is not read and
/// folded from its first event on every command. Correct across processes:
/// an append is still `Exact(revision)`, and a conflict catches the cached
/// state up from the log.
#[derive(Default)]
struct StateCache {
    map: Mutex<HashMap<String, Cached>>,
}

impl StateCache {
    fn get<A: Aggregate + Clone>(&self, stream: &str) -> Option<(A, Option<u64>)> {
        let map = self.map.lock().ok()?;
        let c = map.get(stream)?;
        let state = c.state.downcast_ref::<A>()?.clone();
        Some((state, c.revision))
    }

    fn put<A: Aggregate + Clone>(&self, stream: &str, state: A, revision: Option<u64>) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= CACHED_STREAMS
                && !map.contains_key(stream)
                && let Some(victim) = map.keys().next().cloned()
            {
                map.remove(&victim);
            }
            map.insert(
                stream.to_owned(),
                Cached {
                    state: Arc::new(state),
                    revision,
                },
            );
        }
    }

    fn forget(&self, stream: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(stream);
        }
    }
}

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
    cache: StateCache,
    max_attempts: usize,
    persons: Option<Arc<crate::crypto::PersonIds>>,
}

impl CommandBus {
    pub fn new(log: Arc<dyn EventLog>, clock: Arc<dyn Clock>) -> Self {
        Self {
            log,
            clock,
            locks: StreamLocks::new(STRIPES),
            cache: StateCache::default(),
            max_attempts: 32,
            persons: None,
        }
    }

    /// Names people by keyed pseudonyms (see [`crate::crypto::PersonIds`]);
    /// without it, events name no subject.
    pub fn with_person_ids(mut self, ids: crate::crypto::PersonIds) -> Self {
        self.persons = Some(Arc::new(ids));
        self
    }

    pub fn person_ids(&self) -> Option<&crate::crypto::PersonIds> {
        self.persons.as_deref()
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

    /// Loads the aggregate `id` and its revision, fresh from the log.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<(A, Option<u64>), eventlog::Error> {
        let stream = Self::stream_name::<A>(id);
        let mut state = A::default();
        let revision = self.catch_up(&stream, &mut state, None).await?;
        Ok((state, revision))
    }

    /// Folds the events of `stream` after `revision` into `state`; returns
    /// the revision reached.
    async fn catch_up<A: Aggregate>(
        &self,
        stream: &str,
        state: &mut A,
        mut revision: Option<u64>,
    ) -> Result<Option<u64>, eventlog::Error> {
        loop {
            let from = revision.map_or(0, |r: u64| r + 1);
            let page = self
                .log
                .read_stream(stream, Direction::Forwards, Some(from), PAGE)
                .await?;
            let n = page.len();
            for recorded in &page {
                let event: A::Event = eventlog::decode(recorded)?;
                *state = std::mem::take(state).evolve(&event);
                revision = Some(recorded.revision);
            }
            if n < PAGE {
                return Ok(revision);
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
        A: Aggregate + Clone,
        A::Command: Clone,
    {
        let stream = Self::stream_name::<A>(id);
        let _serialized = self.locks.lock(&stream).await;
        let (mut state, mut revision, mut fresh) = match self.cache.get::<A>(&stream) {
            Some((state, revision)) => (state, revision, false),
            None => {
                let mut state = A::default();
                let revision = self
                    .catch_up(&stream, &mut state, None)
                    .await
                    .map_err(CommandError::Log)?;
                (state, revision, true)
            }
        };
        for attempt in 0..self.max_attempts {
            let now = self.clock.now();
            let events = match state.decide(command.clone(), now) {
                Ok(events) => events,
                // A refusal decided on a cached state must hold on the log's
                // latest state too: catch up and decide again if it moved.
                Err(e) if !fresh => {
                    let before = revision;
                    revision = self
                        .catch_up(&stream, &mut state, revision)
                        .await
                        .map_err(CommandError::Log)?;
                    fresh = true;
                    self.cache.put(&stream, state.clone(), revision);
                    if revision == before {
                        return Err(CommandError::Domain(e));
                    }
                    continue;
                }
                Err(e) => return Err(CommandError::Domain(e)),
            };
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
                    let state = events.iter().fold(state, A::evolve);
                    self.cache
                        .put(&stream, state, Some(r.next_expected_revision));
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
                    revision = match self.catch_up(&stream, &mut state, revision).await {
                        Ok(r) => r,
                        Err(e) => {
                            self.cache.forget(&stream);
                            return Err(CommandError::Log(e));
                        }
                    };
                    fresh = true;
                    continue;
                }
                Err(e) => {
                    self.cache.forget(&stream);
                    return Err(CommandError::Log(e));
                }
            }
        }
        self.cache.forget(&stream);
        Err(CommandError::Contention {
            attempts: self.max_attempts,
        })
    }
}
