//! Command handlers of roles (see `domain::role`): the role's stream
//! decides its own invariants; the holder of an assignment is checked here
//! to exist in the role's organization.

use domain::Metadata;
use domain::client::Client;
use domain::group::Group;
use domain::group::GroupTreeError;
use domain::organization::Organization;
use domain::role::{Holder, Role, RoleCommand, RoleError};
use domain::role_tree::{RoleTree, RoleTreeCommand};
use domain::user::User;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};

/// Why a role command did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RoleFailure {
    #[error(transparent)]
    Role(RoleError),
    /// Including the role would close a cycle, or it was deleted.
    #[error(transparent)]
    Tree(GroupTreeError),
    #[error("no role {0} in the organization")]
    UnknownRole(Uuid),
    #[error("the organization does not exist")]
    UnknownOrganization,
    #[error("no {0} in the role's organization")]
    UnknownHolder(Holder),
    #[error("the stream kept changing under the command ({attempts} attempts)")]
    Contention { attempts: usize },
    #[error("the role changed since revision {expected}")]
    Stale { expected: u64, actual: Option<u64> },
    #[error(transparent)]
    Log(#[from] eventlog::Error),
}

impl From<CommandError<RoleError>> for RoleFailure {
    fn from(e: CommandError<RoleError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::Role(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { expected, actual } => Self::Stale { expected, actual },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

impl From<CommandError<GroupTreeError>> for RoleFailure {
    fn from(e: CommandError<GroupTreeError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::Tree(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { expected, actual } => Self::Stale { expected, actual },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

type Result<T> = std::result::Result<T, RoleFailure>;

/// What a new role is.
#[derive(Debug, Clone)]
pub struct NewRole {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}

pub async fn create(bus: &CommandBus, role: NewRole, meta: &Metadata) -> Result<Outcome> {
    let (org, _) = bus
        .load::<Organization>(&role.organization_id.to_string())
        .await?;
    if org.id.is_none() {
        return Err(RoleFailure::UnknownOrganization);
    }
    let command = RoleCommand::Create {
        id: role.id,
        organization_id: role.organization_id,
        name: role.name,
        description: role.description,
        permissions: role.permissions,
        created_by: meta.actor.id.clone().unwrap_or_default(),
    };
    Ok(bus
        .execute_new::<Role>(&role.id.to_string(), command, meta)
        .await?)
}

async fn execute(
    bus: &CommandBus,
    role_id: Uuid,
    if_revision: Option<u64>,
    command: RoleCommand,
    meta: &Metadata,
) -> Result<Outcome> {
    let id = role_id.to_string();
    Ok(match if_revision {
        Some(expected) => bus.execute_at::<Role>(&id, expected, command, meta).await?,
        None => bus.execute::<Role>(&id, command, meta).await?,
    })
}

/// Renames, describes and/or sets the permissions of a role, in one append.
pub async fn change(
    bus: &CommandBus,
    role_id: Uuid,
    if_revision: Option<u64>,
    command: RoleCommand,
    meta: &Metadata,
) -> Result<Outcome> {
    debug_assert!(matches!(command, RoleCommand::Change { .. }));
    execute(bus, role_id, if_revision, command, meta).await
}

/// Deletes a role, then takes it out of the organization's role tree:
/// every inclusion it was part of goes, and it is never included again.
pub async fn delete(
    bus: &CommandBus,
    role_id: Uuid,
    if_revision: Option<u64>,
    meta: &Metadata,
) -> Result<Outcome> {
    let role = live_role(bus, role_id).await?;
    let deleted = execute(bus, role_id, if_revision, RoleCommand::Delete, meta).await?;
    let forgotten = bus
        .execute::<RoleTree>(
            &role.organization_id.to_string(),
            RoleTreeCommand::Forget { role: role_id },
            meta,
        )
        .await?;
    Ok(if forgotten.events > 0 {
        forgotten
    } else {
        deleted
    })
}

/// The role `id`, if it exists.
async fn live_role(bus: &CommandBus, id: Uuid) -> Result<Role> {
    let (role, _) = bus.load::<Role>(&id.to_string()).await?;
    if !role.exists() {
        return Err(RoleFailure::UnknownRole(id));
    }
    Ok(role)
}

/// Makes role `parent` include role `child` (both of one organization):
/// whoever holds `parent` holds `child` too. A cycle is refused by the
/// organization's role tree.
pub async fn include(
    bus: &CommandBus,
    parent: Uuid,
    child: Uuid,
    meta: &Metadata,
) -> Result<Outcome> {
    let p = live_role(bus, parent).await?;
    let c = live_role(bus, child).await?;
    if c.organization_id != p.organization_id {
        return Err(RoleFailure::UnknownRole(child));
    }
    Ok(bus
        .execute::<RoleTree>(
            &p.organization_id.to_string(),
            RoleTreeCommand::Include { parent, child },
            meta,
        )
        .await?)
}

pub async fn exclude(
    bus: &CommandBus,
    parent: Uuid,
    child: Uuid,
    meta: &Metadata,
) -> Result<Outcome> {
    let p = live_role(bus, parent).await?;
    Ok(bus
        .execute::<RoleTree>(
            &p.organization_id.to_string(),
            RoleTreeCommand::Exclude { parent, child },
            meta,
        )
        .await?)
}

/// The organization of `holder`, if it exists.
async fn organization_of(bus: &CommandBus, holder: Holder) -> Result<Option<Uuid>> {
    let id = holder.id().to_string();
    Ok(match holder {
        Holder::User(_) => {
            let (user, _) = bus.load::<User>(&id).await?;
            user.exists().then_some(user.organization_id)
        }
        Holder::Group(_) => {
            let (group, _) = bus.load::<Group>(&id).await?;
            group.exists().then_some(group.organization_id)
        }
        Holder::Client(_) => {
            let (client, _) = bus.load::<Client>(&id).await?;
            (client.exists && !client.deleted).then_some(client.organization_id)
        }
        Holder::Organization(o) => {
            let (org, _) = bus.load::<Organization>(&id).await?;
            org.id.is_some().then_some(o)
        }
    })
}

/// Gives the role to a user, group, client or the organization, which must
/// exist in the role's organization.
pub async fn assign(
    bus: &CommandBus,
    role_id: Uuid,
    holder: Holder,
    meta: &Metadata,
) -> Result<Outcome> {
    let (role, _) = bus.load::<Role>(&role_id.to_string()).await?;
    if !role.exists() {
        return Err(RoleFailure::Role(RoleError::NotFound));
    }
    if organization_of(bus, holder).await? != Some(role.organization_id) {
        return Err(RoleFailure::UnknownHolder(holder));
    }
    execute(bus, role_id, None, RoleCommand::Assign { holder }, meta).await
}

/// Takes the role from a holder (nothing when they did not hold it).
pub async fn unassign(
    bus: &CommandBus,
    role_id: Uuid,
    holder: Holder,
    meta: &Metadata,
) -> Result<Outcome> {
    execute(bus, role_id, None, RoleCommand::Unassign { holder }, meta).await
}
