//! Signing keys as events: generating key pairs (the private key sealed under
//! the master key before it reaches the log), activating, retiring and
//! rotating them, and the [`KeyRing`]: the in-memory view of every key that
//! token signing, verification and the JWKS document read.
//!
//! Key forms: the log holds the private key as PKCS#8 DER sealed with
//! [`crypto::seal`] (the kid is the associated data) and the public key as a
//! JWK. jsonwebtoken wants PKCS#8 DER for an EC signing key but PKCS#1 DER for
//! an RSA one, so RSA keys are converted when the ring loads them.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::signing_key::{
    KeyAlgorithm, KeyStatus, SigningKey, SigningKeyCommand, SigningKeyError, SigningKeyEvent,
};
use domain::{Aggregate, Metadata};
use eventlog::{EventLog, Filter, Position, RecordedEvent};
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::elliptic_curve::zeroize::Zeroizing;
use rand_core::OsRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};
use crate::crypto::{self, CryptoError, MasterKey};

/// The size of generated RSA keys.
pub const RSA_BITS: usize = 2048;

/// How many events [`KeyRing::catch_up`] reads at a time.
const PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Command(#[from] CommandError<SigningKeyError>),
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
struct KeyPair {
    pkcs8_der: Zeroizing<Vec<u8>>,
    public_jwk: Value,
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
fn new_key_pair(alg: KeyAlgorithm, kid: &str) -> Result<KeyPair, KeyError> {
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
fn encoding_key(
    alg: KeyAlgorithm,
    pkcs8_der: &[u8],
    jwk: &Value,
    kid: &str,
) -> Result<EncodingKey, KeyError> {
    let (derived, key) = match alg {
        KeyAlgorithm::ES256 => {
            let secret =
                p256::SecretKey::from_pkcs8_der(pkcs8_der).map_err(|e| malformed(kid, e))?;
            (
                es256_public_jwk(&secret.public_key(), kid)?,
                // jsonwebtoken's EC signer parses PKCS#8 DER.
                EncodingKey::from_ec_der(pkcs8_der),
            )
        }
        KeyAlgorithm::RS256 => {
            let private =
                rsa::RsaPrivateKey::from_pkcs8_der(pkcs8_der).map_err(|e| malformed(kid, e))?;
            // jsonwebtoken's RSA signer parses PKCS#1 DER, not PKCS#8.
            let pkcs1 = private.to_pkcs1_der().map_err(|e| malformed(kid, e))?;
            (
                rs256_public_jwk(&private.to_public_key(), kid),
                EncodingKey::from_rsa_der(pkcs1.as_bytes()),
            )
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
    Ok(key)
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
    pub encoding_key: Option<EncodingKey>,
    pub decoding_key: DecodingKey,
}

/// Every signing key, folded from the `signingkey` events of the log.
///
/// Build it with [`load_ring`]; keep it current with [`KeyRing::apply`] from
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
                let encoding_key = encoding_key(e.alg, &der, &e.public_jwk, &kid)?;
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
                        encoding_key: Some(encoding_key),
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
                entry.encoding_key = None;
            }
            SigningKeyEvent::Revoked(e) => {
                let entry = self
                    .keys
                    .get_mut(&kid)
                    .ok_or_else(|| KeyError::UnknownKey(kid.clone()))?;
                entry.status = KeyStatus::Revoked;
                entry.revoked_at = Some(e.revoked_at);
                entry.encoding_key = None;
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
}

/// Reads every signing key from the log.
pub async fn load_ring(log: &Arc<dyn EventLog>, master: &MasterKey) -> Result<KeyRing, KeyError> {
    let mut ring = KeyRing::default();
    ring.catch_up(log, master).await?;
    Ok(ring)
}

/// Makes a key pair of `alg` and records it (not yet active); returns its kid.
pub async fn generate(
    bus: &CommandBus,
    master: &MasterKey,
    alg: KeyAlgorithm,
    meta: &Metadata,
) -> Result<String, KeyError> {
    let kid = Uuid::now_v7().to_string();
    let pair = {
        let kid = kid.clone();
        tokio::task::spawn_blocking(move || new_key_pair(alg, &kid))
            .await
            .map_err(|e| KeyError::Generation(e.to_string()))??
    };
    let sealed_private_key = crypto::seal(master, kid.as_bytes(), &pair.pkcs8_der);
    bus.execute::<SigningKey>(
        &kid,
        SigningKeyCommand::Generate {
            kid: kid.clone(),
            alg,
            public_jwk: pair.public_jwk,
            sealed_private_key,
        },
        meta,
    )
    .await?;
    Ok(kid)
}

pub async fn activate(bus: &CommandBus, kid: &str, meta: &Metadata) -> Result<Outcome, KeyError> {
    Ok(bus
        .execute::<SigningKey>(kid, SigningKeyCommand::Activate, meta)
        .await?)
}

pub async fn retire(bus: &CommandBus, kid: &str, meta: &Metadata) -> Result<Outcome, KeyError> {
    Ok(bus
        .execute::<SigningKey>(kid, SigningKeyCommand::Retire, meta)
        .await?)
}

/// Revokes a key outright: it verifies nothing from now on.
pub async fn revoke(bus: &CommandBus, kid: &str, meta: &Metadata) -> Result<Outcome, KeyError> {
    Ok(bus
        .execute::<SigningKey>(kid, SigningKeyCommand::Revoke, meta)
        .await?)
}

/// Generates and activates a new key of `alg`, then retires every other
/// active key of `alg`. Returns the new kid.
pub async fn rotate(
    bus: &CommandBus,
    master: &MasterKey,
    alg: KeyAlgorithm,
    meta: &Metadata,
) -> Result<String, KeyError> {
    let kid = generate(bus, master, alg, meta).await?;
    activate(bus, &kid, meta).await?;
    let ring = load_ring(bus.log(), master).await?;
    let older: Vec<String> = ring
        .entries()
        .filter(|e| e.alg == alg && e.status == KeyStatus::Active && e.kid != kid)
        .map(|e| e.kid.clone())
        .collect();
    for old in older {
        retire(bus, &old, meta).await?;
    }
    Ok(kid)
}

/// Makes sure an ES256 and an RS256 key are active, and returns the ring.
///
/// A key generated but never activated (a crash between the two commands)
/// is activated rather than left behind; otherwise a new key is made. Run
/// again, it changes nothing.
/// How long a key just written may take to become readable.
pub const READABLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn ensure_active(
    bus: &CommandBus,
    log: &Arc<dyn EventLog>,
    master: &MasterKey,
    meta: &Metadata,
) -> Result<KeyRing, KeyError> {
    let mut ring = load_ring(log, master).await?;
    let mut changed = false;
    for alg in KeyAlgorithm::ALL {
        if ring.active(alg).is_some() {
            continue;
        }
        let pending = ring
            .entries()
            .filter(|e| e.alg == alg && e.status == KeyStatus::Generated)
            .max_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))
            .map(|e| e.kid.clone());
        let kid = match pending {
            Some(kid) => kid,
            None => generate(bus, master, alg, meta).await?,
        };
        match activate(bus, &kid, meta).await {
            // Another process activated the same pending key first.
            Ok(_)
            | Err(KeyError::Command(CommandError::Domain(SigningKeyError::NotActivatable {
                status: KeyStatus::Active,
            }))) => changed = true,
            Err(e) => return Err(e),
        }
    }
    if changed {
        let all_active = |r: &KeyRing| KeyAlgorithm::ALL.iter().all(|a| r.active(*a).is_some());
        if !ring
            .catch_up_until(log, master, all_active, READABLE_WITHIN)
            .await?
        {
            let missing = KeyAlgorithm::ALL
                .into_iter()
                .find(|a| ring.active(*a).is_none())
                .unwrap_or(KeyAlgorithm::ES256);
            return Err(KeyError::NoActiveKey(missing));
        }
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use eventlog::LogOptions;

    fn meta() -> Metadata {
        Metadata::system(Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH)
    }

    async fn bus() -> (CommandBus, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("log.db").display());
        let log = eventlog::open(&url, &LogOptions::default()).await.unwrap();
        let clock = Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH));
        (CommandBus::new(log, clock), dir)
    }

    #[tokio::test]
    async fn generated_keys_publish_only_public_members() {
        let (bus, _dir) = bus().await;
        let master = MasterKey::from_bytes([1; 32]);
        for alg in KeyAlgorithm::ALL {
            let kid = generate(&bus, &master, alg, &meta()).await.unwrap();
            let ring = load_ring(bus.log(), &master).await.unwrap();
            let e = ring.get(&kid).unwrap();
            assert_eq!((e.alg, e.status), (alg, KeyStatus::Generated));
            assert!(e.encoding_key.is_some());
            assert!(format!("{ring:?}").contains("[redacted]"));
            let jwk = e.public_jwk.as_object().unwrap();
            assert_eq!(jwk["kid"], json!(kid));
            assert_eq!(jwk["alg"], json!(alg.as_str()));
            assert_eq!(jwk["use"], json!("sig"));
            assert!(!jwk.contains_key("d"), "{jwk:?}");
            assert!(ring.active(alg).is_none());
        }
    }

    #[tokio::test]
    async fn a_ring_does_not_load_under_another_master_key() {
        let (bus, _dir) = bus().await;
        let master = MasterKey::from_bytes([1; 32]);
        generate(&bus, &master, KeyAlgorithm::ES256, &meta())
            .await
            .unwrap();
        let other = MasterKey::from_bytes([2; 32]);
        assert!(matches!(
            load_ring(bus.log(), &other).await,
            Err(KeyError::Sealed {
                source: CryptoError::Unauthentic,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn activation_and_retirement_follow_the_life_cycle() {
        let (bus, _dir) = bus().await;
        let master = MasterKey::from_bytes([1; 32]);
        let kid = generate(&bus, &master, KeyAlgorithm::ES256, &meta())
            .await
            .unwrap();
        activate(&bus, &kid, &meta()).await.unwrap();
        assert!(matches!(
            activate(&bus, &kid, &meta()).await,
            Err(KeyError::Command(CommandError::Domain(
                SigningKeyError::NotActivatable { .. }
            )))
        ));
        let mut ring = load_ring(bus.log(), &master).await.unwrap();
        assert_eq!(ring.active(KeyAlgorithm::ES256).unwrap().kid, kid);

        retire(&bus, &kid, &meta()).await.unwrap();
        let again = retire(&bus, &kid, &meta()).await.unwrap();
        assert_eq!(again.events, 0);
        ring.catch_up(bus.log(), &master).await.unwrap();
        let e = ring.get(&kid).unwrap();
        assert_eq!(e.status, KeyStatus::Retired);
        assert!(e.encoding_key.is_none(), "a retired key signs nothing");
        assert!(ring.active(KeyAlgorithm::ES256).is_none());

        // Applying the same events twice changes nothing.
        let all = bus
            .log()
            .read_all(Position::START, &Filter::all(), 100)
            .await
            .unwrap();
        for r in &all {
            ring.apply(r, &master).unwrap();
        }
        assert_eq!(ring.get(&kid).unwrap().status, KeyStatus::Retired);
    }

    #[tokio::test]
    async fn a_private_key_for_another_public_key_is_refused() {
        let a = new_key_pair(KeyAlgorithm::ES256, "a").unwrap();
        let b = new_key_pair(KeyAlgorithm::ES256, "a").unwrap();
        assert!(encoding_key(KeyAlgorithm::ES256, &a.pkcs8_der, &a.public_jwk, "a").is_ok());
        assert!(matches!(
            encoding_key(KeyAlgorithm::ES256, &a.pkcs8_der, &b.public_jwk, "a"),
            Err(KeyError::Malformed { .. })
        ));
        assert!(matches!(
            decoding_key(KeyAlgorithm::RS256, &a.public_jwk, "a"),
            Err(KeyError::Malformed { .. })
        ));
    }
}
