//! Secrets and keys the write side handles: the master key that seals keys
//! at rest, and high-entropy opaque secrets stored only as SHA-256 hashes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const MASTER_KEY_LEN: usize = 32;

/// A 256-bit key. Its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }
}

/// A new opaque secret: 256 bits from the OS CSPRNG, base64url without
/// padding (43 characters).
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How a secret is stored: the hex SHA-256 of its value. A 256-bit random
/// secret needs no slow hash.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored_hash`, compared in constant time.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    let computed = hash_secret(secret);
    computed.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_stored_hashed() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        let h = hash_secret(&a);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&a));
        assert!(secret_matches(&a, &h));
        assert!(!secret_matches(&b, &h));
        assert!(!secret_matches(&a, "short"));
    }

    #[test]
    fn the_master_key_never_prints() {
        let k = MasterKey::from_bytes([7; 32]);
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
    }
}
