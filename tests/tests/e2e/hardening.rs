//! What an attacker or a careful integrator tries first: keys that should
//! verify nothing, tokens that should not cross tenants or audiences,
//! oracles, slow clients, a log that grows for free, grants that widen,
//! secrets near logs, and the edges of the wire format. Each test starts the
//! real server and speaks HTTP to it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use api::Server;
use commands::Clock;
use commands::jwt::{AccessTokenClaims, sign_access_token};
use domain::signing_key::KeyAlgorithm;
use eventlog::{Filter, LogOptions, Position};
use jsonwebtoken::{Algorithm, Header};
use reqwest::Method;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::harness::{Admin, Store, TestServer, http};
use crate::oauth::{confidential, es256_client_key, introspect, jwt_grant};
use crate::registration::{app_and_token, consume, exchange, refresh};

/// The status of an admin API call made with `token`.
async fn admin_status(s: &TestServer, token: &str) -> u16 {
    s.call(Method::GET, "/admin/organizations", token, None)
        .await
        .0
}

/// A form POST with optional Basic credentials: (status, headers, body).
async fn post_form(
    s: &TestServer,
    path: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http().post(s.url(path)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn claims(s: &TestServer, admin: &Admin, iat: i64, exp: i64) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: s.base.clone(),
        sub: admin.client_id.clone(),
        aud: s.base.clone().into(),
        client_id: admin.client_id.clone(),
        scope: "idp:admin".into(),
        jti: Uuid::now_v7().to_string(),
        iat,
        exp,
        extra: serde_json::Map::new(),
    }
}

/// A confidential client of `org` with one secret: (id, secret).
async fn service(s: &TestServer, admin: &Admin, body: Value) -> (String, String) {
    let c = s.create_client(admin, body).await;
    let id = c["client_id"].as_str().unwrap().to_owned();
    let (_, secret) = s.create_secret(admin, &id).await;
    (id, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_verify_only_what_they_may() {
    let (s, clock) = TestServer::start_clocked(Store::Sqlite, "hard_keys")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let state = &s.server().state;
    let ring = commands::keys::load_ring(state.bus.log(), &state.master_key)
        .await
        .unwrap();
    let now = clock.now().unix_timestamp();

    // A token minted with the signing key and a ten-year `exp` lives no
    // longer than its client's lifetime (3600 s).
    let forever = sign_access_token(
        &ring,
        KeyAlgorithm::ES256,
        &claims(&s, &admin, now, now + 10 * 365 * 86_400),
    )
    .unwrap();
    assert_eq!(admin_status(&s, &forever).await, 200);
    clock.advance(Duration::seconds(3600));
    assert_eq!(admin_status(&s, &forever).await, 401);

    // Keys of an algorithm discovery does not announce verify nothing.
    let now = clock.now().unix_timestamp();
    let rs256 = sign_access_token(
        &ring,
        KeyAlgorithm::RS256,
        &claims(&s, &admin, now, now + 600),
    )
    .unwrap();
    assert_eq!(admin_status(&s, &rs256).await, 401);

    // Signed before a rotation: still good. Signed by the retired key after
    // it: refused.
    let before = sign_access_token(
        &ring,
        KeyAlgorithm::ES256,
        &claims(&s, &admin, now, now + 600),
    )
    .unwrap();
    let fresh = s
        .token_basic(&admin.client_id, &admin.secret, Some("idp:admin"))
        .await;
    let (st, _, rotated) = s
        .call(
            Method::POST,
            "/admin/keys/rotate",
            &fresh,
            Some(json!({"alg": "ES256"})),
        )
        .await;
    assert_eq!(st, 200, "{rotated}");
    let old_kid = ring.active(KeyAlgorithm::ES256).unwrap().kid.clone();
    assert_eq!(admin_status(&s, &before).await, 200);
    clock.advance(Duration::seconds(10));
    let now = clock.now().unix_timestamp();
    let after = sign_access_token(
        &ring,
        KeyAlgorithm::ES256,
        &claims(&s, &admin, now, now + 600),
    )
    .unwrap();
    assert_eq!(admin_status(&s, &after).await, 401);

    // A key generated but never activated verifies nothing.
    let meta = domain::Metadata::system(Uuid::now_v7(), clock.now());
    let pending =
        commands::keys::generate(&state.bus, &state.master_key, KeyAlgorithm::ES256, &meta)
            .await
            .unwrap();
    let ring = commands::keys::load_ring(state.bus.log(), &state.master_key)
        .await
        .unwrap();
    let entry = ring.get(&pending).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(pending.clone());
    let unactivated = entry
        .signer
        .as_ref()
        .unwrap()
        .sign(&header, &claims(&s, &admin, now, now + 600))
        .unwrap();
    assert_eq!(admin_status(&s, &unactivated).await, 401);

    // A revoked key verifies nothing, not even what it signed before, and
    // leaves the JWKS; the active key cannot be revoked.
    let fresh = s
        .token_basic(&admin.client_id, &admin.secret, Some("idp:admin"))
        .await;
    let (st, _, view) = s
        .call(
            Method::POST,
            &format!("/admin/keys/{old_kid}/revoke"),
            &fresh,
            None,
        )
        .await;
    assert_eq!(
        (st, view["status"].as_str()),
        (200, Some("revoked")),
        "{view}"
    );
    assert_eq!(admin_status(&s, &before).await, 401);
    let me = (admin.client_id.as_str(), admin.secret.as_str());
    assert_eq!(introspect(&s, me, &before).await, json!({"active": false}));
    let jwks = crate::oauth::jwks(&s).await;
    assert!(jwks.find(&old_kid).is_none());
    let new_kid = rotated["kid"].as_str().unwrap();
    let (st, _, body) = s
        .call(
            Method::POST,
            &format!("/admin/keys/{new_kid}/revoke"),
            &fresh,
            None,
        )
        .await;
    assert_eq!(st, 409, "{body}");
    assert_eq!(admin_status(&s, &fresh).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_acts_only_within_its_organization() {
    let s = TestServer::start(Store::Sqlite, "hard_tenants")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let a_org = admin.organization_id.clone();
    let (st, _, org) = s
        .call(
            Method::POST,
            "/admin/organizations",
            &admin.token,
            Some(json!({"name": "Tenant B"})),
        )
        .await;
    assert_eq!(st, 201);
    let b_org = org["id"].as_str().unwrap().to_owned();
    let (b_id, b_secret) = service(
        &s,
        &admin,
        confidential(&b_org, "client_secret_basic", &["idp:admin"]),
    )
    .await;
    let b = s.token_basic(&b_id, &b_secret, Some("idp:admin")).await;

    // A person of organization A, by a registration there.
    let (_, _, rt) = app_and_token(&s, &admin, 1, Duration::days(1)).await;
    assert_eq!(consume(&s, &rt, "kiosk-a").await.0, 201);
    let (st, _, found) = s
        .call(
            Method::GET,
            &format!("/admin/subjects?organization_id={a_org}&user_name=ada"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 200, "{found}");
    let subject = found["subject"].as_str().unwrap().to_owned();

    let bootstrap = &admin.client_id;
    for (method, path, body) in [
        (Method::GET, format!("/admin/clients/{bootstrap}"), None),
        (
            Method::POST,
            format!("/admin/clients/{bootstrap}/secrets"),
            Some(json!({"description": "mine now"})),
        ),
        (
            Method::POST,
            format!("/admin/clients/{bootstrap}/disable"),
            None,
        ),
        (Method::GET, format!("/admin/organizations/{a_org}"), None),
        (Method::GET, format!("/admin/subjects/{subject}"), None),
        (Method::DELETE, format!("/admin/subjects/{subject}"), None),
        (
            Method::GET,
            format!("/admin/subjects?organization_id={a_org}&user_name=ada"),
            None,
        ),
        (
            Method::POST,
            "/admin/clients".to_owned(),
            Some(confidential(&a_org, "client_secret_basic", &["read"])),
        ),
    ] {
        let (st, ct, v) = s.call(method.clone(), &path, &b, body).await;
        assert_eq!(st, 404, "{method} {path}: {v}");
        assert_eq!(ct, "application/problem+json");
    }
    for (method, path, body) in [
        (
            Method::GET,
            format!("/admin/clients?organization_id={a_org}"),
            None,
        ),
        (
            Method::GET,
            format!("/admin/audit?organization={a_org}"),
            None,
        ),
        (
            Method::POST,
            "/admin/organizations".to_owned(),
            Some(json!({"name": "x"})),
        ),
        (
            Method::POST,
            "/admin/keys/rotate".to_owned(),
            Some(json!({"alg": "ES256"})),
        ),
    ] {
        let (st, _, v) = s.call(method.clone(), &path, &b, body).await;
        assert_eq!(st, 403, "{method} {path}: {v}");
    }
    // Lists show its own organization only.
    let (_, _, clients) = s.call(Method::GET, "/admin/clients", &b, None).await;
    let items = clients["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|c| c["organization_id"] == b_org.as_str()));
    let (_, _, orgs) = s.call(Method::GET, "/admin/organizations", &b, None).await;
    assert_eq!(orgs["items"].as_array().unwrap().len(), 1);
    assert_eq!(orgs["items"][0]["id"], b_org.as_str());
    let (st, _, trail) = s
        .call(Method::GET, "/admin/audit?limit=200", &b, None)
        .await;
    assert_eq!(st, 200);
    let entries = trail["items"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|e| e["organization"] == b_org.as_str()),
        "{trail}"
    );

    // The bootstrap admin's secret did not change hands; it still spans both.
    let (_, _, secrets) = s
        .call(
            Method::GET,
            &format!("/admin/clients/{bootstrap}/secrets"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(secrets["items"].as_array().unwrap().len(), 1);
    let (st, _, _) = s
        .call(
            Method::GET,
            &format!("/admin/clients/{b_id}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, _, _) = s
        .call(
            Method::GET,
            &format!("/admin/subjects/{subject}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_takes_only_tokens_meant_for_it() {
    let s = TestServer::start(Store::Sqlite, "hard_audience")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let payments = "https://payments.example.net/api";
    let mut body = confidential(
        &admin.organization_id,
        "client_secret_basic",
        &["idp:admin", "read"],
    );
    body["resources"] = json!([payments]);
    let (id, secret) = service(&s, &admin, body).await;
    let auth = Some((id.as_str(), secret.as_str()));
    let grant = [("grant_type", "client_credentials")];

    // For the payments API: not a token for the admin API.
    let (st, _, v) = post_form(
        &s,
        "/oauth/token",
        &[grant[0], ("scope", "idp:admin"), ("resource", payments)],
        auth,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let foreign = v["access_token"].as_str().unwrap();
    assert_eq!(admin_status(&s, foreign).await, 401);

    // No scope asked for: the defaults, never the admin scope.
    let (st, _, v) = post_form(&s, "/oauth/token", &grant, auth).await;
    assert_eq!((st, v["scope"].as_str()), (200, Some("read")), "{v}");
    assert_eq!(
        admin_status(&s, v["access_token"].as_str().unwrap()).await,
        403
    );

    // A resource the client may not ask for.
    let (st, _, v) = post_form(
        &s,
        "/oauth/token",
        &[grant[0], ("resource", "https://elsewhere.example/")],
        auth,
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_target")),
        "{v}"
    );
    // The admin scope asked for by name, for this server: accepted.
    let (st, _, v) = post_form(
        &s,
        "/oauth/token",
        &[grant[0], ("scope", "idp:admin")],
        auth,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        admin_status(&s, v["access_token"].as_str().unwrap()).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_is_no_oracle() {
    let s = TestServer::start(Store::Sqlite, "hard_oracle")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let public = s
        .create_client(
            &admin,
            json!({"organization_id": admin.organization_id, "client_type": "public", "name": "app",
                "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"],
                "token_endpoint_auth_method": "none"}),
        )
        .await;
    let public_id = public["client_id"].as_str().unwrap();
    let (st, _, v) = post_form(
        &s,
        "/oauth/introspect",
        &[("client_id", public_id), ("token", &admin.token)],
        None,
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );

    let (id, secret) = service(
        &s,
        &admin,
        confidential(&admin.organization_id, "client_secret_basic", &["read"]),
    )
    .await;
    let other = (id.as_str(), secret.as_str());
    assert_eq!(
        introspect(&s, other, &admin.token).await,
        json!({"active": false})
    );
    let own = s.token_basic(&id, &secret, None).await;
    assert_eq!(introspect(&s, other, &own).await["active"], true);
    // Revoking another's token changes nothing and says nothing.
    let (st, _, _) = post_form(&s, "/oauth/revoke", &[("token", &admin.token)], Some(other)).await;
    assert_eq!(st, 200);
    assert_eq!(admin_status(&s, &admin.token).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_hold_the_server() {
    let (mut config, dir) = TestServer::config(Store::Sqlite, "hard_slow")
        .await
        .unwrap();
    config.http_max_connections = 20;
    config.http_header_timeout_seconds = 1;
    config.http_request_timeout_seconds = 1;
    let s = TestServer::start_with(config, Some(dir)).await;
    s.wait_ready().await;
    let addr = s.server().addr;
    tokio::time::sleep(StdDuration::from_millis(100)).await;

    // Twenty half-open requests take every slot...
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: idp\r\n")
            .await
            .unwrap();
        held.push(c);
    }
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    // ...so one more is answered 503 at once and closed.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(StdDuration::from_secs(2), extra.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");

    // The half-open ones are closed once their header deadline passes.
    for mut c in held {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(StdDuration::from_secs(3), c.read(&mut buf))
            .await
            .expect("the server closes a connection that never finishes its headers")
            .unwrap_or(0);
        assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    }
    let r = http().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A body that never comes: 408.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"POST /oauth/token HTTP/1.1\r\nHost: idp\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(StdDuration::from_secs(4), c.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A client bound to another loopback address: a second source.
fn from_address(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

async fn basic_grant(
    client: &reqwest::Client,
    s: &TestServer,
    id: &str,
    secret: &str,
) -> (u16, Value) {
    let r = client
        .post(s.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").is_some();
    let body: Value = r.json().await.unwrap();
    if status == 429 {
        assert!(retry, "a 429 says when to retry");
    }
    (status, body)
}

async fn failure_events(log: &Arc<dyn eventlog::EventLog>) -> Vec<Value> {
    log.read_all(
        Position::START,
        &Filter::categories(["authfailures"]),
        10_000,
    )
    .await
    .unwrap()
    .iter()
    .map(|e| e.data.value().unwrap().into_owned())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_client_authentication_slows_its_source_and_is_counted() {
    let (mut s, clock) = TestServer::start_clocked(Store::Sqlite, "hard_throttle")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let (id, secret) = service(
        &s,
        &admin,
        confidential(&admin.organization_id, "client_secret_basic", &["read"]),
    )
    .await;
    let log = Arc::clone(s.server().state.bus.log());
    let attacker = from_address([127, 0, 0, 1]);
    let owner = from_address([127, 0, 0, 2]);

    // Two hundred wrong secrets, the id spelled every way a GUID can be.
    let spellings = [
        id.clone(),
        id.to_uppercase(),
        id.replace('-', ""),
        format!("{{{id}}}"),
    ];
    let (mut refused, mut slowed) = (0, 0);
    for i in 0..200 {
        match basic_grant(&attacker, &s, &spellings[i % 4], "wrong").await {
            (401, v) => {
                assert_eq!(v["error"], "invalid_client");
                refused += 1;
            }
            (429, v) => {
                assert_eq!(v["error"], "slow_down");
                slowed += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        (refused, slowed),
        (6, 194),
        "five free failures, then a wait"
    );
    // Few events, however many attempts: one when the window opened, one
    // when the wait began, none for an attempt the throttle refused.
    let events = failure_events(&log).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e["client_id"] == id.as_str()));
    assert!(events[1]["blocked_until"].is_string());

    // The owner, from elsewhere, is not slowed; the attacker's address
    // waits even with the right secret, until its wait is over.
    assert_eq!(basic_grant(&owner, &s, &id, &secret).await.0, 200);
    assert_eq!(basic_grant(&attacker, &s, &id, &secret).await.0, 429);

    // A restart remembers the wait (it is in the log).
    let (config, dir) = s.stop().await;
    let server = Server::start_with_clock(config.clone(), clock.clone())
        .await
        .unwrap();
    s.server = Some(server);
    s.base = format!("http://{}", s.server().addr);
    s.config = config;
    let _keep = dir;
    s.wait_ready().await;
    assert_eq!(basic_grant(&attacker, &s, &id, &secret).await.0, 429);
    clock.advance(Duration::seconds(2));
    assert_eq!(basic_grant(&attacker, &s, &id, &secret).await.0, 200);

    // Everything counted is in the log once the server stops: the 401s.
    let log = Arc::clone(s.server().state.bus.log());
    s.stop().await;
    let counted: u64 = failure_events(&log)
        .await
        .iter()
        .map(|e| e["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(counted, 6);
}

/// An installation of `app_id` registered through a one-use registration
/// token: the answer of `/registration/consume`.
async fn registered(s: &TestServer, admin: &Admin, app_id: &str, instance: &str) -> Value {
    let expires_at = (OffsetDateTime::now_utc() + Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (st, _, rt) = s
        .call(
            Method::POST,
            "/admin/registration-tokens",
            &admin.token,
            Some(json!({"client_id": app_id, "count": 1, "expires_at": expires_at})),
        )
        .await;
    assert_eq!(st, 201, "{rt}");
    let (st, issued) = consume(s, rt["token"].as_str().unwrap(), instance).await;
    assert_eq!(st, 201, "{issued}");
    issued
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_never_widens_the_grant() {
    let s = TestServer::start(Store::Sqlite, "hard_narrow")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let app = s
        .create_client(
            &admin,
            json!({"organization_id": admin.organization_id, "client_type": "public", "name": "app",
                "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange", "refresh_token"],
                "scopes": ["read", "write"], "token_endpoint_auth_method": "none"}),
        )
        .await;
    let app_id = app["client_id"].as_str().unwrap();
    let issued = registered(&s, &admin, app_id, "kiosk").await;
    let (st, _, v) = post_form(
        &s,
        "/oauth/token",
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_id", app_id),
            ("subject_token", issued["auth_token"].as_str().unwrap()),
            ("subject_token_type", api::oauth::instance::AUTH_TOKEN_TYPE),
            ("scope", "read"),
        ],
        None,
    )
    .await;
    assert_eq!((st, v["scope"].as_str()), (200, Some("read")), "{v}");
    let rt1 = v["refresh_token"].as_str().unwrap();
    let grant = |token: &'static str| ("grant_type", token);
    let (st, _, v) = post_form(
        &s,
        "/oauth/token",
        &[
            grant("refresh_token"),
            ("client_id", app_id),
            ("refresh_token", rt1),
        ],
        None,
    )
    .await;
    assert_eq!((st, v["scope"].as_str()), (200, Some("read")), "{v}");
    let rt2 = v["refresh_token"].as_str().unwrap();
    let (st, _, v) = post_form(
        &s,
        "/oauth/token",
        &[
            grant("refresh_token"),
            ("client_id", app_id),
            ("refresh_token", rt2),
            ("scope", "read write"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_scope")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_assertions_not_yet_valid_are_refused() {
    let s = TestServer::start(Store::Sqlite, "hard_nbf").await.unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let (key, jwks) = es256_client_key();
    let mut body = confidential(&admin.organization_id, "private_key_jwt", &["read"]);
    body["jwks"] = jwks;
    let c = s.create_client(&admin, body).await;
    let id = c["client_id"].as_str().unwrap();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let sign = |nbf: Option<i64>| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("client-key-1".into());
        let mut claims = json!({"iss": id, "sub": id, "aud": s.url("/oauth/token"),
            "jti": Uuid::now_v7().to_string(), "iat": now, "exp": now + 900});
        if let Some(nbf) = nbf {
            claims["nbf"] = json!(nbf);
        }
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    assert_eq!(
        jwt_grant(&s, id, &sign(Some(now + 600))).await.unwrap_err(),
        oauth2::basic::BasicErrorResponseType::InvalidClient
    );
    assert!(jwt_grant(&s, id, &sign(Some(now - 5))).await.is_ok());
    assert!(jwt_grant(&s, id, &sign(None)).await.is_ok());
}

/// What the process logs at debug level for the HTTP layer (request spans
/// and their events), for every test of this binary from the first call on:
/// a process-wide subscriber, since the server's tasks run on any thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> &'static Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("api=trace,tower_http=trace,eventlog=debug,projections=debug")
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_values_and_passwords_stay_out_of_logs() {
    let captured = captured_logs();
    let s = TestServer::start(Store::Sqlite, "hard_logs").await.unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let (st, _, _) = s
        .call(
            Method::GET,
            &format!(
                "/admin/subjects?organization_id={}&user_name=Ada%20Lovelace",
                admin.organization_id
            ),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 404);

    let (mut config, _dir) = TestServer::config(Store::Sqlite, "hard_logs_db")
        .await
        .unwrap();
    // A URL the driver refuses at once (no such port), quoting it back.
    config.database_url =
        Some("postgres://idp:hunter2@127.0.0.1:99999/idp?password=hunter3&sslmode=disable".into());
    let err = Server::start(config)
        .await
        .err()
        .expect("no database there");
    let shown = err.to_string();
    assert!(
        !shown.contains("hunter2") && !shown.contains("hunter3"),
        "{shown}"
    );

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("/admin/subjects"),
        "the request was traced: {logs}"
    );
    for secret in [
        "Lovelace",
        "user_name=",
        "hunter2",
        "hunter3",
        &admin.secret,
        &admin.token,
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_at_rest_is_private() {
    let s = TestServer::start(Store::Sqlite, "hard_rest").await.unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let (_, _, rt) = app_and_token(&s, &admin, 1, Duration::days(1)).await;
    let r = http()
        .post(s.url("/registration/consume"))
        .bearer_auth(&rt)
        .json(&json!({"instance_id": "kiosk-9", "device_name": "Grace's laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&s.data_dir), 0o700);
        for entry in std::fs::read_dir(&s.data_dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }

    // The device name alone names someone: it is stored encrypted under a
    // subject of its own, and erasing that subject shreds it.
    let raw = eventlog::open(&s.config.eventstore_url(), &LogOptions::default())
        .await
        .unwrap();
    let events = raw
        .read_all(Position::START, &Filter::categories(["authtoken"]), 100)
        .await
        .unwrap();
    let issued = events
        .iter()
        .find(|e| e.event_type == "auth_token.issued.v1")
        .unwrap();
    assert!(!issued.data.text().contains("Grace"));
    assert!(issued.data.text().contains("$pii_enc"));
    let subject = issued
        .subject
        .clone()
        .expect("a subject for the device name");
    let (st, _, export) = s
        .call(
            Method::GET,
            &format!("/admin/subjects/{subject}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        export["current"]["instances"][0]["device_name"],
        "Grace's laptop"
    );
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &format!("/admin/subjects/{subject}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (_, _, export) = s
        .call(
            Method::GET,
            &format!("/admin/subjects/{subject}"),
            &admin.token,
            None,
        )
        .await;
    assert!(!export.to_string().contains("Grace"), "{export}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_request_id_is_kept_apart_from_ours() {
    let s = TestServer::start(Store::Sqlite, "hard_reqid")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let borrowed = Uuid::now_v7().to_string();
    let r = http()
        .post(s.url("/admin/organizations"))
        .bearer_auth(&admin.token)
        .header("x-request-id", &borrowed)
        .json(&json!({"name": "Tenant C"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let events = s
        .server()
        .state
        .log
        .read_all(Position::START, &Filter::categories(["organization"]), 100)
        .await
        .unwrap();
    let created = events.last().unwrap();
    assert_ne!(created.metadata.correlation_id.to_string(), borrowed);
    assert_eq!(
        created.metadata.request_id.as_deref(),
        Some(borrowed.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_are_introspected_and_revoked() {
    let s = TestServer::start(Store::Sqlite, "hard_refresh")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let me = (admin.client_id.as_str(), admin.secret.as_str());

    // A confidential application: it introspects its own refresh token.
    let app = s
        .create_client(
            &admin,
            json!({"organization_id": admin.organization_id, "client_type": "confidential",
                "name": "server app", "scopes": ["app"],
                "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange", "refresh_token"],
                "token_endpoint_auth_method": "client_secret_basic"}),
        )
        .await;
    let app_id = app["client_id"].as_str().unwrap().to_owned();
    let (_, app_secret) = s.create_secret(&admin, &app_id).await;
    let app_auth = (app_id.as_str(), app_secret.as_str());
    let issued = registered(&s, &admin, &app_id, "server-1").await;
    let (st, _, v) = post_form(
        &s,
        "/oauth/token",
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", issued["auth_token"].as_str().unwrap()),
            ("subject_token_type", api::oauth::instance::AUTH_TOKEN_TYPE),
        ],
        Some(app_auth),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let access = v["access_token"].as_str().unwrap().to_owned();
    let refresh_token = v["refresh_token"].as_str().unwrap().to_owned();
    let seen = introspect(&s, app_auth, &refresh_token).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["token_type"], "refresh_token");
    assert_eq!(seen["client_id"], app_id.as_str());
    assert_eq!(seen["scope"], "app");
    assert_eq!(
        introspect(&s, me, &refresh_token).await["active"],
        false,
        "not the admin's"
    );

    let (st, _, _) = post_form(
        &s,
        "/oauth/revoke",
        &[("token", &refresh_token)],
        Some(app_auth),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        introspect(&s, app_auth, &refresh_token).await["active"],
        false
    );
    assert_eq!(
        introspect(&s, me, &access).await["active"],
        false,
        "its access tokens end too"
    );
    let (st, _, v) = post_form(
        &s,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
        Some(app_auth),
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));
    assert!(
        v["error_description"].as_str().unwrap().contains("revoked"),
        "{v}"
    );

    // A public application ends its own grant at sign-out.
    let (app_id, _, rt) = app_and_token(&s, &admin, 1, Duration::days(1)).await;
    let (_, issued) = consume(&s, &rt, "laptop").await;
    let (_, v) = exchange(&s, &app_id, issued["auth_token"].as_str().unwrap()).await;
    let refresh_token = v["refresh_token"].as_str().unwrap();
    let (st, _, _) = post_form(
        &s,
        "/oauth/revoke",
        &[("client_id", app_id.as_str()), ("token", refresh_token)],
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(refresh(&s, &app_id, refresh_token).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_exchange_says_what_it_revoked() {
    let s = TestServer::start(Store::Sqlite, "hard_replay")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let (app_id, _, rt) = app_and_token(&s, &admin, 1, Duration::days(1)).await;
    let (_, issued) = consume(&s, &rt, "kiosk").await;
    let auth_token = issued["auth_token"].as_str().unwrap();
    let (st, first) = exchange(&s, &app_id, auth_token).await;
    assert_eq!(st, 200);
    let (st, second) = exchange(&s, &app_id, auth_token).await;
    assert_eq!(
        (st, second["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(
        second["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{second}"
    );
    let r = http()
        .post(s.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", app_id.as_str()),
            ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let said = v["error_description"].as_str().unwrap();
    assert!(said.contains("exchanged a second time"), "{said}");
    assert!(!said.contains("used refresh token"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_can_never_verify_are_refused_at_registration() {
    let s = TestServer::start(Store::Sqlite, "hard_jwks").await.unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let (_, good) = es256_client_key();
    let mut off_curve = good["keys"][0].clone();
    off_curve["y"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let mut not_b64 = good["keys"][0].clone();
    not_b64["x"] = json!("not*base64");
    let huge = json!({"kty": "RSA", "kid": "huge", "e": "AQAB",
        "n": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, vec![0xabu8; 30_000])});
    for (bad, says) in [
        (json!({"keys": [off_curve]}), "curve"),
        (json!({"keys": [not_b64]}), "base64url"),
        (json!({"keys": [huge]}), "240000 bits"),
        (
            json!({"keys": [good["keys"][0], good["keys"][0]]}),
            "same kid",
        ),
        (json!({}), "keys"),
    ] {
        let mut body = confidential(&admin.organization_id, "private_key_jwt", &["read"]);
        body["jwks"] = bad;
        let (st, ct, v) = s
            .call(Method::POST, "/admin/clients", &admin.token, Some(body))
            .await;
        assert_eq!((st, ct.as_str()), (422, "application/problem+json"), "{v}");
        assert!(v["detail"].as_str().unwrap().contains(says), "{v}");
    }
    // Leaving jwks out is fine where no key is needed.
    let body = confidential(&admin.organization_id, "client_secret_basic", &["read"]);
    assert!(body.get("jwks").is_none());
    s.create_client(&admin, body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_format_holds_at_its_edges() {
    let s = TestServer::start(Store::Sqlite, "hard_edges")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{}", admin.client_id, admin.secret),
    );

    // Scheme names in any case (RFC 9110 §11.1).
    let r = http()
        .post(s.url("/oauth/token"))
        .header("authorization", format!("BASIC {basic}"))
        .form(&[("grant_type", "client_credentials"), ("scope", "idp:admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .get(s.url("/admin/organizations"))
        .header("authorization", format!("BEARER {}", admin.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, _, rt) = app_and_token(&s, &admin, 1, Duration::days(1)).await;
    let r = http()
        .post(s.url("/registration/consume"))
        .header("authorization", format!("bearer {rt}"))
        .json(&json!({"instance_id": "kiosk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Two Authorization headers: invalid_request.
    let r = http()
        .post(s.url("/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("authorization", format!("Basic {basic}"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = http()
        .get(s.url("/admin/organizations"))
        .header("authorization", format!("Bearer {}", admin.token))
        .header("authorization", format!("Bearer {}", admin.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");

    // Oversized bodies: 413, naming the limit.
    let big = "x".repeat(api::server::MAX_BODY_BYTES + 1);
    let r = http()
        .post(s.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&pad={big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains(&api::server::MAX_BODY_BYTES.to_string())
    );
    for path in ["/admin/organizations", "/registration/consume"] {
        let r = http()
            .post(s.url(path))
            .bearer_auth(&admin.token)
            .header("content-type", "application/json")
            .body(format!("{{\"name\": \"{big}\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["limit"], api::server::MAX_BODY_BYTES, "{path}");
    }

    // A method the path does not take: an RFC 9457 problem.
    let r = http()
        .delete(s.url("/admin/organizations"))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().get("allow").is_some());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.json::<Value>().await.unwrap()["status"], 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_matches_the_router() {
    let s = TestServer::start(Store::Sqlite, "hard_openapi")
        .await
        .unwrap();
    s.wait_ready().await;
    let doc: Value = http()
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Every operation declares exactly its path's parameters as `in: path`,
    // everything else as `in: query`, and the router answers it.
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let template: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            for (code, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {code}: {response}"
                );
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let mut in_path: Vec<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            in_path.sort_unstable();
            let mut want = template.clone();
            want.sort_unstable();
            assert_eq!(in_path, want, "{method} {path}");
            for p in &params {
                assert!(
                    p["in"] == "path"
                        || p["in"] == "query"
                        || (p["in"] == "header" && p["name"] == "If-Match"),
                    "{method} {path}: {p}"
                );
                if p["in"] == "path" {
                    assert_eq!(p["required"], true, "{method} {path}: {p}");
                }
            }
            let concrete = template.iter().fold(path.clone(), |acc, name| {
                let value = match *name {
                    "subject" => "person:00000000000000000000000000000000".to_owned(),
                    "position" => "1".to_owned(),
                    _ => Uuid::now_v7().to_string(),
                };
                acc.replace(&format!("{{{name}}}"), &value)
            });
            let r = http()
                .request(method.to_uppercase().parse().unwrap(), s.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path} is not routed: {body}");
            assert_ne!(
                body["detail"], "no endpoint at this path",
                "{method} {path} is not routed"
            );
        }
    }
    // A validator of the specification, where one is installed (.ci/run
    // installs it, and then it must run).
    let file = s.data_dir.join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    match std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install openapi-spec-validator"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: OpenAPI validation: openapi-spec-validator is not installed"
            );
        }
        Ok(out) => panic!(
            "the OpenAPI document is invalid: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("python3: {e}"),
    }

    assert!(operations >= 31, "{operations}");
    assert!(doc["paths"]["/admin/keys/{kid}/revoke"]["post"].is_object());
    let create = &doc["components"]["schemas"]["CreateClient"];
    let required = create["required"].as_array().unwrap();
    assert!(!required.iter().any(|r| r == "jwks"), "{create}");
}
