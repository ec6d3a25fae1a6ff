//! The admin API: JSON over HTTP, errors as RFC 9457 problems, every
//! endpoint behind a bearer access token with the admin scope.

pub mod access;
pub mod audit;
pub mod auth;
pub mod clients;
pub mod groups;
pub mod keys;
pub mod organizations;
pub mod policies;
pub mod privacy;
pub mod registration;
pub mod roles;
pub mod sign_in;
pub mod user_bulk;
pub mod user_history;
pub mod users;

use std::time::Duration;

use axum::Router;
use commands::Outcome;
use serde::{Deserialize, Serialize};

use crate::problem::Problem;
use crate::state::AppState;

pub use auth::{ADMIN_SCOPE, AdminCaller};

/// Routes under `/admin`.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(organizations::router())
        .merge(clients::router())
        .merge(keys::router())
        .merge(registration::router())
        .merge(audit::router())
        .merge(privacy::router())
        .merge(users::router())
        .merge(groups::router())
        .merge(roles::router())
        .merge(access::router())
        .merge(policies::router())
        .merge(sign_in::router())
}

/// Page size bounds for every list.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items (1 to 200, default 50).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<i64, Problem> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(Problem::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            ))),
        }
    }
}

/// A page of a list with the cursor of the next one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `items` were fetched with `limit + 1`; the extra one only says that
    /// another page exists.
    pub fn from_overfetch(mut items: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = items.len() as i64 > limit;
        items.truncate(limit.max(0) as usize);
        let next_cursor = if more {
            items.last().map(cursor_of)
        } else {
            None
        };
        Self { items, next_cursor }
    }
}

/// Waits until the read models hold a command's events, so the response
/// (and the caller's next request) reads its own write.
pub async fn settle(state: &AppState, outcome: &Outcome) -> Result<(), Problem> {
    match outcome.position {
        Some(at) => settle_at(state, at).await,
        None => Ok(()),
    }
}

/// Waits until the read models hold the log up to `at`.
pub async fn settle_at(state: &AppState, at: eventlog::Position) -> Result<(), Problem> {
    if !state
        .projections
        .wait_for(at, Duration::from_secs(10))
        .await
    {
        return Err(Problem::unavailable(
            "the change is recorded but the read models are behind; retry the read shortly",
        ));
    }
    Ok(())
}
