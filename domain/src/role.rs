//! Roles of an organization (streams `role-{id}`): a name, a description,
//! a set of permissions, and who holds the role.
//!
//! A permission is `resource:action`; either side may hold `*`, which
//! matches any run of characters (`users:*`, `*:read`, `reports.*:export`).
//! A role is held by users, by groups (and so by every member, nested
//! groups included), by the organization as a whole (every user of it) and
//! by OAuth clients (service accounts). An assignment to a user is about
//! that user: it carries their subject, so their data export finds it.
//!
//! The stream decides only what it knows: the role exists, the
//! permissions are in shape, an assignment is not repeated. That the holder
//! exists in the role's organization is checked by the command side.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::registration::decode_as;
use crate::user::user_subject;

pub const MAX_NAME_LEN: usize = 100;
pub const MAX_DESCRIPTION_LEN: usize = 1000;
/// The most permissions one role carries.
pub const MAX_PERMISSIONS: usize = 200;
/// The longest side of a permission (`resource` or `action`).
pub const MAX_PERMISSION_PART_LEN: usize = 100;

/// The permission that lets a client (a resource server) introspect the
/// access tokens issued to every client of its organization.
pub const INTROSPECT_PERMISSION: &str = "tokens:introspect";

pub const CREATED_V1: &str = "role.created.v1";
pub const CHANGED_V1: &str = "role.changed.v1";
pub const DELETED_V1: &str = "role.deleted.v1";
pub const ASSIGNED_V1: &str = "role.assigned.v1";
pub const UNASSIGNED_V1: &str = "role.unassigned.v1";

/// Who holds a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "lowercase")]
pub enum Holder {
    User(Uuid),
    Group(Uuid),
    Client(Uuid),
    /// Every user of the organization (a "company" role).
    Organization(Uuid),
}

impl Holder {
    pub fn kind(self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Group(_) => "group",
            Self::Client(_) => "client",
            Self::Organization(_) => "organization",
        }
    }

    pub fn id(self) -> Uuid {
        match self {
            Self::User(id) | Self::Group(id) | Self::Client(id) | Self::Organization(id) => id,
        }
    }

    /// The holder of `kind` (as [`Holder::kind`] names it) and `id`.
    pub fn parse(kind: &str, id: Uuid) -> Option<Self> {
        Some(match kind {
            "user" => Self::User(id),
            "group" => Self::Group(id),
            "client" => Self::Client(id),
            "organization" => Self::Organization(id),
            _ => return None,
        })
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.id())
    }
}

/// A permission in shape: `resource:action`, each side 1 to
/// [`MAX_PERMISSION_PART_LEN`] of ASCII letters, digits, `_`, `-`, `.`,
/// `/` and the wildcard `*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permission(String);

impl Permission {
    pub fn parse(s: &str) -> Result<Self, RoleError> {
        let bad = || RoleError::InvalidPermission {
            permission: s.chars().take(120).collect(),
        };
        let (resource, action) = s.split_once(':').ok_or_else(bad)?;
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= MAX_PERMISSION_PART_LEN
                && p.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'*')
                })
        };
        if !part_ok(resource) || !part_ok(action) {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether holding `self` grants `wanted` (a concrete permission, or
    /// one with wildcards of its own, matched as text).
    pub fn grants(&self, wanted: &str) -> bool {
        let Some((gr, ga)) = self.0.split_once(':') else {
            return false;
        };
        let Some((wr, wa)) = wanted.split_once(':') else {
            return false;
        };
        glob(gr.as_bytes(), wr.as_bytes()) && glob(ga.as_bytes(), wa.as_bytes())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `pattern` (where `*` matches any run of bytes) matches `text`;
/// linear in their lengths times the stars, no backtracking blow-up.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Whether any of `held` grants `wanted`.
pub fn any_grants<'a>(held: impl IntoIterator<Item = &'a Permission>, wanted: &str) -> bool {
    held.into_iter().any(|p| p.grants(wanted))
}

fn parse_permissions(given: &[String]) -> Result<BTreeSet<Permission>, RoleError> {
    if given.len() > MAX_PERMISSIONS {
        return Err(RoleError::TooManyPermissions);
    }
    given.iter().map(|p| Permission::parse(p.trim())).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCommand {
    Create {
        id: Uuid,
        organization_id: Uuid,
        name: String,
        description: String,
        permissions: Vec<String>,
        created_by: String,
    },
    /// A new name, description or set of permissions (each may be absent):
    /// all or none recorded.
    Change {
        name: Option<String>,
        description: Option<String>,
        permissions: Option<Vec<String>>,
    },
    Delete,
    Assign {
        holder: Holder,
    },
    Unassign {
        holder: Holder,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleCreated {
    pub role_id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub description: String,
    pub permissions: BTreeSet<Permission>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What changed; absent fields did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChanged {
    pub role_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<BTreeSet<Permission>>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDeleted {
    pub role_id: Uuid,
    pub organization_id: Uuid,
    /// Everyone who held the role when it went.
    pub holders: Vec<Holder>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A holder was given the role, or lost it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    pub role_id: Uuid,
    pub organization_id: Uuid,
    pub holder: Holder,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleEvent {
    Created(RoleCreated),
    Changed(RoleChanged),
    Deleted(RoleDeleted),
    Assigned(RoleAssignment),
    Unassigned(RoleAssignment),
}

impl DomainEvent for RoleEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => CREATED_V1,
            Self::Changed(_) => CHANGED_V1,
            Self::Deleted(_) => DELETED_V1,
            Self::Assigned(_) => ASSIGNED_V1,
            Self::Unassigned(_) => UNASSIGNED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Plain structs of ids and strings: serializing cannot fail.
        match self {
            Self::Created(e) => serde_json::to_value(e),
            Self::Changed(e) => serde_json::to_value(e),
            Self::Deleted(e) => serde_json::to_value(e),
            Self::Assigned(e) | Self::Unassigned(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            CREATED_V1 => decode_as(event_type, data).map(Self::Created),
            CHANGED_V1 => decode_as(event_type, data).map(Self::Changed),
            DELETED_V1 => decode_as(event_type, data).map(Self::Deleted),
            ASSIGNED_V1 => decode_as(event_type, data).map(Self::Assigned),
            UNASSIGNED_V1 => decode_as(event_type, data).map(Self::Unassigned),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    /// An assignment to a person is about them; nothing else of a role is
    /// personal.
    fn subject(&self) -> Option<String> {
        match self {
            Self::Assigned(e) | Self::Unassigned(e) => match e.holder {
                Holder::User(id) => Some(user_subject(id)),
                _ => None,
            },
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RoleError {
    #[error("the role already exists (role ids are never reused, even after deletion)")]
    AlreadyExists,
    #[error("the role does not exist")]
    NotFound,
    #[error("the name must be 1 to {MAX_NAME_LEN} characters and not blank")]
    InvalidName,
    #[error("the description must be at most {MAX_DESCRIPTION_LEN} characters")]
    InvalidDescription,
    #[error(
        "the permission {permission:?} is not `resource:action` (each side letters, digits, `_`, `-`, `.`, `/` or `*`)"
    )]
    InvalidPermission { permission: String },
    #[error("a role carries at most {MAX_PERMISSIONS} permissions")]
    TooManyPermissions,
    #[error("a role of one organization cannot be held in another")]
    ForeignHolder,
}

fn valid_name(name: &str) -> Result<String, RoleError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(RoleError::InvalidName);
    }
    Ok(name.to_owned())
}

fn valid_description(description: &str) -> Result<String, RoleError> {
    let description = description.trim();
    if description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(RoleError::InvalidDescription);
    }
    Ok(description.to_owned())
}

/// The role as its stream folds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Whether the stream holds a creation (still true once deleted).
    pub created: bool,
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub description: String,
    pub permissions: BTreeSet<Permission>,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub deleted: bool,
    pub holders: BTreeSet<Holder>,
}

impl Default for Role {
    fn default() -> Self {
        Self {
            created: false,
            id: Uuid::nil(),
            organization_id: Uuid::nil(),
            name: String::new(),
            description: String::new(),
            permissions: BTreeSet::new(),
            created_by: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            deleted: false,
            holders: BTreeSet::new(),
        }
    }
}

impl Role {
    /// Created and not deleted.
    pub fn exists(&self) -> bool {
        self.created && !self.deleted
    }

    fn assignment(&self, holder: Holder, at: OffsetDateTime) -> RoleAssignment {
        RoleAssignment {
            role_id: self.id,
            organization_id: self.organization_id,
            holder,
            at,
        }
    }
}

impl Aggregate for Role {
    type Event = RoleEvent;
    type Command = RoleCommand;
    type Error = RoleError;
    const CATEGORY: &'static str = "role";

    fn evolve(mut self, event: &RoleEvent) -> Self {
        match event {
            RoleEvent::Created(e) => {
                self.created = true;
                self.id = e.role_id;
                self.organization_id = e.organization_id;
                self.name = e.name.clone();
                self.description = e.description.clone();
                self.permissions = e.permissions.clone();
                self.created_by = e.created_by.clone();
                self.created_at = e.at;
            }
            RoleEvent::Changed(e) => {
                if let Some(name) = &e.name {
                    self.name = name.clone();
                }
                if let Some(description) = &e.description {
                    self.description = description.clone();
                }
                if let Some(permissions) = &e.permissions {
                    self.permissions = permissions.clone();
                }
            }
            RoleEvent::Deleted(_) => {
                self.deleted = true;
                self.holders.clear();
            }
            RoleEvent::Assigned(e) => {
                self.holders.insert(e.holder);
            }
            RoleEvent::Unassigned(e) => {
                self.holders.remove(&e.holder);
            }
        }
        self
    }

    fn decide(
        &self,
        command: RoleCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<RoleEvent>, RoleError> {
        match command {
            RoleCommand::Create {
                id,
                organization_id,
                name,
                description,
                permissions,
                created_by,
            } => {
                if self.created {
                    return Err(RoleError::AlreadyExists);
                }
                Ok(vec![RoleEvent::Created(RoleCreated {
                    role_id: id,
                    organization_id,
                    name: valid_name(&name)?,
                    description: valid_description(&description)?,
                    permissions: parse_permissions(&permissions)?,
                    created_by,
                    at: now,
                })])
            }
            _ if !self.exists() => Err(RoleError::NotFound),
            RoleCommand::Change {
                name,
                description,
                permissions,
            } => {
                let name = name
                    .map(|n| valid_name(&n))
                    .transpose()?
                    .filter(|n| *n != self.name);
                let description = description
                    .map(|d| valid_description(&d))
                    .transpose()?
                    .filter(|d| *d != self.description);
                let permissions = permissions
                    .map(|p| parse_permissions(&p))
                    .transpose()?
                    .filter(|p| *p != self.permissions);
                if name.is_none() && description.is_none() && permissions.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![RoleEvent::Changed(RoleChanged {
                    role_id: self.id,
                    name,
                    description,
                    permissions,
                    at: now,
                })])
            }
            RoleCommand::Delete => Ok(vec![RoleEvent::Deleted(RoleDeleted {
                role_id: self.id,
                organization_id: self.organization_id,
                holders: self.holders.iter().copied().collect(),
                at: now,
            })]),
            RoleCommand::Assign { holder } => {
                if matches!(holder, Holder::Organization(o) if o != self.organization_id) {
                    return Err(RoleError::ForeignHolder);
                }
                Ok(if self.holders.contains(&holder) {
                    vec![]
                } else {
                    vec![RoleEvent::Assigned(self.assignment(holder, now))]
                })
            }
            RoleCommand::Unassign { holder } => Ok(if self.holders.contains(&holder) {
                vec![RoleEvent::Unassigned(self.assignment(holder, now))]
            } else {
                vec![]
            }),
        }
    }
}

#[cfg(test)]
#[path = "role_tests.rs"]
mod tests;
