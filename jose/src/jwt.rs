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

use crate::keyring::{KeyError, KeyRing};

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

pub(crate) fn jws_alg(alg: KeyAlgorithm) -> Algorithm {
    match alg {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::RS256 => Algorithm::RS256,
    }
}

/// Whether a `typ` names the at+jwt media type (RFC 8725 §3.11: compared
/// case-insensitively, the `application/` prefix optional).
pub fn is_access_token_typ(typ: &str) -> bool {
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
    sign_with_active(ring, alg, ACCESS_TOKEN_TYP, claims)
}

/// Signs an OpenID Connect ID token (or any plain JWT of claims) with the
/// active key of `alg`; the header carries `typ: JWT` and the key's `kid`.
pub fn sign_id_token(
    ring: &KeyRing,
    alg: KeyAlgorithm,
    claims: &Value,
) -> Result<String, KeyError> {
    sign_with_active(ring, alg, "JWT", claims)
}

/// Signs `claims` with the active key of `alg`, the header naming `typ`
/// and the key's `kid`.
fn sign_with_active<T: serde::Serialize>(
    ring: &KeyRing,
    alg: KeyAlgorithm,
    typ: &str,
    claims: &T,
) -> Result<String, KeyError> {
    let entry = ring.active(alg).ok_or(KeyError::NoActiveKey(alg))?;
    let signer = entry.signer.as_ref().ok_or(KeyError::NoActiveKey(alg))?;
    let mut header = Header::new(jws_alg(alg));
    header.typ = Some(typ.to_owned());
    header.kid = Some(entry.kid.clone());
    signer.sign(&header, claims)
}

/// The left half of the SHA-256 of a token, base64url: `at_hash` (OpenID
/// Connect Core §3.1.3.6) for ES256 and RS256, which both hash with SHA-256.
pub fn left_half_hash(token: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
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

/// Reads an ID token this server signed, presented back as a hint
/// (`id_token_hint` of RP-initiated logout): a key the ring holds as active
/// or retired, its algorithm, the signature and the issuer. An expired ID
/// token is still a good hint (OpenID Connect RP-Initiated Logout §2).
pub fn verify_id_token_hint(
    ring: &KeyRing,
    token: &str,
    issuer: &str,
) -> Result<Map<String, Value>, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    let kid = header.kid.as_deref().ok_or(JwtError::MissingKid)?;
    let entry = ring.get(kid).ok_or(JwtError::UnknownKid)?;
    if !matches!(entry.status, KeyStatus::Active | KeyStatus::Retired) {
        return Err(JwtError::KeyNotUsable);
    }
    let alg = jws_alg(entry.alg);
    if header.alg != alg {
        return Err(JwtError::AlgorithmMismatch);
    }
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let claims =
        jsonwebtoken::decode::<Map<String, Value>>(token, &entry.decoding_key, &validation)
            .map_err(refused)?
            .claims;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(JwtError::WrongIssuer);
    }
    Ok(claims)
}
