//! Specifications of the role aggregate and of permission matching.
use super::*;
use crate::decider::given_when;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const ROLE: Uuid = Uuid::from_u128(10);
const ORG: Uuid = Uuid::from_u128(20);
const ADA: Uuid = Uuid::from_u128(1);

fn create(permissions: &[&str]) -> RoleCommand {
    RoleCommand::Create {
        id: ROLE,
        organization_id: ORG,
        name: " Support ".into(),
        description: "Answers tickets".into(),
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        created_by: "admin".into(),
    }
}

fn created() -> RoleEvent {
    given_when::<Role>(&[], create(&["tickets:read"]), NOW)
        .expect("created")
        .remove(0)
}

fn assigned(holder: Holder) -> RoleEvent {
    RoleEvent::Assigned(RoleAssignment {
        role_id: ROLE,
        organization_id: ORG,
        holder,
        at: NOW,
    })
}

#[test]
fn create_records_trimmed_name_and_parsed_permissions() {
    let events = given_when::<Role>(&[], create(&["tickets:read", "users:*"]), NOW).unwrap();
    let RoleEvent::Created(c) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(c.name, "Support");
    let perms: Vec<&str> = c.permissions.iter().map(Permission::as_str).collect();
    assert_eq!(perms, ["tickets:read", "users:*"]);
}

#[test]
fn permissions_out_of_shape_are_refused_by_name() {
    for bad in [
        "tickets",
        ":read",
        "tickets:",
        "a:b:c",
        "tickets:re ad",
        "é:read",
    ] {
        let err = given_when::<Role>(&[], create(&[bad]), NOW).unwrap_err();
        assert!(
            matches!(&err, RoleError::InvalidPermission { permission } if permission == bad),
            "{bad}: {err:?}"
        );
    }
    let many: Vec<String> = (0..=MAX_PERMISSIONS)
        .map(|i| format!("r{i}:read"))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        given_when::<Role>(&[], create(&refs), NOW),
        Err(RoleError::TooManyPermissions)
    );
}

#[test]
fn wildcards_match_any_run_on_their_side_only() {
    let p = |s: &str| Permission::parse(s).unwrap();
    assert!(p("users:*").grants("users:read"));
    assert!(p("*:read").grants("audit:read"));
    assert!(!p("*:read").grants("audit:write"));
    assert!(p("*:*").grants("anything:at-all"));
    assert!(p("reports.*:export").grants("reports.sales:export"));
    assert!(!p("reports.*:export").grants("report:export"));
    assert!(!p("users:read").grants("users:readall"));
    assert!(!p("users:read").grants("users"));
    // No exponential backtracking on many stars.
    let stars = format!("{}b:x", "*a".repeat(40));
    assert!(!p(&stars).grants(&format!("{}:x", "a".repeat(90))));
}

#[test]
fn an_assignment_is_recorded_once_and_names_a_person_as_its_subject() {
    let given = [created()];
    let events = given_when::<Role>(
        &given,
        RoleCommand::Assign {
            holder: Holder::User(ADA),
        },
        NOW,
    )
    .unwrap();
    assert_eq!(events, [assigned(Holder::User(ADA))]);
    assert_eq!(events[0].subject(), Some(user_subject(ADA)));
    let again = [created(), assigned(Holder::User(ADA))];
    assert_eq!(
        given_when::<Role>(
            &again,
            RoleCommand::Assign {
                holder: Holder::User(ADA)
            },
            NOW
        ),
        Ok(vec![])
    );
    assert_eq!(assigned(Holder::Group(ADA)).subject(), None);
}

#[test]
fn a_role_is_held_by_its_own_organization_only() {
    let other = Uuid::from_u128(99);
    assert_eq!(
        given_when::<Role>(
            &[created()],
            RoleCommand::Assign {
                holder: Holder::Organization(other)
            },
            NOW
        ),
        Err(RoleError::ForeignHolder)
    );
    assert!(
        given_when::<Role>(
            &[created()],
            RoleCommand::Assign {
                holder: Holder::Organization(ORG)
            },
            NOW
        )
        .is_ok()
    );
}

#[test]
fn a_change_records_only_what_differs_and_nothing_when_nothing_does() {
    let same = RoleCommand::Change {
        name: Some("Support".into()),
        description: None,
        permissions: Some(vec!["tickets:read".into()]),
    };
    assert_eq!(given_when::<Role>(&[created()], same, NOW), Ok(vec![]));
    let change = RoleCommand::Change {
        name: Some("Support".into()),
        description: None,
        permissions: Some(vec!["tickets:*".into()]),
    };
    let events = given_when::<Role>(&[created()], change, NOW).unwrap();
    let RoleEvent::Changed(c) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(c.name, None);
    assert_eq!(c.permissions.as_ref().map(|p| p.len()), Some(1));
}

#[test]
fn a_deleted_role_names_its_holders_and_takes_nothing_more() {
    let given = [created(), assigned(Holder::Client(ADA))];
    let events = given_when::<Role>(&given, RoleCommand::Delete, NOW).unwrap();
    let RoleEvent::Deleted(d) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(d.holders, [Holder::Client(ADA)]);
    let gone = [created(), events[0].clone()];
    assert_eq!(
        given_when::<Role>(
            &gone,
            RoleCommand::Assign {
                holder: Holder::User(ADA)
            },
            NOW
        ),
        Err(RoleError::NotFound)
    );
    assert_eq!(
        given_when::<Role>(&gone, create(&[]), NOW),
        Err(RoleError::AlreadyExists)
    );
}

#[test]
fn events_round_trip_through_their_types() {
    for e in [created(), assigned(Holder::Organization(ORG))] {
        let back = RoleEvent::decode(e.event_type(), e.to_data()).unwrap();
        assert_eq!(back, e);
    }
}
