//! The policy decision point over HTTP against the real server: a Rego
//! policy uploaded, refused when it does not compile, activated and rolled
//! back, deciding on roles, custom attributes, the end user's address and
//! the time of day from the server's clock; batches; decisions recorded.

use commands::Clock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::audit::until;
use crate::harness::{Admin, Store, TestServer, http};
use crate::oauth::confidential;

async fn admin_call(
    s: &TestServer,
    admin: &Admin,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, _, v) = s.call(method, path, &admin.token, body).await;
    (status, v)
}

async fn log_len(s: &TestServer) -> u64 {
    let log = s.server().state.bus.log();
    log.count_after(eventlog::Position::START).await.unwrap()
}

/// A decision point's client: (id, secret).
async fn pep(s: &TestServer, admin: &Admin) -> (String, String) {
    let c = s
        .create_client(
            admin,
            confidential(
                &admin.organization_id,
                "client_secret_basic",
                &["idp:authz"],
            ),
        )
        .await;
    let id = c["client_id"].as_str().unwrap().to_owned();
    let (_, secret) = s.create_secret(admin, &id).await;
    (id, secret)
}

async fn decide(s: &TestServer, token: &str, body: Value) -> (bool, Value) {
    let r = http()
        .post(s.url("/authz/decide"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    (v["decision"].as_bool().unwrap(), v["context"].clone())
}

fn ask(user: &str, action: &str, department: &str, ip: &str) -> Value {
    json!({
        "subject": {"type": "user", "id": user},
        "resource": {"type": "document", "id": "doc-1", "properties": {"department": department}},
        "action": {"name": action},
        "context": {"ip": ip},
    })
}

fn policy(hour: u8) -> String {
    format!(
        r#"package idp.authz
import rego.v1

default allow := false

allow if "auditor" in input.subject.roles

allow if {{
    input.action.name == "read"
    input.subject.attributes.department == input.resource.properties.department
}}

allow if {{
    input.action.name == "connect"
    net.cidr_contains("10.0.0.0/8", input.context.ip)
}}

allow if {{
    input.action.name == "deploy"
    input.context.time.hour == {hour}
}}
"#
    )
}

#[tokio::test]
async fn policies_are_validated_versioned_and_decide_on_roles_attributes_addresses_and_time() {
    let (s, clock) = TestServer::start_clocked(Store::Sqlite, "authz_decide")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let org = admin.organization_id.clone();
    let (pep_id, pep_secret) = pep(&s, &admin).await;
    let token = s.token_basic(&pep_id, &pep_secret, Some("idp:authz")).await;

    let (st, alice) = admin_call(
        &s,
        &admin,
        Method::POST,
        "/admin/users",
        Some(json!({
            "organization_id": org, "username": "alice", "attributes": {"department": "sales"},
        })),
    )
    .await;
    assert_eq!(st, 201, "{alice}");
    let alice = alice["user_id"].as_str().unwrap().to_owned();
    let (_, bob) = admin_call(
        &s,
        &admin,
        Method::POST,
        "/admin/users",
        Some(json!({
            "organization_id": org, "username": "bob",
        })),
    )
    .await;
    let bob = bob["user_id"].as_str().unwrap().to_owned();

    // No policy: everything is denied, and said why.
    let (d, ctx) = decide(&s, &token, ask(&alice, "read", "sales", "10.0.0.1")).await;
    assert!(!d);
    assert_eq!(ctx["policy_version"], Value::Null);
    assert!(ctx["reason"].as_str().unwrap().contains("no policy"));

    // A policy that does not compile is refused with where, and not kept.
    let before = log_len(&s).await;
    let path = format!("/admin/organizations/{org}/policies");
    let (st, p) = admin_call(
        &s,
        &admin,
        Method::POST,
        &path,
        Some(json!({"source": "package idp.authz\n\nallow if {\n  input.x ==\n}\n"})),
    )
    .await;
    assert_eq!(st, 422, "{p}");
    assert_eq!(p["line"], 5, "{p}");
    assert!(p["column"].as_u64().is_some(), "{p}");
    let (st, p) = admin_call(
        &s,
        &admin,
        Method::POST,
        &path,
        Some(json!({"source": "package elsewhere\nallow := true\n"})),
    )
    .await;
    assert_eq!(st, 422, "{p}");
    assert_eq!(log_len(&s).await, before, "a refused policy writes nothing");

    let hour = clock.now().hour();
    let (st, v1) = admin_call(
        &s,
        &admin,
        Method::POST,
        &path,
        Some(json!({"source": policy(hour), "description": "first", "activate": true})),
    )
    .await;
    assert_eq!(
        (st, v1["version"].clone(), v1["active"].clone()),
        (201, json!(1), json!(true)),
        "{v1}"
    );

    // Attributes: alice reads her department's documents, not another's.
    let (d, ctx) = decide(&s, &token, ask(&alice, "read", "sales", "192.168.0.1")).await;
    assert!(d);
    assert_eq!(ctx["policy_version"], 1);
    assert!(
        !decide(&s, &token, ask(&alice, "read", "hr", "192.168.0.1"))
            .await
            .0
    );
    // Roles: bob gains the auditor role through a group and may read anything.
    assert!(
        !decide(&s, &token, ask(&bob, "read", "hr", "192.168.0.1"))
            .await
            .0
    );
    let (_, role) = admin_call(
        &s,
        &admin,
        Method::POST,
        "/admin/roles",
        Some(json!({
            "organization_id": org, "name": "auditor", "permissions": ["audit:read"],
        })),
    )
    .await;
    let (_, group) = admin_call(
        &s,
        &admin,
        Method::POST,
        "/admin/groups",
        Some(json!({
            "organization_id": org, "name": "auditors",
        })),
    )
    .await;
    let (role, group) = (
        role["role_id"].as_str().unwrap(),
        group["group_id"].as_str().unwrap(),
    );
    admin_call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/groups/{group}/members"),
        Some(json!({"user_id": bob})),
    )
    .await;
    let (st, _) = admin_call(
        &s,
        &admin,
        Method::PUT,
        &format!("/admin/roles/{role}/holders/groups/{group}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    assert!(
        decide(&s, &token, ask(&bob, "read", "hr", "192.168.0.1"))
            .await
            .0
    );
    // The end user's address.
    assert!(
        decide(&s, &token, ask(&alice, "connect", "-", "10.20.30.40"))
            .await
            .0
    );
    assert!(
        !decide(&s, &token, ask(&alice, "connect", "-", "192.168.0.1"))
            .await
            .0
    );
    // The time of day, from the server's clock.
    assert!(
        decide(&s, &token, ask(&alice, "deploy", "-", "10.0.0.1"))
            .await
            .0
    );
    clock.advance(time::Duration::hours(1));
    let token = s.token_basic(&pep_id, &pep_secret, Some("idp:authz")).await;
    let admin = s.admin().await;
    assert!(
        !decide(&s, &token, ask(&alice, "deploy", "-", "10.0.0.1"))
            .await
            .0
    );
    // A subject of no organization of the caller's is denied.
    let (d, ctx) = decide(
        &s,
        &token,
        ask(
            &uuid::Uuid::now_v7().to_string(),
            "read",
            "sales",
            "10.0.0.1",
        ),
    )
    .await;
    assert!(!d);
    assert!(ctx["reason"].as_str().unwrap().contains("subject"), "{ctx}");

    // Version 2 denies everything; a rollback brings version 1 back.
    let (st, v2) = admin_call(
        &s,
        &admin,
        Method::POST,
        &path,
        Some(json!({"source": "package idp.authz\ndefault allow := false\n", "activate": true})),
    )
    .await;
    assert_eq!((st, v2["version"].clone()), (201, json!(2)));
    let (d, ctx) = decide(&s, &token, ask(&alice, "read", "sales", "10.0.0.1")).await;
    assert_eq!((d, ctx["policy_version"].clone()), (false, json!(2)));
    let (st, listed) =
        admin_call(&s, &admin, Method::POST, &format!("{path}/rollback"), None).await;
    assert_eq!(
        (st, listed["active_version"].clone()),
        (200, json!(1)),
        "{listed}"
    );
    let (d, ctx) = decide(&s, &token, ask(&alice, "read", "sales", "10.0.0.1")).await;
    assert_eq!((d, ctx["policy_version"].clone()), (true, json!(1)));
    let (st, p) = admin_call(&s, &admin, Method::POST, &format!("{path}/rollback"), None).await;
    assert_eq!(st, 409, "nothing before version 1: {p}");
    let (st, shown) = admin_call(&s, &admin, Method::GET, &format!("{path}/2"), None).await;
    assert_eq!((st, shown["active"].clone()), (200, json!(false)));
    assert!(
        shown["source"]
            .as_str()
            .unwrap()
            .contains("default allow := false")
    );
    let (st, _) = admin_call(
        &s,
        &admin,
        Method::POST,
        &format!("{path}/9/activate"),
        None,
    )
    .await;
    assert_eq!(st, 404);

    // A batch: defaults at the top, each evaluation its own part.
    let r = http()
        .post(s.url("/authz/decide/batch"))
        .bearer_auth(&token)
        .json(&json!({
            "subject": {"type": "user", "id": alice},
            "action": {"name": "read"},
            "evaluations": [
                {"resource": {"type": "document", "properties": {"department": "sales"}}},
                {"resource": {"type": "document", "properties": {"department": "hr"}}},
                {"resource": {"type": "document", "properties": {"department": "hr"}},
                 "subject": {"type": "user", "id": bob}},
            ],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let batch: Value = r.json().await.unwrap();
    let decisions: Vec<bool> = batch["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].as_bool().unwrap())
        .collect();
    assert_eq!(decisions, [true, false, true]);

    // Denials are recorded (eight so far), allowed decisions only once
    // the organization asks: an allowed then a denied decision add one.
    let audit = "/admin/audit?action=authz.decided.v1&limit=200";
    let recorded = |want: usize| {
        let (s, admin) = (&s, &admin);
        async move {
            for _ in 0..100 {
                let (_, v) = admin_call(s, admin, Method::GET, audit, None).await;
                let n = v["items"].as_array().unwrap().len();
                if n >= want {
                    return (n, v);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("fewer than {want} decisions recorded");
        }
    };
    let (n, v) = recorded(8).await;
    assert_eq!(n, 8, "{v}");
    assert!(
        decide(&s, &token, ask(&alice, "read", "sales", "10.0.0.1"))
            .await
            .0
    );
    assert!(
        !decide(&s, &token, ask(&alice, "read", "hr", "10.0.0.1"))
            .await
            .0
    );
    let (n, v) = recorded(9).await;
    assert_eq!(n, 9, "an allowed decision is not recorded by default: {v}");
    let subjects: Vec<&Value> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["subject"])
        .collect();
    assert!(
        subjects.contains(&&json!(format!("user:{}", alice.replace('-', "")))),
        "a decision about a person is theirs"
    );
    let (st, _) = admin_call(
        &s,
        &admin,
        Method::PUT,
        &format!("{path}/settings"),
        Some(json!({"log_all_decisions": true})),
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        decide(&s, &token, ask(&alice, "read", "sales", "10.0.0.1"))
            .await
            .0
    );
    let (n, _) = recorded(10).await;
    assert_eq!(n, 10, "every decision once the organization asks");

    // Without the scope, no decision.
    let admin_token = &admin.token;
    let r = http()
        .post(s.url("/authz/decide"))
        .bearer_auth(admin_token)
        .json(&ask(&alice, "read", "sales", "10.0.0.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn decision_records_older_than_the_retention_are_dropped_and_the_log_still_verifies() {
    let (mut config, dir) = TestServer::config(Store::Sqlite, "decision_retention")
        .await
        .unwrap();
    config.decision_retention_days = 2;
    let (mut s, clock) = TestServer::start_clocked_with(config, dir).await;
    s.wait_ready().await;
    let admin = s.admin().await;
    let (id, secret) = pep(&s, &admin).await;
    let token = s.token_basic(&id, &secret, Some("idp:authz")).await;
    let day_one = clock.now();
    let audit = "/admin/audit?action=authz.decided.v1&limit=200";
    // No policy is active: each decision is a denial, and recorded.
    for n in 0..3 {
        let (allowed, _) = decide(&s, &token, ask("someone", "read", "sales", "10.0.0.1")).await;
        assert!(!allowed, "decision {n}");
    }
    let stream = domain::authz_policy::decision_stream(day_one);
    let log = s.server().state.bus.log().clone();
    let held = log
        .read_stream(&stream, eventlog::Direction::Forwards, None, 100)
        .await
        .unwrap();
    assert_eq!(held.len(), 3);

    // The next day, the records are still within the two days kept.
    drop(log);
    clock.advance(time::Duration::days(1));
    s.restart_clocked(clock.clone()).await;
    s.wait_ready().await;
    let admin = s.admin().await;
    let token = s.token_basic(&id, &secret, Some("idp:authz")).await;
    decide(&s, &token, ask("someone", "read", "sales", "10.0.0.1")).await;
    let v = until(&s, &admin, audit, |v| {
        v["items"].as_array().unwrap().len() >= 4
    })
    .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 4, "{v}");

    // Two days on, the first day's stream goes whole, the second stays.
    clock.advance(time::Duration::days(1));
    s.restart_clocked(clock.clone()).await;
    s.wait_ready().await;
    let log_now = s.server().state.bus.log().clone();
    let admin = s.admin().await;
    let drops = "/admin/audit?action=retention.stream_dropped.v1";
    let dropped = until(&s, &admin, drops, |v| {
        !v["items"].as_array().unwrap().is_empty()
    })
    .await;
    assert_eq!(dropped["items"][0]["target"], "retention", "{dropped}");
    let (_, event) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!(
            "/admin/audit/events/{}",
            dropped["items"][0]["position"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(event["data"]["stream"], stream.as_str(), "{event}");
    assert_eq!(event["data"]["events"], 3, "{event}");
    assert!(
        log_now
            .read_stream(&stream, eventlog::Direction::Forwards, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // The trail lost the dropped entries with them; the later one stays.
    let (_, v) = admin_call(&s, &admin, Method::GET, audit, None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    let (st, _) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/audit/events/{}", held[0].position),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let report = log_now.verify(&|_| {}).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events_dropped, 3);
}
