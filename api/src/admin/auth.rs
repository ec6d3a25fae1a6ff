//! Who may call the admin API: a bearer access token issued by this server,
//! carrying the admin scope, for a client that is still active.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use domain::Actor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::problem::Problem;
use crate::server::AppState;

pub const ADMIN_SCOPE: &str = "idp:admin";

/// An authenticated admin caller.
#[derive(Clone, Debug)]
pub struct AdminCaller {
    pub client_id: Uuid,
    pub jti: String,
}

impl AdminCaller {
    pub fn actor(&self) -> Actor {
        Actor::client(self.client_id.to_string())
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Problem::unauthorized("a bearer access token is required"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let claims = state
            .tokens
            .validate(token, OffsetDateTime::now_utc())
            .await
            .map_err(|_| {
                Problem::unauthorized("the access token is invalid, expired or revoked")
            })?;
        if !claims.scope.split(' ').any(|s| s == ADMIN_SCOPE) {
            return Err(Problem::forbidden(ADMIN_SCOPE));
        }
        Ok(AdminCaller {
            client_id: claims.client_id,
            jti: claims.jti,
        })
    }
}
