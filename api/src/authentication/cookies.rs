//! The two cookies of signing in, read and written in one place:
//!
//! - `idp_signin`: a random secret binding sign-ins to the browser that
//!   started them (each sign-in keeps its SHA-256); one per browser, shared
//!   by the sign-ins of its tabs;
//! - `idp_session`: `{session id}.{secret}`, the session a completed
//!   sign-in opened (new, never the sign-in's, so nothing planted before
//!   the sign-in rides on it).
//!
//! Both are `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` unless the
//! server is reached over plain http on a loopback address (development).

use axum::http::{HeaderMap, HeaderValue, header};

pub const SIGN_IN_COOKIE: &str = "idp_signin";
pub const SESSION_COOKIE: &str = "idp_session";

/// The longest cookie value read.
const MAX_VALUE_LEN: usize = 256;

/// The value of cookie `name` in the request, if present once and sane.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
            {
                let v = v.trim_matches('"');
                if v.is_empty() || v.len() > MAX_VALUE_LEN || found.is_some() {
                    // Two cookies of one name: trust neither.
                    return None;
                }
                found = Some(v.to_owned());
            }
        }
    }
    found
}

/// Whether cookies for `issuer` may go without `Secure`: plain http on a
/// loopback host only.
pub fn insecure_ok(issuer: &str) -> bool {
    let Some(rest) = issuer.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A `Set-Cookie` value; `max_age` in seconds (`None`: for the browser's
/// session; `Some(0)`: deletes it).
pub fn set(name: &str, value: &str, max_age: Option<i64>, issuer: &str) -> Option<HeaderValue> {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if !insecure_ok(issuer) {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={}", age.max(0)));
    }
    HeaderValue::from_str(&c).ok()
}

/// A `Set-Cookie` value that deletes cookie `name`.
pub fn clear(name: &str, issuer: &str) -> Option<HeaderValue> {
    set(name, "", Some(0), issuer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_read_by_name_and_never_when_doubled() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; idp_signin=abc; b=2"),
        );
        assert_eq!(read(&h, SIGN_IN_COOKIE).as_deref(), Some("abc"));
        assert_eq!(read(&h, SESSION_COOKIE), None);
        h.append(header::COOKIE, HeaderValue::from_static("idp_signin=xyz"));
        assert_eq!(read(&h, SIGN_IN_COOKIE), None);
    }

    #[test]
    fn secure_is_left_out_only_for_http_on_loopback() {
        for (issuer, ok) in [
            ("http://127.0.0.1:8080", true),
            ("http://localhost:8080/", true),
            ("http://[::1]:8080", true),
            ("http://idp.example.com", false),
            ("http://localhost.example.com", false),
            ("https://127.0.0.1", false),
        ] {
            assert_eq!(insecure_ok(issuer), ok, "{issuer}");
        }
        let v = set(SESSION_COOKIE, "v", Some(60), "https://idp.example.com").unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "idp_session=v; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=60"
        );
    }
}
