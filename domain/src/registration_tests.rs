//! Specifications of the registration aggregates: given events, when a command, then events or an error.
use super::*;
use crate::decider::given_when;
use crate::refresh_chain::CurrentRefresh;
use serde_json::json;
use time::Duration;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

/// A distinct valid hash per `n` (its leading characters differ too).
fn h(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn instance(n: u32) -> InstanceInfo {
    InstanceInfo {
        instance_id: format!("install-{n}"),
        device_name: "Front desk PC".into(),
        user_name: Pii::new("Ada Lovelace".into()),
        app_version: "2.4.1".into(),
        subject: Some("person:0123".into()),
    }
}

mod registration_token {
    use super::*;

    fn create_with(count: u64, expires_at: OffsetDateTime) -> RegistrationTokenCommand {
        RegistrationTokenCommand::Create {
            id: id(1),
            organization_id: id(2),
            client_id: id(3),
            description: "Reception desks".into(),
            count,
            expires_at,
            hash: h(0xab),
            created_by: "user-7".into(),
        }
    }

    fn created(count: u64) -> RegistrationTokenEvent {
        RegistrationTokenEvent::Created(RegistrationTokenCreated {
            id: id(1),
            organization_id: id(2),
            client_id: id(3),
            description: "Reception desks".into(),
            count,
            expires_at: NOW + Duration::days(7),
            hash: h(0xab),
            created_at: NOW,
            created_by: "user-7".into(),
        })
    }

    fn consumed(n: u64) -> RegistrationTokenEvent {
        RegistrationTokenEvent::Consumed(RegistrationTokenConsumed {
            auth_token_id: id(100 + u128::from(n)),
            instance: instance(n as u32),
            consumed_at: NOW,
            used_after: n,
        })
    }

    fn revoked() -> RegistrationTokenEvent {
        RegistrationTokenEvent::Revoked(RegistrationTokenRevoked { revoked_at: NOW })
    }

    fn consume(n: u32) -> RegistrationTokenCommand {
        RegistrationTokenCommand::Consume {
            auth_token_id: id(100 + u128::from(n)),
            instance: instance(n),
        }
    }

    fn consume_at(
        given: &[RegistrationTokenEvent],
        n: u32,
        at: OffsetDateTime,
    ) -> Result<Vec<RegistrationTokenEvent>, RegistrationTokenError> {
        given_when::<RegistrationToken>(given, consume(n), at)
    }

    #[test]
    fn create_records_the_token_with_its_description_trimmed() {
        let mut cmd = create_with(50, NOW + Duration::days(7));
        if let RegistrationTokenCommand::Create { description, .. } = &mut cmd {
            *description = "  Reception desks\n".into();
        }
        let events = given_when::<RegistrationToken>(&[], cmd, NOW).unwrap();
        assert_eq!(events, vec![created(50)]);
        let state = RegistrationToken::fold(&events);
        assert!(state.exists);
        assert_eq!(
            (state.id, state.organization_id, state.client_id),
            (id(1), id(2), id(3))
        );
        assert_eq!((state.count, state.used, state.remaining()), (50, 0, 50));
        assert_eq!(state.hash, h(0xab));
        assert_eq!(state.created_by, "user-7");
        assert_eq!(state.created_at, NOW);
        assert_eq!(state.revoked_at, None);
        assert_eq!(state.status(NOW), RegistrationTokenStatus::Active);
    }

    #[test]
    fn create_is_refused_when_the_token_exists() {
        for given in [vec![created(1)], vec![created(1), revoked()]] {
            assert_eq!(
                given_when::<RegistrationToken>(
                    &given,
                    create_with(1, NOW + Duration::days(1)),
                    NOW
                ),
                Err(RegistrationTokenError::AlreadyExists)
            );
        }
    }

    #[test]
    fn the_count_is_1_to_ten_million() {
        let later = NOW + Duration::days(1);
        for bad in [0, MAX_COUNT + 1, u64::MAX] {
            assert_eq!(
                given_when::<RegistrationToken>(&[], create_with(bad, later), NOW),
                Err(RegistrationTokenError::InvalidCount)
            );
        }
        for good in [1, MAX_COUNT] {
            assert!(given_when::<RegistrationToken>(&[], create_with(good, later), NOW).is_ok());
        }
    }

    #[test]
    fn the_expiry_must_be_in_the_future() {
        for bad in [NOW, NOW - Duration::seconds(1), NOW - Duration::days(30)] {
            assert_eq!(
                given_when::<RegistrationToken>(&[], create_with(1, bad), NOW),
                Err(RegistrationTokenError::InvalidExpiry)
            );
        }
        let soon = NOW + Duration::seconds(1);
        assert!(given_when::<RegistrationToken>(&[], create_with(1, soon), NOW).is_ok());
    }

    #[test]
    fn the_description_is_at_most_200_characters() {
        let with = |description: String| RegistrationTokenCommand::Create {
            id: id(1),
            organization_id: id(2),
            client_id: id(3),
            description,
            count: 1,
            expires_at: NOW + Duration::days(1),
            hash: h(1),
            created_by: "user-7".into(),
        };
        assert_eq!(
            given_when::<RegistrationToken>(&[], with("é".repeat(201)), NOW),
            Err(RegistrationTokenError::InvalidDescription)
        );
        assert!(given_when::<RegistrationToken>(&[], with("é".repeat(200)), NOW).is_ok());
        assert!(given_when::<RegistrationToken>(&[], with(String::new()), NOW).is_ok());
    }

    #[test]
    fn the_hash_must_be_64_lowercase_hex_characters() {
        let with = |hash: String| RegistrationTokenCommand::Create {
            id: id(1),
            organization_id: id(2),
            client_id: id(3),
            description: String::new(),
            count: 1,
            expires_at: NOW + Duration::days(1),
            hash,
            created_by: "user-7".into(),
        };
        for bad in [
            String::new(),
            h(1)[..63].to_owned(),
            format!("{}0", h(1)),
            h(0xab).to_uppercase(),
            h(1).replacen('0', "g", 1),
        ] {
            assert_eq!(
                given_when::<RegistrationToken>(&[], with(bad.clone()), NOW),
                Err(RegistrationTokenError::InvalidHash),
                "{bad}"
            );
        }
    }

    #[test]
    fn each_consumption_records_its_ordinal() {
        let mut history = vec![created(3)];
        for n in 1..=3 {
            let events = consume_at(&history, n as u32, NOW).unwrap();
            assert_eq!(events, vec![consumed(n)]);
            history.extend(events);
            let state = RegistrationToken::fold(&history);
            assert_eq!((state.used, state.remaining()), (n, 3 - n));
        }
    }

    #[test]
    fn an_unknown_token_cannot_be_consumed_or_revoked() {
        assert_eq!(
            consume_at(&[], 1, NOW),
            Err(RegistrationTokenError::NotFound)
        );
        assert_eq!(
            given_when::<RegistrationToken>(&[], RegistrationTokenCommand::Revoke, NOW),
            Err(RegistrationTokenError::NotFound)
        );
    }

    #[test]
    fn a_used_up_count_is_exhausted() {
        let given = [created(2), consumed(1), consumed(2)];
        let r = consume_at(&given, 3, NOW);
        assert_eq!(r, Err(RegistrationTokenError::Exhausted));
        let err = r.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the registration token's count is used up: every auth token it could \
             generate has been issued; your administrator can see which instances used it"
        );
        assert_eq!(
            RegistrationToken::fold(&given).status(NOW),
            RegistrationTokenStatus::Exhausted
        );
    }

    #[test]
    fn an_expired_token_is_refused_even_with_counts_left_and_before_exhaustion() {
        let expires = NOW + Duration::days(7);
        let just_before = expires - Duration::seconds(1);
        assert!(consume_at(&[created(2)], 1, just_before).is_ok());
        for at in [expires, expires + Duration::days(1)] {
            let r = consume_at(&[created(2)], 1, at);
            assert_eq!(r, Err(RegistrationTokenError::Expired));
            // Expired wins over exhausted.
            let used_up = [created(1), consumed(1)];
            assert_eq!(
                consume_at(&used_up, 2, at),
                Err(RegistrationTokenError::Expired)
            );
        }
        let err = RegistrationTokenError::Expired;
        assert_eq!(
            err.to_string(),
            "the registration token has expired: request a new registration token from \
             your administrator"
        );
    }

    #[test]
    fn a_revoked_token_is_refused_whatever_else_holds() {
        let later = NOW + Duration::days(30);
        for (given, at) in [
            (vec![created(2), revoked()], NOW),
            (vec![created(2), revoked()], later),
            (vec![created(1), consumed(1), revoked()], NOW),
        ] {
            assert_eq!(
                consume_at(&given, 9, at),
                Err(RegistrationTokenError::Revoked)
            );
            assert_eq!(
                RegistrationToken::fold(&given).status(at),
                RegistrationTokenStatus::Revoked
            );
        }
        let err = RegistrationTokenError::Revoked;
        assert_eq!(
            err.to_string(),
            "the registration token was revoked by your administrator"
        );
    }

    #[test]
    fn revoke_records_once() {
        let r =
            given_when::<RegistrationToken>(&[created(1)], RegistrationTokenCommand::Revoke, NOW);
        assert_eq!(r, Ok(vec![revoked()]));
        let again = given_when::<RegistrationToken>(
            &[created(1), revoked()],
            RegistrationTokenCommand::Revoke,
            NOW + Duration::hours(1),
        );
        assert_eq!(again, Ok(vec![]));
        let state = RegistrationToken::fold(&[created(1), revoked()]);
        assert_eq!(state.revoked_at, Some(NOW));
    }

    #[test]
    fn the_instance_information_is_checked() {
        let given = [created(5)];
        let with = |f: &dyn Fn(&mut InstanceInfo)| {
            let mut instance = instance(1);
            f(&mut instance);
            given_when::<RegistrationToken>(
                &given,
                RegistrationTokenCommand::Consume {
                    auth_token_id: id(9),
                    instance,
                },
                NOW,
            )
        };
        let refused = |r: Result<Vec<RegistrationTokenEvent>, RegistrationTokenError>| {
            matches!(r, Err(RegistrationTokenError::InvalidInstance(_)))
        };
        assert!(refused(with(&|i| i.instance_id = String::new())));
        assert!(refused(with(&|i| i.instance_id = "  ".into())));
        assert!(refused(with(&|i| i.instance_id = "x".repeat(201))));
        assert!(refused(with(&|i| i.device_name = "x".repeat(201))));
        assert!(refused(with(&|i| i.app_version = "x".repeat(201))));
        assert!(refused(with(&|i| i.user_name = Pii::new("é".repeat(201)))));
        assert!(with(&|i| i.instance_id = "é".repeat(200)).is_ok());
        assert!(
            with(&|i| {
                i.device_name = String::new();
                i.app_version = String::new();
                i.user_name = Pii::new(String::new());
            })
            .is_ok()
        );
        let r = with(&|i| i.device_name = "x".repeat(201)).unwrap_err();
        assert_eq!(
            r.to_string(),
            "invalid instance information: device_name must be at most 200 characters"
        );
    }

    #[test]
    fn the_state_does_not_grow_with_consumptions() {
        let mut history = vec![created(MAX_COUNT)];
        history.extend((1..=5_000).map(consumed));
        let state = RegistrationToken::fold(&history);
        assert_eq!(state.used, 5_000);
        // Only fixed fields: the heap it holds is the strings of the
        // creation, whatever the number of consumptions.
        assert_eq!(state.description, "Reception desks");
        assert_eq!(state, {
            let mut s = RegistrationToken::fold(&[created(MAX_COUNT)]);
            s.used = 5_000;
            s
        });
    }

    #[test]
    fn status_prefers_revoked_then_expired_then_exhausted() {
        let expired_at = NOW + Duration::days(7);
        let used_up = [created(1), consumed(1)];
        let state = RegistrationToken::fold(&used_up);
        assert_eq!(state.status(NOW), RegistrationTokenStatus::Exhausted);
        assert_eq!(state.status(expired_at), RegistrationTokenStatus::Expired);
        let state = RegistrationToken::fold(&[created(1), consumed(1), revoked()]);
        assert_eq!(state.status(expired_at), RegistrationTokenStatus::Revoked);
        assert_eq!(RegistrationTokenStatus::Exhausted.as_str(), "exhausted");
        assert_eq!(
            serde_json::to_value(RegistrationTokenStatus::Active).unwrap(),
            json!("active")
        );
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let all = [created(3), consumed(1), revoked()];
        let types: Vec<_> = all.iter().map(DomainEvent::event_type).collect();
        assert_eq!(
            types,
            [
                "registration_token.created.v1",
                "registration_token.consumed.v1",
                "registration_token.revoked.v1",
            ]
        );
        for e in all {
            let back = RegistrationTokenEvent::decode(e.event_type(), e.to_data()).unwrap();
            assert_eq!(back, e);
        }
        let data = consumed(1).to_data();
        assert_eq!(
            data["instance"]["user_name"],
            json!({"$pii": "Ada Lovelace"})
        );
        assert_eq!(data["used_after"], 1);
        assert_eq!(data["consumed_at"], "2026-03-01T12:00:00Z");
        assert_eq!(created(3).to_data()["expires_at"], "2026-03-08T12:00:00Z");
        assert!(matches!(
            RegistrationTokenEvent::decode("registration_token.exploded.v1", &Value::Null),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            RegistrationTokenEvent::decode(REGTOKEN_CONSUMED_V1, json!({"used_after": 1})),
            Err(DecodeError::Malformed { .. })
        ));
    }
}

mod auth_token {
    use super::*;

    /// The auth token's own secret hash.
    fn secret() -> String {
        h(0xa0)
    }

    fn issue() -> AuthTokenCommand {
        AuthTokenCommand::Issue {
            id: id(10),
            registration_token_id: id(1),
            organization_id: id(2),
            client_id: id(3),
            hash: secret(),
            instance: instance(1),
        }
    }

    fn issued() -> AuthTokenEvent {
        AuthTokenEvent::Issued(AuthTokenIssued {
            id: id(10),
            registration_token_id: id(1),
            organization_id: id(2),
            client_id: id(3),
            hash: secret(),
            instance: instance(1),
            issued_at: NOW,
        })
    }

    fn exchange(hash: String) -> AuthTokenCommand {
        AuthTokenCommand::Exchange {
            hash,
            refresh_token_id: id(20),
            refresh_hash: h(20),
            scope: "read".into(),
        }
    }

    fn exchanged() -> AuthTokenEvent {
        AuthTokenEvent::Exchanged(AuthTokenExchanged {
            refresh_token_id: id(20),
            refresh_hash: h(20),
            scope: Some("read".into()),
            exchanged_at: NOW,
        })
    }

    /// Refresh token `n` (id `n`, hash `h(n)`), presented to get `n + 1`.
    fn refresh(presented: u8, hash: String) -> AuthTokenCommand {
        AuthTokenCommand::Refresh {
            presented_token_id: id(u128::from(presented)),
            presented_hash: hash,
            new_token_id: id(u128::from(presented) + 1),
            new_hash: h(presented + 1),
            scope: None,
        }
    }

    fn refreshed(from: u8) -> AuthTokenEvent {
        AuthTokenEvent::Refreshed(AuthTokenRefreshed {
            previous_token_id: id(u128::from(from)),
            refresh_token_id: id(u128::from(from) + 1),
            refresh_hash: h(from + 1),
            refreshed_at: NOW,
        })
    }

    fn reuse(of: u8) -> AuthTokenEvent {
        AuthTokenEvent::ReuseDetected(AuthTokenReuseDetected {
            token_id: id(u128::from(of)),
            detected_at: NOW,
        })
    }

    fn deleted() -> AuthTokenEvent {
        AuthTokenEvent::Deleted(AuthTokenDeleted { deleted_at: NOW })
    }

    fn when(
        given: &[AuthTokenEvent],
        command: AuthTokenCommand,
    ) -> Result<Vec<AuthTokenEvent>, AuthTokenError> {
        given_when::<AuthToken>(given, command, NOW)
    }

    fn correct(user_name: Option<&str>, device_name: Option<&str>) -> AuthTokenCommand {
        AuthTokenCommand::CorrectInstance {
            user_name: user_name.map(str::to_owned),
            device_name: device_name.map(str::to_owned),
        }
    }

    #[test]
    fn a_correction_records_only_what_changed_under_the_same_subject() {
        let events = when(
            &[issued()],
            correct(Some("Ada King"), Some("Front desk PC")),
        )
        .unwrap();
        let [AuthTokenEvent::InstanceCorrected(c)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(c.user_name, Some(Pii::new("Ada King".to_owned())));
        assert_eq!(c.device_name, None, "the device name did not change");
        assert_eq!(c.subject, instance(1).subject);
        assert_eq!(events[0].subject(), instance(1).subject);
        let state = AuthToken::fold(&[issued(), events[0].clone()]);
        let now = state.instance.unwrap();
        assert_eq!(now.user_name.value().map(String::as_str), Some("Ada King"));
        assert_eq!(now.instance_id, instance(1).instance_id);
        let back = AuthTokenEvent::decode(events[0].event_type(), events[0].to_data()).unwrap();
        assert_eq!(back, events[0]);
    }

    #[test]
    fn a_correction_that_changes_nothing_records_nothing_and_bad_values_are_refused() {
        let name = instance(1).user_name.value().cloned();
        assert_eq!(
            when(&[issued()], correct(name.as_deref(), None)),
            Ok(vec![])
        );
        assert_eq!(
            when(&[], correct(Some("x"), None)),
            Err(AuthTokenError::NotFound)
        );
        assert!(matches!(
            when(&[issued()], correct(Some(&"é".repeat(201)), None)),
            Err(AuthTokenError::InvalidInstance(_))
        ));
    }

    #[test]
    fn issue_records_the_instance_and_a_retry_is_a_no_op() {
        let events = when(&[], issue()).unwrap();
        assert_eq!(events, vec![issued()]);
        let state = AuthToken::fold(&events);
        assert!(state.exists && state.is_usable() && !state.exchanged);
        assert_eq!(state.instance, Some(instance(1)));
        assert_eq!(state.client_id, id(3));
        assert_eq!(when(&[issued()], issue()), Ok(vec![]));
        let other = AuthTokenCommand::Issue {
            id: id(10),
            registration_token_id: id(1),
            organization_id: id(2),
            client_id: id(3),
            hash: h(0xa1),
            instance: instance(1),
        };
        assert_eq!(when(&[issued()], other), Err(AuthTokenError::AlreadyExists));
    }

    #[test]
    fn issue_checks_the_hash_and_the_instance() {
        let with = |hash: String, instance: InstanceInfo| AuthTokenCommand::Issue {
            id: id(10),
            registration_token_id: id(1),
            organization_id: id(2),
            client_id: id(3),
            hash,
            instance,
        };
        assert_eq!(
            when(&[], with("nothex".into(), instance(1))),
            Err(AuthTokenError::InvalidHash)
        );
        let mut bad = instance(1);
        bad.instance_id = String::new();
        assert!(matches!(
            when(&[], with(secret(), bad)),
            Err(AuthTokenError::InvalidInstance(_))
        ));
    }

    #[test]
    fn the_auth_token_is_exchanged_once_with_its_secret() {
        assert_eq!(when(&[], exchange(secret())), Err(AuthTokenError::NotFound));
        assert_eq!(
            when(&[issued()], exchange(h(0xa1))),
            Err(AuthTokenError::InvalidCredential)
        );
        assert_eq!(
            when(&[issued()], exchange(secret().to_uppercase())),
            Err(AuthTokenError::InvalidCredential)
        );
        let events = when(&[issued()], exchange(secret())).unwrap();
        assert_eq!(events, vec![exchanged()]);
        let state = AuthToken::fold(&[issued(), exchanged()]);
        assert!(state.exchanged);
        assert_eq!(
            state.chain.current,
            Some(CurrentRefresh {
                id: id(20),
                hash: h(20)
            })
        );
        assert_eq!(state.last_used_at, Some(NOW));
        // A second exchange revokes everything issued from the auth token.
        let replay = when(&[issued(), exchanged()], exchange(secret())).unwrap();
        assert!(AuthTokenEvent::reuse_detected(&replay));
        assert_eq!(replay, vec![reuse(10)]);
        let after = AuthToken::fold(&[issued(), exchanged(), reuse(10)]);
        assert!(after.chain_revoked && !after.is_usable());
        assert_eq!(
            when(&[issued(), exchanged(), reuse(10)], exchange(secret())),
            Err(AuthTokenError::AlreadyExchanged)
        );
        // The refusal says why: the auth token was replayed, not a refresh token.
        assert_eq!(
            when(&[issued(), exchanged(), reuse(10)], refresh(20, h(20))),
            Err(AuthTokenError::ChainRevokedByReplay)
        );
        // A wrong secret learns nothing about the exchange.
        assert_eq!(
            when(&[issued(), exchanged()], exchange(h(0xa1))),
            Err(AuthTokenError::InvalidCredential)
        );
        assert_eq!(
            when(&[issued(), deleted()], exchange(secret())),
            Err(AuthTokenError::Deleted)
        );
    }

    #[test]
    fn presenting_the_current_refresh_token_rotates_it() {
        let mut history = vec![issued(), exchanged()];
        for n in 20..25u8 {
            let events = when(&history, refresh(n, h(n))).unwrap();
            assert_eq!(events, vec![refreshed(n)]);
            assert!(!AuthTokenEvent::reuse_detected(&events));
            history.extend(events);
        }
        let state = AuthToken::fold(&history);
        assert_eq!(state.chain.current.as_ref().map(|c| c.id), Some(id(25)));
        assert_eq!(state.chain.used.len(), 5);
        assert!((20..25).all(|n| state.chain.used.iter().any(|(u, _)| *u == id(n))));
    }

    #[test]
    fn a_used_refresh_token_presented_again_revokes_the_chain() {
        let given = [issued(), exchanged(), refreshed(20), refreshed(21)];
        let events = when(&given, refresh(20, h(20))).unwrap();
        assert_eq!(events, vec![reuse(20)]);
        assert!(AuthTokenEvent::reuse_detected(&events));

        let mut after = given.to_vec();
        after.extend(events);
        let state = AuthToken::fold(&after);
        assert!(state.chain_revoked && !state.is_usable());
        // Nothing works afterwards, not even the current token, and the
        // reuse is recorded once.
        for cmd in [refresh(22, h(22)), refresh(20, h(20)), refresh(21, h(21))] {
            assert_eq!(when(&after, cmd), Err(AuthTokenError::ChainRevoked));
        }
    }

    #[test]
    fn anything_else_is_an_invalid_credential_and_records_nothing() {
        let given = [issued(), exchanged(), refreshed(20)];
        for cmd in [
            // The current id with a wrong secret.
            refresh(21, h(22)),
            // A used id with a guessed secret: not proof of a copy.
            refresh(20, h(99)),
            // An id this chain never issued.
            refresh(77, h(77)),
        ] {
            assert_eq!(
                when(&given, cmd.clone()),
                Err(AuthTokenError::InvalidCredential),
                "{cmd:?}"
            );
        }
        // Before the exchange there is no refresh token at all.
        assert_eq!(
            when(&[issued()], refresh(20, h(20))),
            Err(AuthTokenError::InvalidCredential)
        );
    }

    #[test]
    fn refresh_needs_a_live_auth_token() {
        assert_eq!(when(&[], refresh(20, h(20))), Err(AuthTokenError::NotFound));
        assert_eq!(
            when(&[issued(), exchanged(), deleted()], refresh(20, h(20))),
            Err(AuthTokenError::Deleted)
        );
    }

    #[test]
    fn delete_records_once() {
        assert_eq!(
            when(&[], AuthTokenCommand::Delete),
            Err(AuthTokenError::NotFound)
        );
        assert_eq!(
            when(&[issued(), exchanged()], AuthTokenCommand::Delete),
            Ok(vec![deleted()])
        );
        assert_eq!(
            when(&[issued(), deleted()], AuthTokenCommand::Delete),
            Ok(vec![])
        );
        assert!(!AuthToken::fold(&[issued(), deleted()]).is_usable());
    }

    #[test]
    fn a_refresh_may_narrow_the_grant_but_never_widen_it() {
        let asking = |scope: &str, hash: String| AuthTokenCommand::Refresh {
            presented_token_id: id(20),
            presented_hash: hash,
            new_token_id: id(21),
            new_hash: h(21),
            scope: Some(scope.to_owned()),
        };
        let history = [issued(), exchanged()];
        assert_eq!(
            when(&history, asking("read write", h(20))),
            Err(AuthTokenError::ScopeNotGranted("write".into()))
        );
        assert!(when(&history, asking("read", h(20))).is_ok());
        // A wrong credential learns nothing about the grant.
        assert_eq!(
            when(&history, asking("read write", h(0x77))),
            Err(AuthTokenError::InvalidCredential)
        );
    }

    #[test]
    fn constant_time_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"xbc", b"abc"));
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let all = [issued(), exchanged(), refreshed(20), reuse(20), deleted()];
        let types: Vec<_> = all.iter().map(DomainEvent::event_type).collect();
        assert_eq!(
            types,
            [
                "auth_token.issued.v1",
                "auth_token.exchanged.v1",
                "auth_token.refreshed.v1",
                "auth_token.reuse_detected.v1",
                "auth_token.deleted.v1",
            ]
        );
        for e in all {
            let back = AuthTokenEvent::decode(e.event_type(), e.to_data()).unwrap();
            assert_eq!(back, e);
        }
        assert_eq!(
            issued().to_data()["instance"]["user_name"],
            json!({"$pii": "Ada Lovelace"})
        );
        assert!(matches!(
            AuthTokenEvent::decode("auth_token.exploded.v1", &Value::Null),
            Err(DecodeError::UnknownType(_))
        ));
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Presented {
            /// The current refresh token, as its holder would.
            Current,
            /// The `n`-th used token (modulo their count), with its real
            /// secret: a stolen copy.
            Old(usize),
            /// The `n`-th used token's id with a guessed secret.
            Forged(usize),
        }

        fn presented() -> impl Strategy<Value = Presented> {
            prop_oneof![
                6 => Just(Presented::Current),
                1 => any::<usize>().prop_map(Presented::Old),
                2 => any::<usize>().prop_map(Presented::Forged),
            ]
        }

        /// Distinct in the leading characters the fingerprint keeps.
        fn hash_of(n: u128) -> String {
            format!("{n:016x}").repeat(4)
        }

        /// A secret nobody was given.
        fn guessed() -> String {
            "f".repeat(64)
        }

        proptest! {
            #[test]
            fn after_the_first_reuse_no_refresh_ever_succeeds(
                ops in prop::collection::vec(presented(), 1..80)
            ) {
                let mut history = vec![issued(), AuthTokenEvent::Exchanged(AuthTokenExchanged {
                    refresh_token_id: id(1000),
                    refresh_hash: hash_of(1000),
                    scope: None,
                    exchanged_at: NOW,
                })];
                // Every refresh token issued so far, oldest first.
                let mut chain: Vec<u128> = vec![1000];
                let mut reused = false;
                for (i, op) in ops.into_iter().enumerate() {
                    let current = chain[chain.len() - 1];
                    let used = &chain[..chain.len() - 1];
                    let (token, hash, stolen) = match op {
                        Presented::Old(n) if !used.is_empty() => {
                            let t = used[n % used.len()];
                            (t, hash_of(t), true)
                        }
                        Presented::Forged(n) if !used.is_empty() => {
                            (used[n % used.len()], guessed(), false)
                        }
                        _ => (current, hash_of(current), false),
                    };
                    let next = 2000 + i as u128;
                    let result = given_when::<AuthToken>(
                        &history,
                        AuthTokenCommand::Refresh {
                            presented_token_id: id(token),
                            presented_hash: hash,
                            new_token_id: id(next),
                            new_hash: hash_of(next),
                            scope: None,
                        },
                        NOW,
                    );
                    match result {
                        Ok(events) if AuthTokenEvent::reuse_detected(&events) => {
                            prop_assert!(!reused, "reuse is recorded once");
                            prop_assert!(stolen, "only a real used token is reuse");
                            reused = true;
                            history.extend(events);
                        }
                        Ok(events) => {
                            prop_assert!(!reused, "a refresh succeeded after a reuse");
                            prop_assert_eq!(token, current);
                            prop_assert_eq!(events.len(), 1);
                            chain.push(next);
                            history.extend(events);
                        }
                        Err(AuthTokenError::ChainRevoked) => prop_assert!(reused),
                        Err(AuthTokenError::InvalidCredential) => {
                            prop_assert!(!reused && !stolen);
                            prop_assert_ne!(token, current);
                        }
                        Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
                    }
                    let state = AuthToken::fold(&history);
                    prop_assert_eq!(state.chain_revoked, reused);
                }
            }
        }
    }
}
