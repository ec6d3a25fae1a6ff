//! Command handlers of groups and their nesting (see `domain::group`).
//!
//! A group's user members are in the group's stream; groups inside groups
//! are edges of the organization's group tree (one stream), so a cycle is
//! refused against a single state whatever runs concurrently.

use std::collections::BTreeSet;

use domain::Metadata;
use domain::decider::Aggregate;
use domain::group::{Group, GroupCommand, GroupError, GroupTree, GroupTreeCommand, GroupTreeError};
use domain::organization::Organization;
use domain::user::User;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};

/// Why a group command did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum GroupFailure {
    #[error(transparent)]
    Group(GroupError),
    #[error(transparent)]
    Tree(GroupTreeError),
    #[error("the organization does not exist")]
    UnknownOrganization,
    #[error("no user {0} in the group's organization")]
    UnknownUser(Uuid),
    #[error("no group {0} in the organization")]
    UnknownGroup(Uuid),
    #[error("the stream kept changing under the command ({attempts} attempts)")]
    Contention { attempts: usize },
    #[error("the group changed since revision {expected}")]
    Stale { expected: u64, actual: Option<u64> },
    #[error(transparent)]
    Log(#[from] eventlog::Error),
}

impl From<CommandError<GroupError>> for GroupFailure {
    fn from(e: CommandError<GroupError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::Group(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { expected, actual } => Self::Stale { expected, actual },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

impl From<CommandError<GroupTreeError>> for GroupFailure {
    fn from(e: CommandError<GroupTreeError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::Tree(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { expected, actual } => Self::Stale { expected, actual },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

type Result<T> = std::result::Result<T, GroupFailure>;

pub async fn create(
    bus: &CommandBus,
    id: Uuid,
    organization_id: Uuid,
    name: String,
    description: String,
    external_id: Option<String>,
    meta: &Metadata,
) -> Result<Outcome> {
    let (org, _) = bus
        .load::<Organization>(&organization_id.to_string())
        .await?;
    if org.id.is_none() {
        return Err(GroupFailure::UnknownOrganization);
    }
    let command = GroupCommand::Create {
        id,
        organization_id,
        name,
        description,
        created_by: meta.actor.id.clone().unwrap_or_default(),
        external_id,
    };
    Ok(bus
        .execute_new::<Group>(&id.to_string(), command, meta)
        .await?)
}

async fn execute(
    bus: &CommandBus,
    group_id: Uuid,
    if_revision: Option<u64>,
    command: GroupCommand,
    meta: &Metadata,
) -> Result<Outcome> {
    let id = group_id.to_string();
    Ok(match if_revision {
        Some(expected) => {
            bus.execute_at::<Group>(&id, expected, command, meta)
                .await?
        }
        None => bus.execute::<Group>(&id, command, meta).await?,
    })
}

/// What a change of a group sets; `None` leaves it as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupChange {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `Some(None)` clears it.
    pub external_id: Option<Option<String>>,
}

/// Renames, describes and/or sets the external id of a group, in one
/// append.
pub async fn change(
    bus: &CommandBus,
    group_id: Uuid,
    if_revision: Option<u64>,
    change: GroupChange,
    meta: &Metadata,
) -> Result<Outcome> {
    let GroupChange {
        name,
        description,
        external_id,
    } = change;
    let command = GroupCommand::Change {
        name,
        description,
        external_id,
    };
    execute(bus, group_id, if_revision, command, meta).await
}

/// What a replacement of a group sets (SCIM's PUT): its name, its
/// external id (`None` clears it) and exactly these members.
#[derive(Debug, Clone, Default)]
pub struct GroupReplacement {
    pub name: String,
    pub external_id: Option<String>,
    pub users: BTreeSet<Uuid>,
    pub groups: BTreeSet<Uuid>,
}

/// Replaces a group as a whole (at `if_revision`, if given). Whatever the
/// group's stream would refuse (a stale revision, a name out of shape, a
/// member not of the organization) is decided before anything is written;
/// then the organization's tree takes the nested groups in one append (a
/// cycle refuses them all), then the group's stream the rest in another.
/// Only a change to the group between those two appends can leave the
/// nesting done and the rest refused as stale. The outcome is the group's,
/// its position the later of the two appends' when the group's wrote
/// nothing.
pub async fn replace(
    bus: &CommandBus,
    group_id: Uuid,
    if_revision: Option<u64>,
    r: GroupReplacement,
    meta: &Metadata,
) -> Result<Outcome> {
    let (group, revision) = bus.load::<Group>(&group_id.to_string()).await?;
    if !group.exists() {
        return Err(GroupFailure::UnknownGroup(group_id));
    }
    if let Some(expected) = if_revision
        && revision != Some(expected)
    {
        return Err(GroupFailure::Stale {
            expected,
            actual: revision,
        });
    }
    for &user_id in r.users.difference(&group.members) {
        let (user, _) = bus.load::<User>(&user_id.to_string()).await?;
        if !user.exists() || user.organization_id != group.organization_id {
            return Err(GroupFailure::UnknownUser(user_id));
        }
    }
    for &child in &r.groups {
        if live_group(bus, child).await?.organization_id != group.organization_id {
            return Err(GroupFailure::UnknownGroup(child));
        }
    }
    let command = GroupCommand::Replace {
        name: r.name,
        external_id: r.external_id,
        users: r.users,
    };
    group
        .decide(command.clone(), meta.occurred_at)
        .map_err(GroupFailure::Group)?;
    let nested = bus
        .execute::<GroupTree>(
            &group.organization_id.to_string(),
            GroupTreeCommand::SetChildren {
                parent: group_id,
                children: r.groups,
            },
            meta,
        )
        .await?;
    let mut out = execute(bus, group_id, if_revision, command, meta).await?;
    out.position = out.position.or(nested.position);
    Ok(out)
}

/// The group `id` of `organization`, if it exists.
async fn live_group(bus: &CommandBus, id: Uuid) -> Result<Group> {
    let (group, _) = bus.load::<Group>(&id.to_string()).await?;
    if !group.exists() {
        return Err(GroupFailure::UnknownGroup(id));
    }
    Ok(group)
}

/// Deletes a group (at `if_revision`, if given), then takes it out of the
/// organization's tree: every edge it had goes, and it is never nested
/// again. A nesting decided between the two (it saw the group alive) is
/// among the edges the tree then forgets.
pub async fn delete(
    bus: &CommandBus,
    group_id: Uuid,
    if_revision: Option<u64>,
    meta: &Metadata,
) -> Result<Outcome> {
    let group = live_group(bus, group_id).await?;
    let deleted = execute(bus, group_id, if_revision, GroupCommand::Delete, meta).await?;
    bus.execute::<GroupTree>(
        &group.organization_id.to_string(),
        GroupTreeCommand::Forget { group: group_id },
        meta,
    )
    .await?;
    Ok(deleted)
}

/// Adds a user of the group's organization to the group.
pub async fn add_user(
    bus: &CommandBus,
    group_id: Uuid,
    user_id: Uuid,
    meta: &Metadata,
) -> Result<Outcome> {
    let group = live_group(bus, group_id).await?;
    let (user, _) = bus.load::<User>(&user_id.to_string()).await?;
    if !user.exists() || user.organization_id != group.organization_id {
        return Err(GroupFailure::UnknownUser(user_id));
    }
    execute(bus, group_id, None, GroupCommand::AddUser { user_id }, meta).await
}

pub async fn remove_user(
    bus: &CommandBus,
    group_id: Uuid,
    user_id: Uuid,
    meta: &Metadata,
) -> Result<Outcome> {
    execute(
        bus,
        group_id,
        None,
        GroupCommand::RemoveUser { user_id },
        meta,
    )
    .await
}

/// Makes group `child` a member of group `parent` (both of one
/// organization); a cycle is refused by the organization's tree.
pub async fn nest(bus: &CommandBus, parent: Uuid, child: Uuid, meta: &Metadata) -> Result<Outcome> {
    let p = live_group(bus, parent).await?;
    let c = live_group(bus, child).await?;
    if c.organization_id != p.organization_id {
        return Err(GroupFailure::UnknownGroup(child));
    }
    Ok(bus
        .execute::<GroupTree>(
            &p.organization_id.to_string(),
            GroupTreeCommand::Nest { parent, child },
            meta,
        )
        .await?)
}

pub async fn unnest(
    bus: &CommandBus,
    parent: Uuid,
    child: Uuid,
    meta: &Metadata,
) -> Result<Outcome> {
    let p = live_group(bus, parent).await?;
    Ok(bus
        .execute::<GroupTree>(
            &p.organization_id.to_string(),
            GroupTreeCommand::Unnest { parent, child },
            meta,
        )
        .await?)
}
