//! What a subject may do, as tokens and introspection say it: the names of
//! its effective roles and the union of their permissions, under the claim
//! names the configuration gives, within the configured size.

use projections::roles::{self, EffectiveRole};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::state::AppState;

/// Whose roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    User { id: Uuid, organization_id: Uuid },
    Client(Uuid),
}

/// The effective roles of `subject`, from the read model.
pub async fn effective_roles(
    state: &AppState,
    subject: Subject,
) -> Result<Vec<EffectiveRole>, projections::ProjectionError> {
    match subject {
        Subject::User {
            id,
            organization_id,
        } => {
            roles::effective_roles_of_user(
                &state.read_db,
                &id.to_string(),
                &organization_id.to_string(),
            )
            .await
        }
        Subject::Client(id) => roles::roles_of_client(&state.read_db, &id.to_string()).await,
    }
}

/// Whether any of `roles` grants the permission `wanted` (wildcards
/// matched as `domain::role::Permission::grants` says).
pub fn grants(roles: &[EffectiveRole], wanted: &str) -> bool {
    roles.iter().any(|r| {
        r.role
            .permissions
            .iter()
            .any(|p| domain::role::Permission::parse(p).is_ok_and(|p| p.grants(wanted)))
    })
}

/// Role names (sorted, each once) and the union of their permissions
/// (sorted, each once).
pub fn names_and_permissions(roles: &[EffectiveRole]) -> (Vec<String>, Vec<String>) {
    let mut names: Vec<String> = roles.iter().map(|r| r.role.name.clone()).collect();
    names.sort();
    names.dedup();
    let mut permissions: Vec<String> = roles
        .iter()
        .flat_map(|r| r.role.permissions.iter().cloned())
        .collect();
    permissions.sort();
    permissions.dedup();
    (names, permissions)
}

/// The claims `roles` earn: both lists while together they hold at most
/// `max` entries; beyond that neither, and `roles_omitted: true`, so a
/// resource server knows to introspect. No roles: no claims.
pub fn claims(
    roles: &[EffectiveRole],
    roles_claim: &str,
    permissions_claim: &str,
    max: usize,
) -> Map<String, Value> {
    let mut out = Map::new();
    if roles.is_empty() {
        return out;
    }
    let (names, permissions) = names_and_permissions(roles);
    if names.len() + permissions.len() > max {
        out.insert("roles_omitted".into(), Value::Bool(true));
    } else {
        out.insert(roles_claim.into(), json!(names));
        out.insert(permissions_claim.into(), json!(permissions));
    }
    out
}

/// The claims of `subject` under this server's configuration; none when
/// the read model cannot be read (logged: a token without roles grants
/// less, never more).
pub async fn token_claims(state: &AppState, subject: Subject) -> Map<String, Value> {
    // Taken before the read: a change applied meanwhile leaves what is
    // read under the old generation, so it is read again next time.
    let generation = state.projections.access_generation();
    if let Some(found) = state.token_claims.get(&subject, generation) {
        return found;
    }
    match effective_roles(state, subject).await {
        Ok(roles) => {
            let out = claims(
                &roles,
                &state.config.roles_claim,
                &state.config.permissions_claim,
                state.config.role_claims_max,
            );
            state.token_claims.put(subject, generation, out.clone());
            out
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the roles of a token's subject");
            Map::new()
        }
    }
}

/// How many subjects' claims are kept; past it the cache starts over.
const CLAIMS_KEPT: usize = 100_000;

/// Token claims of subjects lately issued tokens, each valid while the
/// read models' access generation (`RunnerHandle::access_generation`) is
/// the one it was read under.
#[derive(Default)]
pub struct ClaimsCache {
    map: std::sync::RwLock<std::collections::HashMap<Subject, Generational>>,
}

/// Claims and the access generation they were read under.
type Generational = (u64, Map<String, Value>);

impl ClaimsCache {
    fn get(&self, subject: &Subject, generation: u64) -> Option<Map<String, Value>> {
        let map = self.map.read().ok()?;
        map.get(subject)
            .filter(|(g, _)| *g == generation)
            .map(|(_, c)| c.clone())
    }

    fn put(&self, subject: Subject, generation: u64, claims: Map<String, Value>) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= CLAIMS_KEPT {
                map.clear();
            }
            map.insert(subject, (generation, claims));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::roles::RoleRow;

    fn role(name: &str, permissions: &[&str]) -> EffectiveRole {
        EffectiveRole {
            role: RoleRow {
                id: name.into(),
                organization_id: "o".into(),
                name: name.into(),
                description: String::new(),
                permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
                created_at: String::new(),
                updated_at: String::new(),
                revision: 0,
            },
            via: vec![],
        }
    }

    #[test]
    fn claims_list_names_and_the_union_of_permissions_within_the_cap() {
        let roles = [
            role("support", &["tickets:read", "users:read"]),
            role("auditor", &["audit:read", "users:read"]),
        ];
        let c = claims(&roles, "roles", "permissions", 10);
        assert_eq!(c["roles"], json!(["auditor", "support"]));
        assert_eq!(
            c["permissions"],
            json!(["audit:read", "tickets:read", "users:read"])
        );
        let capped = claims(&roles, "roles", "permissions", 4);
        assert_eq!(capped.get("roles"), None);
        assert_eq!(capped["roles_omitted"], json!(true));
        assert!(claims(&[], "roles", "permissions", 10).is_empty());
    }
}
