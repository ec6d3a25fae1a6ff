//! Signing keys against a real event log: bootstrapping is idempotent, the
//! log holds private keys only sealed, and the ring survives a restart.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use commands::crypto::{self, CryptoError, MasterKey};
use commands::jwt::{self, AccessTokenClaims};
use commands::keys::{self, KeyRing};
use commands::{CommandBus, SystemClock};
use domain::Metadata;
use domain::signing_key::{GENERATED_V1, KeyAlgorithm, KeyStatus};
use eventlog::{EventLog, Filter, LogOptions, Position, RecordedEvent, Subscription};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PrivateKeyParts;
use time::OffsetDateTime;
use uuid::Uuid;

const ISSUER: &str = "https://idp.example";

fn meta() -> Metadata {
    Metadata::system(Uuid::now_v7(), OffsetDateTime::now_utc())
}

fn master() -> MasterKey {
    MasterKey::from_bytes([42; 32])
}

async fn open_log(path: &Path) -> Arc<dyn EventLog> {
    let url = format!("sqlite:{}", path.join("log.db").display());
    eventlog::open(&url, &LogOptions::default()).await.unwrap()
}

async fn sqlite() -> (Arc<dyn EventLog>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (open_log(dir.path()).await, dir)
}

async fn all_events(log: &Arc<dyn EventLog>) -> Vec<RecordedEvent> {
    log.read_all(Position::START, &Filter::all(), 10_000)
        .await
        .unwrap()
}

fn claims() -> AccessTokenClaims {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "user-1".into(),
        aud: "https://api.example".into(),
        client_id: "client-1".into(),
        scope: "openid".into(),
        jti: Uuid::now_v7().to_string(),
        iat: now,
        exp: now + 300,
        extra: Default::default(),
    }
}

fn active_kids(ring: &KeyRing) -> (String, String) {
    (
        ring.active(KeyAlgorithm::ES256).unwrap().kid.clone(),
        ring.active(KeyAlgorithm::RS256).unwrap().kid.clone(),
    )
}

#[tokio::test]
async fn ensure_active_makes_one_key_per_algorithm_once() {
    let (log, _dir) = sqlite().await;
    let bus = CommandBus::new(Arc::clone(&log), Arc::new(SystemClock));
    let ring = keys::ensure_active(&bus, &log, &master(), &meta())
        .await
        .unwrap();
    assert_eq!(ring.len(), 2);
    let kids = active_kids(&ring);
    for alg in KeyAlgorithm::ALL {
        let e = ring.active(alg).unwrap();
        assert_eq!((e.alg, e.status), (alg, KeyStatus::Active));
        assert!(e.signer.is_some());
    }
    let events = all_events(&log).await.len();
    assert_eq!(events, 4, "generated + activated, twice");

    let again = keys::ensure_active(&bus, &log, &master(), &meta())
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(active_kids(&again), kids);
    assert_eq!(all_events(&log).await.len(), events, "nothing new written");
}

#[tokio::test]
async fn ensure_active_activates_a_key_left_generated() {
    let (log, _dir) = sqlite().await;
    let bus = CommandBus::new(Arc::clone(&log), Arc::new(SystemClock));
    // A crash between generate and activate leaves this behind.
    let pending = keys::generate(&bus, &master(), KeyAlgorithm::ES256, &meta())
        .await
        .unwrap();
    let ring = keys::ensure_active(&bus, &log, &master(), &meta())
        .await
        .unwrap();
    assert_eq!(ring.len(), 2);
    assert_eq!(ring.active(KeyAlgorithm::ES256).unwrap().kid, pending);
}

/// Every form the private key could leak in: PKCS#8 and PKCS#1 DER as
/// base64, base64url and hex, the PEM body lines, and the JWK private
/// members.
fn leak_forms(alg: KeyAlgorithm, pkcs8_der: &[u8]) -> Vec<String> {
    let mut ders = vec![pkcs8_der.to_vec()];
    let mut raw = Vec::new();
    let pem = match alg {
        KeyAlgorithm::ES256 => {
            let k = p256::SecretKey::from_pkcs8_der(pkcs8_der).unwrap();
            raw.push(k.to_bytes().to_vec());
            k.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
        }
        KeyAlgorithm::RS256 => {
            let k = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8_der).unwrap();
            ders.push(k.to_pkcs1_der().unwrap().as_bytes().to_vec());
            raw.push(k.d().to_bytes_be());
            for p in k.primes() {
                raw.push(p.to_bytes_be());
            }
            k.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
        }
    };
    let mut forms = Vec::new();
    for der in &ders {
        // A prefix long enough to be unique, short enough to catch a partial dump.
        let b64 = STANDARD.encode(der);
        forms.push(b64[..48].to_owned());
        forms.push(b64[b64.len() - 48..].to_owned());
        forms.push(URL_SAFE_NO_PAD.encode(der)[..48].to_owned());
        forms.push(hex::encode(der)[..64].to_owned());
    }
    forms.extend(
        pem.lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 32)
            .map(str::to_owned),
    );
    forms.extend(raw.iter().map(|r| URL_SAFE_NO_PAD.encode(r)));
    forms.extend(raw.iter().map(|r| STANDARD.encode(r)));
    forms.extend(raw.iter().map(hex::encode));
    forms
}

#[tokio::test]
async fn the_log_holds_private_keys_only_sealed() {
    let (log, _dir) = sqlite().await;
    let bus = CommandBus::new(Arc::clone(&log), Arc::new(SystemClock));
    let ring = keys::ensure_active(&bus, &log, &master(), &meta())
        .await
        .unwrap();
    keys::rotate(&bus, &master(), KeyAlgorithm::RS256, &meta())
        .await
        .unwrap();

    let events = all_events(&log).await;
    let stored: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e.data,
                serde_json::to_string(&e.metadata).unwrap(),
                e.subject.as_deref().unwrap_or("")
            )
        })
        .collect();
    let generated: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.event_type == GENERATED_V1)
        .collect();
    assert_eq!(generated.len(), 3);
    for e in generated {
        let data = e.data.value().unwrap();
        let kid = data["kid"].as_str().unwrap();
        let alg: KeyAlgorithm = serde_json::from_value(data["alg"].clone()).unwrap();
        let sealed = data["sealed_private_key"].as_str().unwrap();

        let der = crypto::open(&master(), kid.as_bytes(), sealed).unwrap();
        let forms = leak_forms(alg, &der);
        // The scan would catch a plain dump of the key.
        let dump = STANDARD.encode(&der);
        assert!(forms.iter().any(|f| dump.contains(f)));
        for form in forms {
            for text in &stored {
                assert!(
                    !text.contains(&form),
                    "{kid}: private key material in the log"
                );
            }
        }
        // It opens only with the right master key, and only for its own kid.
        assert_eq!(
            crypto::open(&MasterKey::from_bytes([43; 32]), kid.as_bytes(), sealed),
            Err(CryptoError::Unauthentic)
        );
        let other_kid = ring.active(KeyAlgorithm::ES256).unwrap().kid.as_str();
        if other_kid != kid {
            assert_eq!(
                crypto::open(&master(), other_kid.as_bytes(), sealed),
                Err(CryptoError::Unauthentic)
            );
        }
        let jwk = data["public_jwk"].as_object().unwrap();
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(!jwk.contains_key(private));
        }
    }
}

#[tokio::test]
async fn the_ring_reloads_after_a_restart_and_signs() {
    let dir = tempfile::tempdir().unwrap();
    let (kids, tokens) = {
        let log = open_log(dir.path()).await;
        let bus = CommandBus::new(Arc::clone(&log), Arc::new(SystemClock));
        let ring = keys::ensure_active(&bus, &log, &master(), &meta())
            .await
            .unwrap();
        let tokens: Vec<String> = KeyAlgorithm::ALL
            .iter()
            .map(|alg| jwt::sign_access_token(&ring, *alg, &claims()).unwrap())
            .collect();
        (active_kids(&ring), tokens)
    };

    let log = open_log(dir.path()).await;
    let ring = keys::load_ring(&log, &master()).await.unwrap();
    assert_eq!(active_kids(&ring), kids);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let max = i64::from(domain::client::MAX_ACCESS_TOKEN_LIFETIME_SECS);
    for (alg, token) in KeyAlgorithm::ALL.iter().zip(&tokens) {
        let verified = jwt::verify_access_token(&ring, token, ISSUER, now, max);
        assert_eq!(
            verified.is_ok(),
            jwt::ACCESS_TOKEN_ALGORITHMS.contains(alg),
            "{alg:?}"
        );
    }
    for alg in jwt::ACCESS_TOKEN_ALGORITHMS {
        let token = jwt::sign_access_token(&ring, alg, &claims()).unwrap();
        let back = jwt::verify_access_token(&ring, &token, ISSUER, now, max).unwrap();
        assert_eq!(back.sub, "user-1");
    }

    // Bootstrapping on the restarted process changes nothing.
    let bus = CommandBus::new(Arc::clone(&log), Arc::new(SystemClock));
    let again = keys::ensure_active(&bus, &log, &master(), &meta())
        .await
        .unwrap();
    assert_eq!(active_kids(&again), kids);
}

#[tokio::test]
async fn a_subscription_keeps_the_ring_current() {
    let (log, _dir) = sqlite().await;
    let bus = CommandBus::new(Arc::clone(&log), Arc::new(SystemClock));
    let mut ring = keys::ensure_active(&bus, &log, &master(), &meta())
        .await
        .unwrap();
    let mut sub = Subscription::new(
        Arc::clone(&log),
        ring.position(),
        Filter::categories(["signingkey"]),
        100,
    );
    let old = ring.active(KeyAlgorithm::ES256).unwrap().kid.clone();
    let new = keys::rotate(&bus, &master(), KeyAlgorithm::ES256, &meta())
        .await
        .unwrap();
    // generated, activated (new), retired (old)
    for _ in 0..3 {
        let e = sub.next().await.unwrap();
        ring.apply(&e, &master()).unwrap();
    }
    assert_eq!(ring.active(KeyAlgorithm::ES256).unwrap().kid, new);
    assert_eq!(ring.get(&old).unwrap().status, KeyStatus::Retired);
    assert_eq!(ring.len(), 3);
}
