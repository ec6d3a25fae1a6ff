//! Access tokens signed and verified with keys the command side rotates.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::Metadata;
use eventlog::LogOptions;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use commands::CommandBus;
use commands::crypto::MasterKey;
use commands::keys::{self, load_ring};
use commands::{Clock, ManualClock};
use domain::signing_key::{KeyAlgorithm, KeyStatus};
use jose::jwt::*;
use jose::keyring::{KeyError, KeyRing};
use jsonwebtoken::Validation;
use serde_json::{Map, Value};

const ISSUER: &str = "https://idp.example";
const T0: i64 = 1_750_000_000;
/// The longest lifetime a token may claim.
const MAX: i64 = 86_400;

struct Fixture {
    bus: CommandBus,
    clock: Arc<ManualClock>,
    master: MasterKey,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("log.db").display());
        let log = eventlog::open(&url, &LogOptions::default()).await.unwrap();
        let clock = Arc::new(ManualClock::new(
            OffsetDateTime::from_unix_timestamp(T0).unwrap(),
        ));
        let bus = CommandBus::new(log, Arc::clone(&clock) as Arc<dyn Clock>);
        Self {
            bus,
            clock,
            master: MasterKey::from_bytes([9; 32]),
            _dir: dir,
        }
    }

    fn meta(&self) -> Metadata {
        Metadata::system(Uuid::now_v7(), self.clock.now())
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    async fn rotate(&self, alg: KeyAlgorithm) -> String {
        keys::rotate(&self.bus, &self.master, alg, &self.meta())
            .await
            .unwrap()
    }

    async fn ring(&self) -> KeyRing {
        load_ring(self.bus.log(), &self.master).await.unwrap()
    }
}

fn claims(iat: i64) -> AccessTokenClaims {
    let mut extra = Map::new();
    extra.insert("auth_time".into(), json!(iat - 30));
    AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "user-1".into(),
        aud: "https://api.example".into(),
        client_id: "client-1".into(),
        scope: "openid profile".into(),
        jti: Uuid::now_v7().to_string(),
        iat,
        exp: iat + 300,
        extra,
    }
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

#[tokio::test]
async fn tokens_sign_and_verify_with_both_algorithms() {
    let f = Fixture::new().await;
    for alg in KeyAlgorithm::ALL {
        let kid = f.rotate(alg).await;
        let ring = f.ring().await;
        let c = claims(T0);
        let token = sign_access_token(&ring, alg, &c).unwrap();
        let h = header_of(&token);
        assert_eq!(h["typ"], json!("at+jwt"));
        assert_eq!(h["alg"], json!(alg.as_str()));
        assert_eq!(h["kid"], json!(kid));
        if !ACCESS_TOKEN_ALGORITHMS.contains(&alg) {
            // Discovery announces ES256 alone: other keys verify nothing.
            assert_eq!(
                verify_access_token(&ring, &token, ISSUER, T0 + 10, MAX),
                Err(JwtError::KeyNotUsable)
            );
            continue;
        }
        let back = verify_access_token(&ring, &token, ISSUER, T0 + 10, MAX).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.extra["auth_time"], json!(T0 - 30));
    }
}

#[tokio::test]
async fn a_token_signed_before_a_rotation_still_verifies() {
    let f = Fixture::new().await;
    let a = f.rotate(KeyAlgorithm::ES256).await;
    let token = sign_access_token(&f.ring().await, KeyAlgorithm::ES256, &claims(T0)).unwrap();
    f.clock.advance(Duration::minutes(1));
    let b = f.rotate(KeyAlgorithm::ES256).await;
    let ring = f.ring().await;
    assert_eq!(
        ring.get(&a).unwrap().status,
        domain::signing_key::KeyStatus::Retired
    );
    assert_eq!(ring.active(KeyAlgorithm::ES256).unwrap().kid, b);
    assert!(verify_access_token(&ring, &token, ISSUER, T0 + 60, MAX).is_ok());
    let newer = sign_access_token(&ring, KeyAlgorithm::ES256, &claims(T0 + 60)).unwrap();
    assert_eq!(header_of(&newer)["kid"], json!(b));
}

#[tokio::test]
async fn altered_expired_foreign_or_unknown_tokens_are_refused() {
    let f = Fixture::new().await;
    f.rotate(KeyAlgorithm::ES256).await;
    f.rotate(KeyAlgorithm::RS256).await;
    let ring = f.ring().await;
    for alg in ACCESS_TOKEN_ALGORITHMS {
        let token = sign_access_token(&ring, alg, &claims(T0)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        let mut forged = claims(T0);
        forged.sub = "admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verify_access_token(&ring, &tampered, ISSUER, T0, MAX),
            Err(JwtError::InvalidSignature)
        );

        assert_eq!(
            verify_access_token(&ring, &token, "https://other.example", T0, MAX),
            Err(JwtError::WrongIssuer)
        );
        assert_eq!(
            verify_access_token(&ring, &token, ISSUER, T0 + 300, MAX),
            Err(JwtError::Expired)
        );
        assert!(verify_access_token(&ring, &token, ISSUER, T0 + 299, MAX).is_ok());

        let mut header = header_of(&token);
        header["kid"] = json!("no-such-key");
        let unknown = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            parts[1],
            parts[2]
        );
        assert_eq!(
            verify_access_token(&ring, &unknown, ISSUER, T0, MAX),
            Err(JwtError::UnknownKid)
        );

        let mut header = header_of(&token);
        header["typ"] = json!("JWT");
        let id_token_like = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            parts[1],
            parts[2]
        );
        assert_eq!(
            verify_access_token(&ring, &id_token_like, ISSUER, T0, MAX),
            Err(JwtError::WrongType)
        );
        assert_eq!(
            verify_access_token(&ring, "not.a.jwt", ISSUER, T0, MAX),
            Err(JwtError::Malformed)
        );
    }
}

#[tokio::test]
async fn a_token_cannot_name_another_algorithm_for_its_key() {
    let f = Fixture::new().await;
    f.rotate(KeyAlgorithm::ES256).await;
    f.rotate(KeyAlgorithm::RS256).await;
    let ring = f.ring().await;
    let token = sign_access_token(&ring, KeyAlgorithm::RS256, &claims(T0)).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut header = header_of(&token);
    header["kid"] = json!(ring.active(KeyAlgorithm::ES256).unwrap().kid);
    let swapped = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        parts[1],
        parts[2]
    );
    assert_eq!(
        verify_access_token(&ring, &swapped, ISSUER, T0, MAX),
        Err(JwtError::AlgorithmMismatch)
    );
}

#[tokio::test]
async fn registered_claims_cannot_hide_in_extra_claims() {
    let f = Fixture::new().await;
    f.rotate(KeyAlgorithm::ES256).await;
    let ring = f.ring().await;
    let mut c = claims(T0);
    c.extra.insert("exp".into(), json!(T0 + 999_999));
    assert!(matches!(
        sign_access_token(&ring, KeyAlgorithm::ES256, &c),
        Err(KeyError::ReservedClaim(name)) if name == "exp"
    ));
    assert!(matches!(
        sign_access_token(&ring, KeyAlgorithm::RS256, &claims(T0)),
        Err(KeyError::NoActiveKey(KeyAlgorithm::RS256))
    ));
}

#[test]
fn the_audience_reads_as_a_string_or_an_array() {
    let mut c = serde_json::to_value(claims(T0)).unwrap();
    assert_eq!(c["aud"], json!("https://api.example"));
    c["aud"] = json!(["a", "b"]);
    c.as_object_mut().unwrap().remove("scope");
    let back: AccessTokenClaims = serde_json::from_value(c).unwrap();
    assert_eq!(back.aud, Audience::Many(vec!["a".into(), "b".into()]));
    assert!(back.aud.contains("b") && !back.aud.contains("c"));
    assert_eq!(back.scope, "");
    assert!(
        !serde_json::to_value(&back)
            .unwrap()
            .as_object()
            .unwrap()
            .contains_key("scope")
    );
    assert!(is_access_token_typ("application/AT+JWT"));
    assert!(!is_access_token_typ("jwt"));
}

#[tokio::test]
async fn the_jwks_holds_active_and_recently_retired_keys() {
    let f = Fixture::new().await;
    let grace = Duration::hours(1);
    let a = f.rotate(KeyAlgorithm::ES256).await;
    let r = f.rotate(KeyAlgorithm::RS256).await;
    let token_a = sign_access_token(&f.ring().await, KeyAlgorithm::ES256, &claims(T0)).unwrap();
    let token_r = sign_access_token(&f.ring().await, KeyAlgorithm::RS256, &claims(T0)).unwrap();

    f.clock.advance(Duration::minutes(10));
    let b = f.rotate(KeyAlgorithm::ES256).await;
    let ring = f.ring().await;

    let kids = |jwks: &Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let soon = ring.jwks(f.now() + Duration::minutes(5), grace);
    let mut listed = kids(&soon);
    listed.sort();
    let mut expected = vec![a.clone(), b.clone(), r.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    for k in soon["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none());
        }
    }

    // Relying parties verify with the published keys alone.
    let set: JwkSet = serde_json::from_value(soon.clone()).unwrap();
    for token in [&token_a, &token_r] {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let jwk = set.find(&kid).unwrap();
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let alg = jsonwebtoken::decode_header(token).unwrap().alg;
        let mut v = Validation::new(alg);
        v.set_audience(&["https://api.example"]);
        v.set_issuer(&[ISSUER]);
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<AccessTokenClaims>(token, &key, &v).unwrap();
        assert_eq!(data.claims.sub, "user-1");
    }

    let later = ring.jwks(f.now() + grace + Duration::seconds(1), grace);
    let mut listed = kids(&later);
    listed.sort();
    let mut expected = vec![b.clone(), r.clone()];
    expected.sort();
    assert_eq!(listed, expected, "the key retired longer ago is gone");
    // The ring still verifies what the dropped key signed, until it expires.
    assert!(verify_access_token(&ring, &token_a, ISSUER, T0 + 1, MAX).is_ok());
}

#[tokio::test]
async fn a_retired_key_verifies_only_what_it_signed_before_and_only_as_long_as_it_may_live() {
    let f = Fixture::new().await;
    let old = f.rotate(KeyAlgorithm::ES256).await;
    let signer = f.ring().await;
    let before = sign_access_token(&signer, KeyAlgorithm::ES256, &claims(T0)).unwrap();
    // Someone holding the key mints a token for ten years.
    let mut forever = claims(T0);
    forever.exp = T0 + 10 * 365 * 86_400;
    let forever = sign_access_token(&signer, KeyAlgorithm::ES256, &forever).unwrap();
    let mut late = claims(T0 + 120);
    late.exp = T0 + 900;
    let late = sign_access_token(&signer, KeyAlgorithm::ES256, &late).unwrap();

    f.clock.advance(Duration::minutes(1));
    f.rotate(KeyAlgorithm::ES256).await;
    let ring = f.ring().await;
    assert_eq!(ring.get(&old).unwrap().status, KeyStatus::Retired);
    assert!(verify_access_token(&ring, &before, ISSUER, T0 + 100, MAX).is_ok());
    assert_eq!(
        verify_access_token(&ring, &late, ISSUER, T0 + 130, MAX),
        Err(JwtError::SignedAfterRetirement),
        "issued after the retirement"
    );
    assert!(verify_access_token(&ring, &forever, ISSUER, T0 + MAX - 1, MAX).is_ok());
    assert_eq!(
        verify_access_token(&ring, &forever, ISSUER, T0 + MAX, MAX),
        Err(JwtError::Expired),
        "a far exp lives no longer than the longest lifetime"
    );

    keys::revoke(&f.bus, &old, &f.meta()).await.unwrap();
    let ring = f.ring().await;
    assert_eq!(
        verify_access_token(&ring, &before, ISSUER, T0 + 100, MAX),
        Err(JwtError::KeyNotUsable),
        "a revoked key verifies nothing"
    );
    assert!(
        !ring
            .jwks(f.now(), Duration::days(1))
            .to_string()
            .contains(&old)
    );
}

#[tokio::test]
async fn a_key_never_activated_verifies_nothing_and_the_future_is_refused() {
    let f = Fixture::new().await;
    f.rotate(KeyAlgorithm::ES256).await;
    let ring = f.ring().await;
    let future = sign_access_token(&ring, KeyAlgorithm::ES256, &claims(T0 + 600)).unwrap();
    assert_eq!(
        verify_access_token(&ring, &future, ISSUER, T0, MAX),
        Err(JwtError::NotYetValid)
    );
    let pending = keys::generate(&f.bus, &f.master, KeyAlgorithm::ES256, &f.meta())
        .await
        .unwrap();
    let ring = f.ring().await;
    assert_eq!(ring.get(&pending).unwrap().status, KeyStatus::Generated);
    let token = sign_access_token(&ring, KeyAlgorithm::ES256, &claims(T0)).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut header = header_of(&token);
    header["kid"] = json!(pending);
    let relabelled = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        parts[1],
        parts[2]
    );
    assert_eq!(
        verify_access_token(&ring, &relabelled, ISSUER, T0, MAX),
        Err(JwtError::KeyNotUsable)
    );
}
