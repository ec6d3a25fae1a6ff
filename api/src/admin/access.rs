//! `/admin/access`: who could do what at any moment, computed by replaying
//! the log up to it: a user's effective roles and permissions then, and who
//! held a permission then. Read models only know the present; the log
//! knows every past.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use domain::Aggregate;
use domain::group::{GroupEvent, GroupTreeEvent};
use domain::role::{Holder, Permission, RoleEvent};
use domain::role_tree::RoleTreeEvent;
use domain::user::User;
use eventlog::{Filter, Position};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::AdminCaller;
use crate::problem::Problem;
use crate::state::AppState;

type QueryRejection = axum::extract::rejection::QueryRejection;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/access", get(user_access))
        .route("/admin/access/holders", get(permission_holders))
}

/// Roles, group memberships and group nesting as they stood at a moment.
#[derive(Default)]
struct World {
    /// Role id to its state.
    roles: BTreeMap<Uuid, RoleThen>,
    /// Group id to (organization, direct user members).
    groups: BTreeMap<Uuid, (Uuid, BTreeSet<Uuid>)>,
    /// (parent, child) group edges.
    edges: BTreeSet<(Uuid, Uuid)>,
    /// (including, included) role edges.
    role_edges: BTreeSet<(Uuid, Uuid)>,
}

struct RoleThen {
    organization_id: Uuid,
    name: String,
    permissions: BTreeSet<Permission>,
    holders: BTreeSet<Holder>,
}

/// Events read per page of the replay.
const PAGE: usize = 1000;

impl World {
    /// Replays roles, groups and group trees recorded up to `as_of`.
    async fn at(state: &AppState, as_of: OffsetDateTime) -> Result<Self, Problem> {
        let mut world = Self::default();
        let filter = Filter::categories(["role", "roletree", "group", "grouptree"]);
        world.replay(state, as_of, &filter, |_| true).await?;
        Ok(world)
    }

    /// What decides one user's access up to `as_of`: the roles and both
    /// trees, of role assignments to people only this user's, and of group
    /// memberships only this user's (through the log's subject index) in
    /// the groups that existed then. A large group's other members are
    /// never read.
    async fn for_user(
        state: &AppState,
        user: Uuid,
        as_of: OffsetDateTime,
    ) -> Result<Self, Problem> {
        let subject = domain::user::user_subject(user);
        let mut world = Self::default();
        let structure = Filter::categories(["role", "roletree", "grouptree"]);
        world
            .replay(state, as_of, &structure, |e| {
                e.subject.as_deref().is_none_or(|s| s == subject)
            })
            .await?;
        let about = state
            .log
            .read_subject(&subject)
            .await
            .map_err(|e| Problem::internal(&e))?;
        let memberships: Vec<_> = about
            .iter()
            .filter(|e| e.category() == "group" && e.recorded_at <= as_of)
            .collect();
        let named: BTreeSet<&str> = memberships.iter().map(|e| e.stream.as_str()).collect();
        for stream in named {
            if let Some((id, organization)) = group_then(state, stream, as_of).await? {
                world.groups.insert(id, (organization, BTreeSet::new()));
            }
        }
        for e in memberships {
            world.apply(e)?;
        }
        Ok(world)
    }

    /// Applies the events of `filter` recorded up to `as_of` that `keep`
    /// lets through (undecoded otherwise), a page at a time.
    async fn replay(
        &mut self,
        state: &AppState,
        as_of: OffsetDateTime,
        filter: &Filter,
        keep: impl Fn(&eventlog::RecordedEvent) -> bool,
    ) -> Result<(), Problem> {
        let mut after = Position::START;
        loop {
            let page = state
                .log
                .read_all(after, filter, PAGE)
                .await
                .map_err(|e| Problem::internal(&e))?;
            for e in &page {
                if e.recorded_at > as_of {
                    return Ok(());
                }
                if keep(e) {
                    self.apply(e)?;
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.position,
                _ => return Ok(()),
            }
        }
    }

    fn apply(&mut self, e: &eventlog::RecordedEvent) -> Result<(), Problem> {
        let bad = |err: eventlog::Error| Problem::internal(&err);
        match e.category() {
            "role" => match eventlog::decode::<RoleEvent>(e).map_err(bad)? {
                RoleEvent::Created(c) => {
                    self.roles.insert(
                        c.role_id,
                        RoleThen {
                            organization_id: c.organization_id,
                            name: c.name,
                            permissions: c.permissions,
                            holders: BTreeSet::new(),
                        },
                    );
                }
                RoleEvent::Changed(c) => {
                    if let Some(r) = self.roles.get_mut(&c.role_id) {
                        if let Some(name) = c.name {
                            r.name = name;
                        }
                        if let Some(p) = c.permissions {
                            r.permissions = p;
                        }
                    }
                }
                RoleEvent::Deleted(d) => {
                    self.roles.remove(&d.role_id);
                }
                RoleEvent::Assigned(a) => {
                    if let Some(r) = self.roles.get_mut(&a.role_id) {
                        r.holders.insert(a.holder);
                    }
                }
                RoleEvent::Unassigned(a) => {
                    if let Some(r) = self.roles.get_mut(&a.role_id) {
                        r.holders.remove(&a.holder);
                    }
                }
            },
            "group" => match eventlog::decode::<GroupEvent>(e).map_err(bad)? {
                GroupEvent::Created(c) => {
                    self.groups
                        .insert(c.group_id, (c.organization_id, BTreeSet::new()));
                }
                GroupEvent::Deleted(d) => {
                    self.groups.remove(&d.group_id);
                    self.edges
                        .retain(|(p, c)| *p != d.group_id && *c != d.group_id);
                }
                GroupEvent::UserAdded(m) => {
                    if let Some((_, members)) = self.groups.get_mut(&m.group_id) {
                        members.insert(m.user_id);
                    }
                }
                GroupEvent::UserRemoved(m) => {
                    if let Some((_, members)) = self.groups.get_mut(&m.group_id) {
                        members.remove(&m.user_id);
                    }
                }
                GroupEvent::Renamed(_)
                | GroupEvent::Described(_)
                | GroupEvent::ExternalIdSet(_) => {}
            },
            "roletree" => match eventlog::decode::<RoleTreeEvent>(e).map_err(bad)? {
                RoleTreeEvent::Included(n) => {
                    self.role_edges.insert((n.parent, n.child));
                }
                RoleTreeEvent::Excluded(n) => {
                    self.role_edges.remove(&(n.parent, n.child));
                }
                RoleTreeEvent::Forgotten(f) => {
                    self.role_edges
                        .retain(|(p, c)| *p != f.group && *c != f.group);
                }
            },
            "grouptree" => match eventlog::decode::<GroupTreeEvent>(e).map_err(bad)? {
                GroupTreeEvent::Nested(n) => {
                    self.edges.insert((n.parent, n.child));
                }
                GroupTreeEvent::Unnested(n) => {
                    self.edges.remove(&(n.parent, n.child));
                }
                GroupTreeEvent::Forgotten(f) => {
                    self.edges.retain(|(p, c)| *p != f.group && *c != f.group);
                }
            },
            _ => {}
        }
        Ok(())
    }

    /// The groups `user` was in: directly, and every group above those.
    fn groups_of(&self, user: Uuid) -> BTreeSet<Uuid> {
        let mut found: BTreeSet<Uuid> = self
            .groups
            .iter()
            .filter(|(_, (_, members))| members.contains(&user))
            .map(|(id, _)| *id)
            .collect();
        let mut frontier: Vec<Uuid> = found.iter().copied().collect();
        while let Some(g) = frontier.pop() {
            for (parent, _) in self.edges.iter().filter(|(_, c)| *c == g) {
                if found.insert(*parent) {
                    frontier.push(*parent);
                }
            }
        }
        found
    }

    /// The roles `role` includes, directly or not.
    fn included(&self, role: Uuid) -> BTreeSet<Uuid> {
        let mut found = BTreeSet::new();
        let mut frontier = vec![role];
        while let Some(r) = frontier.pop() {
            for (_, child) in self.role_edges.iter().filter(|(p, _)| *p == r) {
                if found.insert(*child) {
                    frontier.push(*child);
                }
            }
        }
        found
    }

    /// The users of `group` and of every group below it.
    fn users_of(&self, group: Uuid) -> BTreeSet<Uuid> {
        let mut seen = BTreeSet::from([group]);
        let mut frontier = vec![group];
        let mut users = BTreeSet::new();
        while let Some(g) = frontier.pop() {
            if let Some((_, members)) = self.groups.get(&g) {
                users.extend(members.iter().copied());
            }
            for (_, child) in self.edges.iter().filter(|(p, _)| *p == g) {
                if seen.insert(*child) {
                    frontier.push(*child);
                }
            }
        }
        users
    }
}

/// A group's id and organization if it existed at `as_of`: its first
/// event (the creation) was recorded by then and its deletion, always its
/// last event, was not. Two reads of one event each, whatever its size.
async fn group_then(
    state: &AppState,
    stream: &str,
    as_of: OffsetDateTime,
) -> Result<Option<(Uuid, Uuid)>, Problem> {
    let read = |direction| async move {
        let events = state
            .log
            .read_stream(stream, direction, None, 1)
            .await
            .map_err(|e| Problem::internal(&e))?;
        events
            .first()
            .filter(|e| e.recorded_at <= as_of)
            .map(eventlog::decode::<GroupEvent>)
            .transpose()
            .map_err(|e| Problem::internal(&e))
    };
    let Some(GroupEvent::Created(created)) = read(eventlog::Direction::Forwards).await? else {
        return Ok(None);
    };
    if let Some(GroupEvent::Deleted(_)) = read(eventlog::Direction::Backwards).await? {
        return Ok(None);
    }
    Ok(Some((created.group_id, created.organization_id)))
}

fn parse_as_of(state: &AppState, as_of: Option<&str>) -> Result<OffsetDateTime, Problem> {
    match as_of {
        None => Ok(state.clock.now()),
        Some(t) => OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
            Problem::bad_request("as_of must be an RFC 3339 time (2026-12-01T12:00:00Z)")
        }),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessQuery {
    /// The user's id.
    pub user: Uuid,
    /// The moment (RFC 3339); now when absent.
    pub as_of: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleThenView {
    pub role_id: String,
    pub name: String,
    pub permissions: Vec<String>,
    /// How it was held: `user`, `group` (with the group's id) or
    /// `organization`.
    pub via: Vec<super::roles::ViaView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessThenView {
    pub user_id: String,
    pub as_of: String,
    /// Whether the user existed (and was not deleted) then.
    pub existed: bool,
    pub groups: Vec<String>,
    pub roles: Vec<RoleThenView>,
    pub permissions: Vec<String>,
}

/// A user's effective roles and permissions at a moment, replayed from
/// the log. Needs `idp:admin` and `roles:read`.
#[utoipa::path(get, path = "/admin/access", params(AccessQuery),
    responses((status = 200, body = AccessThenView, description = "done"), (status = 404, description = "no such user (or another organization's)")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn user_access(
    State(state): State<AppState>,
    caller: AdminCaller,
    query: Result<Query<AccessQuery>, QueryRejection>,
) -> Result<Json<AccessThenView>, Problem> {
    let Query(q) = query?;
    let as_of = parse_as_of(&state, q.as_of.as_deref())?;
    let stream = format!("{}-{}", User::CATEGORY, q.user);
    let events = state
        .log
        .read_stream(&stream, eventlog::Direction::Forwards, None, usize::MAX)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let then: Vec<_> = events
        .iter()
        .filter(|e| e.recorded_at <= as_of)
        .map(eventlog::decode::<domain::user::UserEvent>)
        .collect::<Result<_, _>>()
        .map_err(|e| Problem::internal(&e))?;
    let organization = events
        .first()
        .map(eventlog::decode::<domain::user::UserEvent>)
        .transpose()
        .map_err(|e| Problem::internal(&e))?
        .map(|first| User::fold(std::slice::from_ref(&first)).organization_id);
    let organization = caller.within(organization, "user")?;
    let user = User::fold(&then);
    let world = World::for_user(&state, q.user, as_of).await?;
    let groups = world.groups_of(q.user);
    let existed = user.exists();
    // Each role held then, with how: assigned (to the user, a group of
    // theirs, the organization), or included by a role held.
    let mut held: BTreeMap<Uuid, Vec<super::roles::ViaView>> = BTreeMap::new();
    if existed {
        for (id, r) in &world.roles {
            if r.organization_id != organization {
                continue;
            }
            for h in &r.holders {
                let holds = match h {
                    Holder::User(u) => *u == q.user,
                    Holder::Group(g) => groups.contains(g),
                    Holder::Organization(o) => *o == organization,
                    Holder::Client(_) => false,
                };
                if holds {
                    held.entry(*id).or_default().push(super::roles::ViaView {
                        holder_type: h.kind().to_owned(),
                        id: h.id().to_string(),
                    });
                }
            }
        }
        let direct: Vec<Uuid> = held.keys().copied().collect();
        for d in direct {
            for c in world.included(d) {
                held.entry(c).or_default().push(super::roles::ViaView {
                    holder_type: "role".into(),
                    id: d.to_string(),
                });
            }
        }
    }
    let mut roles = Vec::new();
    let mut permissions = BTreeSet::new();
    for (id, via) in held {
        let Some(r) = world.roles.get(&id) else {
            continue;
        };
        permissions.extend(r.permissions.iter().map(|p| p.as_str().to_owned()));
        roles.push(RoleThenView {
            role_id: id.to_string(),
            name: r.name.clone(),
            permissions: r
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            via,
        });
    }
    roles.sort_by(|a, b| (&a.name, &a.role_id).cmp(&(&b.name, &b.role_id)));
    Ok(Json(AccessThenView {
        user_id: q.user.to_string(),
        as_of: as_of.format(&Rfc3339).unwrap_or_default(),
        existed,
        groups: if existed {
            groups.iter().map(ToString::to_string).collect()
        } else {
            vec![]
        },
        roles,
        permissions: permissions.into_iter().collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HoldersQuery {
    /// A permission (`users:write`); roles whose permissions grant it count.
    pub permission: String,
    /// The moment (RFC 3339); now when absent.
    pub as_of: Option<String>,
    /// Whose organization; the caller's own when absent.
    pub organization_id: Option<Uuid>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HolderThenView {
    /// `user`, `group`, `client` or `organization` (every user of it).
    #[serde(rename = "type")]
    pub holder_type: String,
    pub id: String,
    /// The roles that gave it the permission.
    pub roles: Vec<String>,
    /// For a group: the user through whom it reached them, none itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub through_group: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HoldersThenView {
    pub permission: String,
    pub as_of: String,
    /// Users (directly, or through a group: `through_group`), groups,
    /// clients and the organization that held the permission.
    pub holders: Vec<HolderThenView>,
}

/// Who held a permission at a moment, replayed from the log: the holders
/// of every role granting it, a group's users (nested groups included)
/// listed one by one. Needs `idp:admin` and `roles:read`.
#[utoipa::path(get, path = "/admin/access/holders", params(HoldersQuery),
    responses((status = 200, body = HoldersThenView, description = "done"), (status = 422, description = "the permission is out of shape")),
    security(("bearer" = ["idp:admin"])), tag = "roles")]
pub async fn permission_holders(
    State(state): State<AppState>,
    caller: AdminCaller,
    query: Result<Query<HoldersQuery>, QueryRejection>,
) -> Result<Json<HoldersThenView>, Problem> {
    let Query(q) = query?;
    Permission::parse(&q.permission)
        .map_err(|e| Problem::validation(e.to_string()).with("field", "permission"))?;
    let organization = caller
        .list_scope(q.organization_id)?
        .unwrap_or(caller.organization_id);
    let as_of = parse_as_of(&state, q.as_of.as_deref())?;
    let world = World::at(&state, as_of).await?;
    let mut out: BTreeMap<(String, String, Option<String>), BTreeSet<String>> = BTreeMap::new();
    for (id, r) in &world.roles {
        if r.organization_id != organization
            || !r.permissions.iter().any(|p| p.grants(&q.permission))
        {
            continue;
        }
        // Its holders, and the holders of every role that includes it.
        let givers = world
            .roles
            .iter()
            .filter(|(a, _)| *a == id || world.included(**a).contains(id))
            .map(|(_, a)| a);
        for giver in givers {
            for h in &giver.holders {
                out.entry((h.kind().to_owned(), h.id().to_string(), None))
                    .or_default()
                    .insert(r.name.clone());
                if let Holder::Group(g) = h {
                    for u in world.users_of(*g) {
                        out.entry(("user".into(), u.to_string(), Some(g.to_string())))
                            .or_default()
                            .insert(r.name.clone());
                    }
                }
            }
        }
    }
    Ok(Json(HoldersThenView {
        permission: q.permission,
        as_of: as_of.format(&Rfc3339).unwrap_or_default(),
        holders: out
            .into_iter()
            .map(|((holder_type, id, through_group), roles)| HolderThenView {
                holder_type,
                id,
                roles: roles.into_iter().collect(),
                through_group,
            })
            .collect(),
    }))
}
