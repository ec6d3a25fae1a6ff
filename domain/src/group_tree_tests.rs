//! Specifications of the group tree: given events, when a command, then
//! events or an error; and that no sequence of commands makes a cycle.
use super::*;
use crate::decider::given_when;
use proptest::prelude::*;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

fn g(n: u128) -> Uuid {
    Uuid::from_u128(100 + n)
}

fn nested(parent: Uuid, child: Uuid) -> GroupTreeEvent {
    GroupTreeEvent::Nested(GroupNested {
        parent,
        child,
        at: NOW,
    })
}

fn nest(parent: Uuid, child: Uuid) -> GroupTreeCommand {
    GroupTreeCommand::Nest { parent, child }
}

#[test]
fn nesting_records_the_edge_once() {
    assert_eq!(
        given_when::<GroupTree>(&[], nest(g(1), g(2)), NOW),
        Ok(vec![nested(g(1), g(2))])
    );
    assert_eq!(
        given_when::<GroupTree>(&[nested(g(1), g(2))], nest(g(1), g(2)), NOW),
        Ok(vec![])
    );
}

#[test]
fn a_group_is_never_nested_in_itself() {
    assert_eq!(
        given_when::<GroupTree>(&[], nest(g(1), g(1)), NOW),
        Err(GroupTreeError::Cycle {
            path: vec![g(1), g(1)]
        })
    );
}

#[test]
fn an_edge_closing_a_cycle_is_refused_with_the_cycle() {
    // 1 > 2 > 3: nesting 1 in 3 would close 3 > 1 > 2 > 3.
    let given = [nested(g(1), g(2)), nested(g(2), g(3))];
    let r = given_when::<GroupTree>(&given, nest(g(3), g(1)), NOW);
    assert_eq!(
        r,
        Err(GroupTreeError::Cycle {
            path: vec![g(3), g(1), g(2), g(3)]
        })
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        "nesting would make a cycle of 3 groups"
    );
    // Two ways down are fine: a diamond is not a cycle.
    let diamond = [nested(g(1), g(2)), nested(g(1), g(3)), nested(g(2), g(4))];
    assert_eq!(
        given_when::<GroupTree>(&diamond, nest(g(3), g(4)), NOW),
        Ok(vec![nested(g(3), g(4))])
    );
}

#[test]
fn descendants_and_ancestors_follow_every_edge() {
    let tree = GroupTree::fold(&[
        nested(g(1), g(2)),
        nested(g(1), g(3)),
        nested(g(2), g(4)),
        nested(g(3), g(4)),
        nested(g(4), g(5)),
    ]);
    assert_eq!(
        tree.descendants(g(1)),
        BTreeSet::from([g(2), g(3), g(4), g(5)])
    );
    assert_eq!(
        tree.ancestors(g(5)),
        BTreeSet::from([g(1), g(2), g(3), g(4)])
    );
    assert_eq!(tree.ancestors(g(1)), BTreeSet::new());
    assert_eq!(tree.descendants(g(9)), BTreeSet::new());
}

#[test]
fn unnesting_removes_only_an_existing_edge() {
    let given = [nested(g(1), g(2))];
    assert_eq!(
        given_when::<GroupTree>(
            &given,
            GroupTreeCommand::Unnest {
                parent: g(2),
                child: g(1)
            },
            NOW
        ),
        Ok(vec![])
    );
    let unnested = GroupTreeEvent::Unnested(GroupUnnested {
        parent: g(1),
        child: g(2),
        at: NOW,
    });
    assert_eq!(
        given_when::<GroupTree>(
            &given,
            GroupTreeCommand::Unnest {
                parent: g(1),
                child: g(2)
            },
            NOW
        ),
        Ok(vec![unnested.clone()])
    );
    let history = [given[0].clone(), unnested];
    assert_eq!(GroupTree::fold(&history), GroupTree::default());
    // Once unnested, the reverse edge closes no cycle.
    assert_eq!(
        given_when::<GroupTree>(&history, nest(g(2), g(1)), NOW),
        Ok(vec![nested(g(2), g(1))])
    );
}

#[test]
fn a_forgotten_group_leaves_every_edge_and_is_never_nested_again() {
    let given = [nested(g(1), g(2)), nested(g(2), g(3)), nested(g(4), g(2))];
    let forgotten = GroupTreeEvent::Forgotten(GroupForgotten {
        group: g(2),
        removed_edges: vec![
            Edge {
                parent: g(1),
                child: g(2),
            },
            Edge {
                parent: g(2),
                child: g(3),
            },
            Edge {
                parent: g(4),
                child: g(2),
            },
        ],
        at: NOW,
    });
    assert_eq!(
        given_when::<GroupTree>(&given, GroupTreeCommand::Forget { group: g(2) }, NOW),
        Ok(vec![forgotten.clone()])
    );
    let mut history = given.to_vec();
    history.push(forgotten);
    let tree = GroupTree::fold(&history);
    assert!(tree.descendants(g(1)).is_empty() && tree.ancestors(g(3)).is_empty());
    assert_eq!(
        given_when::<GroupTree>(&history, nest(g(1), g(2)), NOW),
        Err(GroupTreeError::Forgotten { group: g(2) })
    );
    assert_eq!(
        given_when::<GroupTree>(&history, GroupTreeCommand::Forget { group: g(2) }, NOW),
        Ok(vec![])
    );
    // A group never nested is still remembered as deleted.
    assert_eq!(
        given_when::<GroupTree>(&[], GroupTreeCommand::Forget { group: g(7) }, NOW),
        Ok(vec![GroupTreeEvent::Forgotten(GroupForgotten {
            group: g(7),
            removed_edges: vec![],
            at: NOW
        })])
    );
}

#[test]
fn tree_events_round_trip_and_name_no_subject() {
    let events = [
        nested(g(1), g(2)),
        GroupTreeEvent::Unnested(GroupUnnested {
            parent: g(1),
            child: g(2),
            at: NOW,
        }),
        GroupTreeEvent::Forgotten(GroupForgotten {
            group: g(1),
            removed_edges: vec![Edge {
                parent: g(1),
                child: g(2),
            }],
            at: NOW,
        }),
    ];
    for e in events {
        assert_eq!(e.subject(), None);
        let back = GroupTreeEvent::decode(e.event_type(), e.to_data()).unwrap();
        assert_eq!(back, e);
    }
    assert!(matches!(
        GroupTreeEvent::decode("grouptree.pruned.v1", &Value::Null),
        Err(DecodeError::UnknownType(_))
    ));
}

/// Whether the tree holds a cycle: some group among its own descendants.
fn has_cycle(tree: &GroupTree) -> bool {
    tree.children
        .keys()
        .any(|&g| tree.descendants(g).contains(&g))
}

proptest! {
    #[test]
    fn no_sequence_of_commands_makes_a_cycle(
        steps in prop::collection::vec((0u8..4, 0u128..7, 0u128..7), 0..60)
    ) {
        let mut tree = GroupTree::default();
        for (op, a, b) in steps {
            let (parent, child) = (g(a), g(b));
            let command = match op {
                0 | 1 => nest(parent, child),
                2 => GroupTreeCommand::Unnest { parent, child },
                _ => GroupTreeCommand::Nest { parent: child, child: parent },
            };
            let closes = |p: Uuid, c: Uuid| p == c || tree.descendants(c).contains(&p);
            let expect_cycle = match &command {
                GroupTreeCommand::Nest { parent, child } => closes(*parent, *child),
                _ => false,
            };
            match tree.decide(command, NOW) {
                Ok(events) => {
                    prop_assert!(!expect_cycle);
                    for e in &events {
                        tree = tree.evolve(e);
                    }
                }
                Err(GroupTreeError::Cycle { path }) => {
                    prop_assert!(expect_cycle);
                    // The path is a real cycle through the new edge.
                    prop_assert_eq!(path.first(), path.last());
                    for pair in path.windows(2).skip(1) {
                        prop_assert!(tree.contains(pair[0], pair[1]));
                    }
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
            prop_assert!(!has_cycle(&tree));
            for (parent, children) in &tree.children {
                for child in children {
                    prop_assert!(tree.parents.get(child).is_some_and(|p| p.contains(parent)));
                }
            }
        }
    }
}

#[test]
fn setting_the_children_unnests_then_nests_and_a_cycle_refuses_the_whole() {
    // 1 > 2, 3 > 4.
    let given = [nested(g(1), g(2)), nested(g(3), g(4))];
    let set = |parent, children: &[Uuid]| GroupTreeCommand::SetChildren {
        parent,
        children: children.iter().copied().collect(),
    };
    let unnested = |parent, child| {
        GroupTreeEvent::Unnested(GroupUnnested {
            parent,
            child,
            at: NOW,
        })
    };
    assert_eq!(
        given_when::<GroupTree>(&given, set(g(1), &[g(3), g(5)]), NOW),
        Ok(vec![
            unnested(g(1), g(2)),
            nested(g(1), g(3)),
            nested(g(1), g(5))
        ])
    );
    assert_eq!(
        given_when::<GroupTree>(&given, set(g(1), &[g(2)]), NOW),
        Ok(vec![])
    );
    // 2 in 4 is fine, 1 in 2 would close 1 > 2 > 1: nothing at all.
    assert!(matches!(
        given_when::<GroupTree>(&given, set(g(2), &[g(4), g(1)]), NOW),
        Err(GroupTreeError::Cycle { .. })
    ));
    // Nor may 1 go into 2 while 2 is in 1.
    let history = [nested(g(1), g(2))];
    assert_eq!(
        given_when::<GroupTree>(&history, set(g(2), &[g(1)]), NOW),
        Err(GroupTreeError::Cycle {
            path: vec![g(2), g(1), g(2)]
        })
    );
}
