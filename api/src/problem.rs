//! RFC 9457 problem details: the one error format of the admin API.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// A problem to report. Built only through the constructors below, so each
/// kind of failure has one `type` URI and one status.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: Option<String>,
    extra: Map<String, Value>,
    www_authenticate: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, slug: &'static str, title: &'static str) -> Self {
        Self {
            status,
            slug,
            title,
            detail: None,
            extra: Map::new(),
            www_authenticate: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn slug(&self) -> &'static str {
        self.slug
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is malformed",
        )
        .detail(detail)
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            "The request breaks a rule",
        )
        .detail(detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(format!("no such {what}"))
    }

    pub fn conflict(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            slug,
            "The request conflicts with the current state",
        )
        .detail(detail)
    }

    /// 412: an `If-Match` names a revision the resource has moved on from.
    pub fn stale(current: Option<u64>) -> Self {
        let p = Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
            "The resource changed since it was read",
        )
        .detail("If-Match names an older version: read the resource again");
        match current {
            Some(r) => p.with("current_etag", format!("\"{r}\"")),
            None => p,
        }
    }

    pub fn limit(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, slug, "A limit is reached").detail(detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
        )
        .detail(detail);
        p.www_authenticate = Some("Bearer realm=\"idp\", error=\"invalid_token\"".into());
        p
    }

    /// 401 for a request with no credentials: the challenge names no error
    /// (RFC 6750 §3.1).
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
        )
        .detail(detail);
        p.www_authenticate = Some("Bearer realm=\"idp\"".into());
        p
    }

    pub fn forbidden(scope: &str) -> Self {
        let mut p = Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed")
            .detail(format!("this needs the `{scope}` scope"));
        p.www_authenticate = Some(format!(
            "Bearer realm=\"idp\", error=\"insufficient_scope\", scope=\"{scope}\""
        ));
        p
    }

    /// A refusal with a machine-readable `error` code of its own (also the
    /// last part of its `type`).
    /// With the `WWW-Authenticate` challenge `value`.
    pub fn challenge(mut self, value: impl Into<String>) -> Self {
        self.www_authenticate = Some(value.into());
        self
    }

    pub fn refused(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(status, code, "The request was refused")
            .detail(detail)
            .with("error", code)
    }

    /// RFC 6750 §3.1 `invalid_request`: the request cannot be read as one
    /// (two Authorization headers, say).
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is malformed",
        )
        .detail(detail)
        .with("error", "invalid_request");
        p.www_authenticate = Some("Bearer realm=\"idp\", error=\"invalid_request\"".into());
        p
    }

    /// The caller's organization does not reach this far.
    /// The caller's roles do not grant `permission`.
    pub fn forbidden_permission(permission: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden-permission", "Not allowed")
            .detail(format!(
                "this needs the permission `{permission}`, which no role of the caller grants"
            ))
            .with("permission", permission)
    }

    pub fn forbidden_organization() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden-organization",
            "Not allowed",
        )
        .detail("an admin acts only within its own organization")
    }

    /// A body over the limit (413, naming the limit in bytes).
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "The request body is too large",
        )
        .detail(format!("the body may hold at most {limit} bytes"))
        .with("limit", limit)
    }

    /// 405, naming the methods the path takes.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
        )
        .detail("this path does not take this method")
    }

    /// 404 for a path that names nothing.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail("no endpoint at this path")
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
        )
        .detail(detail)
    }

    /// Something failed inside; the detail is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side",
        )
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "type": format!("urn:idp:problem:{}", self.slug),
            "title": self.title,
            "status": self.status.as_u16(),
        });
        if let (Some(d), Some(obj)) = (&self.detail, body.as_object_mut()) {
            obj.insert("detail".into(), Value::String(d.clone()));
        }
        if let Some(obj) = body.as_object_mut() {
            for (k, v) in &self.extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body().to_string()).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(v) = self
            .www_authenticate
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

impl From<axum::extract::rejection::JsonRejection> for Problem {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Problem::too_large(crate::state::MAX_BODY_BYTES);
        }
        Problem::bad_request(r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for Problem {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        Problem::bad_request(r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for Problem {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        Problem::bad_request(r.body_text())
    }
}
