//! Who may call the admin API: a bearer access token issued by this server
//! for this server (its audience), carrying the admin scope, for a client
//! that is still active. An admin acts within its client's organization;
//! only the platform admin (the client the first start bootstrapped) spans
//! organizations.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use domain::Actor;
use uuid::Uuid;

use crate::authorization::authorization;
use crate::problem::Problem;
use crate::state::AppState;

pub use domain::client::ADMIN_SCOPE;

/// An authenticated admin caller.
#[derive(Clone, Debug)]
pub struct AdminCaller {
    pub client_id: Uuid,
    pub jti: String,
    /// The organization of the caller's client.
    pub organization_id: Uuid,
    /// Whether the caller may act in every organization.
    pub platform: bool,
}

impl AdminCaller {
    pub fn actor(&self) -> Actor {
        Actor::client(self.client_id.to_string())
    }

    /// Whether the caller may see and change what belongs to `organization`.
    pub fn may_act_in(&self, organization: Uuid) -> bool {
        self.platform || organization == self.organization_id
    }

    /// `Ok` when the caller may act in `organization`; otherwise the
    /// thing is answered as not found, as though it did not exist.
    pub fn within(&self, organization: Option<Uuid>, what: &str) -> Result<Uuid, Problem> {
        match organization {
            Some(o) if self.may_act_in(o) => Ok(o),
            _ => Err(Problem::not_found(what)),
        }
    }

    /// The organization a list is narrowed to: the one asked for (which
    /// must be the caller's own unless the caller is the platform admin),
    /// or, when none is asked for, the caller's own (the platform admin
    /// then sees every organization).
    pub fn list_scope(&self, requested: Option<Uuid>) -> Result<Option<Uuid>, Problem> {
        match requested {
            Some(o) if self.may_act_in(o) => Ok(Some(o)),
            Some(_) => Err(Problem::forbidden_organization()),
            None if self.platform => Ok(None),
            None => Ok(Some(self.organization_id)),
        }
    }

    /// Refuses what only the platform admin may do (signing keys).
    pub fn must_be_platform(&self) -> Result<(), Problem> {
        if self.platform {
            Ok(())
        } else {
            Err(Problem::forbidden_organization())
        }
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let header = authorization(&parts.headers)
            .map_err(|e| Problem::invalid_request(e.to_string()))?
            .ok_or_else(|| Problem::unauthorized("a bearer access token is required"))?;
        if !header.is("Bearer") || header.credentials.is_empty() {
            return Err(Problem::unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        }
        let valid = state
            .tokens
            .validate(header.credentials, state.clock.now())
            .await
            .map_err(|_| {
                Problem::unauthorized("the access token is invalid, expired or revoked")
            })?;
        // A token for another resource server is not a token for this one
        // (RFC 9068 §4, RFC 8707).
        if !valid.claims.aud.contains(&state.tokens.issuer) {
            return Err(Problem::unauthorized(
                "the access token was issued for another audience",
            ));
        }
        if !valid.scope.split(' ').any(|s| s == ADMIN_SCOPE) {
            return Err(Problem::forbidden(ADMIN_SCOPE));
        }
        Ok(AdminCaller {
            client_id: valid.client_id,
            jti: valid.jti,
            organization_id: valid.client.organization_id,
            platform: valid.client.platform_admin,
        })
    }
}
