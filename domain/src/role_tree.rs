//! Roles inside roles (streams `roletree-{organization id}`): a role that
//! includes another grants the other's permissions too. Every inclusion of
//! one organization is an edge of one stream, so whether an edge would
//! close a cycle is decided against one state, by the same rules as the
//! group tree ([`GroupTree`]), which this aggregate wraps: only its events
//! are its own.

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::group_tree::{
    GroupForgotten, GroupNested, GroupTree, GroupTreeCommand, GroupTreeError, GroupTreeEvent,
    GroupUnnested,
};
use crate::registration::decode_as;

pub const INCLUDED_V1: &str = "roletree.included.v1";
pub const EXCLUDED_V1: &str = "roletree.excluded.v1";
pub const FORGOTTEN_V1: &str = "roletree.forgotten.v1";

pub use crate::group_tree::Edge;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleTreeCommand {
    /// Makes role `parent` include role `child`.
    Include {
        parent: Uuid,
        child: Uuid,
    },
    Exclude {
        parent: Uuid,
        child: Uuid,
    },
    /// The role was deleted: it leaves every edge and is never included
    /// again.
    Forget {
        role: Uuid,
    },
}

/// `parent` includes `child` (or no longer does); a role forgotten with
/// the edges it was part of. The payloads are the group tree's: an edge and
/// a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleTreeEvent {
    Included(GroupNested),
    Excluded(GroupUnnested),
    Forgotten(GroupForgotten),
}

impl RoleTreeEvent {
    fn of(e: GroupTreeEvent) -> Self {
        match e {
            GroupTreeEvent::Nested(e) => Self::Included(e),
            GroupTreeEvent::Unnested(e) => Self::Excluded(e),
            GroupTreeEvent::Forgotten(e) => Self::Forgotten(e),
        }
    }

    fn as_tree(&self) -> GroupTreeEvent {
        match self {
            Self::Included(e) => GroupTreeEvent::Nested(e.clone()),
            Self::Excluded(e) => GroupTreeEvent::Unnested(e.clone()),
            Self::Forgotten(e) => GroupTreeEvent::Forgotten(e.clone()),
        }
    }
}

impl DomainEvent for RoleTreeEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Included(_) => INCLUDED_V1,
            Self::Excluded(_) => EXCLUDED_V1,
            Self::Forgotten(_) => FORGOTTEN_V1,
        }
    }

    fn to_data(&self) -> Value {
        self.as_tree().to_data()
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            INCLUDED_V1 => decode_as(event_type, data).map(Self::Included),
            EXCLUDED_V1 => decode_as(event_type, data).map(Self::Excluded),
            FORGOTTEN_V1 => decode_as(event_type, data).map(Self::Forgotten),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

/// Every inclusion of one organization, both ways.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoleTree(pub GroupTree);

impl RoleTree {
    /// The roles `role` includes, directly or not.
    pub fn included_by(&self, role: Uuid) -> std::collections::BTreeSet<Uuid> {
        self.0.descendants(role)
    }
}

impl Aggregate for RoleTree {
    type Event = RoleTreeEvent;
    type Command = RoleTreeCommand;
    type Error = GroupTreeError;
    const CATEGORY: &'static str = "roletree";

    fn evolve(self, event: &RoleTreeEvent) -> Self {
        Self(self.0.evolve(&event.as_tree()))
    }

    fn decide(
        &self,
        command: RoleTreeCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<RoleTreeEvent>, GroupTreeError> {
        let command = match command {
            RoleTreeCommand::Include { parent, child } => GroupTreeCommand::Nest { parent, child },
            RoleTreeCommand::Exclude { parent, child } => {
                GroupTreeCommand::Unnest { parent, child }
            }
            RoleTreeCommand::Forget { role } => GroupTreeCommand::Forget { group: role },
        };
        Ok(self
            .0
            .decide(command, now)?
            .into_iter()
            .map(RoleTreeEvent::of)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::given_when;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    #[test]
    fn an_inclusion_closing_a_cycle_is_refused_with_the_cycle() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut events = Vec::new();
        for (parent, child) in [(a, b), (b, c)] {
            events.extend(
                given_when::<RoleTree>(&events, RoleTreeCommand::Include { parent, child }, NOW)
                    .unwrap(),
            );
        }
        assert_eq!(events[0].event_type(), INCLUDED_V1);
        let err = given_when::<RoleTree>(
            &events,
            RoleTreeCommand::Include {
                parent: c,
                child: a,
            },
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            err,
            GroupTreeError::Cycle {
                path: vec![c, a, b, c]
            }
        );
        assert_eq!(RoleTree::fold(&events).included_by(a).len(), 2);
        let back = RoleTreeEvent::decode(INCLUDED_V1, events[0].to_data()).unwrap();
        assert_eq!(back, events[0]);
    }
}
