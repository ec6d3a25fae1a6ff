//! RFC 6749 §5.2 error responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    /// A status other than the one the code implies (413, 429).
    status: Option<StatusCode>,
    /// Seconds to wait, for a 429 (`Retry-After`).
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            status: None,
            retry_after: None,
        }
    }
    /// A body over the limit: 413, naming it.
    pub fn too_large(limit: usize) -> Self {
        Self {
            status: Some(StatusCode::PAYLOAD_TOO_LARGE),
            ..Self::new(
                "invalid_request",
                format!("the body may hold at most {limit} bytes"),
            )
        }
    }
    /// Too many failed attempts from this source: 429 with `Retry-After`.
    pub fn slow_down(retry_after_secs: u64) -> Self {
        Self {
            status: Some(StatusCode::TOO_MANY_REQUESTS),
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(
                "slow_down",
                "too many failed attempts from this address; retry later",
            )
        }
    }
    /// A form that could not be read: 413 when it was too large, else 400.
    pub fn unreadable_form(e: &axum::extract::rejection::FormRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::too_large(crate::state::MAX_BODY_BYTES);
        }
        Self::invalid_request(format!(
            "the body must be application/x-www-form-urlencoded: {}",
            e.body_text()
        ))
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new("invalid_client", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new("unauthorized_client", d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new("unsupported_grant_type", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new("invalid_scope", d)
    }
    pub fn server_error(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "token endpoint failure");
        Self::new("server_error", "the server could not complete the request")
    }
    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::new("temporarily_unavailable", d)
    }

    fn status(&self) -> StatusCode {
        if let Some(s) = self.status {
            return s;
        }
        match self.code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<domain::client::GrantError> for OAuthError {
    fn from(e: domain::client::GrantError) -> Self {
        use domain::client::GrantError;
        match e {
            GrantError::ScopeNotAllowed(_) | GrantError::ScopeNotGranted(_) => {
                Self::invalid_scope(e.to_string())
            }
            GrantError::MalformedResource => Self::invalid_request(e.to_string()),
            // RFC 8707 §2.
            GrantError::ResourceNotAllowed(_) => Self::new("invalid_target", e.to_string()),
            GrantError::GrantNotAllowed(_) => Self::unauthorized_client(e.to_string()),
        }
    }
}

/// `error_description` in the characters RFC 6749 §5.2 allows (printable
/// ASCII but `"` and `\`): a description that quotes what the client sent
/// has anything else replaced by `?`.
fn description_text(d: &str) -> String {
    d.chars()
        .map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        })
        .collect()
}

/// Token responses must never be cached (RFC 6749 §5.1).
pub fn no_store(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (
            status,
            axum::Json(json!({
                "error": self.code,
                "error_description": description_text(&self.description),
            })),
        )
            .into_response();
        no_store(&mut resp);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            // The scheme these endpoints take in the Authorization header:
            // again for a client that tried it, and to say it is taken to
            // one that did not (RFC 6749 §5.2).
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"idp\", charset=\"UTF-8\""),
            );
        }
        resp
    }
}
