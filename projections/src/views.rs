//! In-memory views of the log that token validation reads on every
//! request: aggregates by id (clients, auth tokens), folded straight from
//! their streams and dropped whenever one of their events arrives, and the
//! revocations still in force. Whoever follows the log keeps them current
//! (`invalidate`, `revoked`); nothing here is written to a database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use domain::Aggregate;
use eventlog::{Direction, EventLog};
use uuid::Uuid;

/// Entries kept at most; past that the cache starts over.
const CACHE_ENTRIES: usize = 100_000;

/// Events read per page when folding a stream.
const PAGE: usize = 500;

/// Aggregates read from the log, by id. The epoch guards against a load
/// racing an invalidation: a state loaded before one is not kept.
pub struct AggregateCache<A> {
    map: RwLock<HashMap<Uuid, Arc<A>>>,
    epoch: AtomicU64,
}

impl<A> Default for AggregateCache<A> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }
}

impl<A: Aggregate> AggregateCache<A> {
    /// The aggregate `id` (`None` when its stream is empty).
    pub async fn get(
        &self,
        log: &Arc<dyn EventLog>,
        id: Uuid,
    ) -> Result<Option<Arc<A>>, eventlog::Error> {
        if let Some(c) = self.map.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(Some(c));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(state) = fold::<A>(log, &format!("{}-{id}", A::CATEGORY)).await? else {
            return Ok(None);
        };
        let state = Arc::new(state);
        if let Ok(mut m) = self.map.write()
            && self.epoch.load(Ordering::Acquire) == epoch
        {
            if m.len() >= CACHE_ENTRIES {
                m.clear();
            }
            m.insert(id, Arc::clone(&state));
        }
        Ok(Some(state))
    }

    /// Drops `id`: an event of its arrived.
    pub fn invalidate(&self, id: Uuid) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut m) = self.map.write() {
            m.remove(&id);
        }
    }
}

/// The state a stream's events fold to; `None` for an empty stream.
async fn fold<A: Aggregate>(
    log: &Arc<dyn EventLog>,
    stream: &str,
) -> Result<Option<A>, eventlog::Error> {
    let mut state = A::default();
    let mut next = 0;
    let mut any = false;
    loop {
        let page = log
            .read_stream(stream, Direction::Forwards, Some(next), PAGE)
            .await?;
        for recorded in &page {
            let event: A::Event = eventlog::decode(recorded)?;
            state = state.evolve(&event);
            next = recorded.revision + 1;
            any = true;
        }
        if page.len() < PAGE {
            return Ok(any.then_some(state));
        }
    }
}

/// Revoked tokens that have not expired yet: jti and expiry (Unix seconds).
#[derive(Default)]
pub struct Revocations {
    revoked: RwLock<HashMap<String, i64>>,
}

impl Revocations {
    /// Whether `jti` was revoked (a poisoned view answers yes).
    pub fn contains(&self, jti: &str) -> bool {
        self.revoked
            .read()
            .map(|r| r.contains_key(jti))
            .unwrap_or(true)
    }

    /// Records a revocation; forgets those expired by `now` (Unix seconds).
    pub fn revoked(&self, jti: String, expires_at: i64, now: i64) {
        if let Ok(mut set) = self.revoked.write() {
            set.retain(|_, exp| *exp > now);
            set.insert(jti, expires_at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_are_kept_until_the_token_would_have_expired() {
        let r = Revocations::default();
        r.revoked("a".into(), 100, 50);
        assert!(r.contains("a") && !r.contains("b"));
        r.revoked("b".into(), 300, 200);
        assert!(!r.contains("a"), "expired: forgotten");
        assert!(r.contains("b"));
    }
}
