//! Per-subject data keys: 256-bit random keys, one per subject, sealed under
//! the master key (the subject as associated data) in a `subject_keys`
//! table (`keys.db` on the embedded default, else the read database's),
//! never in the log. Deleting a subject's row is the
//! erasure: every value encrypted under the key becomes unreadable.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::key_store as subject_keys;
use commands::Clock;
use commands::crypto::{self, MasterKey};
use projections::{ProjectionError, ReadDb};
use time::format_description::well_known::Rfc3339;

/// A subject's data key.
pub type DataKey = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("subject key table: {0}")]
    Db(#[from] ProjectionError),
    #[error("the key of subject {0} does not open with this master key")]
    Unsealable(String),
}

/// Called with the subject of an eviction.
type EvictHook = Box<dyn Fn(&str) + Send + Sync>;

/// Keys kept in memory at most.
const CACHED_KEYS: usize = 50_000;

pub struct SubjectKeys {
    db: ReadDb,
    master: MasterKey,
    clock: Arc<dyn Clock>,
    /// Keys already opened. An erasure evicts its subject here; other nodes
    /// evict when the erasure event passes through their log.
    cache: RwLock<HashMap<String, DataKey>>,
    /// Told of every eviction (an erasure, here or seen from another
    /// node), so that what was opened with the key is dropped too.
    on_evict: RwLock<Vec<EvictHook>>,
}

impl SubjectKeys {
    pub fn new(db: ReadDb, master: MasterKey, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            master,
            clock,
            cache: RwLock::new(HashMap::new()),
            on_evict: RwLock::new(Vec::new()),
        }
    }

    /// Calls `f` with the subject of every erasure this node makes or sees.
    pub fn on_evict(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.on_evict
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }

    fn cached(&self, subject: &str) -> Option<DataKey> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(subject)
            .copied()
    }

    fn remember(&self, subject: &str, key: DataKey) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        // Bounded: a replay of a million people must not keep a million
        // keys in memory. Past the bound the cache starts over.
        if cache.len() >= CACHED_KEYS {
            cache.clear();
        }
        cache.insert(subject.to_owned(), key);
    }

    pub fn evict(&self, subject: &str) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(subject);
        for f in self
            .on_evict
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            f(subject);
        }
    }

    async fn load(&self, subject: &str) -> Result<Option<DataKey>, VaultError> {
        let Some(sealed) = subject_keys::sealed(&self.db, subject).await? else {
            return Ok(None);
        };
        let opened = crypto::open(&self.master, subject.as_bytes(), &sealed)
            .map_err(|_| VaultError::Unsealable(subject.to_owned()))?;
        let key: DataKey = opened
            .try_into()
            .map_err(|_| VaultError::Unsealable(subject.to_owned()))?;
        self.remember(subject, key);
        Ok(Some(key))
    }

    /// The subject's key, if it still exists.
    pub async fn key(&self, subject: &str) -> Result<Option<DataKey>, VaultError> {
        match self.cached(subject) {
            Some(key) => Ok(Some(key)),
            None => self.load(subject).await,
        }
    }

    /// The subject's key, created on first use. Two writers creating the same
    /// subject's key at once both end up with the one stored first.
    pub async fn key_or_create(&self, subject: &str) -> Result<DataKey, VaultError> {
        if let Some(key) = self.cached(subject) {
            return Ok(key);
        }
        // Most subjects seen here for the first time are new: one insert,
        // and a read only when the subject had a key after all.
        let fresh: DataKey = rand::random();
        let sealed = crypto::seal(&self.master, subject.as_bytes(), &fresh);
        let now = self.clock.now().format(&Rfc3339).unwrap_or_default();
        if subject_keys::insert(&self.db, subject, &sealed, &now).await? {
            self.remember(subject, fresh);
            return Ok(fresh);
        }
        self.load(subject)
            .await?
            .ok_or_else(|| VaultError::Unsealable(subject.to_owned()))
    }

    /// Closes the database the keys are in (at shutdown).
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Deletes the subject's key (crypto-shredding); true if there was one.
    /// On SQLite the write-ahead log is then pushed into the (overwritten)
    /// file, so the sealed key is gone from both.
    pub async fn erase(&self, subject: &str) -> Result<bool, VaultError> {
        self.evict(subject);
        let deleted = subject_keys::delete(&self.db, subject).await?;
        self.evict(subject);
        self.db.checkpoint().await?;
        Ok(deleted)
    }
}
