//! JWT access tokens (RFC 9068): signing with the ring's active key and
//! verifying against any key the ring holds.
//!
//! jsonwebtoken's own `exp` check reads the wall clock; here time is an
//! input, so that check is switched off and done against `now`. Its `aud`
//! check is off too: the audience is checked where the token is used.

use std::collections::HashSet;

use domain::signing_key::{KeyAlgorithm, KeyStatus};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::keys::{KeyError, KeyRing};

/// The `typ` header of a JWT access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Allowed clock difference, in seconds, when checking `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 0;

/// The claims [`AccessTokenClaims`] holds in its own fields; `extra` may not
/// repeat them.
pub const REGISTERED_CLAIMS: [&str; 8] = [
    "iss",
    "sub",
    "aud",
    "client_id",
    "scope",
    "jti",
    "iat",
    "exp",
];

/// The `aud` claim: one audience (serialized as a string) or several (an
/// array). Both forms are read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, audience: &str) -> bool {
        self.iter().any(|a| a == audience)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let all: &[String] = match self {
            Self::One(a) => std::slice::from_ref(a),
            Self::Many(v) => v,
        };
        all.iter().map(String::as_str)
    }
}

impl From<&str> for Audience {
    fn from(a: &str) -> Self {
        Self::One(a.to_owned())
    }
}

impl From<String> for Audience {
    fn from(a: String) -> Self {
        Self::One(a)
    }
}

impl From<Vec<String>> for Audience {
    fn from(v: Vec<String>) -> Self {
        Self::Many(v)
    }
}

/// The claims of an RFC 9068 access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub client_id: String,
    /// Space-separated scopes; left out of the token when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// Any other claims (`auth_time`, `acr`, `amr`, `groups`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a token was refused. Deliberately coarse: callers answer
/// `invalid_token` whatever the reason; the reason is for logs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the token is not a well-formed JWS")]
    Malformed,
    #[error("the token's typ is not at+jwt")]
    WrongType,
    #[error("the token names no kid")]
    MissingKid,
    #[error("the token's kid is not a known signing key")]
    UnknownKid,
    #[error(
        "the token's key does not verify access tokens (never activated, revoked, or of an algorithm not announced)"
    )]
    KeyNotUsable,
    #[error("the token was signed by a retired key after its retirement")]
    SignedAfterRetirement,
    #[error("the token's alg is not its key's")]
    AlgorithmMismatch,
    #[error("the token's signature does not verify")]
    InvalidSignature,
    #[error("the token's claims are not those of an access token: {0}")]
    InvalidClaims(String),
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
}

fn jws_alg(alg: KeyAlgorithm) -> Algorithm {
    match alg {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::RS256 => Algorithm::RS256,
    }
}

/// Whether a `typ` names the at+jwt media type (RFC 8725 §3.11: compared
/// case-insensitively, the `application/` prefix optional).
fn is_access_token_typ(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ.strip_prefix("application/").unwrap_or(&typ) == ACCESS_TOKEN_TYP
}

/// Signs `claims` with the active key of `alg`; the header carries
/// `typ: at+jwt` and the key's `kid`.
pub fn sign_access_token(
    ring: &KeyRing,
    alg: KeyAlgorithm,
    claims: &AccessTokenClaims,
) -> Result<String, KeyError> {
    if let Some(name) = REGISTERED_CLAIMS
        .iter()
        .find(|name| claims.extra.contains_key(**name))
    {
        return Err(KeyError::ReservedClaim((*name).to_owned()));
    }
    let entry = ring.active(alg).ok_or(KeyError::NoActiveKey(alg))?;
    let key = entry
        .encoding_key
        .as_ref()
        .ok_or(KeyError::NoActiveKey(alg))?;
    let mut header = Header::new(jws_alg(alg));
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(entry.kid.clone());
    jsonwebtoken::encode(&header, claims, key).map_err(KeyError::Signing)
}

fn refused(e: jsonwebtoken::errors::Error) -> JwtError {
    match e.into_kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
            JwtError::InvalidSignature
        }
        ErrorKind::InvalidAlgorithm => JwtError::AlgorithmMismatch,
        ErrorKind::Json(e) => JwtError::InvalidClaims(e.to_string()),
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
            JwtError::InvalidClaims(c)
        }
        _ => JwtError::Malformed,
    }
}

/// The algorithms access tokens are signed with, as discovery announces
/// them (`access_token_signing_alg_values_supported`): a key of another
/// algorithm verifies no access token.
pub const ACCESS_TOKEN_ALGORITHMS: [KeyAlgorithm; 1] = [KeyAlgorithm::ES256];

/// Verifies an access token: `typ` at+jwt, a `kid` of an announced
/// algorithm that the ring holds as active or retired, the signature, `iss`
/// equal to `issuer`, `iat` not in the future, and the token alive at `now`
/// (Unix seconds): before its `exp` and before `iat + max_lifetime`, so that
/// a token minted with a far `exp` lives no longer than any we issue. A
/// retired key verifies only what it signed before its retirement; a
/// revoked or never-activated key verifies nothing. The audience is not
/// checked here.
pub fn verify_access_token(
    ring: &KeyRing,
    token: &str,
    issuer: &str,
    now: i64,
    max_lifetime: i64,
) -> Result<AccessTokenClaims, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    if !header.typ.as_deref().is_some_and(is_access_token_typ) {
        return Err(JwtError::WrongType);
    }
    let kid = header.kid.as_deref().ok_or(JwtError::MissingKid)?;
    let entry = ring.get(kid).ok_or(JwtError::UnknownKid)?;
    if !ACCESS_TOKEN_ALGORITHMS.contains(&entry.alg)
        || !matches!(entry.status, KeyStatus::Active | KeyStatus::Retired)
    {
        return Err(JwtError::KeyNotUsable);
    }
    let alg = jws_alg(entry.alg);
    if header.alg != alg {
        return Err(JwtError::AlgorithmMismatch);
    }
    let mut validation = Validation::new(alg);
    // Time and audience are checked below or elsewhere, not against the
    // library's wall clock; presence of claims is enforced by the types.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.required_spec_claims = HashSet::new();
    let claims = jsonwebtoken::decode::<AccessTokenClaims>(token, &entry.decoding_key, &validation)
        .map_err(refused)?
        .claims;
    if claims.iss != issuer {
        return Err(JwtError::WrongIssuer);
    }
    if claims.iat > now + LEEWAY_SECS {
        return Err(JwtError::NotYetValid);
    }
    if claims.exp.min(claims.iat.saturating_add(max_lifetime)) <= now - LEEWAY_SECS {
        return Err(JwtError::Expired);
    }
    // `iat` has whole seconds: a token of the retirement's own second counts
    // as signed before it.
    if entry.status == KeyStatus::Retired
        && entry
            .retired_at
            .is_none_or(|at| i128::from(claims.iat) * 1_000_000_000 > at.unix_timestamp_nanos())
    {
        return Err(JwtError::SignedAfterRetirement);
    }
    if let Some(nbf) = claims.extra.get("nbf") {
        match nbf.as_i64() {
            Some(nbf) if nbf > now + LEEWAY_SECS => return Err(JwtError::NotYetValid),
            Some(_) => {}
            None => return Err(JwtError::InvalidClaims("nbf".to_owned())),
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
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

    use super::*;
    use crate::bus::CommandBus;
    use crate::crypto::MasterKey;
    use crate::keys::{self, load_ring};
    use crate::{Clock, ManualClock};

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
}
