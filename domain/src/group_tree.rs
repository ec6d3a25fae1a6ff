//! The group tree of one organization (streams `grouptree-{organization
//! id}`): every group-in-group edge, so that whether an edge would close a
//! cycle is decided against one stream. A deleted group is forgotten: it
//! leaves every edge and is never nested again, even by a nesting decided
//! concurrently with its deletion. Re-exported by [`crate::group`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::registration::decode_as;

pub const NESTED_V1: &str = "grouptree.nested.v1";
pub const UNNESTED_V1: &str = "grouptree.unnested.v1";
pub const FORGOTTEN_V1: &str = "grouptree.forgotten.v1";

/// An edge of the tree: `child` is a member of `parent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Edge {
    pub parent: Uuid,
    pub child: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupTreeCommand {
    /// Makes `child` a member of `parent`.
    Nest {
        parent: Uuid,
        child: Uuid,
    },
    Unnest {
        parent: Uuid,
        child: Uuid,
    },
    /// The group was deleted: it leaves every edge, and is never nested
    /// again.
    Forget {
        group: Uuid,
    },
    /// Exactly `children` nested in `parent`: the others unnested, the new
    /// ones nested, a cycle refusing the whole.
    SetChildren {
        parent: Uuid,
        children: BTreeSet<Uuid>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupNested {
    pub parent: Uuid,
    pub child: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupUnnested {
    pub parent: Uuid,
    pub child: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupForgotten {
    pub group: Uuid,
    /// Every edge the group was part of, as parent or child.
    pub removed_edges: Vec<Edge>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupTreeEvent {
    Nested(GroupNested),
    Unnested(GroupUnnested),
    Forgotten(GroupForgotten),
}

impl DomainEvent for GroupTreeEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Nested(_) => NESTED_V1,
            Self::Unnested(_) => UNNESTED_V1,
            Self::Forgotten(_) => FORGOTTEN_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Plain structs of ids: serializing cannot fail.
        match self {
            Self::Nested(e) => serde_json::to_value(e),
            Self::Unnested(e) => serde_json::to_value(e),
            Self::Forgotten(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            NESTED_V1 => decode_as(event_type, data).map(Self::Nested),
            UNNESTED_V1 => decode_as(event_type, data).map(Self::Unnested),
            FORGOTTEN_V1 => decode_as(event_type, data).map(Self::Forgotten),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GroupTreeError {
    /// `path` is the cycle the edge would close: the parent, the child, and
    /// on through the existing edges back to the parent (`[g, g]` for a
    /// group nested in itself).
    #[error("nesting would make a cycle of {} groups", .path.len().saturating_sub(1))]
    Cycle { path: Vec<Uuid> },
    #[error("the group {group} was deleted")]
    Forgotten { group: Uuid },
}

/// Every group-in-group edge of one organization, both ways.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupTree {
    /// Parent to its child groups.
    pub children: BTreeMap<Uuid, BTreeSet<Uuid>>,
    /// Child to its parent groups.
    pub parents: BTreeMap<Uuid, BTreeSet<Uuid>>,
    /// Deleted groups.
    pub forgotten: BTreeSet<Uuid>,
}

/// Every group reachable from `start` through `next`, `start` excluded
/// (unless on a cycle, which the tree never holds).
fn reachable(next: &BTreeMap<Uuid, BTreeSet<Uuid>>, start: Uuid) -> BTreeSet<Uuid> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([start]);
    while let Some(g) = queue.pop_front() {
        for &n in next.get(&g).into_iter().flatten() {
            if seen.insert(n) {
                queue.push_back(n);
            }
        }
    }
    seen
}

fn unlink(map: &mut BTreeMap<Uuid, BTreeSet<Uuid>>, from: Uuid, to: Uuid) {
    if let Some(set) = map.get_mut(&from) {
        set.remove(&to);
        if set.is_empty() {
            map.remove(&from);
        }
    }
}

impl GroupTree {
    pub fn contains(&self, parent: Uuid, child: Uuid) -> bool {
        self.children
            .get(&parent)
            .is_some_and(|c| c.contains(&child))
    }

    /// The groups nested in `group`, directly or not.
    pub fn descendants(&self, group: Uuid) -> BTreeSet<Uuid> {
        reachable(&self.children, group)
    }

    /// The groups `group` is nested in, directly or not: a member of
    /// `group` is an effective member of each.
    pub fn ancestors(&self, group: Uuid) -> BTreeSet<Uuid> {
        reachable(&self.parents, group)
    }

    /// The shortest path of edges from `from` to `to`, both included.
    fn path(&self, from: Uuid, to: Uuid) -> Option<Vec<Uuid>> {
        let mut came_from = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(g) = queue.pop_front() {
            if g == to {
                let mut path = vec![to];
                let mut at = to;
                while let Some(&prev) = came_from.get(&at) {
                    path.push(prev);
                    at = prev;
                }
                path.reverse();
                return Some(path);
            }
            for &n in self.children.get(&g).into_iter().flatten() {
                if n != from && !came_from.contains_key(&n) {
                    came_from.insert(n, g);
                    queue.push_back(n);
                }
            }
        }
        None
    }

    /// Every edge `group` is part of, in order.
    fn edges_of(&self, group: Uuid) -> Vec<Edge> {
        let as_parent = self
            .children
            .get(&group)
            .into_iter()
            .flatten()
            .map(|&child| Edge {
                parent: group,
                child,
            });
        let as_child = self
            .parents
            .get(&group)
            .into_iter()
            .flatten()
            .map(|&parent| Edge {
                parent,
                child: group,
            });
        let mut edges: Vec<Edge> = as_parent.chain(as_child).collect();
        edges.sort();
        edges
    }
}

impl Aggregate for GroupTree {
    type Event = GroupTreeEvent;
    type Command = GroupTreeCommand;
    type Error = GroupTreeError;
    const CATEGORY: &'static str = "grouptree";

    fn evolve(mut self, event: &GroupTreeEvent) -> Self {
        match event {
            GroupTreeEvent::Nested(e) => {
                self.children.entry(e.parent).or_default().insert(e.child);
                self.parents.entry(e.child).or_default().insert(e.parent);
            }
            GroupTreeEvent::Unnested(e) => {
                unlink(&mut self.children, e.parent, e.child);
                unlink(&mut self.parents, e.child, e.parent);
            }
            GroupTreeEvent::Forgotten(e) => {
                for edge in &e.removed_edges {
                    unlink(&mut self.children, edge.parent, edge.child);
                    unlink(&mut self.parents, edge.child, edge.parent);
                }
                self.forgotten.insert(e.group);
            }
        }
        self
    }

    fn decide(
        &self,
        command: GroupTreeCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<GroupTreeEvent>, GroupTreeError> {
        match command {
            GroupTreeCommand::Nest { parent, child } => {
                if let Some(&group) = [parent, child].iter().find(|g| self.forgotten.contains(g)) {
                    return Err(GroupTreeError::Forgotten { group });
                }
                if self.contains(parent, child) {
                    return Ok(vec![]);
                }
                if parent == child {
                    return Err(GroupTreeError::Cycle {
                        path: vec![parent, child],
                    });
                }
                if let Some(back) = self.path(child, parent) {
                    let mut path = vec![parent];
                    path.extend(back);
                    return Err(GroupTreeError::Cycle { path });
                }
                Ok(vec![GroupTreeEvent::Nested(GroupNested {
                    parent,
                    child,
                    at: now,
                })])
            }
            GroupTreeCommand::Unnest { parent, child } => Ok(if self.contains(parent, child) {
                vec![GroupTreeEvent::Unnested(GroupUnnested {
                    parent,
                    child,
                    at: now,
                })]
            } else {
                vec![]
            }),
            GroupTreeCommand::SetChildren { parent, children } => {
                let current = self.children.get(&parent).cloned().unwrap_or_default();
                let mut tree = self.clone();
                let mut events = Vec::new();
                let unnests = current
                    .difference(&children)
                    .map(|&child| GroupTreeCommand::Unnest { parent, child });
                let nests = children
                    .difference(&current)
                    .map(|&child| GroupTreeCommand::Nest { parent, child });
                // Each step decided against the tree the ones before leave.
                for step in unnests.chain(nests).collect::<Vec<_>>() {
                    let decided = tree.decide(step, now)?;
                    tree = decided.iter().fold(tree, Aggregate::evolve);
                    events.extend(decided);
                }
                Ok(events)
            }
            GroupTreeCommand::Forget { group } => {
                let removed_edges = self.edges_of(group);
                Ok(
                    if removed_edges.is_empty() && self.forgotten.contains(&group) {
                        vec![]
                    } else {
                        vec![GroupTreeEvent::Forgotten(GroupForgotten {
                            group,
                            removed_edges,
                            at: now,
                        })]
                    },
                )
            }
        }
    }
}

#[cfg(test)]
#[path = "group_tree_tests.rs"]
mod tests;
