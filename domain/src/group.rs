//! Groups of an organization's users, and how groups nest.
//!
//! Two aggregates, two consistency boundaries:
//!
//! - `group-{id}` holds one group: its name, description and the users who
//!   are direct members. A membership event is about the member, so it
//!   carries the member's subject ([`user_subject`]) and their data export
//!   finds it.
//! - `grouptree-{organization id}` holds every group-in-group edge of one
//!   organization, so that whether an edge would close a cycle is decided
//!   against one stream. A deleted group is forgotten there: it leaves
//!   every edge and can never be nested again.
//!
//! Effective memberships are a user's groups and all their
//! [`GroupTree::ancestors`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::registration::decode_as;
use crate::user::user_subject;

pub use crate::group_tree::*;

pub const MAX_NAME_LEN: usize = 200;
pub const MAX_DESCRIPTION_LEN: usize = 1000;
/// The longest identifier another system may give a group (SCIM's
/// `externalId`).
pub const MAX_EXTERNAL_ID_LEN: usize = 200;

pub const CREATED_V1: &str = "group.created.v1";
pub const RENAMED_V1: &str = "group.renamed.v1";
pub const DESCRIBED_V1: &str = "group.described.v1";
pub const DELETED_V1: &str = "group.deleted.v1";
pub const EXTERNAL_ID_SET_V1: &str = "group.external_id_set.v1";
pub const USER_ADDED_V1: &str = "group.user_added.v1";
pub const USER_REMOVED_V1: &str = "group.user_removed.v1";

// --- the group -------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCommand {
    Create {
        id: Uuid,
        organization_id: Uuid,
        name: String,
        description: String,
        /// The actor id of whoever created the group.
        created_by: String,
        /// The group's id in the system that provisions it.
        external_id: Option<String>,
    },
    Rename {
        name: String,
    },
    Describe {
        description: String,
    },
    /// A rename, a new description and a new external id decided together
    /// (each may be absent; `Some(None)` clears the external id): all or
    /// none are recorded.
    Change {
        name: Option<String>,
        description: Option<String>,
        external_id: Option<Option<String>>,
    },
    Delete,
    AddUser {
        user_id: Uuid,
    },
    RemoveUser {
        user_id: Uuid,
    },
    /// The group as a whole, as a provisioning system replaces it: its
    /// name, its external id (`None` clears it) and exactly these users as
    /// direct members. All or none is recorded.
    Replace {
        name: String,
        external_id: Option<String>,
        users: BTreeSet<Uuid>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreated {
    pub group_id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub description: String,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The group's id in the system that provisions it was set or cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupExternalIdSet {
    pub group_id: Uuid,
    pub external_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRenamed {
    pub group_id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescribed {
    pub group_id: Uuid,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDeleted {
    pub group_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A user joined or left a group (as a direct member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembership {
    pub group_id: Uuid,
    pub user_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    Created(GroupCreated),
    Renamed(GroupRenamed),
    Described(GroupDescribed),
    ExternalIdSet(GroupExternalIdSet),
    Deleted(GroupDeleted),
    UserAdded(GroupMembership),
    UserRemoved(GroupMembership),
}

impl DomainEvent for GroupEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => CREATED_V1,
            Self::Renamed(_) => RENAMED_V1,
            Self::Described(_) => DESCRIBED_V1,
            Self::ExternalIdSet(_) => EXTERNAL_ID_SET_V1,
            Self::Deleted(_) => DELETED_V1,
            Self::UserAdded(_) => USER_ADDED_V1,
            Self::UserRemoved(_) => USER_REMOVED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Plain structs of ids and strings: serializing cannot fail.
        match self {
            Self::Created(e) => serde_json::to_value(e),
            Self::Renamed(e) => serde_json::to_value(e),
            Self::Described(e) => serde_json::to_value(e),
            Self::ExternalIdSet(e) => serde_json::to_value(e),
            Self::Deleted(e) => serde_json::to_value(e),
            Self::UserAdded(e) | Self::UserRemoved(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            CREATED_V1 => decode_as(event_type, data).map(Self::Created),
            RENAMED_V1 => decode_as(event_type, data).map(Self::Renamed),
            DESCRIBED_V1 => decode_as(event_type, data).map(Self::Described),
            EXTERNAL_ID_SET_V1 => decode_as(event_type, data).map(Self::ExternalIdSet),
            DELETED_V1 => decode_as(event_type, data).map(Self::Deleted),
            USER_ADDED_V1 => decode_as(event_type, data).map(Self::UserAdded),
            USER_REMOVED_V1 => decode_as(event_type, data).map(Self::UserRemoved),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    /// A membership is about its member; nothing else of a group is personal.
    fn subject(&self) -> Option<String> {
        match self {
            Self::UserAdded(e) | Self::UserRemoved(e) => Some(user_subject(e.user_id)),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GroupError {
    #[error("the group already exists (group ids are never reused, even after deletion)")]
    AlreadyExists,
    #[error("the group does not exist")]
    NotFound,
    #[error("the name must be 1 to {MAX_NAME_LEN} characters and not blank")]
    InvalidName,
    #[error("the description must be at most {MAX_DESCRIPTION_LEN} characters")]
    InvalidDescription,
    #[error("the external id must be 1 to {MAX_EXTERNAL_ID_LEN} characters and not blank")]
    InvalidExternalId,
}

fn valid_name(name: &str) -> Result<String, GroupError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(GroupError::InvalidName);
    }
    Ok(name.to_owned())
}

fn valid_description(description: &str) -> Result<String, GroupError> {
    let description = description.trim();
    if description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(GroupError::InvalidDescription);
    }
    Ok(description.to_owned())
}

fn valid_external_id(id: Option<String>) -> Result<Option<String>, GroupError> {
    match id {
        None => Ok(None),
        Some(id) if id.trim().is_empty() || id.chars().count() > MAX_EXTERNAL_ID_LEN => {
            Err(GroupError::InvalidExternalId)
        }
        Some(id) => Ok(Some(id)),
    }
}

/// The group as its stream folds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Whether the stream holds a creation (still true once deleted).
    pub created: bool,
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub description: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub external_id: Option<String>,
    pub deleted: bool,
    /// The users who are direct members.
    pub members: BTreeSet<Uuid>,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            created: false,
            id: Uuid::nil(),
            organization_id: Uuid::nil(),
            name: String::new(),
            description: String::new(),
            created_by: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            external_id: None,
            deleted: false,
            members: BTreeSet::new(),
        }
    }
}

impl Group {
    /// Created and not deleted.
    pub fn exists(&self) -> bool {
        self.created && !self.deleted
    }

    fn membership(&self, user_id: Uuid, at: OffsetDateTime) -> GroupMembership {
        GroupMembership {
            group_id: self.id,
            user_id,
            at,
        }
    }
}

impl Aggregate for Group {
    type Event = GroupEvent;
    type Command = GroupCommand;
    type Error = GroupError;
    const CATEGORY: &'static str = "group";

    fn evolve(mut self, event: &GroupEvent) -> Self {
        match event {
            GroupEvent::Created(e) => {
                self.created = true;
                self.id = e.group_id;
                self.organization_id = e.organization_id;
                self.name = e.name.clone();
                self.description = e.description.clone();
                self.created_by = e.created_by.clone();
                self.created_at = e.at;
                self.external_id = e.external_id.clone();
            }
            GroupEvent::ExternalIdSet(e) => self.external_id = e.external_id.clone(),
            GroupEvent::Renamed(e) => self.name = e.name.clone(),
            GroupEvent::Described(e) => self.description = e.description.clone(),
            GroupEvent::Deleted(_) => {
                self.deleted = true;
                self.members.clear();
            }
            GroupEvent::UserAdded(e) => {
                self.members.insert(e.user_id);
            }
            GroupEvent::UserRemoved(e) => {
                self.members.remove(&e.user_id);
            }
        }
        self
    }

    fn decide(
        &self,
        command: GroupCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<GroupEvent>, GroupError> {
        let group_id = self.id;
        match command {
            GroupCommand::Create {
                id,
                organization_id,
                name,
                description,
                created_by,
                external_id,
            } => {
                if self.created {
                    return Err(GroupError::AlreadyExists);
                }
                Ok(vec![GroupEvent::Created(GroupCreated {
                    group_id: id,
                    organization_id,
                    name: valid_name(&name)?,
                    description: valid_description(&description)?,
                    created_by,
                    external_id: valid_external_id(external_id)?,
                    at: now,
                })])
            }
            _ if !self.exists() => Err(GroupError::NotFound),
            GroupCommand::Rename { name } => {
                let name = valid_name(&name)?;
                Ok(if name == self.name {
                    vec![]
                } else {
                    vec![GroupEvent::Renamed(GroupRenamed {
                        group_id,
                        name,
                        at: now,
                    })]
                })
            }
            GroupCommand::Describe { description } => {
                let description = valid_description(&description)?;
                Ok(if description == self.description {
                    vec![]
                } else {
                    vec![GroupEvent::Described(GroupDescribed {
                        group_id,
                        description,
                        at: now,
                    })]
                })
            }
            GroupCommand::Change {
                name,
                description,
                external_id,
            } => {
                let mut events = Vec::new();
                if let Some(name) = name {
                    events.extend(self.decide(GroupCommand::Rename { name }, now)?);
                }
                if let Some(description) = description {
                    events.extend(self.decide(GroupCommand::Describe { description }, now)?);
                }
                if let Some(external_id) = external_id {
                    let external_id = valid_external_id(external_id)?;
                    if external_id != self.external_id {
                        events.push(GroupEvent::ExternalIdSet(GroupExternalIdSet {
                            group_id,
                            external_id,
                            at: now,
                        }));
                    }
                }
                Ok(events)
            }
            GroupCommand::Delete => Ok(vec![GroupEvent::Deleted(GroupDeleted {
                group_id,
                at: now,
            })]),
            GroupCommand::AddUser { user_id } => Ok(if self.members.contains(&user_id) {
                vec![]
            } else {
                vec![GroupEvent::UserAdded(self.membership(user_id, now))]
            }),
            GroupCommand::RemoveUser { user_id } => Ok(if self.members.contains(&user_id) {
                vec![GroupEvent::UserRemoved(self.membership(user_id, now))]
            } else {
                vec![]
            }),
            GroupCommand::Replace {
                name,
                external_id,
                users,
            } => {
                let mut events = self.decide(
                    GroupCommand::Change {
                        name: Some(name),
                        description: None,
                        external_id: Some(external_id),
                    },
                    now,
                )?;
                events.extend(
                    self.members
                        .difference(&users)
                        .map(|&u| GroupEvent::UserRemoved(self.membership(u, now))),
                );
                events.extend(
                    users
                        .difference(&self.members)
                        .map(|&u| GroupEvent::UserAdded(self.membership(u, now))),
                );
                Ok(events)
            }
        }
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
