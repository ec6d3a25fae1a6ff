//! Passwords as credentials: the policy a new password must pass
//! (`domain::password`, with the configured deny list) and argon2id hashing
//! in PHC form. Hashing and verifying run on a bounded pool of blocking
//! threads, so a burst of them never stalls the async workers and never
//! takes more than its share of the cores.
//!
//! Each of the pool's slots keeps its argon2 memory (19 MiB at the default
//! cost) from one hash to the next. Allocating it afresh for every hash
//! has the kernel fault in and zero every page of it, and unmap it after,
//! interrupting the other cores to flush their address translations: a
//! tenth of a server's time under a stream of sign-ins.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use domain::password::{PasswordPolicy, PasswordRefused, normalize_password};
use tokio::sync::Semaphore;

/// The argon2id cost parameters. The default is OWASP's first
/// recommendation: 19 MiB of memory, 2 iterations, 1 lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the argon2 parameters are not usable: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hashing(String),
    #[error("the hashing pool is closed")]
    PoolClosed,
}

/// The password policy, the deny list and the hasher.
pub struct Passwords {
    policy: PasswordPolicy,
    /// Denied passwords, normalized and lower-cased.
    denied: HashSet<String>,
    params: Params,
    pool: Arc<Semaphore>,
    /// The argon2 memory of the slots not hashing now: at most one per
    /// permit of `pool` ever exists.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    /// A hash of a random password at the current parameters: verified
    /// against when there is no user or no password, so that an unknown
    /// name costs what a wrong password costs.
    dummy: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("policy", &self.policy)
            .field("denied", &self.denied.len())
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// `threads` hashes run at most at once (at least one).
    pub fn new(
        policy: PasswordPolicy,
        denied: impl IntoIterator<Item = String>,
        params: HashParams,
        threads: usize,
    ) -> Result<Self, PasswordError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        Ok(Self {
            policy,
            denied: denied
                .into_iter()
                .map(|d| normalize_password(d.trim()).to_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
            params,
            pool: Arc::new(Semaphore::new(threads.max(1))),
            memory: Arc::new(Mutex::new(Vec::new())),
            dummy: std::sync::OnceLock::new(),
        })
    }

    /// A deny list file: one password per line; blank lines and lines
    /// starting with `#` are skipped.
    pub fn read_deny_list(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    pub fn policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    /// Whether `password` may be set for the user named `username` with
    /// `email`; the refusal says which rule.
    pub fn check(
        &self,
        password: &str,
        username: &str,
        email: Option<&str>,
    ) -> Result<(), PasswordRefused> {
        self.policy.check(password, username, email, |candidate| {
            self.denied.contains(candidate)
        })
    }

    fn hasher(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Runs `f` on a blocking thread with a slot's argon2 memory, once a
    /// slot is free.
    async fn with_memory<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .pool
            .acquire()
            .await
            .map_err(|_| PasswordError::PoolClosed)?;
        let kept = Arc::clone(&self.memory);
        tokio::task::spawn_blocking(move || {
            let mut memory = kept
                .lock()
                .ok()
                .and_then(|mut m| m.pop())
                .unwrap_or_default();
            let out = f(&mut memory);
            if let Ok(mut m) = kept.lock() {
                m.push(memory);
            }
            out
        })
        .await
        .map_err(|e| PasswordError::Hashing(e.to_string()))
    }

    /// The PHC string of `password` (its NFKC form), with a fresh salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let normalized = normalize_password(password);
        let hasher = self.hasher();
        self.with_memory(move |memory| {
            let salt = Salt::generate();
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            compute(&hasher, normalized.as_bytes(), &salt, &mut out, memory)?;
            let hash = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(hasher.params()).map_err(hashing)?,
                salt: Some(salt),
                hash: Some(Output::new(&out).map_err(hashing)?),
            };
            Ok(hash.to_string())
        })
        .await?
    }

    /// Spends the time of one verification and answers `false`: for an
    /// identifier nobody has, or a user without a password.
    pub async fn verify_nothing(&self, password: &str) -> Result<bool, PasswordError> {
        let dummy = match self.dummy.get() {
            Some(d) => d.clone(),
            None => {
                let fresh = self.hash(&crypto::new_secret()).await?;
                self.dummy.get_or_init(|| fresh).clone()
            }
        };
        self.verify(&dummy, password).await?;
        Ok(false)
    }

    /// Whether a stored hash was made with other parameters (or another
    /// algorithm) than the configured ones: it is replaced at the next
    /// successful sign-in.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(hash) else {
            return true;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return true;
        };
        parsed.algorithm != argon2::Algorithm::Argon2id.ident()
            || params.m_cost() != self.params.m_cost()
            || params.t_cost() != self.params.t_cost()
            || params.p_cost() != self.params.p_cost()
    }

    /// Whether `password` matches the PHC string `hash` (with the
    /// parameters the hash names), compared in constant time.
    pub async fn verify(&self, hash: &str, password: &str) -> Result<bool, PasswordError> {
        let normalized = normalize_password(password);
        let hash = hash.to_owned();
        self.with_memory(move |memory| verify_with(&hash, normalized.as_bytes(), memory))
            .await
    }
}

fn hashing(e: impl std::fmt::Display) -> PasswordError {
    PasswordError::Hashing(e.to_string())
}

/// argon2 of `password` and `salt` into `out`, in `memory` (grown to what
/// the parameters need; its old contents do not matter).
fn compute(
    hasher: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), PasswordError> {
    let blocks = hasher.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    hasher
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .map_err(hashing)
}

/// Whether `password` hashes to the PHC string `hash` with the algorithm,
/// version and parameters it names; anything unreadable is a mismatch.
fn verify_with(hash: &str, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let hasher = Argon2::new(algorithm, version, params);
    if compute(&hasher, password, salt, out, memory).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(out).is_ok_and(|computed| &computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        let params = HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        Passwords::new(
            PasswordPolicy::default(),
            Passwords::read_deny_list("# common\nCorrectHorseBatteryStaple\n\n"),
            params,
            2,
        )
        .unwrap()
    }

    /// One hashing slot at these costs.
    fn cheap_with(memory_kib: u32, iterations: u32) -> Passwords {
        let params = HashParams {
            memory_kib,
            iterations,
            parallelism: 1,
        };
        Passwords::new(PasswordPolicy::default(), Vec::new(), params, 1).unwrap()
    }

    #[tokio::test]
    async fn a_hash_is_argon2id_salted_and_verifies_only_its_password() {
        let p = cheap();
        let a = p.hash("a long enough passphrase").await.unwrap();
        let b = p.hash("a long enough passphrase").await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(p.verify(&a, "a long enough passphrase").await.unwrap());
        assert!(!p.verify(&a, "a long enough passphrasE").await.unwrap());
        assert!(!p.verify("not a hash", "x").await.unwrap());
    }

    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let p = cheap();
        let ours = p.hash("a long enough passphrase").await.unwrap();
        let crates = p
            .hasher()
            .hash_password(b"a long enough passphrase")
            .unwrap()
            .to_string();
        for hash in [&ours, &crates] {
            assert!(
                p.verify(hash, "a long enough passphrase").await.unwrap(),
                "{hash}"
            );
            assert!(
                !p.verify(hash, "a long enough passphrasE").await.unwrap(),
                "{hash}"
            );
            let parsed = PasswordHash::new(hash).unwrap();
            assert!(
                p.hasher()
                    .verify_password(b"a long enough passphrase", &parsed)
                    .is_ok()
            );
        }
    }

    #[tokio::test]
    async fn one_slot_verifies_hashes_of_other_costs_in_turn() {
        // One slot: its memory serves a bigger hash, then a smaller one.
        let small = cheap_with(64, 1);
        let big = cheap_with(256, 2);
        let (h_small, h_big) = (
            small.hash("a long enough passphrase").await.unwrap(),
            big.hash("a long enough passphrase").await.unwrap(),
        );
        for hash in [&h_small, &h_big, &h_small, &h_big] {
            assert!(
                small
                    .verify(hash, "a long enough passphrase")
                    .await
                    .unwrap(),
                "{hash}"
            );
            assert!(
                !small.verify(hash, "another long passphrase").await.unwrap(),
                "{hash}"
            );
        }
        assert!(
            !small
                .verify("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ", "x")
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_nfkc_form_is_what_is_hashed() {
        let p = cheap();
        // U+FB01 (the "fi" ligature) is NFKC "fi".
        let h = p.hash("pro\u{FB01}le of a passphrase").await.unwrap();
        assert!(p.verify(&h, "profile of a passphrase").await.unwrap());
    }

    #[tokio::test]
    async fn a_hash_of_other_parameters_wants_a_rehash() {
        let p = cheap();
        let h = p.hash("a long enough passphrase").await.unwrap();
        assert!(!p.needs_rehash(&h));
        let stronger = Passwords::new(
            PasswordPolicy::default(),
            Vec::new(),
            HashParams {
                memory_kib: 128,
                iterations: 1,
                parallelism: 1,
            },
            1,
        )
        .unwrap();
        assert!(stronger.needs_rehash(&h));
        assert!(p.needs_rehash("not a hash"));
        assert!(!p.verify_nothing("anything at all").await.unwrap());
    }

    #[test]
    fn the_deny_list_is_read_case_insensitively() {
        let p = cheap();
        assert_eq!(
            p.check("correcthorsebatterystaple", "ada", None),
            Err(PasswordRefused::Denied)
        );
        assert_eq!(
            p.check("short", "ada", None).unwrap_err().rule(),
            "min_length"
        );
        assert!(p.check("a perfectly fine passphrase", "ada", None).is_ok());
    }
}
