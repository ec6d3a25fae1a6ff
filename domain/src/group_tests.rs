//! Specifications of the group aggregate: given events, when a command,
//! then events or an error.
use super::*;
use crate::decider::given_when;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const GROUP: Uuid = Uuid::from_u128(10);
const ORG: Uuid = Uuid::from_u128(20);
const ADA: Uuid = Uuid::from_u128(1);

fn created() -> GroupEvent {
    GroupEvent::Created(GroupCreated {
        group_id: GROUP,
        organization_id: ORG,
        name: "Engineering".into(),
        description: "Builds things".into(),
        created_by: "admin".into(),
        external_id: None,
        at: NOW,
    })
}

fn added(user_id: Uuid) -> GroupEvent {
    GroupEvent::UserAdded(GroupMembership {
        group_id: GROUP,
        user_id,
        at: NOW,
    })
}

fn deleted() -> GroupEvent {
    GroupEvent::Deleted(GroupDeleted {
        group_id: GROUP,
        at: NOW,
    })
}

#[test]
fn create_records_the_trimmed_name_and_description() {
    let events = given_when::<Group>(
        &[],
        GroupCommand::Create {
            id: GROUP,
            organization_id: ORG,
            name: "  Engineering ".into(),
            description: " Builds things ".into(),
            created_by: "admin".into(),
            external_id: None,
        },
        NOW,
    );
    assert_eq!(events, Ok(vec![created()]));
    let group = Group::fold(&[created()]);
    assert!(group.exists());
    assert_eq!(
        (group.name.as_str(), group.organization_id),
        ("Engineering", ORG)
    );
}

#[test]
fn names_and_descriptions_are_checked() {
    let create = |name: &str, description: &str| GroupCommand::Create {
        id: GROUP,
        organization_id: ORG,
        name: name.into(),
        description: description.into(),
        created_by: "admin".into(),
        external_id: None,
    };
    let check = |c| given_when::<Group>(&[], c, NOW);
    assert_eq!(check(create("   ", "")), Err(GroupError::InvalidName));
    assert_eq!(
        check(create(&"n".repeat(MAX_NAME_LEN + 1), "")),
        Err(GroupError::InvalidName)
    );
    assert_eq!(
        check(create("ok", &"d".repeat(MAX_DESCRIPTION_LEN + 1))),
        Err(GroupError::InvalidDescription)
    );
    assert!(
        check(create(
            &"n".repeat(MAX_NAME_LEN),
            &"d".repeat(MAX_DESCRIPTION_LEN)
        ))
        .is_ok()
    );
    assert_eq!(
        given_when::<Group>(&[created()], GroupCommand::Rename { name: "".into() }, NOW),
        Err(GroupError::InvalidName)
    );
}

#[test]
fn creating_twice_is_refused_even_after_deletion() {
    let create = GroupCommand::Create {
        id: GROUP,
        organization_id: ORG,
        name: "Again".into(),
        description: String::new(),
        created_by: "admin".into(),
        external_id: None,
    };
    assert_eq!(
        given_when::<Group>(&[created(), deleted()], create, NOW),
        Err(GroupError::AlreadyExists)
    );
}

#[test]
fn renaming_or_describing_to_the_same_records_nothing() {
    let given = [created()];
    assert_eq!(
        given_when::<Group>(
            &given,
            GroupCommand::Rename {
                name: " Engineering".into()
            },
            NOW
        ),
        Ok(vec![])
    );
    assert_eq!(
        given_when::<Group>(
            &given,
            GroupCommand::Describe {
                description: "Builds things".into()
            },
            NOW
        ),
        Ok(vec![])
    );
    assert_eq!(
        given_when::<Group>(
            &given,
            GroupCommand::Rename {
                name: "Platform".into()
            },
            NOW
        ),
        Ok(vec![GroupEvent::Renamed(GroupRenamed {
            group_id: GROUP,
            name: "Platform".into(),
            at: NOW
        })])
    );
    assert_eq!(
        given_when::<Group>(
            &given,
            GroupCommand::Describe {
                description: String::new()
            },
            NOW
        ),
        Ok(vec![GroupEvent::Described(GroupDescribed {
            group_id: GROUP,
            description: String::new(),
            at: NOW
        })])
    );
}

#[test]
fn membership_changes_only_when_it_would_change() {
    let given = [created(), added(ADA)];
    assert_eq!(
        given_when::<Group>(&given, GroupCommand::AddUser { user_id: ADA }, NOW),
        Ok(vec![])
    );
    let bob = Uuid::from_u128(2);
    assert_eq!(
        given_when::<Group>(&given, GroupCommand::RemoveUser { user_id: bob }, NOW),
        Ok(vec![])
    );
    assert_eq!(
        given_when::<Group>(&given, GroupCommand::RemoveUser { user_id: ADA }, NOW),
        Ok(vec![GroupEvent::UserRemoved(GroupMembership {
            group_id: GROUP,
            user_id: ADA,
            at: NOW
        })])
    );
    assert_eq!(
        given_when::<Group>(&given, GroupCommand::AddUser { user_id: bob }, NOW),
        Ok(vec![GroupEvent::UserAdded(GroupMembership {
            group_id: GROUP,
            user_id: bob,
            at: NOW
        })])
    );
    assert_eq!(Group::fold(&given).members, BTreeSet::from([ADA]));
}

#[test]
fn a_missing_or_deleted_group_refuses_every_command() {
    let commands = || {
        [
            GroupCommand::Rename { name: "x".into() },
            GroupCommand::Describe {
                description: "x".into(),
            },
            GroupCommand::Delete,
            GroupCommand::AddUser { user_id: ADA },
            GroupCommand::RemoveUser { user_id: ADA },
        ]
    };
    for given in [vec![], vec![created(), added(ADA), deleted()]] {
        for command in commands() {
            assert_eq!(
                given_when::<Group>(&given, command, NOW),
                Err(GroupError::NotFound)
            );
        }
    }
    assert!(
        Group::fold(&[created(), added(ADA), deleted()])
            .members
            .is_empty()
    );
}

#[test]
fn membership_events_are_about_the_member_and_the_others_about_no_one() {
    assert_eq!(added(ADA).subject(), Some(user_subject(ADA)));
    let removed = GroupEvent::UserRemoved(GroupMembership {
        group_id: GROUP,
        user_id: ADA,
        at: NOW,
    });
    assert_eq!(removed.subject(), Some(user_subject(ADA)));
    assert_eq!(created().subject(), None);
    assert_eq!(deleted().subject(), None);
}

#[test]
fn group_events_round_trip_through_their_stored_form() {
    let events = [
        created(),
        GroupEvent::Renamed(GroupRenamed {
            group_id: GROUP,
            name: "P".into(),
            at: NOW,
        }),
        GroupEvent::Described(GroupDescribed {
            group_id: GROUP,
            description: "D".into(),
            at: NOW,
        }),
        added(ADA),
        GroupEvent::UserRemoved(GroupMembership {
            group_id: GROUP,
            user_id: ADA,
            at: NOW,
        }),
        deleted(),
    ];
    for e in events {
        let back = GroupEvent::decode(e.event_type(), e.to_data()).unwrap();
        assert_eq!(back, e);
    }
    assert_eq!(added(ADA).event_type(), "group.user_added.v1");
    assert!(matches!(
        GroupEvent::decode("group.merged.v1", &Value::Null),
        Err(DecodeError::UnknownType(_))
    ));
}

#[test]
fn a_change_renames_and_describes_together_or_not_at_all() {
    let events = given_when::<Group>(
        &[created()],
        GroupCommand::Change {
            name: Some("Ops".into()),
            description: Some("on call".into()),
            external_id: Some(Some("g-7".into())),
        },
        NOW,
    )
    .unwrap();
    assert_eq!(events.len(), 3);
    let group = Group::fold(&[vec![created()], events].concat());
    assert_eq!(group.external_id.as_deref(), Some("g-7"));
    for (description, external_id, error) in [
        (
            Some("x".repeat(MAX_DESCRIPTION_LEN + 1)),
            None,
            GroupError::InvalidDescription,
        ),
        (None, Some(Some(" ".into())), GroupError::InvalidExternalId),
    ] {
        let refused = given_when::<Group>(
            &[created()],
            GroupCommand::Change {
                name: Some("Ops".into()),
                description,
                external_id,
            },
            NOW,
        );
        assert_eq!(refused, Err(error));
    }
    // Set to what it is: nothing recorded; cleared: recorded.
    let given = [
        created(),
        GroupEvent::ExternalIdSet(GroupExternalIdSet {
            group_id: GROUP,
            external_id: Some("g-7".into()),
            at: NOW,
        }),
    ];
    let same = GroupCommand::Change {
        name: None,
        description: None,
        external_id: Some(Some("g-7".into())),
    };
    assert_eq!(given_when::<Group>(&given, same, NOW), Ok(vec![]));
    let clear = GroupCommand::Change {
        name: None,
        description: None,
        external_id: Some(None),
    };
    let cleared = given_when::<Group>(&given, clear, NOW).unwrap();
    assert_eq!(
        Group::fold(&[given.to_vec(), cleared].concat()).external_id,
        None
    );
}

#[test]
fn a_replacement_renames_and_sets_exactly_its_users_all_at_once() {
    const BOB: Uuid = Uuid::from_u128(2);
    const CY: Uuid = Uuid::from_u128(3);
    let given = [created(), added(ADA), added(BOB)];
    let replace = |name: &str, users: &[Uuid]| GroupCommand::Replace {
        name: name.into(),
        external_id: Some("ext-1".into()),
        users: users.iter().copied().collect(),
    };
    let events = given_when::<Group>(&given, replace("Platform", &[BOB, CY]), NOW).unwrap();
    let types: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
    assert_eq!(
        types,
        [
            RENAMED_V1,
            EXTERNAL_ID_SET_V1,
            USER_REMOVED_V1,
            USER_ADDED_V1
        ]
    );
    let group = Group::fold(given.iter().chain(&events));
    assert_eq!(group.members, BTreeSet::from([BOB, CY]));
    assert_eq!(group.name, "Platform");
    // A name out of shape refuses the whole: no member moves either.
    assert!(given_when::<Group>(&given, replace(" ", &[CY]), NOW).is_err());
}
