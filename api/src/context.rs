//! What every command learns from its request: correlation id, source IP,
//! user agent.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use domain::{Actor, Metadata};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::state::AppState;

/// The longest caller-supplied request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The request's side of an event's metadata.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Ours, new for every request.
    pub correlation_id: Uuid,
    /// The caller's `X-Request-Id`, kept apart from ours.
    pub request_id: Option<String>,
    /// When the request arrived, by the server's clock (the command loop's
    /// clock stamps what it decides; journal facts keep this).
    pub now: OffsetDateTime,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// Metadata for a command by `actor` (the clock of the command loop
    /// replaces `occurred_at`).
    pub fn metadata(&self, actor: Actor, organization: Option<Uuid>) -> Metadata {
        Metadata {
            actor,
            correlation_id: self.correlation_id,
            request_id: self.request_id.clone(),
            causation_id: None,
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            organization,
            occurred_at: self.now,
        }
    }
}

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // A caller's id is recorded as theirs, never taken as ours: anyone
        // could otherwise join another request's correlation.
        let correlation_id = Uuid::now_v7();
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| v.chars().take(MAX_REQUEST_ID_LEN).collect());
        let source_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect());
        Ok(Self {
            now: state.clock.now(),
            correlation_id,
            request_id,
            source_ip,
            user_agent,
        })
    }
}
