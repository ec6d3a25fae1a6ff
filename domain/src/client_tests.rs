//! Specifications of the client aggregates: given events, when a command, then events or an error.
use super::*;
use crate::decider::given_when;
use serde_json::json;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const POLICY: SecretPolicy = SecretPolicy {
    max_lifetime_days: 365,
    allow_never_expiring: false,
};

fn confidential() -> ClientSettings {
    ClientSettings {
        name: "Billing service".into(),
        description: "Talks to the ledger".into(),
        redirect_uris: vec![],
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec!["ledger:read".into(), "ledger:write".into()],
        auth_method: AuthMethod::ClientSecretBasic,
        jwks: None,
        access_token_lifetime_secs: 3600,
        resources: vec![],
        ..ClientSettings::default()
    }
}

fn public() -> ClientSettings {
    ClientSettings {
        name: "Mobile app".into(),
        description: String::new(),
        redirect_uris: vec!["https://app.example.com/callback".into()],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: vec!["openid".into(), "profile".into()],
        auth_method: AuthMethod::None,
        jwks: None,
        access_token_lifetime_secs: 600,
        resources: vec![],
        ..ClientSettings::default()
    }
}

fn create(client_type: ClientType, settings: ClientSettings) -> ClientCommand {
    ClientCommand::Create {
        client_id: Uuid::from_u128(1),
        organization_id: Uuid::from_u128(2),
        client_type,
        settings,
        platform_admin: false,
    }
}

fn created(client_type: ClientType, settings: ClientSettings) -> ClientEvent {
    ClientEvent::Created(ClientCreated {
        client_id: Uuid::from_u128(1),
        organization_id: Uuid::from_u128(2),
        client_type,
        settings,
        platform_admin: false,
        created_at: NOW,
    })
}

fn a_confidential_client() -> ClientEvent {
    created(ClientType::Confidential, confidential())
}

fn deleted() -> ClientEvent {
    ClientEvent::Deleted(ClientDeleted {})
}

fn new_secret(id: u128, expires_at: Option<OffsetDateTime>) -> ClientCommand {
    ClientCommand::CreateSecret {
        secret_id: Uuid::from_u128(id),
        description: format!("secret {id}"),
        hash: HASH.into(),
        expires_at,
        policy: POLICY,
    }
}

fn secret_created(id: u128, expires_at: Option<OffsetDateTime>) -> ClientEvent {
    ClientEvent::SecretCreated(ClientSecretCreated {
        secret_id: Uuid::from_u128(id),
        description: format!("secret {id}"),
        hash: HASH.into(),
        created_at: NOW,
        expires_at,
    })
}

fn secret_deleted(id: u128) -> ClientEvent {
    ClientEvent::SecretDeleted(ClientSecretDeleted {
        secret_id: Uuid::from_u128(id),
    })
}

fn in_days(days: i64) -> Option<OffsetDateTime> {
    Some(NOW + Duration::days(days))
}

/// The outcome of creating a client of `client_type` with `settings`.
fn try_create(
    client_type: ClientType,
    settings: ClientSettings,
) -> Result<Vec<ClientEvent>, ClientError> {
    given_when::<Client>(&[], create(client_type, settings), NOW)
}

fn confidential_with(f: impl FnOnce(&mut ClientSettings)) -> Result<(), ClientError> {
    let mut s = confidential();
    f(&mut s);
    try_create(ClientType::Confidential, s).map(|_| ())
}

fn public_with(f: impl FnOnce(&mut ClientSettings)) -> Result<(), ClientError> {
    let mut s = public();
    f(&mut s);
    try_create(ClientType::Public, s).map(|_| ())
}

fn settings_error(r: Result<(), ClientError>) -> String {
    match r {
        Err(ClientError::InvalidSettings(reason)) => reason,
        other => panic!("expected InvalidSettings, got {other:?}"),
    }
}

fn redirect_error(uri: &str) -> Option<&'static str> {
    match public_with(|s| s.redirect_uris = vec![uri.to_owned()]) {
        Ok(()) => None,
        Err(ClientError::InvalidRedirectUri { uri: u, reason }) => {
            assert_eq!(u, uri);
            Some(reason)
        }
        Err(other) => panic!("expected InvalidRedirectUri, got {other:?}"),
    }
}

// --- create -------------------------------------------------------------

#[test]
fn create_records_the_client_enabled_with_its_name_trimmed() {
    let mut given = confidential();
    given.name = "  Billing service ".into();
    given.description = " Talks to the ledger\n".into();
    let events = try_create(ClientType::Confidential, given).unwrap();
    assert_eq!(events, vec![a_confidential_client()]);

    let client = Client::fold(&events);
    assert!(client.exists && client.enabled && !client.deleted);
    assert!(client.is_active());
    assert_eq!(client.id, Uuid::from_u128(1));
    assert_eq!(client.organization_id, Uuid::from_u128(2));
    assert_eq!(client.client_type, ClientType::Confidential);
    assert_eq!(client.created_at, Some(NOW));
    assert_eq!(client.settings, confidential());
}

#[test]
fn create_is_refused_when_the_client_exists_even_if_deleted() {
    for given in [
        vec![a_confidential_client()],
        vec![a_confidential_client(), deleted()],
    ] {
        assert_eq!(
            given_when::<Client>(&given, create(ClientType::Public, public()), NOW),
            Err(ClientError::AlreadyExists)
        );
    }
}

#[test]
fn the_name_must_be_1_to_200_characters_and_not_blank() {
    for bad in ["", "   ", "\t\n"] {
        assert_eq!(
            confidential_with(|s| s.name = bad.into()),
            Err(ClientError::InvalidName)
        );
    }
    assert_eq!(
        confidential_with(|s| s.name = "é".repeat(201)),
        Err(ClientError::InvalidName)
    );
    assert_eq!(confidential_with(|s| s.name = "é".repeat(200)), Ok(()));
}

#[test]
fn the_description_is_at_most_1000_characters() {
    assert_eq!(
        confidential_with(|s| s.description = "x".repeat(1001)),
        Err(ClientError::InvalidDescription)
    );
    assert_eq!(
        confidential_with(|s| s.description = "x".repeat(1000)),
        Ok(())
    );
    assert_eq!(confidential_with(|s| s.description = String::new()), Ok(()));
}

#[test]
fn redirect_uris_must_be_absolute_https_without_fragment() {
    assert_eq!(redirect_error("/callback"), Some("not an absolute URL"));
    assert_eq!(
        redirect_error("app.example.com/cb"),
        Some("not an absolute URL")
    );
    assert_eq!(
        redirect_error("https://app.example.com/cb#frag"),
        Some("must not contain a fragment")
    );
    assert_eq!(
        redirect_error("https://app.example.com/cb#"),
        Some("must not contain a fragment")
    );
    assert_eq!(
        redirect_error("com.example.app:/oauth"),
        Some("the scheme must be https (or http for a loopback host)")
    );
    assert_eq!(
        redirect_error("javascript:alert(1)"),
        Some("the scheme must be https (or http for a loopback host)")
    );
    for uri in [
        "https://app.example.com/callback",
        "https://app.example.com:8443/cb?tenant=acme",
        "https://10.0.0.1/cb",
    ] {
        assert_eq!(redirect_error(uri), None, "{uri}");
    }
}

#[test]
fn http_is_allowed_only_for_a_loopback_host() {
    for uri in [
        "http://127.0.0.1/cb",
        "http://127.0.0.1:51000/cb",
        "http://[::1]:8080/cb",
        "http://localhost/cb",
        "http://localhost:3000/cb",
    ] {
        assert_eq!(redirect_error(uri), None, "{uri}");
    }
    for uri in [
        "http://app.example.com/cb",
        "http://127.0.0.2/cb",
        "http://localhost.evil.com/cb",
        "http://10.0.0.1/cb",
    ] {
        assert_eq!(
            redirect_error(uri),
            Some("http is allowed only for a loopback host (127.0.0.1, [::1], localhost)"),
            "{uri}"
        );
    }
}

#[test]
fn redirect_uris_that_parsing_would_silently_alter_are_refused() {
    for uri in [
        " https://app.example.com/cb",
        "https://app.example.com/cb\n",
        "https://app.exa\tmple.com/cb",
        "https://app.example.com/c b",
    ] {
        assert_eq!(
            redirect_error(uri),
            Some("must not contain whitespace or control characters"),
            "{uri:?}"
        );
    }
    for uri in [
        "https:app.example.com/cb",
        "https:///app.example.com/cb",
        "https:\\\\app.example.com\\cb",
        "https://app.example.com\\cb",
    ] {
        assert_eq!(
            redirect_error(uri),
            Some("must be written as scheme://host/... without backslashes"),
            "{uri:?}"
        );
    }
    for uri in [
        "https://trusted.example@evil.example/cb",
        "https://user:pass@app.example.com/cb",
        "http://:x@localhost/cb",
    ] {
        assert_eq!(
            redirect_error(uri),
            Some("must not contain user information"),
            "{uri:?}"
        );
    }
    let long = format!("https://app.example.com/{}", "a".repeat(2000));
    assert_eq!(redirect_error(&long), Some("longer than 2000 characters"));
}

#[test]
fn redirect_uris_are_stored_exactly_as_given() {
    let uri = "https://App.Example.com:443/cb/../x?b=2&a=1";
    let mut s = public();
    s.redirect_uris = vec![uri.into()];
    let events = try_create(ClientType::Public, s).unwrap();
    assert_eq!(Client::fold(&events).settings.redirect_uris, vec![uri]);
}

#[test]
fn at_most_20_distinct_redirect_uris() {
    let uris = |n: usize| (0..n).map(|i| format!("https://a.example/cb{i}")).collect();
    assert_eq!(public_with(|s| s.redirect_uris = uris(20)), Ok(()));
    assert_eq!(
        settings_error(public_with(|s| s.redirect_uris = uris(21))),
        "at most 20 redirect URIs"
    );
    assert_eq!(
        public_with(|s| s.redirect_uris = vec!["https://a/cb".into(), "https://a/cb".into()]),
        Err(ClientError::InvalidRedirectUri {
            uri: "https://a/cb".into(),
            reason: "listed twice"
        })
    );
}

#[test]
fn scopes_are_distinct_rfc6749_scope_tokens() {
    for bad in [
        "",
        "read write",
        "say\"hi\"",
        "back\\slash",
        "naïve",
        "tab\t",
        "\u{7f}",
    ] {
        assert_eq!(
            confidential_with(|s| s.scopes = vec!["ok".into(), bad.into()]),
            Err(ClientError::InvalidScope(bad.into())),
            "{bad:?}"
        );
    }
    assert_eq!(
        confidential_with(|s| s.scopes = vec!["openid".into(), "openid".into()]),
        Err(ClientError::InvalidScope("openid".into()))
    );
    let every_allowed: String = (0x21u8..=0x7e)
        .filter(|b| *b != b'"' && *b != b'\\')
        .map(char::from)
        .collect();
    assert_eq!(
        confidential_with(|s| s.scopes = vec![every_allowed, "!".into(), "urn:x:y".into()]),
        Ok(())
    );
    assert_eq!(confidential_with(|s| s.scopes = vec![]), Ok(()));
}

#[test]
fn at_most_100_scopes() {
    let scopes = |n: usize| (0..n).map(|i| format!("s{i}")).collect();
    assert_eq!(confidential_with(|s| s.scopes = scopes(100)), Ok(()));
    assert_eq!(
        settings_error(confidential_with(|s| s.scopes = scopes(101))),
        "at most 100 scopes"
    );
}

#[test]
fn grant_types_are_required_and_distinct() {
    assert_eq!(
        settings_error(confidential_with(|s| s.grant_types = vec![])),
        "at least one grant type is required"
    );
    assert_eq!(
        settings_error(confidential_with(|s| {
            s.grant_types = vec![GrantType::ClientCredentials, GrantType::ClientCredentials];
        })),
        "grant type client_credentials listed twice"
    );
}

#[test]
fn access_token_lifetime_is_between_a_minute_and_a_day() {
    for bad in [0, 59, 86_401, u32::MAX] {
        assert_eq!(
            settings_error(confidential_with(|s| s.access_token_lifetime_secs = bad)),
            "access_token_lifetime_secs must be between 60 and 86400"
        );
    }
    for ok in [60, 86_400] {
        assert_eq!(
            confidential_with(|s| s.access_token_lifetime_secs = ok),
            Ok(())
        );
    }
}

#[test]
fn a_public_client_authenticates_with_none_and_has_no_machine_grants() {
    for m in [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
    ] {
        assert_eq!(
            settings_error(public_with(|s| s.auth_method = m)),
            format!(
                "a public client must use auth method none, not {}",
                m.as_str()
            )
        );
    }
    assert_eq!(
        settings_error(public_with(|s| s
            .grant_types
            .push(GrantType::ClientCredentials))),
        "a public client cannot use the client_credentials grant"
    );
    assert_eq!(
        public_with(|s| s.grant_types.push(GrantType::TokenExchange)),
        Ok(())
    );
}

#[test]
fn a_confidential_client_must_authenticate() {
    assert_eq!(
        settings_error(confidential_with(|s| s.auth_method = AuthMethod::None)),
        "a confidential client must authenticate: auth method none is not allowed"
    );
    for m in [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost] {
        assert_eq!(confidential_with(|s| s.auth_method = m), Ok(()));
    }
    assert_eq!(
        confidential_with(|s| {
            s.grant_types = GrantType::ALL.to_vec();
            s.redirect_uris = vec!["https://a.example/cb".into()];
        }),
        Ok(())
    );
}

#[test]
fn private_key_jwt_needs_a_jwk_set_of_public_keys() {
    let with_jwks = |jwks: Option<Value>| {
        confidential_with(|s| {
            s.auth_method = AuthMethod::PrivateKeyJwt;
            s.jwks = jwks;
        })
    };
    assert_eq!(
        settings_error(with_jwks(None)),
        "private_key_jwt needs jwks with the client's public keys"
    );
    let jwks_error = |r: Result<(), ClientError>| match r {
        Err(ClientError::InvalidJwks(reason)) => reason,
        other => panic!("expected InvalidJwks, got {other:?}"),
    };
    for bad in [
        json!([]),
        json!("keys"),
        json!({}),
        json!({"keys": {}}),
        json!({"keys": []}),
    ] {
        assert!(
            jwks_error(with_jwks(Some(bad.clone()))).contains("non-empty \"keys\" array"),
            "{bad}"
        );
    }
    assert!(jwks_error(with_jwks(Some(json!({"keys": ["RSA"]})))).contains("JSON object"));
    for bad in [json!({"kid": "1"}), json!({"kty": ""}), json!({"kty": 1})] {
        assert!(jwks_error(with_jwks(Some(json!({"keys": [bad]})))).contains("kty"));
    }
    for private in [
        json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "secret"}),
        json!({"kty": "oct", "k": "c2VjcmV0"}),
    ] {
        assert!(
            jwks_error(with_jwks(Some(json!({"keys": [private]})))).contains("only public keys")
        );
    }
    // Keys that could never verify anything are refused, naming the key.
    let off_curve = json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "kid": "k1"});
    let e = jwks_error(with_jwks(Some(json!({"keys": [off_curve]}))));
    assert!(e.contains("key 0") && e.contains("k1"), "{e}");
    // The P-256 generator and a 2048-bit odd modulus are usable keys.
    let ec = json!({"kty": "EC", "crv": "P-256", "kid": "k1",
        "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
        "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"});
    let n = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        [[0xc3u8; 255].as_slice(), &[0x01]].concat(),
    );
    let rsa = json!({"kty": "RSA", "n": n, "e": "AQAB"});
    assert_eq!(with_jwks(Some(json!({"keys": [ec, rsa]}))), Ok(()));
}

#[test]
fn the_authorization_code_grant_needs_a_redirect_uri() {
    assert_eq!(
        settings_error(public_with(|s| s.redirect_uris = vec![])),
        "the authorization_code grant needs at least one redirect URI"
    );
    assert_eq!(
        public_with(|s| {
            s.redirect_uris = vec![];
            s.grant_types = vec![GrantType::RefreshToken];
        }),
        Ok(())
    );
}

// --- update, enable, disable, delete -------------------------------------

#[test]
fn update_records_the_new_settings() {
    let mut changed = confidential();
    changed.scopes.push("ledger:admin".into());
    let events = given_when::<Client>(
        &[a_confidential_client()],
        ClientCommand::Update {
            settings: changed.clone(),
        },
        NOW,
    )
    .unwrap();
    assert_eq!(
        events,
        vec![ClientEvent::Updated(ClientUpdated {
            settings: changed.clone()
        })]
    );
    let state = Client::fold(&[a_confidential_client(), events[0].clone()]);
    assert_eq!(state.settings, changed);
}

#[test]
fn a_change_merges_into_the_settings_as_they_are_then() {
    // Two admins change different fields: each change keeps the other's.
    let first = ClientCommand::Change {
        changes: SettingsChanges {
            scopes: Some(vec!["ledger:read".into()]),
            ..SettingsChanges::default()
        },
    };
    let after_first = given_when::<Client>(&[a_confidential_client()], first, NOW).unwrap();
    let history = [a_confidential_client(), after_first[0].clone()];
    let second = ClientCommand::Change {
        changes: SettingsChanges {
            name: Some("Ledger service".into()),
            ..SettingsChanges::default()
        },
    };
    let after_second = given_when::<Client>(&history, second, NOW).unwrap();
    let state = Client::fold(&[
        history[0].clone(),
        history[1].clone(),
        after_second[0].clone(),
    ]);
    assert_eq!(state.settings.name, "Ledger service");
    assert_eq!(state.settings.scopes, vec!["ledger:read".to_owned()]);
    assert_eq!(state.settings.description, confidential().description);
    // Nothing changed: nothing recorded; a rule broken: refused.
    let none = ClientCommand::Change {
        changes: SettingsChanges::default(),
    };
    assert_eq!(given_when::<Client>(&history, none, NOW), Ok(vec![]));
    let bad = ClientCommand::Change {
        changes: SettingsChanges {
            name: Some("  ".into()),
            ..SettingsChanges::default()
        },
    };
    assert_eq!(
        given_when::<Client>(&history, bad, NOW),
        Err(ClientError::InvalidName)
    );
}

#[test]
fn update_with_unchanged_settings_records_nothing() {
    let mut same = confidential();
    same.name = format!("  {}  ", same.name);
    assert_eq!(
        given_when::<Client>(
            &[a_confidential_client()],
            ClientCommand::Update { settings: same },
            NOW
        ),
        Ok(vec![])
    );
}

#[test]
fn update_is_refused_for_a_missing_or_deleted_client() {
    let update = || ClientCommand::Update {
        settings: confidential(),
    };
    assert_eq!(
        given_when::<Client>(&[], update(), NOW),
        Err(ClientError::NotFound)
    );
    assert_eq!(
        given_when::<Client>(&[a_confidential_client(), deleted()], update(), NOW),
        Err(ClientError::Deleted)
    );
}

#[test]
fn update_applies_the_rules_of_the_clients_type() {
    // A public client stays public: machine grants and secrets-based auth
    // are refused on update exactly as on create.
    let given = [created(ClientType::Public, public())];
    let mut s = public();
    s.grant_types.push(GrantType::ClientCredentials);
    assert_eq!(
        given_when::<Client>(&given, ClientCommand::Update { settings: s }, NOW),
        Err(invalid(
            "a public client cannot use the client_credentials grant"
        ))
    );
    let mut s = public();
    s.auth_method = AuthMethod::ClientSecretBasic;
    assert!(matches!(
        given_when::<Client>(&given, ClientCommand::Update { settings: s }, NOW),
        Err(ClientError::InvalidSettings(_))
    ));
    let mut s = confidential();
    s.name = " ".into();
    assert_eq!(
        given_when::<Client>(
            &[a_confidential_client()],
            ClientCommand::Update { settings: s },
            NOW
        ),
        Err(ClientError::InvalidName)
    );
}

#[test]
fn enable_and_disable_record_only_changes() {
    let disabled = ClientEvent::Disabled(ClientDisabled {});
    let enabled = ClientEvent::Enabled(ClientEnabled {});
    let c = a_confidential_client();
    assert_eq!(
        given_when::<Client>(std::slice::from_ref(&c), ClientCommand::Enable, NOW),
        Ok(vec![])
    );
    assert_eq!(
        given_when::<Client>(std::slice::from_ref(&c), ClientCommand::Disable, NOW),
        Ok(vec![disabled.clone()])
    );
    assert_eq!(
        given_when::<Client>(&[c.clone(), disabled.clone()], ClientCommand::Disable, NOW),
        Ok(vec![])
    );
    assert_eq!(
        given_when::<Client>(&[c.clone(), disabled.clone()], ClientCommand::Enable, NOW),
        Ok(vec![enabled.clone()])
    );
    assert!(!Client::fold(&[c.clone(), disabled.clone()]).is_active());
    assert!(Client::fold(&[c, disabled, enabled]).is_active());
}

#[test]
fn enable_disable_and_delete_need_a_current_client() {
    for cmd in [
        ClientCommand::Enable,
        ClientCommand::Disable,
        ClientCommand::Delete,
    ] {
        assert_eq!(
            given_when::<Client>(&[], cmd.clone(), NOW),
            Err(ClientError::NotFound)
        );
        assert_eq!(
            given_when::<Client>(&[a_confidential_client(), deleted()], cmd, NOW),
            Err(ClientError::Deleted)
        );
    }
}

#[test]
fn delete_records_the_deletion_once() {
    let events =
        given_when::<Client>(&[a_confidential_client()], ClientCommand::Delete, NOW).unwrap();
    assert_eq!(events, vec![deleted()]);
    let state = Client::fold(&[a_confidential_client(), deleted()]);
    assert!(state.deleted && !state.is_active());
}

// --- secrets -------------------------------------------------------------

#[test]
fn create_secret_records_its_hash_and_expiry() {
    let events =
        given_when::<Client>(&[a_confidential_client()], new_secret(7, in_days(30)), NOW).unwrap();
    assert_eq!(events, vec![secret_created(7, in_days(30))]);
    let state = Client::fold(&[a_confidential_client(), events[0].clone()]);
    let live: Vec<_> = state.live_secrets(NOW).map(|s| s.id).collect();
    assert_eq!(live, vec![Uuid::from_u128(7)]);
    assert_eq!(state.secrets[0].hash, HASH);
    assert_eq!(state.secrets[0].created_at, NOW);
}

#[test]
fn create_secret_needs_a_current_confidential_client() {
    let cmd = || new_secret(1, in_days(30));
    assert_eq!(
        given_when::<Client>(&[], cmd(), NOW),
        Err(ClientError::NotFound)
    );
    assert_eq!(
        given_when::<Client>(&[a_confidential_client(), deleted()], cmd(), NOW),
        Err(ClientError::Deleted)
    );
    assert_eq!(
        given_when::<Client>(&[created(ClientType::Public, public())], cmd(), NOW),
        Err(ClientError::PublicClientCannotHaveSecrets)
    );
    // A disabled client may still be given secrets (to rotate before
    // re-enabling it).
    assert!(
        given_when::<Client>(
            &[
                a_confidential_client(),
                ClientEvent::Disabled(ClientDisabled {})
            ],
            cmd(),
            NOW
        )
        .is_ok()
    );
}

#[test]
fn a_secrets_description_is_at_most_200_characters() {
    let with = |description: String| ClientCommand::CreateSecret {
        secret_id: Uuid::from_u128(1),
        description,
        hash: HASH.into(),
        expires_at: in_days(1),
        policy: POLICY,
    };
    let given = [a_confidential_client()];
    assert_eq!(
        given_when::<Client>(&given, with("x".repeat(201)), NOW),
        Err(ClientError::InvalidDescription)
    );
    assert!(given_when::<Client>(&given, with("x".repeat(200)), NOW).is_ok());
}

#[test]
fn the_hash_must_be_64_lowercase_hex_characters() {
    let with = |hash: String| ClientCommand::CreateSecret {
        secret_id: Uuid::from_u128(1),
        description: String::new(),
        hash,
        expires_at: in_days(1),
        policy: POLICY,
    };
    let given = [a_confidential_client()];
    for bad in [
        String::new(),
        HASH[..63].to_owned(),
        format!("{HASH}0"),
        HASH.to_uppercase(),
        HASH.replacen('9', "g", 1),
        "a-plaintext-secret-that-is-exactly-sixty-four-characters-long!!".to_owned(),
    ] {
        assert_eq!(
            given_when::<Client>(&given, with(bad.clone()), NOW),
            Err(invalid(
                "the secret hash must be 64 lowercase hex characters (SHA-256)"
            )),
            "{bad}"
        );
    }
}

#[test]
fn never_expiring_secrets_need_the_policy_to_allow_them() {
    let given = [a_confidential_client()];
    assert_eq!(
        given_when::<Client>(&given, new_secret(1, None), NOW),
        Err(ClientError::NeverExpiringNotAllowed)
    );
    let allowed = ClientCommand::CreateSecret {
        secret_id: Uuid::from_u128(1),
        description: "secret 1".into(),
        hash: HASH.into(),
        expires_at: None,
        policy: SecretPolicy {
            max_lifetime_days: 1,
            allow_never_expiring: true,
        },
    };
    assert_eq!(
        given_when::<Client>(&given, allowed, NOW),
        Ok(vec![secret_created(1, None)])
    );
}

#[test]
fn a_secret_must_expire_in_the_future() {
    let given = [a_confidential_client()];
    for past in [Some(NOW), Some(NOW - Duration::seconds(1)), in_days(-400)] {
        assert_eq!(
            given_when::<Client>(&given, new_secret(1, past), NOW),
            Err(ClientError::SecretExpiryInPast)
        );
    }
    assert!(
        given_when::<Client>(&given, new_secret(1, Some(NOW + Duration::seconds(1))), NOW).is_ok()
    );
}

#[test]
fn a_secret_lives_at_most_the_policys_maximum() {
    let given = [a_confidential_client()];
    assert!(given_when::<Client>(&given, new_secret(1, in_days(365)), NOW).is_ok());
    assert_eq!(
        given_when::<Client>(
            &given,
            new_secret(1, Some(NOW + Duration::days(365) + Duration::seconds(1))),
            NOW
        ),
        Err(ClientError::SecretLifetimeTooLong { max_days: 365 })
    );
}

#[test]
fn at_most_10_secrets_are_live() {
    let mut given = vec![a_confidential_client()];
    given.extend((0..10).map(|i| secret_created(i, in_days(30))));
    let r = given_when::<Client>(&given, new_secret(99, in_days(30)), NOW);
    assert_eq!(r, Err(ClientError::SecretLimitReached { limit: 10 }));
    assert_eq!(
        r.unwrap_err().to_string(),
        "a client may have at most 10 live secrets; delete one first"
    );

    // Deleting one makes room.
    given.push(secret_deleted(3));
    assert!(given_when::<Client>(&given, new_secret(99, in_days(30)), NOW).is_ok());
}

#[test]
fn expired_secrets_do_not_count_towards_the_limit() {
    let mut given = vec![a_confidential_client()];
    given.extend((0..9).map(|i| secret_created(i, in_days(30))));
    given.push(secret_created(9, in_days(1)));
    let cmd = |at| {
        given_when::<Client>(
            &given,
            ClientCommand::CreateSecret {
                secret_id: Uuid::from_u128(99),
                description: String::new(),
                hash: HASH.into(),
                expires_at: Some(at + Duration::days(1)),
                policy: POLICY,
            },
            at,
        )
    };
    assert_eq!(
        cmd(NOW + Duration::hours(23)),
        Err(ClientError::SecretLimitReached { limit: 10 })
    );
    // Secret 9 expires at exactly NOW + 1 day: from then on it is dead.
    assert!(cmd(NOW + Duration::days(1)).is_ok());
    let state = Client::fold(&given);
    assert_eq!(state.live_secrets(NOW + Duration::days(1)).count(), 9);
    assert_eq!(state.live_secrets(NOW).count(), 10);
}

#[test]
fn a_secret_id_is_used_once() {
    let given = [
        a_confidential_client(),
        secret_created(1, in_days(1)),
        secret_deleted(1),
    ];
    assert_eq!(
        given_when::<Client>(&given, new_secret(1, in_days(1)), NOW),
        Err(invalid(format!(
            "secret {} already exists",
            Uuid::from_u128(1)
        )))
    );
}

#[test]
fn delete_secret_needs_a_live_entry() {
    let given = [a_confidential_client(), secret_created(1, in_days(1))];
    let delete = |id| ClientCommand::DeleteSecret {
        secret_id: Uuid::from_u128(id),
    };
    assert_eq!(
        given_when::<Client>(&given, delete(1), NOW),
        Ok(vec![secret_deleted(1)])
    );
    assert_eq!(
        given_when::<Client>(&given, delete(2), NOW),
        Err(ClientError::SecretNotFound)
    );
    let mut after = given.to_vec();
    after.push(secret_deleted(1));
    assert_eq!(
        given_when::<Client>(&after, delete(1), NOW),
        Err(ClientError::SecretNotFound)
    );
    // An expired secret can still be deleted (it is cleanup, not a refusal).
    assert!(given_when::<Client>(&given, delete(1), NOW + Duration::days(2)).is_ok());
    assert_eq!(
        given_when::<Client>(&[], delete(1), NOW),
        Err(ClientError::NotFound)
    );
    let mut gone = given.to_vec();
    gone.push(deleted());
    assert_eq!(
        given_when::<Client>(&gone, delete(1), NOW),
        Err(ClientError::Deleted)
    );
}

#[test]
fn rotation_leaves_only_the_new_secret_live() {
    let mut history = vec![a_confidential_client()];
    for cmd in [
        new_secret(0xA, in_days(30)),
        new_secret(0xB, in_days(30)),
        ClientCommand::DeleteSecret {
            secret_id: Uuid::from_u128(0xA),
        },
    ] {
        let events = given_when::<Client>(&history, cmd, NOW).unwrap();
        history.extend(events);
    }
    let state = Client::fold(&history);
    let live: Vec<_> = state.live_secrets(NOW).map(|s| s.id).collect();
    assert_eq!(live, vec![Uuid::from_u128(0xB)]);
}

// --- stored form -----------------------------------------------------------

#[test]
fn events_round_trip_through_their_stored_form() {
    let mut settings = confidential();
    settings.auth_method = AuthMethod::PrivateKeyJwt;
    settings.jwks = Some(json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}));
    settings.grant_types = GrantType::ALL.to_vec();
    settings.redirect_uris = vec!["https://a.example/cb".into()];
    let all = [
        created(ClientType::Confidential, settings.clone()),
        ClientEvent::Updated(ClientUpdated { settings }),
        ClientEvent::Enabled(ClientEnabled {}),
        ClientEvent::Disabled(ClientDisabled {}),
        deleted(),
        secret_created(1, in_days(30)),
        secret_created(2, None),
        secret_deleted(1),
    ];
    let types: Vec<_> = all.iter().map(DomainEvent::event_type).collect();
    assert_eq!(
        types,
        [
            "client.created.v1",
            "client.updated.v1",
            "client.enabled.v1",
            "client.disabled.v1",
            "client.deleted.v1",
            "client.secret_created.v1",
            "client.secret_created.v1",
            "client.secret_deleted.v1",
        ]
    );
    for e in all {
        let back = ClientEvent::decode(e.event_type(), e.to_data()).unwrap();
        assert_eq!(back, e);
    }
    assert!(matches!(
        ClientEvent::decode("client.exploded.v1", &Value::Null),
        Err(DecodeError::UnknownType(_))
    ));
    assert!(matches!(
        ClientEvent::decode(SECRET_CREATED_V1, json!({"secret_id": 1})),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn the_stored_form_uses_the_rfc_strings() {
    let mut settings = confidential();
    settings.grant_types = GrantType::ALL.to_vec();
    settings.redirect_uris = vec!["https://a.example/cb".into()];
    let data = created(ClientType::Confidential, settings).to_data();
    assert_eq!(data["client_type"], "confidential");
    assert_eq!(data["created_at"], "2026-03-01T12:00:00Z");
    assert_eq!(data["settings"]["auth_method"], "client_secret_basic");
    assert_eq!(
        data["settings"]["grant_types"],
        json!([
            "client_credentials",
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    let data = secret_created(1, in_days(30)).to_data();
    assert_eq!(data["expires_at"], "2026-03-31T12:00:00Z");
    assert_eq!(data["hash"], HASH);
    assert_eq!(secret_created(1, None).to_data()["expires_at"], Value::Null);
    assert_eq!(deleted().to_data(), json!({}));
}

#[test]
fn enum_strings_parse_and_print() {
    for g in GrantType::ALL {
        assert_eq!(g.as_str().parse::<GrantType>(), Ok(g));
        assert_eq!(serde_json::to_value(g).unwrap(), json!(g.as_str()));
    }
    for m in [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::None,
    ] {
        assert_eq!(m.as_str().parse::<AuthMethod>(), Ok(m));
        assert_eq!(serde_json::to_value(m).unwrap(), json!(m.as_str()));
    }
    for t in [ClientType::Public, ClientType::Confidential] {
        assert_eq!(t.as_str().parse::<ClientType>(), Ok(t));
        assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
    }
    let err = "password".parse::<GrantType>().unwrap_err();
    assert_eq!(err.to_string(), "unknown grant_type \"password\"");
    assert!("implicit".parse::<GrantType>().is_err());
}

// --- property ----------------------------------------------------------------

mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Create a secret expiring `Some(secs)` from now (maybe in the
        /// past, maybe beyond the policy), or never.
        Create {
            expires_in_secs: Option<i64>,
            allow_never_expiring: bool,
        },
        /// Delete the `n`-th secret ever created (modulo their count).
        Delete(usize),
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (
                prop::option::weighted(0.9, -86_400i64..40 * 86_400),
                any::<bool>()
            )
                .prop_map(|(expires_in_secs, allow_never_expiring)| Op::Create {
                    expires_in_secs,
                    allow_never_expiring,
                }),
            2 => any::<usize>().prop_map(Op::Delete),
            2 => (0i64..10 * 86_400).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #[test]
        fn never_more_than_ten_live_secrets(ops in prop::collection::vec(op(), 1..150)) {
            let mut history = vec![a_confidential_client()];
            let mut now = NOW;
            for (i, op) in ops.into_iter().enumerate() {
                let command = match op {
                    Op::Advance(secs) => {
                        now += Duration::seconds(secs);
                        continue;
                    }
                    Op::Create { expires_in_secs, allow_never_expiring } => {
                        ClientCommand::CreateSecret {
                            secret_id: Uuid::from_u128(i as u128),
                            description: String::new(),
                            hash: HASH.into(),
                            expires_at: expires_in_secs.map(|s| now + Duration::seconds(s)),
                            policy: SecretPolicy {
                                max_lifetime_days: 30,
                                allow_never_expiring,
                            },
                        }
                    }
                    Op::Delete(n) => {
                        let state = Client::fold(&history);
                        let secret_id = if state.secrets.is_empty() {
                            Uuid::from_u128(u128::MAX)
                        } else {
                            state.secrets[n % state.secrets.len()].id
                        };
                        ClientCommand::DeleteSecret { secret_id }
                    }
                };
                let before = Client::fold(&history);
                match given_when::<Client>(&history, command, now) {
                    Ok(events) => history.extend(events),
                    Err(ClientError::SecretLimitReached { limit }) => {
                        prop_assert_eq!(limit, MAX_LIVE_SECRETS);
                        prop_assert_eq!(before.live_secrets(now).count(), MAX_LIVE_SECRETS);
                    }
                    Err(
                        ClientError::SecretExpiryInPast
                        | ClientError::SecretLifetimeTooLong { .. }
                        | ClientError::NeverExpiringNotAllowed
                        | ClientError::SecretNotFound,
                    ) => {}
                    Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
                }
                let live = Client::fold(&history).live_secrets(now).count();
                prop_assert!(live <= MAX_LIVE_SECRETS, "{live} live secrets at {now}");
            }
        }
    }
}

#[test]
fn a_client_uses_only_its_grants_and_a_public_one_never_acts_as_itself() {
    let confidential_client = Client::fold(&[a_confidential_client()]);
    assert_eq!(
        confidential_client.may_use(GrantType::ClientCredentials),
        Ok(())
    );
    assert_eq!(
        confidential_client.may_use(GrantType::RefreshToken),
        Err(GrantError::GrantNotAllowed(GrantType::RefreshToken))
    );
    let mut public_client = Client::fold(&[created(ClientType::Public, public())]);
    assert_eq!(public_client.may_use(GrantType::RefreshToken), Ok(()));
    // Even were it registered for it (settings validation refuses that).
    public_client
        .settings
        .grant_types
        .push(GrantType::ClientCredentials);
    assert_eq!(
        public_client.may_use(GrantType::ClientCredentials),
        Err(GrantError::GrantNotAllowed(GrantType::ClientCredentials))
    );
}

#[test]
fn scopes_granted_are_asked_for_and_allowed_and_never_the_admin_scope_by_default() {
    let allowed = vec![
        "read".to_owned(),
        "write".to_owned(),
        ADMIN_SCOPE.to_owned(),
    ];
    assert_eq!(granted_scope(None, &allowed).unwrap(), "read write");
    assert_eq!(
        granted_scope(Some("write  write"), &allowed).unwrap(),
        "write"
    );
    assert_eq!(
        granted_scope(Some(ADMIN_SCOPE), &allowed).unwrap(),
        ADMIN_SCOPE
    );
    assert_eq!(
        granted_scope(Some("delete"), &allowed),
        Err(GrantError::ScopeNotAllowed("delete".into()))
    );
}

#[test]
fn a_refresh_narrows_but_never_widens() {
    let allowed = vec!["read".to_owned(), "write".to_owned()];
    assert_eq!(narrowed_scope(None, "read", &allowed).unwrap(), "read");
    assert_eq!(
        narrowed_scope(Some("read"), "read write", &allowed).unwrap(),
        "read"
    );
    assert_eq!(
        narrowed_scope(Some("read write"), "read", &allowed),
        Err(GrantError::ScopeNotGranted("write".into()))
    );
    // A scope the client lost since is not renewed.
    assert_eq!(
        narrowed_scope(None, "read write", &["read".to_owned()]).unwrap(),
        "read"
    );
}

#[test]
fn a_resource_is_this_server_or_one_the_client_lists() {
    let mut s = confidential();
    s.resources = vec!["https://api.example.com/".into()];
    let issuer = "https://idp.example.com";
    assert_eq!(s.audience_for(None, issuer).unwrap(), issuer);
    assert_eq!(s.audience_for(Some(issuer), issuer).unwrap(), issuer);
    assert_eq!(
        s.audience_for(Some("https://api.example.com/"), issuer)
            .unwrap(),
        "https://api.example.com/"
    );
    assert_eq!(
        s.audience_for(Some("https://other.example/"), issuer),
        Err(GrantError::ResourceNotAllowed(
            "https://other.example/".into()
        ))
    );
    for bad in ["not a uri", "https://api.example.com/#frag"] {
        assert_eq!(
            s.audience_for(Some(bad), issuer),
            Err(GrantError::MalformedResource)
        );
    }
    assert!(confidential_with(|c| c.resources = vec!["relative/path".into()]).is_err());
}
