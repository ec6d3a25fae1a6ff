//! Secrets and keys: the master key that seals keys at rest
//! (XChaCha20-Poly1305, the owner as associated data), and high-entropy
//! opaque secrets stored only as SHA-256 hashes and compared in constant
//! time. At the bottom of the crate graph, so that the write side, the
//! read side's views and the privacy crate share one implementation.
//!
//! Nothing here prints a key or a secret.

#![forbid(unsafe_code)]

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
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

/// HMAC-SHA256 of `value` under a key derived from the master key for
/// `purpose`, as hex: the stored form of short secrets (a six-digit code)
/// that a plain hash would not hide, since anyone could try them all.
pub fn keyed_digest(master: &MasterKey, purpose: &str, value: &str) -> String {
    use hmac::{Hmac, Mac};
    let derived = Sha256::new()
        .chain_update(b"idp keyed digest\0")
        .chain_update(purpose.as_bytes())
        .chain_update(master.bytes())
        .finalize();
    // HMAC takes a key of any length.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&derived) else {
        return String::new();
    };
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether two digests are equal, compared in constant time.
pub fn secret_matches_digest(computed: &str, stored: &str) -> bool {
    computed.as_bytes().ct_eq(stored.as_bytes()).into()
}

/// The length of an XChaCha20-Poly1305 nonce.
const NONCE_LEN: usize = 24;
/// The length of a Poly1305 tag.
const TAG_LEN: usize = 16;

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the sealed value is not base64")]
    NotBase64,
    #[error("the sealed value is too short to hold a nonce and a tag")]
    TooShort,
    /// Wrong master key, wrong owner (associated data), or altered bytes:
    /// the AEAD cannot tell these apart, and neither should we.
    #[error("the sealed value does not open with this key for this owner")]
    Unauthentic,
}

fn cipher(master: &MasterKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&Key::from(*master.bytes()))
}

/// Seals `plaintext` under the master key: XChaCha20-Poly1305 with a random
/// 24-byte nonce, returned as standard base64 of nonce || ciphertext+tag.
///
/// `aad` binds the sealed value to its owner (the kid for a signing key): it
/// opens only with the same `aad`, so a sealed value moved to another owner
/// is refused.
pub fn seal(master: &MasterKey, aad: &[u8], plaintext: &[u8]) -> String {
    let nonce: [u8; NONCE_LEN] = rand::random();
    // Encryption fails only for plaintexts over 256 GiB; such a value seals
    // to the empty string, which `open` refuses.
    let Ok(ciphertext) = cipher(master).encrypt(
        &XNonce::from(nonce),
        Payload {
            msg: plaintext,
            aad,
        },
    ) else {
        return String::new();
    };
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    STANDARD.encode(out)
}

/// Opens what [`seal`] produced with the same master key and `aad`.
pub fn open(master: &MasterKey, aad: &[u8], sealed: &str) -> Result<Vec<u8>, CryptoError> {
    let bytes = STANDARD
        .decode(sealed.trim())
        .map_err(|_| CryptoError::NotBase64)?;
    let Some((nonce, ciphertext)) = bytes.split_first_chunk::<NONCE_LEN>() else {
        return Err(CryptoError::TooShort);
    };
    if ciphertext.len() < TAG_LEN {
        return Err(CryptoError::TooShort);
    }
    cipher(master)
        .decrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_digests_depend_on_the_key_the_purpose_and_the_value() {
        let a = MasterKey::from_bytes([1; MASTER_KEY_LEN]);
        let b = MasterKey::from_bytes([2; MASTER_KEY_LEN]);
        let d = keyed_digest(&a, "code", "123456");
        assert_eq!(d.len(), 64);
        assert_eq!(d, keyed_digest(&a, "code", "123456"));
        assert_ne!(d, keyed_digest(&b, "code", "123456"));
        assert_ne!(d, keyed_digest(&a, "other", "123456"));
        assert_ne!(d, keyed_digest(&a, "code", "123457"));
    }

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

    #[test]
    fn a_sealed_value_opens_with_the_same_key_and_owner() {
        let k = MasterKey::from_bytes([7; 32]);
        let sealed = seal(&k, b"kid-1", b"private key bytes");
        assert_eq!(open(&k, b"kid-1", &sealed).unwrap(), b"private key bytes");
        assert!(!sealed.contains("private"));
        // A fresh nonce every time: the same plaintext never seals the same.
        assert_ne!(seal(&k, b"kid-1", b"private key bytes"), sealed);
        let raw = STANDARD.decode(&sealed).unwrap();
        assert_eq!(raw.len(), NONCE_LEN + b"private key bytes".len() + TAG_LEN);
        assert_eq!(open(&k, b"", &seal(&k, b"", b"")).unwrap(), b"");
    }

    #[test]
    fn a_wrong_key_or_owner_does_not_open() {
        let k = MasterKey::from_bytes([7; 32]);
        let sealed = seal(&k, b"kid-1", b"secret");
        let other = MasterKey::from_bytes([8; 32]);
        assert_eq!(
            open(&other, b"kid-1", &sealed),
            Err(CryptoError::Unauthentic)
        );
        assert_eq!(open(&k, b"kid-2", &sealed), Err(CryptoError::Unauthentic));
    }

    #[test]
    fn any_altered_byte_is_detected() {
        let k = MasterKey::from_bytes([7; 32]);
        let sealed = seal(&k, b"kid-1", b"secret");
        let raw = STANDARD.decode(&sealed).unwrap();
        for i in 0..raw.len() {
            let mut tampered = raw.clone();
            tampered[i] ^= 0x01;
            assert_eq!(
                open(&k, b"kid-1", &STANDARD.encode(&tampered)),
                Err(CryptoError::Unauthentic),
                "byte {i}"
            );
        }
        assert_eq!(
            open(
                &k,
                b"kid-1",
                &STANDARD.encode(&raw[..NONCE_LEN + TAG_LEN - 1])
            ),
            Err(CryptoError::TooShort)
        );
        assert_eq!(
            open(&k, b"kid-1", "not base64!"),
            Err(CryptoError::NotBase64)
        );
        assert_eq!(open(&k, b"kid-1", ""), Err(CryptoError::TooShort));
    }
}
