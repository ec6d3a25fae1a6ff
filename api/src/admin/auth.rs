//! Who may call the admin API: a bearer access token issued by this server
//! for this server (its audience), carrying the admin scope, for a client
//! that is still active, whose roles grant the permission the request
//! needs ([`required_permission`]: `users:read`, `clients:write`, …). An
//! admin acts within its client's organization; only the platform admin
//! (the client the first start bootstrapped) spans organizations and holds
//! every permission. A client given the admin scope and no role at all is
//! its organization's admin; a role narrows it to what the role grants.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use domain::Actor;
use uuid::Uuid;

use crate::authorization::{BearerError, bearer_with_scope};
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
        let valid = bearer_with_scope(&parts.headers, state, ADMIN_SCOPE)
            .await
            .map_err(|e| match e {
                BearerError::Malformed(e) => Problem::invalid_request(e.to_string()),
                BearerError::Missing(d) => Problem::unauthenticated(d),
                BearerError::Unauthenticated(d) => Problem::unauthorized(d),
                BearerError::MissingScope(scope) => Problem::forbidden(scope),
            })?;
        if !valid.client.platform_admin {
            let needed = required_permission(parts.method.as_str(), parts.uri.path());
            let roles = crate::access::effective_roles(
                state,
                crate::access::Subject::Client(valid.client_id),
            )
            .await
            .map_err(|e| Problem::internal(&e))?;
            let granted = roles.is_empty() || crate::access::grants(&roles, &needed);
            if !granted {
                return Err(Problem::forbidden_permission(&needed));
            }
        }
        Ok(AdminCaller {
            client_id: valid.client_id,
            jti: valid.jti,
            organization_id: valid.client.organization_id,
            platform: valid.client.platform_admin,
        })
    }
}

/// The permission a request of the admin API needs: the resource its path
/// names, and `read` for GET and HEAD, `write` for anything else.
pub fn required_permission(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path
        .trim_start_matches("/admin/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let first = segments.first().copied().unwrap_or("");
    let third = segments.get(2).copied().unwrap_or("");
    let resource = match (first, third) {
        (_, "roles") => "roles",
        (_, "sign-in-policy") => "sign_in",
        ("organizations", "policies") => "policies",
        ("users", "sessions" | "unlock" | "notifications" | "methods") => "sign_in",
        ("registration-tokens" | "auth-tokens", _) => "registration",
        ("subjects", _) => "privacy",
        ("access", _) => "roles",
        ("outbox", _) => "sign_in",
        (other, _) => other,
    };
    let action = if matches!(method, "GET" | "HEAD") {
        "read"
    } else {
        "write"
    };
    format!("{resource}:{action}")
}

/// The roles an organization starts from, as templates: their names and
/// permissions.
pub const BUILT_IN_ROLES: &[(&str, &str, &[&str])] = &[
    (
        "organization_admin",
        "Everything within the organization",
        &["*:*"],
    ),
    (
        "user_admin",
        "Users, groups, their sign-in and their roles",
        &["users:*", "groups:*", "sign_in:*", "roles:read"],
    ),
    (
        "auditor",
        "Reads the audit trail and who holds what",
        &[
            "audit:read",
            "users:read",
            "groups:read",
            "roles:read",
            "policies:read",
            "clients:read",
        ],
    ),
    (
        "resource_server",
        "Introspects the access tokens of the organization's clients",
        &[domain::role::INTROSPECT_PERMISSION],
    ),
    (
        "viewer",
        "Reads the organization's configuration and people, not their data requests or the audit trail",
        &[
            "organizations:read",
            "clients:read",
            "users:read",
            "groups:read",
            "roles:read",
            "policies:read",
            "registration:read",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_its_resource_and_a_method_its_action() {
        let cases = [
            ("GET", "/admin/users", "users:read"),
            ("POST", "/admin/users/bulk", "users:write"),
            ("GET", "/admin/users/1/roles", "roles:read"),
            ("POST", "/admin/users/1/unlock", "sign_in:write"),
            ("PUT", "/admin/roles/1/holders/users/2", "roles:write"),
            ("GET", "/admin/audit/export", "audit:read"),
            ("DELETE", "/admin/subjects/user:1", "privacy:write"),
            ("POST", "/admin/organizations/1/policies", "policies:write"),
            (
                "PUT",
                "/admin/organizations/1/sign-in-policy",
                "sign_in:write",
            ),
            ("PATCH", "/admin/organizations/1", "organizations:write"),
            (
                "POST",
                "/admin/registration-tokens/1/revoke",
                "registration:write",
            ),
            ("GET", "/admin/clients/1/roles", "roles:read"),
            ("GET", "/admin/access/holders", "roles:read"),
        ];
        for (method, path, want) in cases {
            assert_eq!(required_permission(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn built_in_roles_are_in_shape() {
        for (name, _, permissions) in BUILT_IN_ROLES {
            for p in *permissions {
                assert!(domain::role::Permission::parse(p).is_ok(), "{name}: {p}");
            }
        }
    }
}
