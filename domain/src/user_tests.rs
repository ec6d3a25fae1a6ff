//! Specifications of the user aggregate and the rules of its values: given
//! events, when a command, then events or an error.
use super::*;
use crate::decider::{DecodeError, DomainEvent, given_when};
use crate::privacy::is_valid_subject;
use serde_json::Value;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const LATER: OffsetDateTime = datetime!(2026-03-02 08:30 UTC);
const ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
const ORG: Uuid = Uuid::from_u128(2);
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

fn claim(n: u8) -> String {
    format!("{n:02x}").repeat(16)
}

fn profile() -> Profile {
    Profile {
        given_name: Some("Ada".into()),
        family_name: Some("Lovelace".into()),
        name: Some("Ada Lovelace".into()),
        birthdate: Some("1815-12-10".into()),
        locale: Some("en-GB".into()),
        zoneinfo: Some("Europe/London".into()),
        picture: Some("https://example.org/ada.png".into()),
        address: Some(Address {
            street_address: Some("12 St James's Square\nFlat 1".into()),
            locality: Some("London".into()),
            country: Some("GB".into()),
            ..Address::default()
        }),
        ..Profile::default()
    }
}

fn attributes() -> Attributes {
    Attributes::from([
        ("department".into(), AttributeValue::One("Analytics".into())),
        (
            "roles".into(),
            AttributeValue::Many(vec!["author".into(), "mathematician".into()]),
        ),
    ])
}

fn create() -> UserCommand {
    UserCommand::Create {
        id: ID,
        organization_id: ORG,
        username: " ada ".into(),
        username_claim: claim(1),
        email: Some("ada@example.org".into()),
        email_claim: Some(claim(2)),
        email_verified: true,
        phone_number: Some("+442071234567".into()),
        phone_verified: false,
        profile: profile(),
        attributes: attributes(),
        created_by: "admin".into(),
        password: None,
    }
}

fn created() -> UserEvent {
    UserEvent::Created(UserCreated {
        user_id: ID,
        organization_id: ORG,
        username: Pii::new("ada".into()),
        username_claim: claim(1),
        email: Some(Pii::new("ada@example.org".into())),
        email_claim: Some(claim(2)),
        email_verified: true,
        phone_number: Some(Pii::new("+442071234567".into())),
        phone_verified: false,
        profile: Pii::new(profile()),
        attributes: Pii::new(attributes()),
        created_by: "admin".into(),
        at: NOW,
    })
}

fn fact() -> UserFact {
    UserFact {
        user_id: ID,
        at: LATER,
    }
}

fn change(changes: UserChanges) -> UserCommand {
    UserCommand::Change { changes }
}

fn password_set() -> UserEvent {
    UserEvent::PasswordSet(PasswordSet {
        user_id: ID,
        hash: Pii::new(HASH.into()),
        must_change: false,
        at: NOW,
    })
}

fn deleted() -> UserEvent {
    UserEvent::Deleted(UserDeleted {
        user_id: ID,
        released_claims: vec![claim(1), claim(2)],
        at: LATER,
    })
}

/// The field a command was refused for.
fn refused_field(given: &[UserEvent], command: UserCommand) -> String {
    match given_when::<User>(given, command, NOW) {
        Err(UserError::Invalid { field, .. }) => field,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn create_records_the_cleaned_values_as_personal() {
    assert_eq!(given_when::<User>(&[], create(), NOW), Ok(vec![created()]));
    let data = created().to_data();
    assert_eq!(data["username"], serde_json::json!({"$pii": "ada"}));
    assert_eq!(data["profile"]["$pii"]["given_name"], "Ada");
    assert_eq!(data["username_claim"], claim(1).as_str());
}

#[test]
fn the_created_user_folds() {
    let user = User::fold(&[created()]);
    assert!(user.exists() && user.is_active());
    assert_eq!(user.id, ID);
    assert_eq!(user.subject, user_subject(ID));
    assert_eq!(user.username.value().map(String::as_str), Some("ada"));
    assert_eq!(user.claims(), vec![claim(1), claim(2)]);
    assert!(user.email_verified && !user.phone_verified);
    assert_eq!(user.profile.value(), Some(&profile()));
    assert_eq!(user.attributes.value(), Some(&attributes()));
    assert_eq!((user.created_at, user.updated_at), (NOW, NOW));
    assert_eq!(user.password, None);
    assert_eq!(user.status, UserStatus::Active);
}

#[test]
fn creating_twice_is_refused_even_after_deletion() {
    assert_eq!(
        given_when::<User>(&[created()], create(), NOW),
        Err(UserError::AlreadyExists)
    );
    assert_eq!(
        given_when::<User>(&[created(), deleted()], create(), NOW),
        Err(UserError::AlreadyExists)
    );
}

#[test]
fn the_subject_is_a_valid_one_of_the_user() {
    let subject = user_subject(ID);
    assert_eq!(subject, "user:01900000000070008000000000000001");
    assert!(is_valid_subject(&subject));
}

#[test]
fn identifiers_are_normalized_for_uniqueness() {
    assert_eq!(
        normalize_identifier("ＡＤＭＩＮ"),
        normalize_identifier("Admin")
    );
    assert_eq!(
        normalize_identifier("  Ada@Example.ORG "),
        "ada@example.org"
    );
    // The ligature decomposes under NFKC.
    assert_eq!(normalize_identifier("ﬁnn"), "finn");
    // Composed and decomposed accents are the same name.
    assert_eq!(
        normalize_identifier("Ze\u{301}lie"),
        normalize_identifier("Zélie")
    );
    // Lowercasing is not full case folding: "ß" is not "ss".
    assert_eq!(normalize_identifier("STRAẞE"), "straße");
    assert_ne!(
        normalize_identifier("straße"),
        normalize_identifier("strasse")
    );
}

#[test]
fn every_refused_value_names_its_field() {
    let with = |f: fn(&mut UserCommand)| {
        let mut c = create();
        f(&mut c);
        c
    };
    let profile_with = |f: fn(&mut Profile)| {
        let mut p = Profile::default();
        f(&mut p);
        change(UserChanges {
            profile: Some(p),
            ..UserChanges::default()
        })
    };
    let attribute = |key: &str, value: AttributeValue| {
        change(UserChanges {
            attributes: Some(Attributes::from([(key.to_owned(), value)])),
            ..UserChanges::default()
        })
    };
    let given = [created()];
    let cases: Vec<(UserCommand, &str)> = vec![
        (with(|c| set_username(c, "   ")), "username"),
        (with(|c| set_username(c, "ada lovelace")), "username"),
        (with(|c| set_username(c, &"a".repeat(101))), "username"),
        (with(|c| set_email(c, "ada.example.org")), "email"),
        (with(|c| set_email(c, "ada@@example.org")), "email"),
        (with(|c| set_email(c, "ada@localhost")), "email"),
        (with(|c| set_email(c, "ada@-example.org")), "email"),
        (with(|c| set_email(c, "ada@exa_mple.org")), "email"),
        (with(|c| set_email(c, "a da@example.org")), "email"),
        (
            with(|c| set_email(c, &format!("{}@example.org", "a".repeat(65)))),
            "email",
        ),
        (
            with(|c| set_email(c, &format!("a@{}.org", "b".repeat(250)))),
            "email",
        ),
        (with(|c| set_phone(c, "02071234567")), "phone_number"),
        (with(|c| set_phone(c, "+0207")), "phone_number"),
        (with(|c| set_phone(c, "+1")), "phone_number"),
        (with(|c| set_phone(c, "+1234567890123456")), "phone_number"),
        (with(|c| set_phone(c, "+44 20 7123")), "phone_number"),
        (with(|c| set_claim(c, "not-hex")), "username_claim"),
        (with(|c| set_email_claim(c, "ABCDEF")), "email_claim"),
        (with(no_email_but_verified), "email_verified"),
        (with(no_email_but_claimed), "email_claim"),
        (
            profile_with(|p| p.birthdate = Some("2023-02-29".into())),
            "profile.birthdate",
        ),
        (
            profile_with(|p| p.birthdate = Some("1815-13-10".into())),
            "profile.birthdate",
        ),
        (
            profile_with(|p| p.birthdate = Some("10-12-1815".into())),
            "profile.birthdate",
        ),
        (
            profile_with(|p| p.locale = Some("e".into())),
            "profile.locale",
        ),
        (
            profile_with(|p| p.locale = Some("en--GB".into())),
            "profile.locale",
        ),
        (
            profile_with(|p| p.zoneinfo = Some("Europe/Lon don".into())),
            "profile.zoneinfo",
        ),
        (
            profile_with(|p| p.picture = Some("ftp://example.org/a.png".into())),
            "profile.picture",
        ),
        (
            profile_with(|p| p.picture = Some("https://example.org/a b.png".into())),
            "profile.picture",
        ),
        (
            profile_with(|p| p.picture = Some(format!("https://example.org/{}", "a".repeat(2048)))),
            "profile.picture",
        ),
        (
            profile_with(|p| p.given_name = Some("A\u{7}da".into())),
            "profile.given_name",
        ),
        (
            profile_with(|p| p.nickname = Some("n".repeat(257))),
            "profile.nickname",
        ),
        (
            profile_with(|p| p.name = Some("Ada\nLovelace".into())),
            "profile.name",
        ),
        (
            profile_with(|p| {
                p.address = Some(Address {
                    locality: Some("Lon\ndon".into()),
                    ..Address::default()
                })
            }),
            "profile.address.locality",
        ),
        (
            attribute("1st", AttributeValue::One("x".into())),
            "attributes",
        ),
        (
            attribute("dé", AttributeValue::One("x".into())),
            "attributes",
        ),
        (
            attribute(&"k".repeat(65), AttributeValue::One("x".into())),
            "attributes",
        ),
        (
            attribute("department", AttributeValue::One("d".repeat(1025))),
            "attributes.department",
        ),
        (
            attribute("roles", AttributeValue::Many(vec!["r".into(); 101])),
            "attributes.roles",
        ),
        (
            attribute(
                "roles",
                AttributeValue::Many(vec!["ok".into(), "bad\u{0}".into()]),
            ),
            "attributes.roles",
        ),
        (
            UserCommand::SetPassword {
                hash: "plaintext".into(),
                must_change: false,
            },
            "password",
        ),
    ];
    for (command, field) in cases {
        let given: &[UserEvent] = if matches!(command, UserCommand::Create { .. }) {
            &[]
        } else {
            &given
        };
        assert_eq!(refused_field(given, command), field);
    }
    let too_many: Attributes = (0..=MAX_ATTRIBUTES)
        .map(|i| (format!("a{i}"), AttributeValue::One("x".into())))
        .collect();
    let command = change(UserChanges {
        attributes: Some(too_many),
        ..UserChanges::default()
    });
    assert_eq!(refused_field(&given, command), "attributes");
}

fn set_username(c: &mut UserCommand, value: &str) {
    if let UserCommand::Create { username, .. } = c {
        *username = value.into();
    }
}

fn set_email(c: &mut UserCommand, value: &str) {
    if let UserCommand::Create { email, .. } = c {
        *email = Some(value.into());
    }
}

fn set_phone(c: &mut UserCommand, value: &str) {
    if let UserCommand::Create { phone_number, .. } = c {
        *phone_number = Some(value.into());
    }
}

fn set_claim(c: &mut UserCommand, value: &str) {
    if let UserCommand::Create { username_claim, .. } = c {
        *username_claim = value.into();
    }
}

fn set_email_claim(c: &mut UserCommand, value: &str) {
    if let UserCommand::Create { email_claim, .. } = c {
        *email_claim = Some(value.into());
    }
}

fn no_email_but_verified(c: &mut UserCommand) {
    if let UserCommand::Create {
        email,
        email_claim,
        email_verified,
        ..
    } = c
    {
        *email = None;
        *email_claim = None;
        *email_verified = true;
    }
}

fn no_email_but_claimed(c: &mut UserCommand) {
    if let UserCommand::Create {
        email,
        email_verified,
        ..
    } = c
    {
        *email = None;
        *email_verified = false;
    }
}

#[test]
fn acceptable_values_pass_as_written() {
    assert_eq!(
        validate_email("名前@例え.jp").as_deref(),
        Ok("名前@例え.jp")
    );
    assert_eq!(
        validate_email("a.b+tag@sub.example.co.uk").as_deref(),
        Ok("a.b+tag@sub.example.co.uk")
    );
    assert_eq!(validate_phone_number(" +12 ").as_deref(), Ok("+12"));
    assert_eq!(validate_username("Ａｄａ").as_deref(), Ok("Ａｄａ"));
    let p = validate_profile(Profile {
        birthdate: Some("0000-02-29".into()),
        locale: Some("fr_CA".into()),
        zoneinfo: Some("Etc/GMT+5".into()),
        picture: Some("HTTP://example.org/p".into()),
        gender: Some("   ".into()),
        address: Some(Address {
            formatted: Some("1 Main St\r\nSpringfield".into()),
            region: Some(" ".into()),
            ..Address::default()
        }),
        ..Profile::default()
    })
    .unwrap();
    assert_eq!(p.gender, None, "a blank value is dropped");
    assert_eq!(p.address.as_ref().and_then(|a| a.region.clone()), None);
    assert_eq!(
        validate_profile(Profile {
            address: Some(Address::default()),
            ..Profile::default()
        }),
        Ok(Profile::default()),
        "an empty address is dropped"
    );
    assert!(
        validate_profile(Profile {
            birthdate: Some("0000-02-30".into()),
            ..Profile::default()
        })
        .is_err()
    );
}

#[test]
fn a_change_records_only_what_changed() {
    let given = [created()];
    let same = UserChanges {
        username: Some(NewUsername {
            username: "ada".into(),
            claim: claim(1),
        }),
        email: Some(NewEmail {
            email: Some(" ada@example.org ".into()),
            claim: Some(claim(2)),
        }),
        phone_number: Some(Some("+442071234567".into())),
        email_verified: Some(true),
        phone_verified: Some(false),
        profile: Some(profile()),
        attributes: Some(attributes()),
        profile_patch: None,
        attributes_patch: None,
    };
    assert_eq!(
        given_when::<User>(&given, change(same.clone()), LATER),
        Ok(vec![])
    );

    let mut new_profile = profile();
    new_profile.nickname = Some("Countess".into());
    let changes = UserChanges {
        username: Some(NewUsername {
            username: "Ada".into(),
            claim: claim(1),
        }),
        phone_verified: Some(true),
        profile: Some(new_profile.clone()),
        ..same
    };
    assert_eq!(
        given_when::<User>(&given, change(changes), LATER),
        Ok(vec![
            UserEvent::UsernameChanged(UsernameChanged {
                user_id: ID,
                username: Pii::new("Ada".into()),
                claim: claim(1),
                released_claim: None,
                at: LATER,
            }),
            UserEvent::VerificationChanged(VerificationChanged {
                user_id: ID,
                email_verified: true,
                phone_verified: true,
                at: LATER,
            }),
            UserEvent::ProfileChanged(ProfileChanged {
                user_id: ID,
                profile: Pii::new(new_profile),
                at: LATER,
            }),
        ])
    );
}

#[test]
fn a_new_email_address_releases_the_old_claim_and_starts_unverified() {
    let given = [created()];
    let changes = UserChanges {
        email: Some(NewEmail {
            email: Some("countess@example.org".into()),
            claim: Some(claim(3)),
        }),
        ..UserChanges::default()
    };
    let events = given_when::<User>(&given, change(changes), LATER).unwrap();
    assert_eq!(
        events,
        vec![UserEvent::EmailChanged(EmailChanged {
            user_id: ID,
            email: Some(Pii::new("countess@example.org".into())),
            claim: Some(claim(3)),
            released_claim: Some(claim(2)),
            verified: false,
            at: LATER,
        })]
    );
    let mut history = given.to_vec();
    history.extend(events);
    let user = User::fold(&history);
    assert!(!user.email_verified);
    assert_eq!(user.claims(), vec![claim(1), claim(3)]);
    assert_eq!(user.updated_at, LATER);

    // Removing the address releases its claim; it cannot stay verified.
    let remove = |verified| {
        change(UserChanges {
            email: Some(NewEmail {
                email: None,
                claim: None,
            }),
            email_verified: verified,
            ..UserChanges::default()
        })
    };
    assert_eq!(
        given_when::<User>(&given, remove(None), LATER),
        Ok(vec![UserEvent::EmailChanged(EmailChanged {
            user_id: ID,
            email: None,
            claim: None,
            released_claim: Some(claim(2)),
            verified: false,
            at: LATER,
        })])
    );
    assert_eq!(refused_field(&given, remove(Some(true))), "email_verified");
}

#[test]
fn a_new_username_and_phone_number_are_recorded_in_order() {
    let changes = UserChanges {
        username: Some(NewUsername {
            username: "countess".into(),
            claim: claim(4),
        }),
        phone_number: Some(None),
        attributes: Some(Attributes::new()),
        ..UserChanges::default()
    };
    assert_eq!(
        given_when::<User>(&[created()], change(changes), LATER),
        Ok(vec![
            UserEvent::UsernameChanged(UsernameChanged {
                user_id: ID,
                username: Pii::new("countess".into()),
                claim: claim(4),
                released_claim: Some(claim(1)),
                at: LATER,
            }),
            UserEvent::PhoneChanged(PhoneChanged {
                user_id: ID,
                phone_number: None,
                verified: false,
                at: LATER,
            }),
            UserEvent::AttributesChanged(AttributesChanged {
                user_id: ID,
                attributes: Pii::new(Attributes::new()),
                at: LATER,
            }),
        ])
    );
}

#[test]
fn deactivate_and_reactivate_are_idempotent() {
    let deactivated = UserEvent::Deactivated(fact());
    assert_eq!(
        given_when::<User>(&[created()], UserCommand::Deactivate, LATER),
        Ok(vec![deactivated.clone()])
    );
    let given = [created(), deactivated];
    assert_eq!(
        given_when::<User>(&given, UserCommand::Deactivate, LATER),
        Ok(vec![])
    );
    assert_eq!(
        given_when::<User>(&given, UserCommand::Reactivate, LATER),
        Ok(vec![UserEvent::Reactivated(fact())])
    );
    assert_eq!(
        given_when::<User>(&[created()], UserCommand::Reactivate, LATER),
        Ok(vec![])
    );
    assert!(!User::fold(&given).is_active());
    assert_eq!(
        given_when::<User>(&given, UserCommand::RecordSignIn, LATER),
        Err(UserError::Deactivated)
    );
}

#[test]
fn the_password_is_set_flagged_and_cleared() {
    let given = [created(), password_set()];
    let user = User::fold(&given);
    assert_eq!(
        user.password
            .as_ref()
            .map(|p| (p.hash.value().map(String::as_str), p.set_at)),
        Some((Some(HASH), NOW))
    );
    let require = |required| UserCommand::RequirePasswordChange { required };
    assert_eq!(
        given_when::<User>(&given, require(false), LATER),
        Ok(vec![])
    );
    let required = UserEvent::PasswordChangeRequired(PasswordChangeRequired {
        user_id: ID,
        required: true,
        at: LATER,
    });
    assert_eq!(
        given_when::<User>(&given, require(true), LATER),
        Ok(vec![required.clone()])
    );
    assert!(
        User::fold(&[created(), password_set(), required])
            .password
            .is_some_and(|p| p.must_change)
    );
    assert_eq!(
        given_when::<User>(&[created()], require(true), LATER),
        Err(UserError::NoPassword)
    );
    assert_eq!(
        given_when::<User>(&given, UserCommand::ClearPassword, LATER),
        Ok(vec![UserEvent::PasswordCleared(fact())])
    );
    assert_eq!(
        given_when::<User>(&[created()], UserCommand::ClearPassword, LATER),
        Ok(vec![])
    );
}

#[test]
fn a_sign_in_is_recorded_without_touching_updated_at() {
    let signed_in = UserEvent::SignedIn(fact());
    assert_eq!(
        given_when::<User>(&[created()], UserCommand::RecordSignIn, LATER),
        Ok(vec![signed_in.clone()])
    );
    let user = User::fold(&[created(), signed_in]);
    assert_eq!((user.last_sign_in_at, user.updated_at), (Some(LATER), NOW));
}

#[test]
fn deletion_releases_the_claims_and_drops_the_personal_values() {
    assert_eq!(
        given_when::<User>(&[created(), password_set()], UserCommand::Delete, LATER),
        Ok(vec![deleted()])
    );
    let user = User::fold(&[created(), password_set(), deleted()]);
    assert!(!user.exists() && user.deleted);
    assert!(user.username.is_erased() && user.profile.is_erased() && user.attributes.is_erased());
    assert!(user.claims().is_empty());
    assert_eq!(
        (user.email, user.phone_number, user.password),
        (None, None, None)
    );
}

#[test]
fn a_missing_or_deleted_user_refuses_every_command() {
    let commands = || {
        vec![
            change(UserChanges::default()),
            UserCommand::Deactivate,
            UserCommand::Reactivate,
            UserCommand::SetPassword {
                hash: HASH.into(),
                must_change: false,
            },
            UserCommand::ClearPassword,
            UserCommand::RequirePasswordChange { required: true },
            UserCommand::RecordSignIn,
            UserCommand::Delete,
        ]
    };
    for given in [vec![], vec![created(), deleted()]] {
        for command in commands() {
            assert_eq!(
                given_when::<User>(&given, command, LATER),
                Err(UserError::NotFound)
            );
        }
    }
}

fn every_event() -> Vec<UserEvent> {
    vec![
        created(),
        UserEvent::UsernameChanged(UsernameChanged {
            user_id: ID,
            username: Pii::new("countess".into()),
            claim: claim(4),
            released_claim: Some(claim(1)),
            at: LATER,
        }),
        UserEvent::EmailChanged(EmailChanged {
            user_id: ID,
            email: None,
            claim: None,
            released_claim: Some(claim(2)),
            verified: false,
            at: LATER,
        }),
        UserEvent::PhoneChanged(PhoneChanged {
            user_id: ID,
            phone_number: Some(Pii::new("+15551234567".into())),
            verified: true,
            at: LATER,
        }),
        UserEvent::VerificationChanged(VerificationChanged {
            user_id: ID,
            email_verified: false,
            phone_verified: false,
            at: LATER,
        }),
        UserEvent::ProfileChanged(ProfileChanged {
            user_id: ID,
            profile: Pii::new(profile()),
            at: LATER,
        }),
        UserEvent::AttributesChanged(AttributesChanged {
            user_id: ID,
            attributes: Pii::new(attributes()),
            at: LATER,
        }),
        UserEvent::Deactivated(fact()),
        UserEvent::Reactivated(fact()),
        password_set(),
        UserEvent::PasswordCleared(fact()),
        UserEvent::PasswordChangeRequired(PasswordChangeRequired {
            user_id: ID,
            required: true,
            at: LATER,
        }),
        UserEvent::SignedIn(fact()),
        deleted(),
    ]
}

#[test]
fn events_round_trip_through_their_stored_form() {
    let events = every_event();
    let types: std::collections::BTreeSet<_> = events.iter().map(|e| e.event_type()).collect();
    assert_eq!(types.len(), events.len(), "one event of each type");
    for e in events {
        assert!(e.event_type().starts_with("user.") && e.event_type().ends_with(".v1"));
        let back = UserEvent::decode(e.event_type(), e.to_data()).unwrap();
        assert_eq!(back, e);
    }
    assert!(matches!(
        UserEvent::decode("user.exploded.v1", &Value::Null),
        Err(DecodeError::UnknownType(_))
    ));
}

#[test]
fn erased_values_read_back_as_erased() {
    let mut data = created().to_data();
    data["username"] = serde_json::json!({"$pii_erased": true});
    data["profile"] = serde_json::json!({"$pii_enc": "AAAA", "kid": user_subject(ID)});
    let UserEvent::Created(e) = UserEvent::decode(CREATED_V1, &data).unwrap() else {
        panic!("not a creation");
    };
    assert!(e.username.is_erased() && e.profile.is_erased());
}

#[test]
fn every_event_is_about_the_user() {
    for e in every_event() {
        assert_eq!(e.subject(), Some(user_subject(ID)), "{}", e.event_type());
        assert_eq!(e.user_id(), ID);
    }
}

#[test]
fn debug_output_holds_no_hash_and_no_personal_value() {
    let set = UserCommand::SetPassword {
        hash: HASH.into(),
        must_change: true,
    };
    let shown = format!("{set:?}");
    assert!(!shown.contains("argon2") && shown.contains("must_change: true"));
    for shown in [
        format!("{:?}", User::fold(&[created(), password_set()])),
        format!("{:?}", password_set()),
        format!("{:?}", create()),
        format!(
            "{:?}",
            change(UserChanges {
                username: Some(NewUsername {
                    username: "countess".into(),
                    claim: claim(4)
                }),
                email: Some(NewEmail {
                    email: Some("ada@example.org".into()),
                    claim: None
                }),
                phone_number: Some(Some("+442071234567".into())),
                profile: Some(profile()),
                ..UserChanges::default()
            })
        ),
    ] {
        for secret in ["argon2", "ada", "Lovelace", "countess", "+44"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}

#[test]
fn refusals_say_the_field_not_the_value() {
    let err = given_when::<User>(
        &[created()],
        change(UserChanges {
            email: Some(NewEmail {
                email: Some("secret-person".into()),
                claim: None,
            }),
            ..UserChanges::default()
        }),
        LATER,
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("invalid email: "), "{shown}");
    assert!(!shown.contains("secret-person"));
}

#[test]
fn an_initial_password_is_recorded_with_the_creation() {
    let UserCommand::Create { .. } = create() else {
        unreachable!()
    };
    let mut command = create();
    if let UserCommand::Create { password, .. } = &mut command {
        *password = Some(InitialPassword {
            hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            must_change: true,
        });
    }
    assert!(!format!("{command:?}").contains("argon2id"));
    let events = given_when::<User>(&[], command, NOW).unwrap();
    assert_eq!(events.len(), 2);
    let user = User::fold(&events);
    let password = user.password.expect("a password");
    assert!(password.must_change);
    assert_eq!(password.set_at, NOW);
}

#[test]
fn patches_change_only_the_fields_they_name() {
    let given = [created()];
    let mut attrs = AttributesPatch::new();
    attrs.insert("floor".into(), Some(AttributeValue::One("3".into())));
    let changes = UserChanges {
        profile_patch: Some(ProfilePatch {
            nickname: Some(Some("Countess".into())),
            ..ProfilePatch::default()
        }),
        attributes_patch: Some(attrs),
        ..UserChanges::default()
    };
    let events = given_when::<User>(&given, change(changes), LATER).unwrap();
    let user = User::fold(given.iter().chain(&events));
    let p = user.profile.value().unwrap();
    assert_eq!(p.nickname.as_deref(), Some("Countess"));
    assert_eq!(p.given_name, profile().given_name, "other fields are kept");
    let a = user.attributes.value().unwrap();
    assert_eq!(a.get("floor"), Some(&AttributeValue::One("3".into())));
    assert_eq!(a.len(), attributes().len() + 1);
    // Clearing a field and removing an attribute.
    let mut remove = AttributesPatch::new();
    remove.insert("floor".into(), None);
    let clear = UserChanges {
        profile_patch: Some(ProfilePatch {
            nickname: Some(None),
            ..ProfilePatch::default()
        }),
        attributes_patch: Some(remove),
        ..UserChanges::default()
    };
    let more = given_when::<User>(
        &[given[0].clone()]
            .into_iter()
            .chain(events)
            .collect::<Vec<_>>(),
        change(clear),
        LATER,
    )
    .unwrap();
    assert_eq!(more.len(), 2);
}
