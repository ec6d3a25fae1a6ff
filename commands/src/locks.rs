use std::hash::BuildHasher;

use tokio::sync::{Mutex, MutexGuard};

/// Serializes commands on one stream inside this process, so that a hot
/// stream is a queue rather than a storm of revision conflicts. Striped: a
/// fixed set of locks, each stream hashed onto one, so memory stays bounded
/// whatever the number of streams (two streams rarely share a stripe, and
/// when they do they merely wait for each other).
pub struct StreamLocks {
    stripes: Vec<Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

impl StreamLocks {
    pub fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    pub async fn lock(&self, stream: &str) -> MutexGuard<'_, ()> {
        let i = (self.hasher.hash_one(stream) % self.stripes.len() as u64) as usize;
        self.stripes[i].lock().await
    }
}
