//! The batched path of the command bus ([`CommandBus::execute_batched`]):
//! commands of one hot stream that arrive while an append to it is in flight
//! are decided together and appended in one `Exact` append.
//!
//! One worker task per busy stream drains the stream's queue: it takes the
//! stream's lock (so `execute` on the same stream still interleaves, in
//! turn), takes every command waiting (up to [`MAX_BATCH`]), decides them in
//! arrival order against the state the previous ones leave, appends the
//! accepted ones' events at once, answers each caller, releases the lock and
//! starts over. A stream's entry in [`Queues`] exists exactly while its
//! worker runs; the worker removes it, under the same mutex callers push
//! under, when it finds the queue empty.
//!
//! [`CommandBus::execute_batched`]: crate::CommandBus::execute_batched

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain::{Aggregate, Metadata};
use eventlog::{ExpectedRevision, NewEvent};
use tokio::sync::oneshot;

use crate::bus::{CommandError, Core, Outcome};

/// The most commands one append carries.
const MAX_BATCH: usize = 256;

type Answer<A> = Result<Outcome, CommandError<<A as Aggregate>::Error>>;

/// One caller's command, waiting for its stream's worker.
struct Queued<A: Aggregate> {
    command: A::Command,
    metadata: Metadata,
    reply: oneshot::Sender<Answer<A>>,
}

/// The commands waiting per stream, type-erased (a stream's commands all
/// belong to the aggregate its category names).
#[derive(Default)]
pub(crate) struct Queues {
    map: Mutex<HashMap<String, Vec<Box<dyn Any + Send>>>>,
}

impl Queues {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Box<dyn Any + Send>>>> {
        // The critical sections only move boxes around and cannot leave the
        // map half-changed.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Queues `command` for `stream` and waits for its answer, starting the
/// stream's worker if none runs.
pub(crate) async fn submit<A>(
    core: &Arc<Core>,
    stream: String,
    command: A::Command,
    metadata: Metadata,
) -> Answer<A>
where
    A: Aggregate + Clone,
    A::Command: Clone + 'static,
{
    let (reply, answer) = oneshot::channel();
    let queued: Box<dyn Any + Send> = Box::new(Queued::<A> {
        command,
        metadata,
        reply,
    });
    let start = {
        let mut map = core.queues.lock();
        match map.get_mut(&stream) {
            Some(waiting) => {
                waiting.push(queued);
                false
            }
            None => {
                map.insert(stream.clone(), vec![queued]);
                true
            }
        }
    };
    if start {
        tokio::spawn(work::<A>(Arc::clone(core), stream));
    }
    answer.await.unwrap_or_else(|_| {
        Err(CommandError::Log(eventlog::Error::Backend(
            "the command's batch was interrupted".into(),
        )))
    })
}

/// Removes the stream's queue if the worker stops without emptying it (the
/// runtime shutting down), so that the next command starts a new worker and
/// the abandoned callers are answered (their reply senders are dropped).
struct Abandon<'a> {
    core: &'a Core,
    stream: &'a str,
    done: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.core.queues.lock().remove(self.stream);
        }
    }
}

async fn work<A>(core: Arc<Core>, stream: String)
where
    A: Aggregate + Clone,
    A::Command: Clone + 'static,
{
    let mut abandon = Abandon {
        core: &core,
        stream: &stream,
        done: false,
    };
    loop {
        let _serialized = core.locks.lock(&stream).await;
        let batch: Vec<Queued<A>> = {
            let mut map = core.queues.lock();
            let waiting = map.entry(stream.clone()).or_default();
            if waiting.is_empty() {
                map.remove(&stream);
                abandon.done = true;
                return;
            }
            let n = waiting.len().min(MAX_BATCH);
            waiting
                .drain(..n)
                .filter_map(|q| q.downcast::<Queued<A>>().ok().map(|q| *q))
                .collect()
        };
        run::<A>(&core, &stream, batch).await;
    }
}

/// Answers every command of a batch with the same log failure.
fn fail_all<A: Aggregate>(batch: Vec<Queued<A>>, e: &eventlog::Error) {
    for q in batch {
        let _ = q.reply.send(Err(CommandError::Log(e.clone())));
    }
}

/// Decides and appends one batch, with the conflict retries of
/// [`CommandBus::execute`](crate::CommandBus::execute), and answers every
/// command in it.
async fn run<A>(core: &Core, stream: &str, batch: Vec<Queued<A>>)
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    let (mut state, mut revision, mut fresh) = match core.cache.get::<A>(stream) {
        Some((state, revision)) => (state, revision, false),
        None => {
            let mut state = A::default();
            match core.catch_up(stream, &mut state, None).await {
                Ok(revision) => (state, revision, true),
                Err(e) => return fail_all(batch, &e),
            }
        }
    };
    for attempt in 0..core.max_attempts {
        let now = core.clock.now();
        let mut next = state.clone();
        let mut decisions: Vec<Result<usize, A::Error>> = Vec::with_capacity(batch.len());
        let mut events: Vec<NewEvent> = Vec::new();
        for q in &batch {
            match next.decide(q.command.clone(), now) {
                Ok(decided) => {
                    let mut meta = q.metadata.clone();
                    meta.occurred_at = now;
                    events.extend(decided.iter().map(|e| eventlog::encode(e, &meta)));
                    next = decided.iter().fold(next, A::evolve);
                    decisions.push(Ok(decided.len()));
                }
                Err(e) => decisions.push(Err(e)),
            }
        }
        // A refusal decided on a cached state must hold on the log's latest
        // state too: catch up and decide the batch again if it moved.
        if !fresh && decisions.iter().any(Result::is_err) {
            let before = revision;
            revision = match core.catch_up(stream, &mut state, revision).await {
                Ok(r) => r,
                Err(e) => return fail_all(batch, &e),
            };
            fresh = true;
            core.cache.put(stream, state.clone(), revision);
            if revision != before {
                continue;
            }
        }
        if events.is_empty() {
            return answer(stream, batch, decisions, revision, None);
        }
        let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        match core.log.append(stream, expected, events).await {
            Ok(r) => {
                let accepted = decisions.iter().filter(|d| d.is_ok()).count();
                metrics::counter!("idp_commands_total", "category" => A::CATEGORY)
                    .increment(accepted as u64);
                core.cache.put(stream, next, Some(r.next_expected_revision));
                return answer(stream, batch, decisions, revision, Some(r.position));
            }
            Err(eventlog::Error::WrongExpectedRevision { .. }) => {
                revision = match core
                    .after_conflict(stream, &mut state, revision, attempt)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => return fail_all(batch, &e),
                };
                fresh = true;
            }
            Err(e) => {
                core.cache.forget(stream);
                return fail_all(batch, &e);
            }
        }
    }
    core.cache.forget(stream);
    for q in batch {
        let _ = q.reply.send(Err(CommandError::Contention {
            attempts: core.max_attempts,
        }));
    }
}

/// Answers each command of a decided batch: its refusal, or the revision
/// its events brought the stream to (counted from `base`, the revision the
/// batch was decided on) and the batch's position.
fn answer<A: Aggregate>(
    stream: &str,
    batch: Vec<Queued<A>>,
    decisions: Vec<Result<usize, A::Error>>,
    base: Option<u64>,
    position: Option<eventlog::Position>,
) {
    let stream_revision = |r: Option<u64>, n: usize| match (r, n) {
        (r, 0) => r,
        (None, n) => Some(n as u64 - 1),
        (Some(r), n) => Some(r + n as u64),
    };
    let mut revision = base;
    for (q, decision) in batch.into_iter().zip(decisions) {
        let result = match decision {
            Ok(n) => {
                revision = stream_revision(revision, n);
                Ok(Outcome {
                    stream: stream.to_owned(),
                    revision,
                    position: position.filter(|_| n > 0),
                    events: n,
                })
            }
            Err(e) => Err(CommandError::Domain(e)),
        };
        let _ = q.reply.send(result);
    }
}
