use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::{Aggregate, Metadata};
use eventlog::{Direction, EventLog, ExpectedRevision, Position};

use crate::Clock;
use crate::batch::{self, Queues};
use crate::locks::StreamLocks;

const PAGE: usize = 1000;
const STRIPES: usize = 4096;
/// How many aggregates' states the bus keeps between commands (at most; in
/// two generations of half as many each).
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
///
/// Two generations: states are put into the current one, and a state found
/// only in the previous one moves back into the current one. When the
/// current one is full it becomes the previous one and the oldest states are
/// dropped. A stream in use stays cached however many new streams pass
/// through (every consumption creates one), where evicting an arbitrary entry
/// would now and then drop the hot one and fold its whole history again.
#[derive(Default)]
pub(crate) struct StateCache {
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<String, Cached>,
    previous: HashMap<String, Cached>,
}

impl Generations {
    fn insert(&mut self, stream: String, cached: Cached) {
        if self.current.len() >= CACHED_STREAMS / 2 && !self.current.contains_key(&stream) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.previous.remove(&stream);
        self.current.insert(stream, cached);
    }
}

impl StateCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // Every critical section leaves both maps whole.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get<A: Aggregate + Clone>(&self, stream: &str) -> Option<(A, Option<u64>)> {
        let mut g = self.lock();
        let cached = match g.current.get(stream) {
            Some(c) => c.clone(),
            None => {
                let c = g.previous.remove(stream)?;
                g.insert(stream.to_owned(), c.clone());
                c
            }
        };
        let state = cached.state.downcast_ref::<A>()?.clone();
        Some((state, cached.revision))
    }

    pub(crate) fn put<A: Aggregate + Clone>(&self, stream: &str, state: A, revision: Option<u64>) {
        self.lock().insert(
            stream.to_owned(),
            Cached {
                state: Arc::new(state),
                revision,
            },
        );
    }

    /// [`Self::put`], unless a later state of the stream is cached already
    /// (a command that appended while this state was read).
    fn put_unless_older<A: Aggregate + Clone>(
        &self,
        stream: &str,
        state: A,
        revision: Option<u64>,
    ) {
        let mut g = self.lock();
        let held = g.current.get(stream).or_else(|| g.previous.get(stream));
        if held.is_some_and(|c| c.revision > revision) {
            return;
        }
        g.insert(
            stream.to_owned(),
            Cached {
                state: Arc::new(state),
                revision,
            },
        );
    }

    pub(crate) fn forget(&self, stream: &str) {
        let mut g = self.lock();
        g.current.remove(stream);
        g.previous.remove(stream);
    }

    fn clear(&self) {
        *self.lock() = Generations::default();
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
    /// The caller acted on revision `expected` (an `If-Match`), and the
    /// stream has moved on.
    #[error("the stream is at revision {actual:?}, not {expected}")]
    Stale { expected: u64, actual: Option<u64> },
    #[error(transparent)]
    Log(eventlog::Error),
}

/// How a command is decided: on a state read from the log just now
/// (`fresh`) or from the cache, and only at a revision (`precondition`).
struct Decide {
    fresh: bool,
    precondition: Option<u64>,
}

impl Decide {
    fn fresh(fresh: bool) -> Self {
        Self {
            fresh,
            precondition: None,
        }
    }
}

/// Loads a stream, folds it, decides, and appends with `Exact(revision)`;
/// on a revision conflict (another process wrote) it reloads and decides
/// again, a bounded number of times.
///
/// Two paths share the per-stream serialization and the state cache:
/// [`CommandBus::execute`] runs one command at a time, and
/// [`CommandBus::execute_batched`] queues commands of a hot stream and
/// decides every command that queued while the previous append was in
/// flight together, in one append (see `batch.rs`).
pub struct CommandBus {
    core: Arc<Core>,
    persons: Option<Arc<dyn domain::privacy::Pseudonyms>>,
}

/// What both paths share; the batch worker holds it beyond the caller.
pub(crate) struct Core {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) locks: StreamLocks,
    pub(crate) cache: StateCache,
    pub(crate) queues: Queues,
    pub(crate) max_attempts: usize,
}

impl CommandBus {
    pub fn new(log: Arc<dyn EventLog>, clock: Arc<dyn Clock>) -> Self {
        Self {
            core: Arc::new(Core {
                log,
                clock,
                locks: StreamLocks::new(STRIPES),
                cache: StateCache::default(),
                queues: Queues::default(),
                max_attempts: 32,
            }),
            persons: None,
        }
    }

    /// Names people by keyed pseudonyms (the privacy crate's `PersonIds`);
    /// without them, events name no subject.
    pub fn with_person_ids(mut self, ids: Arc<dyn domain::privacy::Pseudonyms>) -> Self {
        self.persons = Some(ids);
        self
    }

    pub fn person_ids(&self) -> Option<&dyn domain::privacy::Pseudonyms> {
        self.persons.as_deref()
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.core.log
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.core.clock
    }

    pub fn stream_name<A: Aggregate>(id: &str) -> String {
        format!("{}-{id}", A::CATEGORY)
    }

    /// The aggregate `id` and its revision as the log has them now: this
    /// bus's cached fold caught up with what came after it (one short read
    /// past its revision), or the whole stream when nothing is cached. A
    /// long stream (a group of many members, a person who signed in every
    /// day for years) is not read and decoded whole every time.
    pub async fn load<A: Aggregate + Clone>(
        &self,
        id: &str,
    ) -> Result<(A, Option<u64>), eventlog::Error> {
        let stream = Self::stream_name::<A>(id);
        let (mut state, from) = self.core.cache.get::<A>(&stream).unwrap_or_default();
        let revision = self.core.catch_up(&stream, &mut state, from).await?;
        if revision.is_some() && revision != from {
            self.core
                .cache
                .put_unless_older(&stream, state.clone(), revision);
        }
        Ok((state, revision))
    }

    /// Drops every cached state: after an erasure, no fold opened with the
    /// erased subject's key outlives it in memory.
    pub fn forget_states(&self) {
        self.core.cache.clear();
    }

    /// The state of aggregate `id` as this bus last saw it, if it is cached.
    /// It may be behind the log: use it only for facts that never change
    /// once the stream exists (a token's hash, its owner).
    pub fn cached<A: Aggregate + Clone>(&self, id: &str) -> Option<A> {
        self.core
            .cache
            .get::<A>(&Self::stream_name::<A>(id))
            .map(|(state, _)| state)
    }

    /// The state of aggregate `id` this bus cached at `revision` (the one
    /// its own command left, say), if that is still what it holds.
    pub fn cached_at<A: Aggregate + Clone>(&self, id: &str, revision: Option<u64>) -> Option<A> {
        self.core
            .cache
            .get::<A>(&Self::stream_name::<A>(id))
            .filter(|(_, r)| *r == revision && revision.is_some())
            .map(|(state, _)| state)
    }

    /// The aggregate `id` from the cache, or read from the log and cached:
    /// for facts that never change once true (an organization exists).
    pub async fn load_cached<A: Aggregate + Clone>(&self, id: &str) -> Result<A, eventlog::Error> {
        let stream = Self::stream_name::<A>(id);
        if let Some((state, _)) = self.core.cache.get::<A>(&stream) {
            return Ok(state);
        }
        let _serialized = self.core.locks.lock(&stream).await;
        if let Some((state, _)) = self.core.cache.get::<A>(&stream) {
            return Ok(state);
        }
        let mut state = A::default();
        let revision = self.core.catch_up(&stream, &mut state, None).await?;
        self.core.cache.put(&stream, state.clone(), revision);
        Ok(state)
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
        let _serialized = self.core.locks.lock(&stream).await;
        let (state, revision, fresh) = match self.core.cache.get::<A>(&stream) {
            Some((state, revision)) => (state, revision, false),
            None => {
                let mut state = A::default();
                let revision = self
                    .core
                    .catch_up(&stream, &mut state, None)
                    .await
                    .map_err(CommandError::Log)?;
                (state, revision, true)
            }
        };
        self.core
            .decide_and_append::<A>(
                &stream,
                state,
                revision,
                Decide::fresh(fresh),
                command,
                metadata,
            )
            .await
    }

    /// [`Self::execute`], only if the stream is at revision `expected` when
    /// the command is decided and appended (an `If-Match` on the revision
    /// a caller read): otherwise [`CommandError::Stale`], and nothing is
    /// written. A conflict with another writer is never decided again.
    pub async fn execute_at<A>(
        &self,
        id: &str,
        expected: u64,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Outcome, CommandError<A::Error>>
    where
        A: Aggregate + Clone,
        A::Command: Clone,
    {
        let stream = Self::stream_name::<A>(id);
        let _serialized = self.core.locks.lock(&stream).await;
        let mut state = A::default();
        let revision = self
            .core
            .catch_up(&stream, &mut state, None)
            .await
            .map_err(CommandError::Log)?;
        self.core
            .decide_and_append::<A>(
                &stream,
                state,
                revision,
                Decide {
                    fresh: true,
                    precondition: Some(expected),
                },
                command,
                metadata,
            )
            .await
    }

    /// Executes `command` against aggregate `id`, a stream the caller has
    /// just named with a fresh id (`Uuid::now_v7`): it is decided against
    /// the empty state and appended with `NoStream`, without reading the
    /// stream first. If the stream exists after all (a retry of an append
    /// that landed), the command is decided again on what is there.
    pub async fn execute_new<A>(
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
        let _serialized = self.core.locks.lock(&stream).await;
        let (state, revision) = self
            .core
            .cache
            .get::<A>(&stream)
            .unwrap_or_else(|| (A::default(), None));
        // "Fresh": a refusal of the empty state is final only if the stream
        // is still empty, which the append would tell; refusing a brand-new
        // stream's first command reads the log to be sure.
        self.core
            .decide_and_append::<A>(
                &stream,
                state,
                revision,
                Decide::fresh(false),
                command,
                metadata,
            )
            .await
    }

    /// Executes `command` against aggregate `id` together with the commands
    /// other callers queue for the same stream meanwhile: while one append
    /// to the stream is in flight, the commands that arrive wait, and the
    /// next append carries all of them. Each is decided in arrival order
    /// against the state the previous ones left, each refusal is answered
    /// to its own caller, and the accepted ones' events (each with its own
    /// metadata) land in one `Exact` append, so a count enforced by the
    /// aggregate stays exact. The outcome's position is the batch's last
    /// event, committed atomically with this command's events.
    ///
    /// The batch runs on a task of its own: a caller that goes away does
    /// not abandon the commands queued behind it.
    pub async fn execute_batched<A>(
        &self,
        id: &str,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Outcome, CommandError<A::Error>>
    where
        A: Aggregate + Clone,
        A::Command: Clone + 'static,
    {
        let stream = Self::stream_name::<A>(id);
        batch::submit::<A>(&self.core, stream, command, metadata.clone()).await
    }
}

impl Core {
    /// Folds the events of `stream` after `revision` into `state`; returns
    /// the revision reached.
    pub(crate) async fn catch_up<A: Aggregate>(
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

    /// The loop of [`CommandBus::execute`] once the stream's lock is held
    /// and a starting state is known (`fresh`: read from the log just now).
    async fn decide_and_append<A>(
        &self,
        stream: &str,
        mut state: A,
        mut revision: Option<u64>,
        how: Decide,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Outcome, CommandError<A::Error>>
    where
        A: Aggregate + Clone,
        A::Command: Clone,
    {
        let Decide {
            mut fresh,
            precondition,
        } = how;
        for attempt in 0..self.max_attempts {
            if let Some(expected) = precondition
                && revision != Some(expected)
            {
                return Err(CommandError::Stale {
                    expected,
                    actual: revision,
                });
            }
            let now = self.clock.now();
            let events = match state.decide(command.clone(), now) {
                Ok(events) => events,
                // A refusal decided on a cached state must hold on the log's
                // latest state too: catch up and decide again if it moved.
                Err(e) if !fresh => {
                    let before = revision;
                    revision = self
                        .catch_up(stream, &mut state, revision)
                        .await
                        .map_err(CommandError::Log)?;
                    fresh = true;
                    self.cache.put(stream, state.clone(), revision);
                    if revision == before {
                        return Err(CommandError::Domain(e));
                    }
                    continue;
                }
                Err(e) => return Err(CommandError::Domain(e)),
            };
            if events.is_empty() {
                return Ok(Outcome {
                    stream: stream.to_owned(),
                    revision,
                    position: None,
                    events: 0,
                });
            }
            let mut meta = metadata.clone();
            meta.occurred_at = now;
            let new_events: Vec<_> = events.iter().map(|e| eventlog::encode(e, &meta)).collect();
            let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            match self.log.append(stream, expected, new_events).await {
                Ok(r) => {
                    metrics::counter!("idp_commands_total", "category" => A::CATEGORY).increment(1);
                    let state = events.iter().fold(state, A::evolve);
                    self.cache
                        .put(stream, state, Some(r.next_expected_revision));
                    return Ok(Outcome {
                        stream: stream.to_owned(),
                        revision: Some(r.next_expected_revision),
                        position: Some(r.position),
                        events: events.len(),
                    });
                }
                Err(eventlog::Error::WrongExpectedRevision { .. }) => {
                    revision = match self
                        .after_conflict(stream, &mut state, revision, attempt)
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => return Err(CommandError::Log(e)),
                    };
                    fresh = true;
                }
                Err(e) => {
                    self.cache.forget(stream);
                    return Err(CommandError::Log(e));
                }
            }
        }
        self.cache.forget(stream);
        Err(CommandError::Contention {
            attempts: self.max_attempts,
        })
    }

    /// Another process wrote to `stream`: a short random pause keeps two
    /// busy writers from colliding in lockstep, then `state` catches up.
    /// On a failed read the cached state is dropped.
    pub(crate) async fn after_conflict<A: Aggregate>(
        &self,
        stream: &str,
        state: &mut A,
        revision: Option<u64>,
        attempt: usize,
    ) -> Result<Option<u64>, eventlog::Error> {
        metrics::counter!("idp_command_conflicts_total", "category" => A::CATEGORY).increment(1);
        let pause = rand::random_range(0..=(attempt as u64 + 1) * 200);
        tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
        self.catch_up(stream, state, revision)
            .await
            .inspect_err(|_| {
                self.cache.forget(stream);
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::organization::Organization;

    #[test]
    fn a_stream_in_use_stays_cached_while_many_new_ones_pass() {
        let cache = StateCache::default();
        cache.put("organization-hot", Organization::default(), Some(7));
        cache.put("organization-cold", Organization::default(), Some(1));
        for i in 0..5 * CACHED_STREAMS {
            cache.put(&format!("organization-{i}"), Organization::default(), None);
            if i % 100 == 0 {
                assert!(cache.get::<Organization>("organization-hot").is_some());
            }
        }
        assert_eq!(
            cache
                .get::<Organization>("organization-hot")
                .map(|(_, r)| r),
            Some(Some(7))
        );
        assert!(cache.get::<Organization>("organization-cold").is_none());
        let g = cache.lock();
        assert!(g.current.len() + g.previous.len() <= CACHED_STREAMS);
    }
}
