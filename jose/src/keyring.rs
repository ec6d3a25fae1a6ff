//! The key ring: every signing key folded from the `signingkey` events of
//! the log, with its private half opened (until the key is retired), and the
//! key material it is made of (generating pairs, the public JWK, the forms
//! jsonwebtoken wants).
//!
//! Key forms: the log holds the private key as PKCS#8 DER sealed with
//! [`crypto::seal`] (the kid is the associated data) and the public key as a
//! JWK. jsonwebtoken wants PKCS#8 DER for an EC signing key but PKCS#1 DER for
//! an RSA one, so RSA keys are converted when the ring loads them.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::Aggregate;
use domain::signing_key::{KeyAlgorithm, KeyStatus, SigningKey, SigningKeyEvent};
use eventlog::{EventLog, Filter, Position, RecordedEvent};
use jsonwebtoken::DecodingKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::elliptic_curve::zeroize::Zeroizing;
use rand_core::OsRng;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crypto::{CryptoError, MasterKey};

use crate::signer::Signer;

/// The size of generated RSA keys.
pub const RSA_BITS: usize = 2048;

/// How many events [`KeyRing::catch_up`] reads at a time.
const PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("signing key {kid}: the private key does not open with this master key: {source}")]
    Sealed { kid: String, source: CryptoError },
    #[error("signing key {kid}: {reason}")]
    Malformed { kid: String, reason: String },
    #[error("an event names signing key {0}, which was never generated")]
    UnknownKey(String),
    #[error("key generation failed: {0}")]
    Generation(String),
    #[error("the key ring is poisoned (a writer panicked)")]
    Poisoned,
    #[error("no active {0} signing key")]
    NoActiveKey(KeyAlgorithm),
    #[error("the claim {0} cannot be set as an extra claim")]
    ReservedClaim(String),
    #[error("signing failed: {0}")]
    Signing(jsonwebtoken::errors::Error),
}

fn malformed(kid: &str, reason: impl std::fmt::Display) -> KeyError {
    KeyError::Malformed {
        kid: kid.to_owned(),
        reason: reason.to_string(),
    }
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A freshly made key pair: the private key as PKCS#8 DER (wiped on drop)
/// and the public key as a JWK.
pub struct KeyPair {
    pub pkcs8_der: Zeroizing<Vec<u8>>,
    pub public_jwk: Value,
}

fn es256_public_jwk(public: &p256::PublicKey, kid: &str) -> Result<Value, KeyError> {
    let point = public.to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(malformed(kid, "the EC public key is the identity point"));
    };
    Ok(json!({
        "kty": "EC", "crv": "P-256", "x": b64url(x), "y": b64url(y),
        "kid": kid, "alg": KeyAlgorithm::ES256.as_str(), "use": "sig",
    }))
}

fn rs256_public_jwk(public: &rsa::RsaPublicKey, kid: &str) -> Value {
    json!({
        "kty": "RSA", "n": b64url(&public.n().to_bytes_be()), "e": b64url(&public.e().to_bytes_be()),
        "kid": kid, "alg": KeyAlgorithm::RS256.as_str(), "use": "sig",
    })
}

/// Makes a key pair from the OS CSPRNG. CPU-bound (RSA takes a while).
pub fn new_key_pair(alg: KeyAlgorithm, kid: &str) -> Result<KeyPair, KeyError> {
    match alg {
        KeyAlgorithm::ES256 => {
            let secret = p256::SecretKey::random(&mut OsRng);
            let der = secret
                .to_pkcs8_der()
                .map_err(|e| KeyError::Generation(e.to_string()))?;
            Ok(KeyPair {
                pkcs8_der: Zeroizing::new(der.as_bytes().to_vec()),
                public_jwk: es256_public_jwk(&secret.public_key(), kid)?,
            })
        }
        KeyAlgorithm::RS256 => {
            let key = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)
                .map_err(|e| KeyError::Generation(e.to_string()))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| KeyError::Generation(e.to_string()))?;
            Ok(KeyPair {
                pkcs8_der: Zeroizing::new(der.as_bytes().to_vec()),
                public_jwk: rs256_public_jwk(&key.to_public_key(), kid),
            })
        }
    }
}

/// The members of a public JWK that carry the key itself.
fn key_members(alg: KeyAlgorithm) -> &'static [&'static str] {
    match alg {
        KeyAlgorithm::ES256 => &["kty", "crv", "x", "y"],
        KeyAlgorithm::RS256 => &["kty", "n", "e"],
    }
}

fn jwk_str<'a>(jwk: &'a Value, member: &str, kid: &str) -> Result<&'a str, KeyError> {
    jwk.get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(kid, format!("the public JWK has no {member}")))
}

/// The verification key, from the published JWK (what relying parties use).
fn decoding_key(alg: KeyAlgorithm, jwk: &Value, kid: &str) -> Result<DecodingKey, KeyError> {
    let key = match alg {
        KeyAlgorithm::ES256 => {
            if jwk_str(jwk, "kty", kid)? != "EC" || jwk_str(jwk, "crv", kid)? != "P-256" {
                return Err(malformed(kid, "an ES256 key must be an EC P-256 JWK"));
            }
            DecodingKey::from_ec_components(jwk_str(jwk, "x", kid)?, jwk_str(jwk, "y", kid)?)
        }
        KeyAlgorithm::RS256 => {
            if jwk_str(jwk, "kty", kid)? != "RSA" {
                return Err(malformed(kid, "an RS256 key must be an RSA JWK"));
            }
            DecodingKey::from_rsa_components(jwk_str(jwk, "n", kid)?, jwk_str(jwk, "e", kid)?)
        }
    };
    key.map_err(|e| malformed(kid, e))
}

/// The signing key from the opened PKCS#8 DER, after checking that it is the
/// private half of the published JWK.
fn signer(alg: KeyAlgorithm, pkcs8_der: &[u8], jwk: &Value, kid: &str) -> Result<Signer, KeyError> {
    let derived = match alg {
        KeyAlgorithm::ES256 => {
            let secret =
                p256::SecretKey::from_pkcs8_der(pkcs8_der).map_err(|e| malformed(kid, e))?;
            es256_public_jwk(&secret.public_key(), kid)?
        }
        KeyAlgorithm::RS256 => {
            let private =
                rsa::RsaPrivateKey::from_pkcs8_der(pkcs8_der).map_err(|e| malformed(kid, e))?;
            rs256_public_jwk(&private.to_public_key(), kid)
        }
    };
    if key_members(alg)
        .iter()
        .any(|m| derived.get(m) != jwk.get(m))
    {
        return Err(malformed(
            kid,
            "the private key does not match the public JWK",
        ));
    }
    Signer::from_pkcs8(alg, pkcs8_der).map_err(|e| malformed(kid, e))
}

/// One signing key as the ring holds it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kid: String,
    pub alg: KeyAlgorithm,
    pub status: KeyStatus,
    /// The public key as published in the JWKS.
    pub public_jwk: Value,
    pub created_at: OffsetDateTime,
    pub activated_at: Option<OffsetDateTime>,
    pub retired_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// The private key; dropped when the key is retired.
    pub signer: Option<Arc<Signer>>,
    pub decoding_key: DecodingKey,
}

/// Every signing key, folded from the `signingkey` events of the log.
///
/// Build it with [`KeyRing::load`]; keep it current with [`KeyRing::apply`] from
/// a subscription (filter `Filter::categories(["signingkey"])`, starting
/// after [`KeyRing::position`]) or with [`KeyRing::catch_up`].
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, Entry>,
    position: Position,
}

impl KeyRing {
    /// The position of the last event applied ([`Position::START`] if none).
    pub fn position(&self) -> Position {
        self.position
    }

    /// Folds one event in. Events of other categories, and events at or
    /// before [`Self::position`] (already applied), are ignored.
    pub fn apply(&mut self, recorded: &RecordedEvent, master: &MasterKey) -> Result<(), KeyError> {
        if recorded.category() != SigningKey::CATEGORY
            || (self.position != Position::START && recorded.position <= self.position)
        {
            return Ok(());
        }
        let kid = recorded
            .stream
            .split_once('-')
            .map_or("", |(_, kid)| kid)
            .to_owned();
        match eventlog::decode::<SigningKeyEvent>(recorded)? {
            SigningKeyEvent::Generated(e) => {
                if e.kid != kid {
                    return Err(malformed(&kid, "the event's kid differs from its stream's"));
                }
                let decoding_key = decoding_key(e.alg, &e.public_jwk, &kid)?;
                let der = Zeroizing::new(
                    crypto::open(master, kid.as_bytes(), &e.sealed_private_key).map_err(
                        |source| KeyError::Sealed {
                            kid: kid.clone(),
                            source,
                        },
                    )?,
                );
                let signer = signer(e.alg, &der, &e.public_jwk, &kid)?;
                self.keys.insert(
                    kid.clone(),
                    Entry {
                        kid,
                        alg: e.alg,
                        status: KeyStatus::Generated,
                        public_jwk: e.public_jwk,
                        created_at: e.created_at,
                        activated_at: None,
                        retired_at: None,
                        revoked_at: None,
                        signer: Some(Arc::new(signer)),
                        decoding_key,
                    },
                );
            }
            SigningKeyEvent::Activated(e) => {
                let entry = self
                    .keys
                    .get_mut(&kid)
                    .ok_or_else(|| KeyError::UnknownKey(kid.clone()))?;
                entry.status = KeyStatus::Active;
                entry.activated_at = Some(e.activated_at);
            }
            SigningKeyEvent::Retired(e) => {
                let entry = self
                    .keys
                    .get_mut(&kid)
                    .ok_or_else(|| KeyError::UnknownKey(kid.clone()))?;
                entry.status = KeyStatus::Retired;
                entry.retired_at = Some(e.retired_at);
                entry.signer = None;
            }
            SigningKeyEvent::Revoked(e) => {
                let entry = self
                    .keys
                    .get_mut(&kid)
                    .ok_or_else(|| KeyError::UnknownKey(kid.clone()))?;
                entry.status = KeyStatus::Revoked;
                entry.revoked_at = Some(e.revoked_at);
                entry.signer = None;
            }
        }
        self.position = recorded.position;
        Ok(())
    }

    /// Reads and applies every `signingkey` event after [`Self::position`].
    pub async fn catch_up(
        &mut self,
        log: &Arc<dyn EventLog>,
        master: &MasterKey,
    ) -> Result<(), KeyError> {
        let filter = Filter::categories([SigningKey::CATEGORY]);
        let mut after = self.position;
        loop {
            let page = log.read_all(after, &filter, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.position;
            for recorded in &page {
                self.apply(recorded, master)?;
            }
        }
    }

    /// Catches up until `ready` holds or `timeout` passes. On PostgreSQL a
    /// commit becomes readable only once every older transaction in the
    /// cluster has finished, so a key just activated may take a moment to
    /// show.
    pub async fn catch_up_until(
        &mut self,
        log: &Arc<dyn EventLog>,
        master: &MasterKey,
        ready: impl Fn(&KeyRing) -> bool,
        timeout: std::time::Duration,
    ) -> Result<bool, KeyError> {
        let deadline = eventlog::clock::monotonic() + timeout;
        loop {
            self.catch_up(log, master).await?;
            if ready(self) {
                return Ok(true);
            }
            if eventlog::clock::monotonic() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn get(&self, kid: &str) -> Option<&Entry> {
        self.keys.get(kid)
    }

    /// Every key, in kid order (UUIDv7: creation order).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.keys.values()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key to sign with: the most recently activated key of `alg` that
    /// is not retired.
    pub fn active(&self, alg: KeyAlgorithm) -> Option<&Entry> {
        self.keys
            .values()
            .filter(|e| e.alg == alg && e.status == KeyStatus::Active)
            .max_by(|a, b| (a.activated_at, &a.kid).cmp(&(b.activated_at, &b.kid)))
    }

    /// The JWKS document (RFC 7517 §5): the public keys of the active keys,
    /// and of the keys retired less than `retired_grace` before `now`, so
    /// tokens signed before a rotation still verify until they expire.
    /// Active keys come first, newest first.
    pub fn jwks(&self, now: OffsetDateTime, retired_grace: time::Duration) -> Value {
        let mut published: Vec<&Entry> = self
            .keys
            .values()
            .filter(|e| match e.status {
                KeyStatus::Active => true,
                KeyStatus::Retired => e.retired_at.is_some_and(|at| now - at < retired_grace),
                KeyStatus::Generated | KeyStatus::Revoked => false,
            })
            .collect();
        published.sort_by(|a, b| {
            (b.status == KeyStatus::Active, b.activated_at, &b.kid).cmp(&(
                a.status == KeyStatus::Active,
                a.activated_at,
                &a.kid,
            ))
        });
        json!({ "keys": published.iter().map(|e| e.public_jwk.clone()).collect::<Vec<_>>() })
    }

    /// Reads every signing key from the log.
    pub async fn load(log: &Arc<dyn EventLog>, master: &MasterKey) -> Result<Self, KeyError> {
        let mut ring = Self::default();
        ring.catch_up(log, master).await?;
        Ok(ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_key_for_another_public_key_is_refused() {
        let a = new_key_pair(KeyAlgorithm::ES256, "a").unwrap();
        let b = new_key_pair(KeyAlgorithm::ES256, "a").unwrap();
        assert!(signer(KeyAlgorithm::ES256, &a.pkcs8_der, &a.public_jwk, "a").is_ok());
        assert!(matches!(
            signer(KeyAlgorithm::ES256, &a.pkcs8_der, &b.public_jwk, "a"),
            Err(KeyError::Malformed { .. })
        ));
        assert!(matches!(
            decoding_key(KeyAlgorithm::RS256, &a.public_jwk, "a"),
            Err(KeyError::Malformed { .. })
        ));
    }

    /// What the parsed key signs verifies with jsonwebtoken against the
    /// published JWK, for both algorithms; a changed byte does not.
    #[test]
    fn the_parsed_key_signs_what_the_public_jwk_verifies() {
        use jsonwebtoken::{Header, Validation};
        for alg in [KeyAlgorithm::ES256, KeyAlgorithm::RS256] {
            let pair = new_key_pair(alg, "k").unwrap();
            let signer = signer(alg, &pair.pkcs8_der, &pair.public_jwk, "k").unwrap();
            let mut header = Header::new(crate::jwt::jws_alg(alg));
            header.kid = Some("k".into());
            let claims = json!({"sub": "ada", "exp": 4_102_444_800u64, "note": "é"});
            let token = signer.sign(&header, &claims).unwrap();
            let key = decoding_key(alg, &pair.public_jwk, "k").unwrap();
            let mut validation = Validation::new(crate::jwt::jws_alg(alg));
            validation.required_spec_claims.clear();
            let read = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
            assert_eq!(read.claims, claims, "{alg:?}");
            assert_eq!(read.header.kid.as_deref(), Some("k"));
            let mut forged = token.clone().into_bytes();
            let at = token.find('.').unwrap() + 3;
            forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).unwrap();
            assert!(jsonwebtoken::decode::<Value>(&forged, &key, &validation).is_err());
            let wrong = Header::new(crate::jwt::jws_alg(match alg {
                KeyAlgorithm::ES256 => KeyAlgorithm::RS256,
                KeyAlgorithm::RS256 => KeyAlgorithm::ES256,
            }));
            assert!(matches!(
                signer.sign(&wrong, &claims),
                Err(KeyError::Signing(_))
            ));
        }
    }
}
