//! Signing keys as commands: generating key pairs (the private key sealed
//! under the master key before it reaches the log), activating, retiring,
//! revoking and rotating them. The ring that signs and verifies with them is
//! `jose::KeyRing`, folded from these events.

use std::sync::Arc;

use domain::Metadata;
use domain::signing_key::{
    KeyAlgorithm, KeyStatus, SigningKey, SigningKeyCommand, SigningKeyError,
};
use eventlog::EventLog;
use jose::keyring::new_key_pair;
pub use jose::{KeyRing, keyring::RSA_BITS};
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};
use crate::crypto::{self, MasterKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Command(#[from] CommandError<SigningKeyError>),
    #[error(transparent)]
    Keys(#[from] jose::KeyError),
    #[error("key generation failed: {0}")]
    Generation(String),
    #[error("no active {0} signing key")]
    NoActiveKey(KeyAlgorithm),
}

/// Reads every signing key from the log.
pub async fn load_ring(log: &Arc<dyn EventLog>, master: &MasterKey) -> Result<KeyRing, KeyError> {
    Ok(KeyRing::load(log, master).await?)
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
    use crate::crypto::CryptoError;
    use eventlog::{Filter, LogOptions, Position};
    use serde_json::json;
    use time::OffsetDateTime;

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
            assert!(e.signer.is_some());
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
            Err(KeyError::Keys(jose::KeyError::Sealed {
                source: CryptoError::Unauthentic,
                ..
            }))
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
        assert!(e.signer.is_none(), "a retired key signs nothing");
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
}
