//! The `Authorization` request header, read one way everywhere: exactly
//! one header, its scheme compared case-insensitively (RFC 9110 §11.1).

use axum::http::{HeaderMap, header};

/// A request's one `Authorization` header, split at the first space.
#[derive(Debug, Clone, Copy)]
pub struct Authorization<'a> {
    scheme: &'a str,
    /// What follows the scheme, without surrounding white space.
    pub credentials: &'a str,
}

impl Authorization<'_> {
    /// Whether the header uses `scheme` (`Basic`, `Bearer`), in any case.
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

/// Why the header cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    #[error("the request carries more than one Authorization header")]
    Repeated,
    #[error("the Authorization header is not visible ASCII text")]
    NotText,
}

/// The request's `Authorization` header, if it has one. Two of them are
/// refused: which one a proxy or a library reads is not for us to guess.
pub fn authorization(headers: &HeaderMap) -> Result<Option<Authorization<'_>>, AuthorizationError> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(AuthorizationError::Repeated);
    }
    let text = first
        .to_str()
        .map_err(|_| AuthorizationError::NotText)?
        .trim();
    let (scheme, credentials) = text.split_once(' ').unwrap_or((text, ""));
    Ok(Some(Authorization {
        scheme,
        credentials: credentials.trim(),
    }))
}

/// Why a bearer token does not let a request through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// The Authorization header cannot be read (repeated, not text).
    #[error(transparent)]
    Malformed(AuthorizationError),
    /// No token: no Authorization header, or one of another scheme (401,
    /// challenged without an error code: RFC 6750 §3.1).
    #[error("{0}")]
    Missing(String),
    /// A token that is invalid, expired, revoked or for another audience
    /// (401, `invalid_token`).
    #[error("{0}")]
    Unauthenticated(String),
    /// A good token without the scope (403).
    #[error("this needs the `{0}` scope")]
    MissingScope(&'static str),
}

/// The request's bearer access token, checked completely: issued by this
/// server and for it (its audience, RFC 9068 §4 and RFC 8707), not
/// expired or revoked, its client active, carrying `scope`.
pub async fn bearer_with_scope(
    headers: &HeaderMap,
    state: &crate::state::AppState,
    scope: &'static str,
) -> Result<projections::tokens::ValidToken, BearerError> {
    let unauthenticated = |d: &str| BearerError::Unauthenticated(d.to_owned());
    let header = authorization(headers)
        .map_err(BearerError::Malformed)?
        .ok_or_else(|| BearerError::Missing("a bearer access token is required".into()))?;
    if !header.is("Bearer") || header.credentials.is_empty() {
        return Err(BearerError::Missing(
            "the Authorization header must be `Bearer <token>`".into(),
        ));
    }
    let valid = state
        .tokens
        .validate(header.credentials, state.clock.now())
        .await
        .map_err(|_| unauthenticated("the access token is invalid, expired or revoked"))?;
    if !valid.claims.aud.contains(&state.tokens.issuer) {
        return Err(unauthenticated(
            "the access token was issued for another audience",
        ));
    }
    if !valid.scope.split(' ').any(|s| s == scope) {
        return Err(BearerError::MissingScope(scope));
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn schemes_match_in_any_case() {
        for v in ["Bearer abc", "BEARER abc", "bearer  abc ", "bEaReR abc"] {
            let h = headers(&[v]);
            let a = authorization(&h).unwrap().unwrap();
            assert!(a.is("Bearer"), "{v}");
            assert!(!a.is("Basic"), "{v}");
            assert_eq!(a.credentials, "abc", "{v}");
        }
    }

    #[test]
    fn two_headers_are_refused_and_none_is_none() {
        assert_eq!(
            authorization(&headers(&["Bearer a", "Bearer b"])).unwrap_err(),
            AuthorizationError::Repeated
        );
        assert!(authorization(&HeaderMap::new()).unwrap().is_none());
        let bare = headers(&["Bearer"]);
        assert_eq!(authorization(&bare).unwrap().unwrap().credentials, "");
    }
}
