use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::*;
use crate::decider::given_when;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn hash() -> String {
    "ab".repeat(32)
}

fn started(policy: SignInPolicy) -> SignInEvent {
    SignInEvent::Started(SignInStarted {
        sign_in_id: Uuid::from_u128(1),
        organization_id: Uuid::from_u128(2),
        client_id: None,
        continue_to: None,
        browser_hash: hash(),
        policy,
        expires_at: now() + Duration::minutes(10),
        at: now(),
    })
}

fn succeeded(method: Method, user: u128) -> SignInEvent {
    SignInEvent::StepSucceeded(StepSucceeded {
        sign_in_id: Uuid::from_u128(1),
        method,
        user_id: Uuid::from_u128(user),
        user_verified: false,
        at: now(),
    })
}

fn succeed(method: Method, user: u128) -> SignInCommand {
    SignInCommand::Succeed {
        method,
        user_id: Uuid::from_u128(user),
        user_verified: false,
    }
}

fn two_factors() -> SignInPolicy {
    SignInPolicy {
        factors_required: 2,
        ..SignInPolicy::default()
    }
}

#[test]
fn a_sign_in_starts_once_with_a_valid_policy_and_binding() {
    let start = |continue_to: Option<&str>, browser_hash: String| SignInCommand::Start {
        id: Uuid::from_u128(1),
        organization_id: Uuid::from_u128(2),
        client_id: None,
        continue_to: continue_to.map(str::to_owned),
        browser_hash,
        policy: SignInPolicy::default(),
        expires_at: now() + Duration::minutes(10),
    };
    let events = given_when::<SignIn>(&[], start(Some("/authorize?x=1"), hash()), now()).unwrap();
    assert!(matches!(events[0], SignInEvent::Started(_)));
    assert_eq!(
        given_when::<SignIn>(&events, start(None, hash()), now()),
        Err(SignInError::AlreadyExists)
    );
    for bad in [
        "https://evil.example/",
        "//evil.example",
        "/\\evil",
        "relative",
    ] {
        assert!(
            matches!(
                given_when::<SignIn>(&[], start(Some(bad), hash()), now()),
                Err(SignInError::Invalid {
                    field: "continue_to",
                    ..
                })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        given_when::<SignIn>(&[], start(None, "not hex".into()), now()),
        Err(SignInError::Invalid {
            field: "browser_hash",
            ..
        })
    ));
}

#[test]
fn a_password_completes_a_one_factor_sign_in() {
    let given = [started(SignInPolicy::default())];
    let events = given_when::<SignIn>(&given, succeed(Method::Password, 7), now()).unwrap();
    let mut all = given.to_vec();
    all.extend(events);
    let done = given_when::<SignIn>(
        &all,
        SignInCommand::Complete {
            session_id: Uuid::from_u128(9),
        },
        now(),
    )
    .unwrap();
    let SignInEvent::Completed(c) = &done[0] else {
        panic!("{done:?}")
    };
    assert_eq!(c.user_id, Uuid::from_u128(7));
    assert_eq!(c.methods, vec![Method::Password]);
    assert_eq!(done[0].subject(), Some(user_subject(Uuid::from_u128(7))));
    all.extend(done);
    let state = SignIn::fold(&all);
    assert_eq!(state.state(now()), SignInState::Completed);
    assert_eq!(
        given_when::<SignIn>(&all, succeed(Method::Totp, 7), now()),
        Err(SignInError::Completed)
    );
}

#[test]
fn completing_before_the_policy_is_met_is_refused() {
    let given = [started(two_factors()), succeeded(Method::Password, 7)];
    assert_eq!(
        given_when::<SignIn>(
            &given,
            SignInCommand::Complete {
                session_id: Uuid::from_u128(9)
            },
            now()
        ),
        Err(SignInError::StepsRemaining { remaining: 1 })
    );
    assert_eq!(
        given_when::<SignIn>(
            &given[..1],
            SignInCommand::Complete {
                session_id: Uuid::from_u128(9)
            },
            now()
        ),
        Err(SignInError::StepsRemaining { remaining: 2 })
    );
}

#[test]
fn steps_follow_the_policy_and_name_one_person() {
    let given = [started(two_factors())];
    assert_eq!(
        given_when::<SignIn>(&given, succeed(Method::Totp, 7), now()),
        Err(SignInError::NotFirstFactor("totp"))
    );
    let given = [started(two_factors()), succeeded(Method::Password, 7)];
    assert_eq!(
        given_when::<SignIn>(&given, succeed(Method::Totp, 8), now()),
        Err(SignInError::OtherUser)
    );
    assert_eq!(
        given_when::<SignIn>(&given, succeed(Method::Password, 7), now()),
        Err(SignInError::AlreadyUsed("password"))
    );
    assert!(given_when::<SignIn>(&given, succeed(Method::Totp, 7), now()).is_ok());
}

#[test]
fn an_expired_sign_in_takes_no_step_and_records_its_expiry_once() {
    let given = [started(SignInPolicy::default())];
    let later = now() + Duration::minutes(10);
    assert_eq!(
        given_when::<SignIn>(&given, succeed(Method::Password, 7), later),
        Err(SignInError::Expired)
    );
    assert_eq!(
        given_when::<SignIn>(&given, SignInCommand::Expire, now()).unwrap(),
        vec![]
    );
    let expired = given_when::<SignIn>(&given, SignInCommand::Expire, later).unwrap();
    assert_eq!(expired.len(), 1);
    let mut all = given.to_vec();
    all.extend(expired);
    assert_eq!(
        given_when::<SignIn>(&all, SignInCommand::Expire, later).unwrap(),
        vec![]
    );
    assert_eq!(SignIn::fold(&all).state(now()), SignInState::Expired);
}

#[test]
fn events_round_trip() {
    let e = succeeded(Method::Password, 7);
    let back = SignInEvent::decode(e.event_type(), e.to_data()).unwrap();
    assert_eq!(back, e);
    let failed = SignInStepFailed {
        sign_in_id: Uuid::from_u128(1),
        organization_id: Uuid::from_u128(2),
        method: Method::Password,
        reason: FailureReason::UnknownUser,
        user_id: None,
        account: "claim:ab".into(),
        failures: 3,
        blocked_until: Some(now()),
        account_failures: Some(9),
        address_failures: Some(31),
        address_blocked_until: Some(now()),
        at: now(),
    };
    let back = SignInStepFailed::decode(STEP_FAILED_V1, failed.to_data()).unwrap();
    assert_eq!(back, failed);
    assert_eq!(failed.subject(), None);
}

fn passwordless() -> SignInPolicy {
    SignInPolicy {
        first_factors: [Method::Password, Method::Email].into_iter().collect(),
        passwordless_codes: true,
        ..SignInPolicy::default()
    }
}

fn send(user: Option<u128>, hash: &str) -> SignInCommand {
    SignInCommand::SendCode {
        method: Method::Email,
        user_id: user.map(Uuid::from_u128),
        code_hash: hash.repeat(32),
    }
}

fn check(hash: &str) -> SignInCommand {
    SignInCommand::CheckCode {
        code_hash: hash.repeat(32),
    }
}

#[test]
fn a_sent_code_completes_its_step_once() {
    let mut all = vec![started(passwordless())];
    all.extend(given_when::<SignIn>(&all, send(Some(7), "aa"), now()).unwrap());
    let ok = given_when::<SignIn>(&all, check("aa"), now()).unwrap();
    assert!(matches!(&ok[0], SignInEvent::StepSucceeded(s) if s.method == Method::Email));
    all.extend(ok);
    let s = SignIn::fold(&all);
    assert_eq!(s.code, None, "used up");
    assert_eq!(s.remaining(), 0);
}

#[test]
fn wrong_codes_are_counted_and_the_sixth_check_refused() {
    let mut all = vec![started(passwordless())];
    all.extend(given_when::<SignIn>(&all, send(Some(7), "aa"), now()).unwrap());
    for n in 1..=CODE_ATTEMPTS {
        let r = given_when::<SignIn>(&all, check("bb"), now()).unwrap();
        assert!(matches!(&r[0], SignInEvent::CodeRejected(c) if c.attempts == n));
        all.extend(r);
    }
    assert_eq!(
        given_when::<SignIn>(&all, check("aa"), now()),
        Err(SignInError::CodeExhausted),
        "even the right one, once exhausted"
    );
}

#[test]
fn codes_expire_are_not_resent_at_once_and_are_bounded() {
    let SignInEvent::Started(mut long) = started(passwordless()) else {
        unreachable!()
    };
    long.expires_at = now() + Duration::hours(1);
    let mut all = vec![SignInEvent::Started(long)];
    all.extend(given_when::<SignIn>(&all, send(Some(7), "aa"), now()).unwrap());
    assert_eq!(
        given_when::<SignIn>(&all, check("aa"), now() + CODE_LIFETIME),
        Err(SignInError::CodeExpired)
    );
    assert_eq!(
        given_when::<SignIn>(&all, send(Some(7), "cc"), now() + Duration::seconds(5)),
        Err(SignInError::CodeRecentlySent)
    );
    let mut t = now();
    for _ in 1..MAX_CODES_SENT {
        t += CODE_RESEND_AFTER;
        all.extend(given_when::<SignIn>(&all, send(Some(7), "cc"), t).unwrap());
    }
    assert_eq!(
        given_when::<SignIn>(&all, send(Some(7), "dd"), t + CODE_RESEND_AFTER),
        Err(SignInError::TooManyCodes)
    );
}

#[test]
fn a_code_for_nobody_never_matches_and_codes_need_the_policy() {
    let mut all = vec![started(passwordless())];
    all.extend(given_when::<SignIn>(&all, send(None, "aa"), now()).unwrap());
    let r = given_when::<SignIn>(&all, check("aa"), now()).unwrap();
    assert!(matches!(&r[0], SignInEvent::CodeRejected(_)));
    let strict = [started(SignInPolicy::default())];
    assert_eq!(
        given_when::<SignIn>(&strict, send(Some(7), "aa"), now()),
        Err(SignInError::MethodNotAllowed("email"))
    );
    assert_eq!(
        given_when::<SignIn>(&strict, check("aa"), now()),
        Err(SignInError::NoCode)
    );
}

#[test]
fn a_passkey_step_answers_one_challenge_and_counts_twice_when_verified() {
    let mut all = vec![started(two_factors())];
    let passkey = SignInCommand::Succeed {
        method: Method::Passkey,
        user_id: Uuid::from_u128(7),
        user_verified: true,
    };
    assert_eq!(
        given_when::<SignIn>(&all, passkey.clone(), now()),
        Err(SignInError::NoPasskeyChallenge)
    );
    all.extend(
        given_when::<SignIn>(
            &all,
            SignInCommand::ChallengePasskey {
                state: serde_json::json!({"challenge": "x"}),
                user_id: None,
            },
            now(),
        )
        .unwrap(),
    );
    all.extend(given_when::<SignIn>(&all, passkey.clone(), now()).unwrap());
    let s = SignIn::fold(&all);
    assert_eq!(s.remaining(), 0, "a verified passkey is two factors");
    assert_eq!(s.passkey_challenge, None, "answered once");
}
