//! Checks on the public keys a client registers for `private_key_jwt`
//! (RFC 7517, RFC 7518): a key that can never verify anything is refused
//! when it is registered, not found out at the first sign-in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// RSA moduli outside this range (bits) are refused: smaller ones are weak,
/// larger ones only cost verification time.
pub const MIN_RSA_BITS: usize = 2048;
pub const MAX_RSA_BITS: usize = 8192;
/// Keys in one set at most.
pub const MAX_KEYS: usize = 20;

/// Members that only private or symmetric JWKs have (RFC 7518 section 6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a JWK Set is refused; `index` and `kid` name the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("jwks must be an object with a non-empty \"keys\" array of at most {MAX_KEYS} keys")]
    NotASet,
    #[error("jwks key {index}{}: {reason}", kid_suffix(.kid))]
    Key {
        index: usize,
        kid: Option<String>,
        reason: String,
    },
}

fn kid_suffix(kid: &Option<String>) -> String {
    kid.as_ref()
        .map(|k| format!(" (kid {k:?})"))
        .unwrap_or_default()
}

/// Checks a JWK Set of signature verification keys: each key RSA (2048 to
/// 8192 bits) or EC on P-256 or P-384 with its point on the curve, public
/// only, `use` (if any) `sig`, `alg` (if any) one that fits the key, and
/// every `kid` different.
pub fn validate_jwks(jwks: &Value) -> Result<(), JwkError> {
    let keys = jwks
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .filter(|keys| !keys.is_empty() && keys.len() <= MAX_KEYS)
        .ok_or(JwkError::NotASet)?;
    let mut kids: Vec<&str> = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let kid = key.get("kid").and_then(Value::as_str);
        let refuse = |reason: &str| JwkError::Key {
            index,
            kid: kid.map(str::to_owned),
            reason: reason.to_owned(),
        };
        let Some(members) = key.as_object() else {
            return Err(refuse("a key must be a JSON object"));
        };
        if key.get("kid").is_some_and(|k| !k.is_string()) {
            return Err(refuse("kid must be a string"));
        }
        if let Some(kid) = kid {
            if kids.contains(&kid) {
                return Err(refuse("another key has the same kid"));
            }
            kids.push(kid);
        }
        check_key(members).map_err(|reason| refuse(&reason))?;
    }
    Ok(())
}

fn check_key(key: &Map<String, Value>) -> Result<(), String> {
    if PRIVATE_MEMBERS.iter().any(|m| key.contains_key(*m)) {
        return Err("only public keys may be registered (no private or symmetric members)".into());
    }
    match key.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err("use must be \"sig\": these keys verify client assertions".into()),
    }
    let alg = match key.get("alg") {
        None => None,
        Some(Value::String(a)) => Some(a.as_str()),
        Some(_) => return Err("alg must be a string".into()),
    };
    let algs: &[&str] = match key.get("kty").and_then(Value::as_str) {
        Some("RSA") => {
            check_rsa(key)?;
            &["RS256", "PS256"]
        }
        Some("EC") => match key.get("crv").and_then(Value::as_str) {
            Some("P-256") => {
                check_point::<p256::NistP256>(key, 32)?;
                &["ES256"]
            }
            Some("P-384") => {
                check_point::<p384::NistP384>(key, 48)?;
                &["ES384"]
            }
            _ => return Err("crv must be P-256 or P-384".into()),
        },
        Some(_) => return Err("kty must be RSA or EC".into()),
        None => return Err("the key has no kty".into()),
    };
    match alg {
        Some(a) if !algs.contains(&a) => Err(format!(
            "alg {a} does not fit this key (use {})",
            algs.join(" or ")
        )),
        _ => Ok(()),
    }
}

fn member_bytes(key: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = key
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the key has no {name}"))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("{name} is not base64url without padding"))
}

fn check_rsa(key: &Map<String, Value>) -> Result<(), String> {
    let n = member_bytes(key, "n")?;
    let e = member_bytes(key, "e")?;
    let n = strip_zeros(&n);
    let bits = match n.first() {
        Some(first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    };
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "the RSA modulus has {bits} bits; it must have {MIN_RSA_BITS} to {MAX_RSA_BITS}"
        ));
    }
    if n.last().is_some_and(|b| b % 2 == 0) {
        return Err("the RSA modulus must be odd".into());
    }
    let e = strip_zeros(&e);
    let odd = e.last().is_some_and(|b| b % 2 == 1);
    if e.is_empty() || e.len() > 8 || !odd || (e.len() == 1 && e[0] < 3) {
        return Err(
            "the RSA exponent must be an odd number of at least 3 and at most 64 bits".into(),
        );
    }
    Ok(())
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn check_point<C>(key: &Map<String, Value>, len: usize) -> Result<(), String>
where
    C: elliptic_curve::CurveArithmetic,
    C::AffinePoint:
        elliptic_curve::sec1::FromEncodedPoint<C> + elliptic_curve::sec1::ToEncodedPoint<C>,
    C::FieldBytesSize: elliptic_curve::sec1::ModulusSize,
{
    let x = member_bytes(key, "x")?;
    let y = member_bytes(key, "y")?;
    if x.len() != len || y.len() != len {
        return Err(format!("x and y must be {len} bytes each on this curve"));
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * len);
    sec1.push(4);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    elliptic_curve::PublicKey::<C>::from_sec1_bytes(&sec1)
        .map(|_| ())
        .map_err(|_| "the point (x, y) is not on the curve".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The P-256 generator: a point on the curve.
    fn p256_key(kid: &str) -> Value {
        json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
        })
    }

    fn rsa_key(bits: usize) -> Value {
        let mut n = vec![0xffu8; bits / 8];
        if let Some(last) = n.last_mut() {
            *last = 0xf1;
        }
        json!({"kty": "RSA", "n": b64(&n), "e": "AQAB"})
    }

    fn refused(keys: Vec<Value>) -> String {
        validate_jwks(&json!({ "keys": keys }))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn usable_keys_pass() {
        validate_jwks(&json!({"keys": [p256_key("a"), rsa_key(2048), rsa_key(8192)]})).unwrap();
    }

    #[test]
    fn keys_that_can_never_verify_are_refused_by_name() {
        let mut off_curve = p256_key("bad");
        off_curve["y"] = json!(b64(&[7u8; 32]));
        let e = refused(vec![p256_key("a"), off_curve]);
        assert!(
            e.contains("key 1") && e.contains("\"bad\"") && e.contains("curve"),
            "{e}"
        );
        let mut not_b64 = p256_key("x");
        not_b64["x"] = json!("not base64!");
        assert!(refused(vec![not_b64]).contains("base64url"));
        assert!(refused(vec![rsa_key(240_000)]).contains("240000 bits"));
        assert!(refused(vec![rsa_key(1024)]).contains("1024 bits"));
        let mut wrong_alg = p256_key("a");
        wrong_alg["alg"] = json!("RS256");
        assert!(refused(vec![wrong_alg]).contains("does not fit"));
        let mut enc = p256_key("a");
        enc["use"] = json!("enc");
        assert!(refused(vec![enc]).contains("use must be"));
        assert!(refused(vec![p256_key("same"), p256_key("same")]).contains("same kid"));
        let mut private = p256_key("p");
        private["d"] = json!("AAAA");
        assert!(refused(vec![private]).contains("public keys"));
        assert!(refused(vec![json!({"kty": "oct", "k": "AAAA"})]).contains("public keys"));
        assert!(refused(vec![json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"})]).contains("kty"));
        assert_eq!(validate_jwks(&json!({})), Err(JwkError::NotASet));
        assert_eq!(validate_jwks(&json!({"keys": []})), Err(JwkError::NotASet));
    }
}
