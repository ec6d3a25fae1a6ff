//! TOTP codes (RFC 6238, through `totp-rs`): SHA-1, six digits, 30-second
//! steps, one step of clock skew either way, the usual settings of
//! authenticator apps. Time is an input: the caller passes "now" from its
//! clock.

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// The length of a new secret in bytes (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;

/// A new random secret, base32 without padding.
pub fn new_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    Secret::from(bytes.to_vec()).to_base32()
}

fn totp(secret_base32: &str, issuer: Option<&str>, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_base32).ok()?;
    // A colon would break the otpauth label; it is not part of a name.
    let clean = |s: &str| s.replace(':', " ");
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(issuer.map(clean))
        .with_account_name(clean(account))
        .build()
        .ok()
}

/// The `otpauth://totp/…` URI an authenticator app enrols from.
pub fn otpauth_uri(secret_base32: &str, issuer: &str, account: &str) -> Option<String> {
    totp(secret_base32, Some(issuer), account)?.to_url().ok()
}

/// The time step (`unix time / 30`) whose code `code` is, among the steps
/// around `now_unix`; `None` when it matches none (or is not six digits).
pub fn matching_step(secret_base32: &str, code: &str, now_unix: i64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(now_unix).ok()?;
    totp(secret_base32, None, "")?.check(code, now)
}

/// The code of the step `now_unix` falls in (for tests and tools).
pub fn code_at(secret_base32: &str, now_unix: i64) -> Option<String> {
    let now = u64::try_from(now_unix).ok()?;
    Some(totp(secret_base32, None, "")?.generate(now).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_its_step_and_one_either_side() {
        let secret = new_secret();
        assert_eq!(secret.len(), 32, "{secret}");
        let t = 1_800_000_000;
        let code = code_at(&secret, t).unwrap();
        assert_eq!(matching_step(&secret, &code, t), Some(60_000_000));
        assert_eq!(matching_step(&secret, &code, t + 30), Some(60_000_000));
        assert_eq!(matching_step(&secret, &code, t - 30), Some(60_000_000));
        assert_eq!(matching_step(&secret, &code, t + 60), None);
        assert_eq!(matching_step(&secret, "12345", t), None);
        assert_eq!(matching_step(&secret, "abcdef", t), None);
    }

    #[test]
    fn rfc_6238_vectors_hold() {
        // RFC 6238 appendix B, SHA-1, "12345678901234567890", last 6 digits.
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        assert_eq!(code_at(&secret, 59).unwrap(), "287082");
        assert_eq!(code_at(&secret, 1_111_111_109).unwrap(), "081804");
        assert_eq!(code_at(&secret, 2_000_000_000).unwrap(), "279037");
    }

    #[test]
    fn the_uri_names_the_issuer_and_the_account() {
        let secret = new_secret();
        let uri = otpauth_uri(&secret, "Acme", "ada@example.org").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Acme:ada%40example.org?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={secret}")), "{uri}");
        assert!(uri.contains("issuer=Acme"), "{uri}");
    }
}
