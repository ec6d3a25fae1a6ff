use super::*;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

fn hash(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn issued() -> CodeIssued {
    CodeIssued {
        grant_id: Uuid::from_u128(1),
        organization_id: Uuid::from_u128(2),
        client_id: Uuid::from_u128(3),
        user_id: Uuid::from_u128(4),
        session_id: Uuid::from_u128(5),
        redirect_uri: "https://app.example/cb".into(),
        scope: "openid email offline_access".into(),
        nonce: Some("n-1".into()),
        code_challenge: "challenge".into(),
        code_hash: hash('a'),
        auth_time: NOW,
        amr: vec!["pwd".into()],
        acr: None,
        consent_since: Some(NOW),
        issued_at: NOW,
        expires_at: NOW + CODE_LIFETIME,
    }
}

/// A grant's session, consent and person as they were at its issue.
const STANDING: Standing = Standing {
    session_ended: false,
    consent_since: Some(NOW),
    person_active: true,
};

fn refresh(n: u128, c: char) -> NewRefresh {
    NewRefresh {
        token_id: Uuid::from_u128(n),
        hash: hash(c),
        expires_at: NOW + Duration::days(30),
    }
}

fn redemption() -> Redemption {
    Redemption {
        redemption_id: Uuid::from_u128(9),
        code_hash: hash('a'),
        client_id: Uuid::from_u128(3),
        redirect_uri: "https://app.example/cb".into(),
        verifier_challenge: "challenge".into(),
        refresh: Some(refresh(10, 'b')),
        access: None,
        secret_id: None,
    }
}

fn apply(state: Grant, events: &[GrantEvent]) -> Grant {
    events.iter().fold(state, |s, e| s.evolve(e))
}

fn with_code() -> Grant {
    let events = Grant::default()
        .decide(GrantCommand::IssueCode(Box::new(issued())), NOW)
        .unwrap_or_default();
    apply(Grant::default(), &events)
}

fn redeemed() -> Grant {
    let g = with_code();
    let events = g
        .decide(GrantCommand::Redeem(Box::new(redemption())), NOW)
        .unwrap_or_default();
    apply(g, &events)
}

#[test]
fn a_code_is_redeemed_once_by_its_client_with_its_redirect_and_verifier() {
    let g = with_code();
    let wrong = |f: fn(&mut Redemption)| {
        let mut r = redemption();
        f(&mut r);
        g.decide(GrantCommand::Redeem(Box::new(r)), NOW)
    };
    assert_eq!(
        wrong(|r| r.code_hash = hash('z')),
        Err(GrantError::InvalidCode)
    );
    assert_eq!(
        wrong(|r| r.client_id = Uuid::from_u128(77)),
        Err(GrantError::OtherClient)
    );
    assert_eq!(
        wrong(|r| r.redirect_uri = "https://app.example/cb2".into()),
        Err(GrantError::RedirectMismatch)
    );
    assert_eq!(
        wrong(|r| r.verifier_challenge = "other".into()),
        Err(GrantError::PkceMismatch)
    );
    let late = g.decide(
        GrantCommand::Redeem(Box::new(redemption())),
        NOW + CODE_LIFETIME,
    );
    assert_eq!(late, Err(GrantError::CodeExpired));
    let g = redeemed();
    assert!(g.is_usable());
    assert_eq!(g.redemption_id, Some(Uuid::from_u128(9)));
    assert!(g.chain.is_current(Uuid::from_u128(10), &hash('b')));
}

#[test]
fn a_second_redemption_is_recorded_and_revokes_the_grant() {
    let g = redeemed();
    let events = g
        .decide(GrantCommand::Redeem(Box::new(redemption())), NOW)
        .unwrap_or_default();
    assert!(matches!(events.as_slice(), [GrantEvent::CodeReplayed(_)]));
    let g = apply(g, &events);
    assert!(!g.is_usable());
    assert_eq!(
        g.decide(GrantCommand::Redeem(Box::new(redemption())), NOW),
        Err(GrantError::Revoked(None))
    );
}

#[test]
fn refresh_rotates_and_a_reused_token_revokes_the_grant() {
    let g = redeemed();
    let cmd = |presented: u128, c: char, new: u128, scope: &str| {
        GrantCommand::Refresh(Box::new(Rotation {
            client_id: Uuid::from_u128(3),
            presented_token_id: Uuid::from_u128(presented),
            presented_hash: hash(c),
            refresh: refresh(new, 'c'),
            scope: scope.into(),
            access: None,
            secret_id: None,
            standing: STANDING,
        }))
    };
    assert_eq!(
        g.decide(cmd(10, 'b', 11, "openid admin"), NOW),
        Err(GrantError::ScopeNotGranted("admin".into()))
    );
    let events = g
        .decide(cmd(10, 'b', 11, "openid"), NOW)
        .unwrap_or_default();
    let g = apply(g, &events);
    assert_eq!(g.scope, "openid");
    assert!(g.chain.is_current(Uuid::from_u128(11), &hash('c')));
    // Another client presenting the token gets nothing and changes nothing.
    let other = GrantCommand::Refresh(Box::new(Rotation {
        client_id: Uuid::from_u128(8),
        presented_token_id: Uuid::from_u128(11),
        presented_hash: hash('c'),
        refresh: refresh(12, 'd'),
        scope: "openid".into(),
        access: None,
        secret_id: None,
        standing: STANDING,
    }));
    assert_eq!(g.decide(other, NOW), Err(GrantError::InvalidRefresh));
    let events = g
        .decide(cmd(10, 'b', 12, "openid"), NOW)
        .unwrap_or_default();
    assert!(matches!(events.as_slice(), [GrantEvent::ReuseDetected(_)]));
    let g = apply(g, &events);
    assert!(!g.is_usable());
    assert_eq!(
        g.decide(cmd(11, 'c', 13, ""), NOW),
        Err(GrantError::Revoked(None))
    );
}

#[test]
fn an_expired_refresh_token_is_refused_and_revocation_is_recorded_once() {
    let g = redeemed();
    let late = GrantCommand::Refresh(Box::new(Rotation {
        client_id: Uuid::from_u128(3),
        presented_token_id: Uuid::from_u128(10),
        presented_hash: hash('b'),
        refresh: refresh(11, 'c'),
        scope: String::new(),
        access: None,
        secret_id: None,
        standing: STANDING,
    }));
    assert_eq!(
        g.decide(late, NOW + Duration::days(31)),
        Err(GrantError::RefreshExpired)
    );
    let revoke = GrantCommand::Revoke {
        reason: RevokeReason::SessionEnded,
    };
    let events = g.decide(revoke.clone(), NOW).unwrap_or_default();
    let g = apply(g, &events);
    assert_eq!(g.revoked_because, Some(RevokeReason::SessionEnded));
    assert_eq!(g.decide(revoke, NOW), Ok(vec![]));
}

#[test]
fn a_refresh_finds_what_the_grant_stood_on_gone_and_records_the_end() {
    let g = redeemed();
    let refresh_with = |standing: Standing| {
        GrantCommand::Refresh(Box::new(Rotation {
            client_id: Uuid::from_u128(3),
            presented_token_id: Uuid::from_u128(10),
            presented_hash: hash('b'),
            refresh: refresh(11, 'c'),
            scope: "openid".into(),
            access: None,
            secret_id: None,
            standing,
        }))
    };
    for (standing, reason) in [
        (
            Standing {
                session_ended: true,
                ..STANDING
            },
            RevokeReason::SessionEnded,
        ),
        (
            Standing {
                consent_since: None,
                ..STANDING
            },
            RevokeReason::ConsentRevoked,
        ),
        (
            Standing {
                consent_since: Some(NOW + Duration::hours(1)),
                ..STANDING
            },
            RevokeReason::ConsentRevoked,
        ),
        (
            Standing {
                person_active: false,
                ..STANDING
            },
            RevokeReason::UserInactive,
        ),
    ] {
        let events = g.decide(refresh_with(standing), NOW).unwrap_or_default();
        assert!(
            matches!(events.as_slice(), [GrantEvent::Revoked(r)] if r.reason == reason),
            "{reason:?}: {events:?}"
        );
        let ended = apply(g.clone(), &events);
        assert_eq!(
            ended.decide(refresh_with(STANDING), NOW),
            Err(GrantError::Revoked(Some(reason)))
        );
    }
    // A wrong token learns nothing and records nothing.
    let mut wrong = refresh_with(Standing {
        session_ended: true,
        ..STANDING
    });
    if let GrantCommand::Refresh(r) = &mut wrong {
        r.presented_hash = hash('z');
    }
    assert_eq!(g.decide(wrong, NOW), Err(GrantError::InvalidRefresh));
}
