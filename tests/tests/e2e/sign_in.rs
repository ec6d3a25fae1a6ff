//! Signing people in through the flow API, with a cookie-keeping client
//! against the real server: password sign-in into a session, the cookies'
//! attributes, identical answers for an unknown user, a wrong password and
//! a deactivated user, the throttle per account and address (a stranger
//! elsewhere locks nobody out) with the admin's unlock, policies, sessions
//! listed and revoked by the person and the admin, expiries by the clock.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use commands::ManualClock;
use reqwest::Method;
use serde_json::{Value, json};
use time::Duration;

use crate::harness::{Admin, Store, TestServer, http};

pub const PASSWORD: &str = "correct horse battery";

/// A browser: keeps cookies, and comes from `source` on the loopback.
pub fn browser(source: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .local_address(IpAddr::V4(source))
        .build()
        .unwrap()
}

pub fn home() -> reqwest::Client {
    browser(Ipv4Addr::new(127, 0, 0, 1))
}

/// `(status, headers, body)`.
pub async fn send(
    c: &reqwest::Client,
    method: Method,
    url: String,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = c.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

pub async fn admin_call(
    s: &TestServer,
    admin: &Admin,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (st, _, v) = s.call(method, path, &admin.token, body).await;
    (st, v)
}

/// Sets the organization's sign-in policy, which must be accepted.
pub async fn put_policy(s: &TestServer, admin: &Admin, policy: Value) {
    let path = format!(
        "/admin/organizations/{}/sign-in-policy",
        admin.organization_id
    );
    let (st, v) = admin_call(s, admin, Method::PUT, &path, Some(policy)).await;
    assert_eq!(st, 200, "{v}");
}

pub async fn create_user(
    s: &TestServer,
    admin: &Admin,
    username: &str,
    password: Option<&str>,
) -> String {
    let mut body = json!({
        "organization_id": admin.organization_id,
        "username": username,
        "email": format!("{}@example.org", username.to_lowercase()),
        "email_verified": true,
    });
    if let Some(p) = password {
        body["password"] = json!(p);
    }
    let (st, v) = admin_call(s, admin, Method::POST, "/admin/users", Some(body)).await;
    assert_eq!(st, 201, "{v}");
    v["user_id"].as_str().unwrap().to_owned()
}

pub async fn start(s: &TestServer, c: &reqwest::Client, admin: &Admin) -> (String, Value) {
    let (st, _, v) = send(
        c,
        Method::POST,
        s.url("/authentication/start"),
        Some(json!({"organization_id": admin.organization_id, "login_hint": "ada"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    (v["session_id"].as_str().unwrap().to_owned(), v)
}

pub async fn password(
    s: &TestServer,
    c: &reqwest::Client,
    sign_in: &str,
    identifier: &str,
    password: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    send(
        c,
        Method::POST,
        s.url("/authentication/authenticate"),
        Some(json!({"session_id": sign_in, "method": "password",
                    "identifier": identifier, "password": password})),
    )
    .await
}

pub async fn complete(
    s: &TestServer,
    c: &reqwest::Client,
    sign_in: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    send(
        c,
        Method::POST,
        s.url("/authentication/complete"),
        Some(json!({"session_id": sign_in})),
    )
    .await
}

/// A server on a clock the test moves, with a person `Ada` (with
/// [`PASSWORD`]) signed in from the loopback.
pub async fn ada_signed_in(name: &str) -> (TestServer, Arc<ManualClock>, Admin, reqwest::Client) {
    let (s, clock) = TestServer::start_clocked(Store::Sqlite, name)
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let c = home();
    sign_in(&s, &c, &admin, "ada").await;
    (s, clock, admin, c)
}

/// Signs `identifier` in with `c`; answers the completion's body.
pub async fn sign_in(
    s: &TestServer,
    c: &reqwest::Client,
    admin: &Admin,
    identifier: &str,
) -> Value {
    let (id, _) = start(s, c, admin).await;
    let (st, _, v) = password(s, c, &id, identifier, PASSWORD).await;
    assert_eq!(st, 200, "{v}");
    let (st, _, v) = complete(s, c, &id).await;
    assert_eq!(st, 200, "{v}");
    v
}

pub fn set_cookies(h: &reqwest::header::HeaderMap) -> Vec<String> {
    h.get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn actions_about(s: &TestServer, admin: &Admin, user: &str) -> Vec<String> {
    let subject = format!("user:{}", user.replace('-', ""));
    for _ in 0..200 {
        let (st, v) = admin_call(
            s,
            admin,
            Method::GET,
            &format!("/admin/audit?subject={subject}&limit=200"),
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let actions: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect();
        if actions.iter().any(|a| a == "session.created.v1") {
            return actions;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the sign-in never reached the audit trail");
}

async fn password_sign_in(store: Store) {
    let Some(s) = TestServer::start(store, "sign_in_password").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let c = home();

    let (st, headers, started) = send(
        &c,
        Method::POST,
        s.url("/authentication/start"),
        Some(json!({"organization_id": admin.organization_id, "login_hint": "ada"})),
    )
    .await;
    assert_eq!(st, 201, "{started}");
    assert_eq!(started["state"], "in_progress");
    assert_eq!(started["methods"], json!(["password", "passkey"]));
    assert_eq!(started["required_factors"], 1);
    assert_eq!(started["login_hint"], "ada");
    assert_eq!(started["can_complete"], false);
    let cookie = set_cookies(&headers).pop().unwrap();
    assert!(cookie.starts_with("idp_signin="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http on loopback: {cookie}"
    );
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("idp_signin=");
    assert!(!value.contains(&ada) && !value.contains(&ada.replace('-', "")));
    let id = started["session_id"].as_str().unwrap().to_owned();

    let (st, _, status) = send(
        &c,
        Method::GET,
        s.url(&format!("/authentication/status?session_id={id}")),
        None,
    )
    .await;
    assert_eq!(st, 200, "{status}");
    assert_eq!(status["remaining_factors"], 1);

    // The email address works as an identifier too, in any case.
    let (st, _, after) = password(&s, &c, &id, "ADA@example.org", PASSWORD).await;
    assert_eq!(st, 200, "{after}");
    assert_eq!(after["completed_steps"][0]["method"], "password");
    assert_eq!(after["remaining_factors"], 0);
    assert_eq!(after["can_complete"], true);

    let (st, headers, done) = complete(&s, &c, &id).await;
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["user_id"], ada.as_str());
    assert_eq!(done["amr"], json!(["pwd"]));
    assert_ne!(done["session_id"], id.as_str(), "a new id: no fixation");
    let session_cookie = set_cookies(&headers).pop().unwrap();
    assert!(
        session_cookie.starts_with("idp_session="),
        "{session_cookie}"
    );
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("Max-Age=43200"));

    // The sign-in is over; the session works.
    let (st, _, v) = complete(&s, &c, &id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (409, Some("sign-in-completed")),
        "{v}"
    );
    let (st, _, me) = send(&c, Method::GET, s.url("/self"), None).await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["user_id"], ada.as_str());
    assert_eq!(me["username"], "Ada");
    assert_eq!(me["session_id"], done["session_id"]);
    let (st, _, list) = send(&c, Method::GET, s.url("/self/sessions"), None).await;
    assert_eq!(st, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["current"], true);
    assert_eq!(items[0]["source_ip"], "127.0.0.1");
    assert_eq!(items[0]["methods"], json!(["password"]));

    // Without the cookie there is no session.
    let (st, _, v) = send(&http(), Method::GET, s.url("/self"), None).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("no-session")));

    // The user's last sign-in, and every step in the trail about them.
    let (_, user) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/users/{ada}"),
        None,
    )
    .await;
    assert!(user["last_sign_in_at"].is_string(), "{user}");
    let actions = actions_about(&s, &admin, &ada).await;
    for a in [
        "signin.step_succeeded.v1",
        "signin.completed.v1",
        "session.created.v1",
        "user.signed_in.v1",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

#[tokio::test]
async fn a_person_signs_in_with_a_password_on_sqlite() {
    password_sign_in(Store::Sqlite).await;
}

#[tokio::test]
async fn a_person_signs_in_with_a_password_on_postgres() {
    password_sign_in(Store::Postgres).await;
}

#[tokio::test]
async fn refusals_tell_nothing_and_change_nothing() {
    let s = TestServer::start(Store::Sqlite, "sign_in_refusals")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let bob = create_user(&s, &admin, "Bob", Some(PASSWORD)).await;
    create_user(&s, &admin, "Cy", None).await;
    let (st, _) = admin_call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/users/{bob}/deactivate"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let c = home();
    let (id, _) = start(&s, &c, &admin).await;

    // Unknown user, wrong password, deactivated user with the right one,
    // a user without a password: one answer.
    let mut answers = Vec::new();
    for (who, pw) in [
        ("nobody", PASSWORD),
        ("ada", "not the password"),
        ("bob", PASSWORD),
        ("cy", PASSWORD),
    ] {
        let (st, _, v) = password(&s, &c, &id, who, pw).await;
        answers.push((st, v));
    }
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0].1["error"], "invalid-credentials");
    for a in &answers[1..] {
        assert_eq!(a, &answers[0]);
    }

    // Out of order, unknown, unavailable, missing fields.
    let step = |method: &str| json!({"session_id": id, "method": method, "identifier": "ada", "password": PASSWORD});
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/authentication/authenticate"),
        Some(step("totp")),
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (409, Some("step-not-allowed")),
        "{v}"
    );
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/authentication/authenticate"),
        Some(step("carrier-pigeon")),
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("unknown-method")),
        "{v}"
    );
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/authentication/authenticate"),
        Some(step("sso")),
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("method-unavailable")),
        "{v}"
    );
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("no upstream identity provider")
    );
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/authentication/authenticate"),
        Some(json!({"session_id": id, "method": "password", "identifier": "ada"})),
    )
    .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("password")), "{v}");
    let (st, _, v) = complete(&s, &c, &id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (409, Some("steps-remaining")),
        "{v}"
    );

    // Another browser (another cookie, or none) does not reach the sign-in.
    let other = home();
    start(&s, &other, &admin).await;
    let (st, _, v) = password(&s, &other, &id, "ada", PASSWORD).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (404, Some("sign-in-not-found")),
        "{v}"
    );
    let (st, _, _) = send(
        &http(),
        Method::GET,
        s.url(&format!("/authentication/status?session_id={id}")),
        None,
    )
    .await;
    assert_eq!(st, 404);

    // Unknown organization or a continue_to off this server: refused.
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/authentication/start"),
        Some(json!({"organization_id": uuid::Uuid::now_v7()})),
    )
    .await;
    assert_eq!(
        (st, v["field"].as_str()),
        (422, Some("organization_id")),
        "{v}"
    );
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/authentication/start"),
        Some(json!({"organization_id": admin.organization_id, "continue_to": "//evil.example/"})),
    )
    .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("continue_to")), "{v}");

    // Nothing failed took a step: the right password still completes.
    let (st, _, v) = password(&s, &c, &id, "ada", PASSWORD).await;
    assert_eq!(st, 200, "{v}");
    let (st, _, v) = complete(&s, &c, &id).await;
    assert_eq!(
        (st, v["user_id"].as_str()),
        (200, Some(ada.as_str())),
        "{v}"
    );
    let actions = actions_about(&s, &admin, &ada).await;
    assert!(
        actions.iter().any(|a| a == "signin.step_failed.v1"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn failures_slow_only_their_source_and_an_admin_unlocks() {
    let s = TestServer::start(Store::Sqlite, "sign_in_lockout")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let attacker = browser(Ipv4Addr::new(127, 0, 0, 2));
    let (id, _) = start(&s, &attacker, &admin).await;
    for _ in 0..domain::throttle::SIGN_IN_FAILURES_BEFORE_WAIT {
        let (st, _, v) = password(&s, &attacker, &id, "ada", "guess guess guess").await;
        assert_eq!(st, 401, "{v}");
    }
    let (st, headers, v) = password(&s, &attacker, &id, "ada", PASSWORD).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (429, Some("too-many-attempts")),
        "{v}"
    );
    assert!(headers.get("retry-after").is_some());
    // An unknown name is throttled the same way.
    for _ in 0..domain::throttle::SIGN_IN_FAILURES_BEFORE_WAIT {
        password(&s, &attacker, &id, "nobody", "guess guess guess").await;
    }
    let (st, _, _) = password(&s, &attacker, &id, "nobody", "guess guess guess").await;
    assert_eq!(st, 429);

    // The owner, elsewhere, is not slowed down.
    sign_in(&s, &home(), &admin, "ada").await;

    // The admin lifts the wait: the attacker's next attempt is checked.
    let (st, v) = admin_call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/users/{ada}/unlock"),
        None,
    )
    .await;
    assert_eq!(st, 204, "{v}");
    let (st, _, v) = password(&s, &attacker, &id, "ada", "guess guess guess").await;
    assert_eq!(st, 401, "{v}");
    let (st, v) = admin_call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/users/{}/unlock", uuid::Uuid::now_v7()),
        None,
    )
    .await;
    assert_eq!(st, 404, "{v}");
}

/// A wait begun before a restart is still imposed after it: the failures
/// are in the log, and a start reads the day's.
#[tokio::test]
async fn a_wait_survives_a_restart() {
    let (mut s, clock) = TestServer::start_clocked(Store::Sqlite, "sign_in_restart")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let attacker = browser(Ipv4Addr::new(127, 0, 0, 3));
    let (id, _) = start(&s, &attacker, &admin).await;
    for _ in 0..domain::throttle::SIGN_IN_FAILURES_BEFORE_WAIT {
        password(&s, &attacker, &id, "ada", "guess guess guess").await;
    }
    s.restart_clocked(clock.clone()).await;
    let restarted = s;
    restarted.wait_ready().await;
    let (st, _, v) = password(&restarted, &attacker, &id, "ada", PASSWORD).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (429, Some("too-many-attempts")),
        "{v}"
    );
    // Once the wait is over, the right password is checked.
    clock.advance(Duration::seconds(2));
    let (st, _, v) = password(&restarted, &attacker, &id, "ada", PASSWORD).await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn a_policy_of_two_factors_is_not_met_by_a_password() {
    let s = TestServer::start(Store::Sqlite, "sign_in_policy")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let path = format!(
        "/admin/organizations/{}/sign-in-policy",
        admin.organization_id
    );
    let (st, v) = admin_call(&s, &admin, Method::GET, &path, None).await;
    assert_eq!((st, v["factors_required"].as_u64()), (200, Some(1)), "{v}");
    let (st, v) = admin_call(
        &s,
        &admin,
        Method::PUT,
        &path,
        Some(json!({
            "methods": ["password", "totp"], "first_factors": ["password"], "factors_required": 3
        })),
    )
    .await;
    assert_eq!(
        (st, v["field"].as_str()),
        (422, Some("factors_required")),
        "{v}"
    );
    let (st, v) = admin_call(&s, &admin, Method::PUT, &path, Some(json!({
        "methods": ["password", "telepathy"], "first_factors": ["password"], "factors_required": 1
    }))).await;
    assert_eq!((st, v["field"].as_str()), (422, Some("methods")), "{v}");
    let (st, v) = admin_call(&s, &admin, Method::PUT, &path, Some(json!({
        "methods": ["password", "totp", "passkey"], "first_factors": ["password"], "factors_required": 2
    }))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["first_factors"], json!(["password"]));

    let c = home();
    let (id, started) = start(&s, &c, &admin).await;
    assert_eq!(started["required_factors"], 2);
    let (st, _, after) = password(&s, &c, &id, "ada", PASSWORD).await;
    assert_eq!(st, 200, "{after}");
    assert_eq!(after["remaining_factors"], 1);
    assert_eq!(after["can_complete"], false);
    let (st, _, v) = complete(&s, &c, &id).await;
    assert_eq!((st, v["remaining_factors"].as_u64()), (409, Some(1)), "{v}");
    let (st, _, _) = send(&c, Method::GET, s.url("/self"), None).await;
    assert_eq!(st, 401, "no session");

    // A client of its own policy: one factor there, two elsewhere.
    let client = s
        .create_client(
            &admin,
            crate::oauth::confidential(&admin.organization_id, "client_secret_basic", &["read"]),
        )
        .await;
    let client_id = client["client_id"].as_str().unwrap();
    let client_path = format!("/admin/clients/{client_id}/sign-in-policy");
    let (st, v) = admin_call(&s, &admin, Method::GET, &client_path, None).await;
    assert_eq!(
        (
            st,
            v["own"].as_bool(),
            v["policy"]["factors_required"].as_u64()
        ),
        (200, Some(false), Some(2)),
        "{v}"
    );
    let (st, v) = admin_call(
        &s,
        &admin,
        Method::PUT,
        &client_path,
        Some(json!({
            "methods": ["password"], "first_factors": ["password"], "factors_required": 1
        })),
    )
    .await;
    assert_eq!((st, v["own"].as_bool()), (200, Some(true)), "{v}");
    let (st, _, started) = send(
        &c,
        Method::POST,
        s.url("/authentication/start"),
        Some(json!({"client_id": client_id})),
    )
    .await;
    assert_eq!(st, 201, "{started}");
    assert_eq!(started["required_factors"], 1);
    assert_eq!(
        started["organization_id"],
        admin.organization_id.as_str(),
        "the client's organization"
    );
    let (st, v) = admin_call(&s, &admin, Method::DELETE, &client_path, None).await;
    assert_eq!((st, v["own"].as_bool()), (200, Some(false)), "{v}");
    let (_, _, started) = send(
        &c,
        Method::POST,
        s.url("/authentication/start"),
        Some(json!({"client_id": client_id})),
    )
    .await;
    assert_eq!(started["required_factors"], 2);
}

#[tokio::test]
async fn sessions_are_listed_revoked_and_expire() {
    let (s, clock): (TestServer, Arc<ManualClock>) =
        TestServer::start_clocked(Store::Sqlite, "sign_in_sessions")
            .await
            .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let (laptop, phone, tablet) = (home(), home(), home());
    let first = sign_in(&s, &laptop, &admin, "ada").await;
    sign_in(&s, &phone, &admin, "ada").await;
    sign_in(&s, &tablet, &admin, "ada").await;

    // The admin sees three; revokes the tablet's.
    let (st, v) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/users/{ada}/sessions"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 3, "{v}");
    let (_, _, tab) = send(&tablet, Method::GET, s.url("/self"), None).await;
    let tablet_session = tab["session_id"].as_str().unwrap().to_owned();
    let (st, _) = admin_call(
        &s,
        &admin,
        Method::DELETE,
        &format!("/admin/users/{ada}/sessions/{tablet_session}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _, _) = send(&tablet, Method::GET, s.url("/self"), None).await;
    assert_eq!(st, 401, "a revoked session works nowhere");

    // The laptop revokes every other one.
    let (st, _, v) = send(
        &laptop,
        Method::POST,
        s.url("/self/sessions/revoke-others"),
        None,
    )
    .await;
    assert_eq!((st, v["revoked"].as_u64()), (200, Some(1)), "{v}");
    let (st, _, _) = send(&phone, Method::GET, s.url("/self"), None).await;
    assert_eq!(st, 401);
    let (_, _, list) = send(&laptop, Method::GET, s.url("/self/sessions"), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let (st, v) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/users/{ada}/sessions?ended=true"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let reasons: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["end_reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"by_admin") && reasons.contains(&"by_user"),
        "{v}"
    );

    // A cross-site change is refused.
    let r = laptop
        .post(s.url("/self/sign-out"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Idle for longer than the idle timeout: over, and recorded.
    clock.advance(Duration::minutes(31));
    let (st, _, _) = send(&laptop, Method::GET, s.url("/self"), None).await;
    assert_eq!(st, 401);
    let ended = ended_sessions(&s, &admin, &ada, |items| {
        items
            .iter()
            .any(|i| i["id"] == first["session_id"] && i["end_reason"] == "expired")
    })
    .await;
    assert!(!ended.is_empty());

    // A sign-in left for longer than its timeout cannot go on.
    let (id, _) = start(&s, &laptop, &admin).await;
    clock.advance(Duration::minutes(11));
    let (st, _, v) = password(&s, &laptop, &id, "ada", PASSWORD).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (410, Some("sign-in-expired")),
        "{v}"
    );
    let (st, _, v) = send(
        &laptop,
        Method::GET,
        s.url(&format!("/authentication/status?session_id={id}")),
        None,
    )
    .await;
    assert_eq!((st, v["state"].as_str()), (200, Some("expired")), "{v}");

    // Signing out ends the session and clears its cookie; deactivation
    // ends every session.
    sign_in(&s, &laptop, &admin, "ada").await;
    let (st, headers, _) = send(&laptop, Method::POST, s.url("/self/sign-out"), None).await;
    assert_eq!(st, 204);
    assert!(
        set_cookies(&headers)
            .iter()
            .any(|c| c.starts_with("idp_session=;") && c.contains("Max-Age=0"))
    );
    let (st, _, _) = send(&laptop, Method::GET, s.url("/self"), None).await;
    assert_eq!(st, 401);
    sign_in(&s, &phone, &admin, "ada").await;
    let (st, _) = admin_call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/users/{ada}/deactivate"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _, _) = send(&phone, Method::GET, s.url("/self"), None).await;
    assert_eq!(st, 401);
    ended_sessions(&s, &admin, &ada, |items| {
        items.iter().any(|i| i["end_reason"] == "user_deactivated")
    })
    .await;
}

/// The user's sessions, ended ones included, once `until` holds of them.
pub async fn ended_sessions(
    s: &TestServer,
    admin: &Admin,
    user: &str,
    until: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (st, v) = admin_call(
            s,
            admin,
            Method::GET,
            &format!("/admin/users/{user}/sessions?ended=true"),
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let items = v["items"].as_array().unwrap().clone();
        if until(&items) {
            return items;
        }
        last = v;
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the sessions never became as expected: {last}");
}

/// The TOTP code of `secret` at the server's clock.
fn code(secret: &str, clock: &ManualClock) -> String {
    use commands::Clock;
    commands::totp::code_at(secret, clock.now().unix_timestamp()).unwrap()
}

async fn totp_step(s: &TestServer, c: &reqwest::Client, sign_in: &str, code: &str) -> (u16, Value) {
    let (st, _, v) = send(
        c,
        Method::POST,
        s.url("/authentication/authenticate"),
        Some(json!({"session_id": sign_in, "method": "totp", "code": code})),
    )
    .await;
    (st, v)
}

/// An authenticator app enrolled from the person's own session, then
/// asked for as a second factor; a code is good once; removing it needs a
/// fresh step-up; the export names it and withholds its secret.
#[tokio::test]
async fn an_authenticator_app_is_a_second_factor_used_once() {
    let (s, clock) = TestServer::start_clocked(Store::Sqlite, "sign_in_totp")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let c = home();
    sign_in(&s, &c, &admin, "ada").await;

    // Enrol: a secret, its URI and QR code; a wrong code records nothing.
    let (st, _, enrolment) = send(&c, Method::POST, s.url("/self/methods/totp"), None).await;
    assert_eq!(st, 200, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    assert!(
        enrolment["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Default:Ada?")
    );
    assert!(
        enrolment["qr_code"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,")
    );
    let confirm = |code: String| json!({"enrolment": enrolment["enrolment"], "code": code});
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/self/methods/totp/confirm"),
        Some(confirm("000000".into())),
    )
    .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("code")), "{v}");
    let (_, _, methods) = send(&c, Method::GET, s.url("/self/methods"), None).await;
    assert_eq!(methods["totp"]["enrolled"], false, "{methods}");
    let enrolling_code = code(&secret, &clock);
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/self/methods/totp/confirm"),
        Some(confirm(enrolling_code.clone())),
    )
    .await;
    assert_eq!(st, 204, "{v}");
    let (_, _, methods) = send(&c, Method::GET, s.url("/self/methods"), None).await;
    assert_eq!(methods["totp"]["enrolled"], true, "{methods}");
    assert!(
        !methods.to_string().contains(&secret),
        "the secret is never shown again"
    );
    // Another session cannot use this session's enrolment token.
    let other = home();
    sign_in(&s, &other, &admin, "ada").await;
    let (st, _, v) = send(
        &other,
        Method::POST,
        s.url("/self/methods/totp/confirm"),
        Some(confirm(enrolling_code.clone())),
    )
    .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("enrolment")), "{v}");

    // Two factors: a password, then the app.
    put_policy(
        &s,
        &admin,
        json!({
            "methods": ["password", "totp"], "first_factors": ["password"], "factors_required": 2
        }),
    )
    .await;
    let b = home();
    let (id, _) = start(&s, &b, &admin).await;
    let (st, _, after) = password(&s, &b, &id, "ada", PASSWORD).await;
    assert_eq!(st, 200, "{after}");
    assert_eq!(after["methods"], json!(["totp"]));
    // The code that confirmed the enrolment is used up; so is a wrong one.
    let (st, v) = totp_step(&s, &b, &id, &enrolling_code).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid-credentials")),
        "{v}"
    );
    clock.advance(Duration::seconds(30));
    let fresh = code(&secret, &clock);
    let (st, v) = totp_step(&s, &b, &id, &fresh).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["can_complete"], true);
    let (st, _, done) = complete(&s, &b, &id).await;
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["amr"], json!(["pwd", "otp", "mfa"]));
    // The same code in another sign-in, a step later still: refused once used.
    let (id2, _) = start(&s, &b, &admin).await;
    password(&s, &b, &id2, "ada", PASSWORD).await;
    let (st, _) = totp_step(&s, &b, &id2, &fresh).await;
    assert_eq!(st, 401, "a code is accepted once");

    // Removing the app needs a fresh proof.
    clock.advance(Duration::minutes(6));
    let (st, _, v) = send(&b, Method::DELETE, s.url("/self/methods/totp"), None).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (403, Some("step-up-required")),
        "{v}"
    );
    let (st, _, _) = send(
        &b,
        Method::POST,
        s.url("/self/step-up"),
        Some(json!({"method": "password", "password": "wrong wrong wrong"})),
    )
    .await;
    assert_eq!(st, 401);
    let (st, _, v) = send(
        &b,
        Method::POST,
        s.url("/self/step-up"),
        Some(json!({"method": "totp", "code": code(&secret, &clock)})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["step_up_until"].is_string());

    // The export names the app and withholds its secret.
    let subject = format!("user:{}", ada.replace('-', ""));
    let (st, export) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/subjects/{subject}"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{export}");
    let text = export.to_string();
    assert!(text.contains("\"type\":\"totp\""), "{text}");
    assert!(!text.contains(&secret), "no TOTP secret in the export");

    let (st, _, _) = send(&b, Method::DELETE, s.url("/self/methods/totp"), None).await;
    assert_eq!(st, 204);
    let (_, _, methods) = send(&b, Method::GET, s.url("/self/methods"), None).await;
    assert_eq!(methods["totp"]["enrolled"], false, "{methods}");
    let (st, v) = admin_call(
        &s,
        &admin,
        Method::DELETE,
        &format!("/admin/users/{ada}/methods/totp"),
        None,
    )
    .await;
    assert_eq!(st, 204, "an admin's removal is idempotent too: {v}");
    // A new password, under the fresh step-up; the old one no longer works.
    let (st, _, v) = send(
        &b,
        Method::PUT,
        s.url("/self/methods/password"),
        Some(json!({"password": "short"})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    let (st, _, v) = send(
        &b,
        Method::PUT,
        s.url("/self/methods/password"),
        Some(json!({"password": "an entirely new passphrase"})),
    )
    .await;
    assert_eq!(st, 204, "{v}");
    let d = home();
    let (id3, _) = start(&s, &d, &admin).await;
    let (st, _, _) = password(&s, &d, &id3, "ada", PASSWORD).await;
    assert_eq!(st, 401, "the old password no longer works");
    let (st, _, v) = password(&s, &d, &id3, "ada", "an entirely new passphrase").await;
    assert_eq!(st, 200, "{v}");
}

/// A first factor that succeeds clears nothing: someone who knows the
/// password cannot start over and over to guess at the second factor.
/// Only a whole sign-in clears the count.
#[tokio::test]
async fn a_known_password_buys_no_more_guesses_at_the_second_factor() {
    let (s, clock, admin, c) = ada_signed_in("sign_in_second_factor").await;
    let (st, _, enrolment) = send(&c, Method::POST, s.url("/self/methods/totp"), None).await;
    assert_eq!(st, 200, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/self/methods/totp/confirm"),
        Some(json!({"enrolment": enrolment["enrolment"], "code": code(&secret, &clock)})),
    )
    .await;
    assert_eq!(st, 204, "{v}");
    put_policy(
        &s,
        &admin,
        json!({"methods": ["password", "totp"], "first_factors": ["password"], "factors_required": 2}),
    )
    .await;

    let wrong = |code: &str| if code == "000000" { "111111" } else { "000000" }.to_owned();
    let mut refused_at = None;
    for attempt in 1..=10 {
        let b = home();
        let (id, _) = start(&s, &b, &admin).await;
        let (st, _, _) = password(&s, &b, &id, "ada", PASSWORD).await;
        if st == 429 {
            refused_at = Some(attempt);
            break;
        }
        assert_eq!(st, 200);
        let (st, _) = totp_step(&s, &b, &id, &wrong(&code(&secret, &clock))).await;
        assert!(st == 401 || st == 429, "{st}");
        if st == 429 {
            refused_at = Some(attempt);
            break;
        }
    }
    let refused_at = refused_at.expect("wrong codes after a right password are limited");
    assert!(refused_at <= 7, "refused after {refused_at} sign-ins");

    // Once the wait is over (the failures still count for a quarter of an
    // hour), a whole sign-in clears the count: four wrong codes after it
    // begin no wait.
    clock.advance(Duration::minutes(2));
    let b = home();
    let (id, _) = start(&s, &b, &admin).await;
    assert_eq!(password(&s, &b, &id, "ada", PASSWORD).await.0, 200);
    let (st, v) = totp_step(&s, &b, &id, &code(&secret, &clock)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(complete(&s, &b, &id).await.0, 200);
    for n in 1..domain::throttle::SIGN_IN_FAILURES_BEFORE_WAIT {
        let (id, _) = start(&s, &b, &admin).await;
        assert_eq!(password(&s, &b, &id, "ada", PASSWORD).await.0, 200, "{n}");
        let (st, _) = totp_step(&s, &b, &id, &wrong(&code(&secret, &clock))).await;
        assert_eq!(st, 401, "counted from zero again: failure {n}");
    }
}

/// One address trying a password against many accounts (spraying) waits
/// once it has failed thirty times, whichever accounts it named; a person
/// it named still signs in from elsewhere.
#[tokio::test]
async fn an_address_spraying_passwords_over_accounts_waits() {
    let (mut s, clock) = TestServer::start_clocked(Store::Sqlite, "sign_in_spraying")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let sprayer = browser(Ipv4Addr::new(127, 0, 0, 3));
    let (id, _) = start(&s, &sprayer, &admin).await;
    let free = domain::throttle::ADDRESS_FREE_FAILURES;
    for n in 0..=free {
        let (st, _, v) = password(&s, &sprayer, &id, &format!("user{n}"), "Winter2026!").await;
        assert_eq!(st, 401, "attempt {n}: {v}");
    }
    let (st, headers, v) = password(&s, &sprayer, &id, "someone-else", "Winter2026!").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (429, Some("too-many-attempts")),
        "{v}"
    );
    assert!(headers.get("retry-after").is_some());
    let (st, _, _) = password(&s, &sprayer, &id, "ada", PASSWORD).await;
    assert_eq!(st, 429, "the address waits, whatever it asks");
    sign_in(&s, &home(), &admin, "ada").await;
    // The count is in the log: a restart (or another node) keeps the wait.
    s.restart_clocked(clock.clone()).await;
    s.wait_ready().await;
    let (st, _, _) = password(&s, &sprayer, &id, "ada", PASSWORD).await;
    assert_eq!(st, 429, "after a restart");
    clock.advance(Duration::seconds(2));
    let (st, _, v) = password(&s, &sprayer, &id, "ada", PASSWORD).await;
    assert_eq!(st, 200, "once the wait is over: {v}");
}
