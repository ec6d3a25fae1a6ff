//! The audit trail: admin actions and OAuth events as entries with actor,
//! source IP and outcome; filters, cursor pagination, JSONL and CSV export,
//! and the link from an entry to its stored event.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Admin, Store, TestServer, http};

const AGENT: &str = "audit-test/1.0 (a, \"quoted\" agent)";

/// `GET path` as the admin; the page, after asserting a 200.
async fn page(s: &TestServer, admin: &Admin, path: &str) -> Value {
    let (st, ct, v) = s.call(Method::GET, path, &admin.token, None).await;
    assert_eq!((st, ct.as_str()), (200, "application/json"), "{path}: {v}");
    v
}

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().unwrap()
}

fn actions(page: &Value) -> Vec<&str> {
    items(page)
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

fn ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `path` until `done` holds for its page (events appended without a
/// read-your-writes wait reach the read model a moment later).
pub async fn until(
    s: &TestServer,
    admin: &Admin,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..250 {
        let p = page(s, admin, path).await;
        if done(&p) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never showed what was expected");
}

/// Strictly newest first: log positions decrease.
fn assert_newest_first(entries: &[Value]) {
    let positions: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["commit_position"].as_u64().unwrap(),
                e["prepare_position"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] > w[1]),
        "newest first: {positions:?}"
    );
}

/// The longest run of lowercase hex digits: a SHA-256 hash is 64.
fn longest_hex_run(text: &str) -> usize {
    text.split(|c: char| !matches!(c, '0'..='9' | 'a'..='f'))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// A minimal RFC 4180 reader: quoted fields, doubled quotes, CRLF records.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "records end with CRLF");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            '\n' => panic!("a bare LF outside quotes"),
            c => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty() && !quoted,
        "the last record ends with CRLF"
    );
    rows
}

/// `GET path` as the admin: (status, content type, content disposition, body).
async fn download(s: &TestServer, admin: &Admin, path: &str) -> (u16, String, String, String) {
    let r = http()
        .get(s.url(path))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (st, ct, cd) = (
        r.status().as_u16(),
        header("content-type"),
        header("content-disposition"),
    );
    (st, ct, cd, r.text().await.unwrap())
}

/// Waits until the server signs with an active ES256 key: on PostgreSQL the
/// activation written at start-up may become readable (and reach the key
/// ring) a moment after `/readyz` first answers 200.
async fn wait_for_signing_key(s: &TestServer) {
    for _ in 0..250 {
        if s.server().state.tokens.can_sign() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no active signing key");
}

async fn audit_trail(store: Store) {
    let Some(s) = TestServer::start(store, "audit").await else {
        return;
    };
    s.wait_ready().await;
    wait_for_signing_key(&s).await;
    let admin = s.admin().await;

    // As the admin: an organization (with a user agent that needs CSV
    // quoting), a client in it, a secret.
    let r = http()
        .post(s.url("/admin/organizations"))
        .bearer_auth(&admin.token)
        .header("user-agent", AGENT)
        .json(&json!({"name": "Audited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let org: Value = r.json().await.unwrap();
    let org_id = org["id"].as_str().unwrap().to_owned();
    let c = s
        .create_client(
            &admin,
            json!({
            "organization_id": org_id, "client_type": "confidential", "name": "audited",
            "grant_types": ["client_credentials"], "scopes": ["read"],
            "token_endpoint_auth_method": "client_secret_basic"}),
        )
        .await;
    let client_id = c["client_id"].as_str().unwrap().to_owned();
    let (secret_id, secret) = s.create_secret(&admin, &client_id).await;

    // A failed client authentication, then a token.
    let r = http()
        .post(s.url("/oauth/token"))
        .basic_auth(&client_id, Some("not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let token = s.token_basic(&client_id, &secret, None).await;

    // Everything is in the trail once the token's issue is.
    until(
        &s,
        &admin,
        &format!("/admin/audit?actor_id={client_id}&action=token.issued.v1"),
        |p| items(p).len() == 1,
    )
    .await;
    let all = until(&s, &admin, "/admin/audit?limit=200", |p| {
        actions(p).contains(&"client.authentication_failed.v1")
    })
    .await;
    assert!(all.get("next_cursor").is_none());
    let all = items(&all).clone();
    assert_newest_first(&all);

    // By actor: the admin's actions, newest first, with its id and the
    // request's source IP, and never a secret or a hash.
    let by_admin = page(
        &s,
        &admin,
        &format!("/admin/audit?actor_id={}&limit=200", admin.client_id),
    )
    .await;
    let text = by_admin.to_string();
    assert!(!text.contains(&secret), "no secret value");
    assert!(longest_hex_run(&text) < 64, "no hash: {text}");
    let entries = items(&by_admin);
    assert_newest_first(entries);
    assert!(
        entries
            .iter()
            .all(|e| e["actor_id"] == admin.client_id.as_str() && e["actor_kind"] == "client")
    );
    let find = |action: &str| {
        entries
            .iter()
            .position(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("{action} in {text}"))
    };
    let (o, c, k) = (
        find("organization.created.v1"),
        find("client.created.v1"),
        find("client.secret_created.v1"),
    );
    assert!(
        k < c && c < o,
        "newest first: the secret, the client, the organization"
    );
    for i in [o, c, k] {
        let e = &entries[i];
        assert_eq!(e["source_ip"], "127.0.0.1", "{e}");
        assert_eq!(e["outcome"], "success");
        assert_eq!(e["organization"], org_id.as_str());
        assert_eq!(
            e["links"]["event"],
            format!("/admin/audit/events/{}", e["position"].as_str().unwrap()).as_str()
        );
    }
    assert_eq!(entries[o]["user_agent"], AGENT);
    assert_eq!(
        entries[o]["target"],
        format!("organization-{org_id}").as_str()
    );
    assert_eq!(entries[c]["target"], format!("client-{client_id}").as_str());
    assert_eq!(entries[k]["category"], "client");

    // By action prefix.
    let clients = page(&s, &admin, "/admin/audit?action=client.*&limit=200").await;
    let names = actions(&clients);
    assert!(names.iter().all(|a| a.starts_with("client.")), "{names:?}");
    for a in [
        "client.created.v1",
        "client.secret_created.v1",
        "client.authentication_failed.v1",
    ] {
        assert!(names.contains(&a), "{a} in {names:?}");
    }
    let exact = page(
        &s,
        &admin,
        "/admin/audit?action=client.created.v1&limit=200",
    )
    .await;
    assert!(actions(&exact).iter().all(|a| *a == "client.created.v1"));

    // By outcome: the failed authentication, anonymous, from 127.0.0.1.
    let failures = page(&s, &admin, "/admin/audit?outcome=failure").await;
    let failed = items(&failures);
    assert_eq!(failed.len(), 1, "{failures}");
    assert_eq!(failed[0]["action"], "client.authentication_failed.v1");
    assert_eq!(failed[0]["outcome"], "failure");
    assert_eq!(failed[0]["actor_kind"], "anonymous");
    assert_eq!(failed[0]["source_ip"], "127.0.0.1");
    assert_eq!(failed[0]["category"], "authfailures");
    let successes = page(&s, &admin, "/admin/audit?outcome=success&limit=200").await;
    assert_eq!(items(&successes).len(), all.len() - 1);

    // Combined filters and the other columns.
    let p = page(
        &s,
        &admin,
        &format!(
            "/admin/audit?organization={org_id}&actor_kind=client&source_ip=127.0.0.1&category=client&limit=200"
        ),
    )
    .await;
    assert_eq!(
        actions(&p),
        vec!["client.secret_created.v1", "client.created.v1"]
    );
    // By User-Agent (URL-encoded: it has spaces, quotes and a comma).
    let by_agent =
        reqwest::Url::parse_with_params("http://h/admin/audit", &[("user_agent", AGENT)]).unwrap();
    let p = page(
        &s,
        &admin,
        &format!("{}?{}", by_agent.path(), by_agent.query().unwrap()),
    )
    .await;
    assert_eq!(actions(&p), vec!["organization.created.v1"]);
    let corr = entries[o]["correlation_id"].as_str().unwrap();
    let p = page(&s, &admin, &format!("/admin/audit?correlation_id={corr}")).await;
    assert_eq!(actions(&p), vec!["organization.created.v1"]);
    let p = page(
        &s,
        &admin,
        &format!("/admin/audit?target=client-{client_id}&limit=200"),
    )
    .await;
    assert_eq!(
        actions(&p),
        vec!["client.secret_created.v1", "client.created.v1"]
    );

    // Time ranges: one that excludes everything finds nothing; one around
    // now finds everything.
    let none = page(
        &s,
        &admin,
        "/admin/audit?from_time=2000-01-01T00:00:00Z&to_time=2000-01-02T00:00:00Z",
    )
    .await;
    assert_eq!((items(&none).len(), none.get("next_cursor")), (0, None));
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .replace('+', "%2B")
    };
    let around = page(
        &s,
        &admin,
        &format!(
            "/admin/audit?limit=200&from_time={}&to_time={}",
            fmt(now - time::Duration::hours(1)),
            fmt(now + time::Duration::hours(1)),
        ),
    )
    .await;
    assert_eq!(ids(items(&around)), ids(&all));

    // Cursor pagination with limit=2 walks everything exactly once.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/audit?limit=2&cursor={c}"),
            None => "/admin/audit?limit=2".to_owned(),
        };
        let p = page(&s, &admin, &path).await;
        assert!(items(&p).len() <= 2);
        walked.extend(items(&p).iter().cloned());
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(ids(&walked), ids(&all), "every entry once, newest first");

    // Export: JSON lines and CSV hold the same entries, in the same order.
    let (st, ct, cd, body) = download(&s, &admin, "/admin/audit/export?format=jsonl").await;
    assert_eq!((st, ct.as_str()), (200, "application/x-ndjson"), "{body}");
    assert!(
        cd.starts_with("attachment; filename=\"audit-") && cd.ends_with(".jsonl\""),
        "{cd}"
    );
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, all, "the export's entries are the list's");
    assert!(!body.contains(&secret) && longest_hex_run(&body) < 64);

    let (st, ct, cd, body) = download(&s, &admin, "/admin/audit/export?format=csv").await;
    assert_eq!(st, 200, "{body}");
    assert!(ct.starts_with("text/csv"), "{ct}");
    assert!(
        cd.starts_with("attachment; filename=\"audit-") && cd.ends_with(".csv\""),
        "{cd}"
    );
    let rows = parse_csv(&body);
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let csv_ids: Vec<String> = rows[1..]
        .iter()
        .map(|r| r[col("event_id")].clone())
        .collect();
    assert_eq!(csv_ids, ids(&all));
    let org_row = rows
        .iter()
        .find(|r| r[col("action")] == "organization.created.v1" && r[col("organization")] == org_id)
        .unwrap();
    assert_eq!(org_row[col("user_agent")], AGENT, "quoted and read back");
    assert_eq!(org_row[col("source_ip")], "127.0.0.1");

    // The export takes the same filters.
    let (_, _, _, body) =
        download(&s, &admin, "/admin/audit/export?format=csv&outcome=failure").await;
    let rows = parse_csv(&body);
    assert_eq!(rows.len(), 2, "a header and the failure");
    let (_, _, _, body) = download(
        &s,
        &admin,
        &format!("/admin/audit/export?actor_id={}", admin.client_id),
    )
    .await;
    assert_eq!(body.lines().count(), entries.len(), "jsonl is the default");

    // The event link: the stored event, envelope and data, hashes redacted.
    let secret_entry = &entries[k];
    let (st, _, event) = s
        .call(
            Method::GET,
            secret_entry["links"]["event"].as_str().unwrap(),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 200, "{event}");
    assert_eq!(event["id"], secret_entry["event_id"]);
    assert_eq!(event["type"], "client.secret_created.v1");
    assert_eq!(event["stream"], secret_entry["target"]);
    assert_eq!(event["position"], secret_entry["position"]);
    assert_eq!(event["data"]["secret_id"], secret_id.as_str());
    assert_eq!(event["data"]["hash"]["$redacted"], "sha256");
    assert_eq!(event["metadata"]["actor"]["id"], admin.client_id.as_str());
    assert_eq!(event["metadata"]["source_ip"], "127.0.0.1");
    let text = event.to_string();
    assert!(
        !text.contains(&secret) && longest_hex_run(&text) < 64,
        "{text}"
    );
    let failed_link = failed[0]["links"]["event"].as_str().unwrap();
    let (st, _, event) = s.call(Method::GET, failed_link, &admin.token, None).await;
    assert_eq!(
        (st, event["type"].as_str()),
        (200, Some("client.authentication_failed.v1"))
    );
    assert_eq!(event["data"]["client_id"], client_id.as_str());
    let (st, _, _) = s
        .call(
            Method::GET,
            "/admin/audit/events/999999999",
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 404);

    // Bad input is a 400 problem.
    for bad in [
        "/admin/audit?outcome=maybe",
        "/admin/audit?actor_kind=robot",
        "/admin/audit?from_time=yesterday",
        "/admin/audit?to_time=2026-13-01T00:00:00Z",
        "/admin/audit?from_time=2026-02-01T00:00:00Z&to_time=2026-01-01T00:00:00Z",
        "/admin/audit?actor=someone",
        "/admin/audit?organization=not-a-guid",
        "/admin/audit?source_ip=localhost",
        "/admin/audit?action=client.*.v1",
        "/admin/audit?cursor=garbage",
        "/admin/audit?limit=0",
        "/admin/audit?limit=ten",
        "/admin/audit?actor_id=a&actor_id=b",
        "/admin/audit/export?format=xml",
        "/admin/audit/export?format=csv&outcome=maybe",
        "/admin/audit/events/not-a-position",
    ] {
        let (st, ct, p) = s.call(Method::GET, bad, &admin.token, None).await;
        assert_eq!(
            (st, ct.as_str()),
            (400, "application/problem+json"),
            "{bad}: {p}"
        );
        assert_eq!(p["status"], 400);
    }

    // Only admins read the trail.
    let r = http().get(s.url("/admin/audit")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (st, _, _) = s.call(Method::GET, "/admin/audit", &token, None).await;
    assert_eq!(st, 403);
    let (st, _, _) = s
        .call(Method::GET, "/admin/audit/export?format=csv", &token, None)
        .await;
    assert_eq!(st, 403);

    // Reading the trail changed nothing, so it recorded nothing.
    let after = page(&s, &admin, "/admin/audit?limit=200").await;
    assert_eq!(ids(items(&after)), ids(&all));

    // The OpenAPI document describes the audit endpoints.
    let doc: Value = http()
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/admin/audit",
        "/admin/audit/export",
        "/admin/audit/events/{position}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_on_sqlite() {
    audit_trail(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_on_postgres() {
    audit_trail(Store::Postgres).await;
}

/// The trail answers as of the request: while the read models cannot take
/// a new event (a test connection holds their database's write lock), a
/// query waits for it instead of answering without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_waits_for_the_events_before_the_request() {
    use sqlx::{Connection, Executor};
    let Some(s) = TestServer::start(Store::Sqlite, "audit-as-of").await else {
        return;
    };
    let admin = s.admin().await;
    let path = format!(
        "/admin/audit?action=token.issued.v1&actor_id={}",
        admin.client_id
    );
    // The admin's own token, once applied.
    let before = items(&until(&s, &admin, &path, |p| !items(p).is_empty()).await).len();

    let url = format!("sqlite://{}", s.data_dir.join("read.db").display());
    let mut lock = sqlx::SqliteConnection::connect(&url).await.unwrap();
    lock.execute("PRAGMA busy_timeout = 10000").await.unwrap();
    lock.execute("BEGIN IMMEDIATE").await.unwrap();
    // A grant appends its event without waiting for the read models.
    s.token_basic(&admin.client_id, &admin.secret, None).await;
    let asked = {
        let (base, token, path) = (s.url(&path), admin.token.clone(), path.clone());
        tokio::spawn(async move {
            let r = http().get(base).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap(), path)
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !asked.is_finished(),
        "the trail answered before it held the request's events"
    );
    lock.execute("ROLLBACK").await.unwrap();
    let (st, got, path) = asked.await.unwrap();
    assert_eq!(st, 200, "{path}: {got}");
    assert_eq!(items(&got).len(), before + 1, "{got}");
}

/// The types of the events of `stream`, in order.
async fn event_types(s: &TestServer, stream: &str) -> Vec<String> {
    s.server()
        .state
        .bus
        .log()
        .read_stream(stream, eventlog::Direction::Forwards, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test]
async fn a_sign_in_left_half_way_is_recorded_as_expired() {
    use crate::sign_in::{PASSWORD, complete, create_user, home, password, start};
    let (s, clock) = TestServer::start_clocked(Store::Sqlite, "audit-abandoned")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let c = home();
    let (left, _) = start(&s, &c, &admin).await;
    let (done, _) = start(&s, &c, &admin).await;
    assert_eq!(password(&s, &c, &done, "ada", PASSWORD).await.0, 200);
    assert_eq!(complete(&s, &c, &done).await.0, 200);
    let sweep = || api::authentication::expiry::expire_abandoned(&s.server().state);
    let left_stream = format!("signin-{left}");
    sweep().await.unwrap();
    assert!(
        !event_types(&s, &left_stream)
            .await
            .iter()
            .any(|t| t == "signin.expired.v1")
    );

    // Nobody comes back to it: once its time is up, the server records it.
    // The completed one is no longer open (the read model dropped it).
    clock.advance(time::Duration::minutes(11));
    let later = commands::Clock::now(&*clock);
    let mut open = Vec::new();
    for _ in 0..250 {
        open = projections::sign_ins::due(&s.server().state.read_db, later, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if open.contains(&left) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(open.contains(&left) && !open.contains(&done), "{open:?}");
    let mut recorded = false;
    for _ in 0..250 {
        sweep().await.unwrap();
        if event_types(&s, &left_stream)
            .await
            .last()
            .map(String::as_str)
            == Some("signin.expired.v1")
        {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        recorded,
        "the abandoned sign-in was never recorded as expired"
    );
    // Once: later sweeps (and other nodes) find it ended; the completed
    // sign-in is not touched.
    for _ in 0..3 {
        sweep().await.unwrap();
    }
    let types = event_types(&s, &left_stream).await;
    assert_eq!(
        types.iter().filter(|t| *t == "signin.expired.v1").count(),
        1,
        "{types:?}"
    );
    let types = event_types(&s, &format!("signin-{done}")).await;
    assert!(!types.iter().any(|t| t == "signin.expired.v1"), "{types:?}");
    let page = until(
        &s,
        &admin,
        "/admin/audit?action=signin.expired.v1&limit=10",
        |p| !items(p).is_empty(),
    )
    .await;
    assert_eq!(items(&page).len(), 1, "{page}");
    assert_eq!(items(&page)[0]["actor_kind"], "system", "{page}");
}
