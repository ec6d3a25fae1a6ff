//! Users and groups over the admin API, on SQLite and PostgreSQL: the
//! life of a user, uniqueness under a race (in one server and across two),
//! ETags, groups and their cycles, search, bulk actions, history and
//! `as_of`, and refusals that write nothing.

use commands::Clock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Admin, Store, TestServer, http};

/// `(status, ETag, body)` of a call with optional `If-Match`.
async fn call(
    s: &TestServer,
    admin: &Admin,
    method: Method,
    path: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let mut req = http()
        .request(method, s.url(path))
        .bearer_auth(&admin.token);
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, etag, v)
}

async fn create_user(s: &TestServer, admin: &Admin, body: Value) -> (u16, Option<String>, Value) {
    let mut body = body;
    if body.get("organization_id").is_none() {
        body["organization_id"] = json!(admin.organization_id);
    }
    call(s, admin, Method::POST, "/admin/users", None, Some(body)).await
}

/// How many events the log holds.
async fn log_len(s: &TestServer) -> u64 {
    let log = s.server().state.bus.log();
    log.count_after(eventlog::Position::START).await.unwrap()
}

async fn lifecycle(store: Store) {
    let Some(s) = TestServer::start(store, "users_lifecycle").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;

    let (st, etag, ada) = create_user(
        &s,
        &admin,
        json!({
            "username": "Ada", "email": "ada@example.org", "email_verified": true,
            "phone_number": "+442071234567",
            "profile": {"given_name": "Ada", "family_name": "Lovelace", "birthdate": "1815-12-10",
                        "address": {"locality": "London", "country": "GB"}, "locale": "en-GB"},
            "attributes": {"department": "engines", "location": ["London", "Paris"]},
            "password": "analytical engine notes", "must_change_password": true,
        }),
    )
    .await;
    assert_eq!(st, 201, "{ada}");
    let id = ada["user_id"].as_str().unwrap().to_owned();
    assert_eq!(etag.as_deref(), Some(ada["version"].as_str().unwrap()));
    assert_eq!(ada["username"], "Ada");
    assert_eq!(ada["profile"]["address"]["locality"], "London");
    assert_eq!(ada["attributes"]["location"], json!(["London", "Paris"]));
    assert_eq!(ada["has_password"], true);
    assert_eq!(ada["must_change_password"], true);
    assert_eq!(ada["status"], "active");
    assert!(
        !ada.to_string().contains("argon2"),
        "no hash is shown: {ada}"
    );

    // A partial update changes what it names; the rest stays.
    let path = format!("/admin/users/{id}");
    let (st, etag2, changed) = call(
        &s,
        &admin,
        Method::PATCH,
        &path,
        etag.as_deref(),
        Some(json!({"email": "countess@example.org", "profile": {"nickname": "Countess", "locale": null},
                    "attributes": {"floor": "3", "location": null}})),
    )
    .await;
    assert_eq!(st, 200, "{changed}");
    assert_eq!(changed["email"], "countess@example.org");
    assert_eq!(
        changed["email_verified"], false,
        "a new address starts unverified"
    );
    assert_eq!(changed["profile"]["nickname"], "Countess");
    assert_eq!(changed["profile"]["given_name"], "Ada");
    assert!(changed["profile"].get("locale").is_none(), "{changed}");
    assert_eq!(
        changed["attributes"],
        json!({"department": "engines", "floor": "3"})
    );
    assert_ne!(etag2, etag);

    // A stale If-Match is refused and writes nothing.
    let before = log_len(&s).await;
    let (st, _, p) = call(
        &s,
        &admin,
        Method::PATCH,
        &path,
        etag.as_deref(),
        Some(json!({"username": "someone"})),
    )
    .await;
    assert_eq!(st, 412, "{p}");
    assert_eq!(p["current_etag"], json!(etag2.clone().unwrap()));
    assert_eq!(log_len(&s).await, before);
    let (st, _, p) = call(
        &s,
        &admin,
        Method::PATCH,
        &path,
        Some("W/\"1\""),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 412, "a weak tag never matches: {p}");

    // The old address is free again; the new one is taken.
    let (st, _, _) = create_user(
        &s,
        &admin,
        json!({"username": "other", "email": "ADA@example.org"}),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _, p) = create_user(
        &s,
        &admin,
        json!({"username": "third", "email": "countess@EXAMPLE.org"}),
    )
    .await;
    assert_eq!((st, p["field"].as_str()), (409, Some("email")), "{p}");

    // Deactivate (twice: idempotent) and reactivate.
    for _ in 0..2 {
        let (st, _, u) = call(
            &s,
            &admin,
            Method::POST,
            &format!("{path}/deactivate"),
            None,
            None,
        )
        .await;
        assert_eq!(
            (st, u["status"].as_str()),
            (200, Some("deactivated")),
            "{u}"
        );
    }
    let (st, _, u) = call(
        &s,
        &admin,
        Method::POST,
        &format!("{path}/reactivate"),
        None,
        None,
    )
    .await;
    assert_eq!((st, u["status"].as_str()), (200, Some("active")));

    // Passwords: the policy says which rule refused; clearing works.
    for (password, rule) in [
        ("short", "min_length"),
        ("my name is ada, truly", "username"),
        ("countess@example.org!!", "email"),
    ] {
        let (st, _, p) = call(
            &s,
            &admin,
            Method::PUT,
            &format!("{path}/password"),
            None,
            Some(json!({"password": password})),
        )
        .await;
        assert_eq!((st, p["rule"].as_str()), (422, Some(rule)), "{p}");
    }
    let (st, _, _) = call(
        &s,
        &admin,
        Method::PUT,
        &format!("{path}/password"),
        None,
        Some(json!({"password": "a new and long passphrase"})),
    )
    .await;
    assert_eq!(st, 204);
    let (_, _, u) = call(&s, &admin, Method::GET, &path, None, None).await;
    assert_eq!(
        (
            u["has_password"].as_bool(),
            u["must_change_password"].as_bool()
        ),
        (Some(true), Some(false))
    );
    let (st, _, u) = call(
        &s,
        &admin,
        Method::POST,
        &format!("{path}/password/require-change"),
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (st, u["must_change_password"].as_bool()),
        (200, Some(true)),
        "{u}"
    );
    let (st, _, _) = call(
        &s,
        &admin,
        Method::DELETE,
        &format!("{path}/password"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (_, _, u) = call(&s, &admin, Method::GET, &path, None, None).await;
    assert_eq!(u["has_password"], false);

    // Delete: gone from reads and search; the username is free again.
    let (st, _, _) = call(&s, &admin, Method::DELETE, &path, None, None).await;
    assert_eq!(st, 204);
    let (st, _, _) = call(&s, &admin, Method::GET, &path, None, None).await;
    assert_eq!(st, 404);
    let (_, _, page) = call(
        &s,
        &admin,
        Method::GET,
        "/admin/users?q=countess",
        None,
        None,
    )
    .await;
    assert_eq!(page["total"], 0, "{page}");
    let (st, _, again) = create_user(&s, &admin, json!({"username": "ADA"})).await;
    assert_eq!(st, 201, "{again}");

    // Every change is in the audit trail, with its actor.
    let (st, _, trail) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/audit?subject=user:{}", id.replace('-', "")),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200, "{trail}");
    let items = trail["items"].as_array().unwrap();
    assert!(items.len() >= 6, "{trail}");
    assert!(
        items
            .iter()
            .all(|e| e["actor_id"] == admin.client_id.as_str()),
        "{trail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lives_and_dies_on_sqlite() {
    lifecycle(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lives_and_dies_on_postgres() {
    lifecycle(Store::Postgres).await;
}

/// 50 creations of one username (in spellings that normalize alike), half
/// through each of `servers`: exactly one user.
async fn race(servers: &[&TestServer], admin: &Admin) {
    let spellings = ["grace", "Grace", "GRACE", "ｇｒａｃｅ", " grace "];
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = servers[i % servers.len()];
        let url = s.url("/admin/users");
        let token = admin.token.clone();
        let body = json!({"organization_id": admin.organization_id, "username": spellings[i % spellings.len()]});
        tasks.push(tokio::spawn(async move {
            let r = http()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap())
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (st, body) = t.await.unwrap();
        match st {
            201 => created += 1,
            409 => assert_eq!(body["field"], "username", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(created, 1);
    let (_, _, page) = call(
        servers[0],
        admin,
        Method::GET,
        "/admin/users?q=grace",
        None,
        None,
    )
    .await;
    assert_eq!(page["total"], 1, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_username_once_under_a_race_on_sqlite() {
    let s = TestServer::start(Store::Sqlite, "users_race")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    race(&[&s], &admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_username_once_under_a_race_across_two_servers_on_postgres() {
    let Some((mut config, dir)) = TestServer::config(Store::Postgres, "users_race").await else {
        return;
    };
    // Two nodes of one deployment: one issuer.
    config.issuer = Some("http://idp.test".into());
    let a = TestServer::start_with(config.clone(), Some(dir)).await;
    a.wait_ready().await;
    let admin = a.admin().await;
    // A second node on the same database, with its own caches and locks.
    let other_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        a.data_dir.join("master.key"),
        other_dir.path().join("master.key"),
    )
    .unwrap();
    let b = TestServer::start_with(
        api::Config {
            data_dir: other_dir.path().to_path_buf(),
            ..config
        },
        Some(other_dir),
    )
    .await;
    b.wait_ready().await;
    race(&[&a, &b], &admin).await;
}

async fn groups(store: Store) {
    let Some(s) = TestServer::start(store, "users_groups").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    let mut ids = Vec::new();
    for name in ["engineering", "platform", "identity"] {
        let (st, _, g) = call(
            &s,
            &admin,
            Method::POST,
            "/admin/groups",
            None,
            Some(json!({"organization_id": admin.organization_id, "name": name})),
        )
        .await;
        assert_eq!(st, 201, "{g}");
        ids.push(g["group_id"].as_str().unwrap().to_owned());
    }
    let member = |parent: &str, child: &str| {
        (
            format!("/admin/groups/{parent}/members"),
            json!({ "group_id": child }),
        )
    };
    for (p, c) in [(0, 1), (1, 2)] {
        let (path, body) = member(&ids[p], &ids[c]);
        let (st, _, v) = call(&s, &admin, Method::POST, &path, None, Some(body)).await;
        assert_eq!(st, 204, "{v}");
    }
    // identity ⊂ platform ⊂ engineering: engineering into identity closes a cycle.
    let before = log_len(&s).await;
    let (path, body) = member(&ids[2], &ids[0]);
    let (st, _, p) = call(&s, &admin, Method::POST, &path, None, Some(body)).await;
    assert_eq!(
        (st, p["type"].as_str().map(|t| t.ends_with("group-cycle"))),
        (409, Some(true)),
        "{p}"
    );
    assert_eq!(p["cycle"].as_array().unwrap().len(), 4, "{p}");
    let (path, body) = member(&ids[1], &ids[1]);
    let (st, _, _) = call(&s, &admin, Method::POST, &path, None, Some(body)).await;
    assert_eq!(st, 409);
    assert_eq!(
        log_len(&s).await,
        before,
        "a refused nesting writes nothing"
    );

    let (_, _, u) = create_user(&s, &admin, json!({"username": "alan"})).await;
    let uid = u["user_id"].as_str().unwrap().to_owned();
    let (st, _, _) = call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/groups/{}/members", ids[2]),
        None,
        Some(json!({"user_id": uid})),
    )
    .await;
    assert_eq!(st, 204);
    let (_, _, mine) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/users/{uid}/groups"),
        None,
        None,
    )
    .await;
    let names: Vec<(&str, bool)> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap(), g["direct"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("engineering", false),
            ("identity", true),
            ("platform", false)
        ]
    );
    let (_, _, page) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/users?group_id={}", ids[0]),
        None,
        None,
    )
    .await;
    assert_eq!(page["total"], 1, "members of nested groups count: {page}");
    let (_, _, members) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/groups/{}/members", ids[1]),
        None,
        None,
    )
    .await;
    assert_eq!(
        members["items"][0]["member_id"],
        ids[2].as_str(),
        "{members}"
    );
    assert_eq!(members["items"][0]["type"], "group");

    // An unknown user, and a rename under a stale version.
    let (st, _, p) = call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/groups/{}/members", ids[0]),
        None,
        Some(json!({"user_id": uuid::Uuid::now_v7()})),
    )
    .await;
    assert_eq!((st, p["field"].as_str()), (422, Some("user_id")), "{p}");
    let gpath = format!("/admin/groups/{}", ids[0]);
    let (_, etag, _) = call(&s, &admin, Method::GET, &gpath, None, None).await;
    let (st, _, g) = call(
        &s,
        &admin,
        Method::PATCH,
        &gpath,
        etag.as_deref(),
        Some(json!({"name": "eng", "description": "builders"})),
    )
    .await;
    assert_eq!(
        (st, g["name"].as_str(), g["description"].as_str()),
        (200, Some("eng"), Some("builders")),
        "{g}"
    );
    let (st, _, _) = call(
        &s,
        &admin,
        Method::PATCH,
        &gpath,
        etag.as_deref(),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(st, 412);

    // Deleting the middle group unlinks it both ways.
    let (st, _, _) = call(
        &s,
        &admin,
        Method::DELETE,
        &format!("/admin/groups/{}", ids[1]),
        None,
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (_, _, mine) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/users/{uid}/groups"),
        None,
        None,
    )
    .await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_nest_without_cycles_on_sqlite() {
    groups(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_nest_without_cycles_on_postgres() {
    groups(Store::Postgres).await;
}

async fn search(store: Store) {
    let Some((s, clock)) = TestServer::start_clocked(store, "users_search").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    let start = clock.now();
    // 25 users, one minute apart; every fifth in Paris, every third deactivated.
    let mut all = Vec::new();
    for i in 0..25 {
        clock.advance(time::Duration::minutes(1));
        let city = if i % 5 == 0 { "Paris" } else { "Lyon" };
        let (st, _, u) = create_user(
            &s,
            &admin,
            json!({"username": format!("user{i:02}"), "email": format!("mail{i:02}@example.org"),
                   "attributes": {"city": city}}),
        )
        .await;
        assert_eq!(st, 201, "{u}");
        let id = u["user_id"].as_str().unwrap().to_owned();
        if i % 3 == 0 {
            call(
                &s,
                &admin,
                Method::POST,
                &format!("/admin/users/{id}/deactivate"),
                None,
                None,
            )
            .await;
        }
        all.push(id);
    }
    let q = |query: &str| {
        let s = &s;
        let admin = &admin;
        let query = query.to_owned();
        async move {
            let (st, _, page) = call(
                s,
                admin,
                Method::GET,
                &format!("/admin/users?{query}"),
                None,
                None,
            )
            .await;
            assert_eq!(st, 200, "{query}: {page}");
            page
        }
    };
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(q("q=user1").await["total"], 10);
    assert_eq!(
        q("q=MAIL2").await["total"],
        5,
        "email prefix, case-insensitive"
    );
    assert_eq!(
        q(&format!("q={}", &all[7][..28])).await["items"][0]["user_id"],
        all[7].as_str()
    );
    assert_eq!(q("status=deactivated").await["total"], 9);
    assert_eq!(q("attribute=city%3DParis").await["total"], 5);
    assert_eq!(q("attribute=city%3DParis&status=active").await["total"], 3);
    let from = start + time::Duration::minutes(10);
    let to = start + time::Duration::minutes(15);
    let range = format!(
        "created_from={}&created_to={}",
        urlencode(
            &from
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        ),
        urlencode(
            &to.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        ),
    );
    assert_eq!(
        names(&q(&range).await),
        vec!["user09", "user10", "user11", "user12", "user13"]
    );
    let desc = q("sort=-username&limit=3").await;
    assert_eq!(names(&desc), vec!["user24", "user23", "user22"]);
    // Pages in creation order, newest first, cover everyone exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("sort=-created_at&limit=7&cursor={c}"),
            None => "sort=-created_at&limit=7".into(),
        };
        let page = q(&query).await;
        assert_eq!(page["total"], 25);
        seen.extend(names(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("user{i:02}")).collect();
    assert_eq!(seen, expected);
    for bad in [
        "sort=age",
        "status=gone",
        "attribute=city",
        "created_from=yesterday",
        "cursor=%%%",
    ] {
        let (st, _, p) = call(
            &s,
            &admin,
            Method::GET,
            &format!("/admin/users?{bad}"),
            None,
            None,
        )
        .await;
        assert_eq!(st, 400, "{bad}: {p}");
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_searched_filtered_sorted_and_paged_on_sqlite() {
    search(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_searched_filtered_sorted_and_paged_on_postgres() {
    search(Store::Postgres).await;
}

async fn history(store: Store) {
    let Some((s, clock)) = TestServer::start_clocked(store, "users_history").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    let (_, _, u) = create_user(
        &s,
        &admin,
        json!({"username": "hedy", "profile": {"family_name": "Kiesler"}}),
    )
    .await;
    let id = u["user_id"].as_str().unwrap().to_owned();
    let path = format!("/admin/users/{id}");
    let mut moments = Vec::new();
    for name in ["Markey", "Lamarr"] {
        clock.advance(time::Duration::minutes(10));
        moments.push(clock.now());
        clock.advance(time::Duration::minutes(10));
        let (st, _, _) = call(
            &s,
            &admin,
            Method::PATCH,
            &path,
            None,
            Some(json!({"profile": {"family_name": name}})),
        )
        .await;
        assert_eq!(st, 200);
    }
    let at = |t: time::OffsetDateTime| {
        format!(
            "{path}?as_of={}",
            urlencode(
                &t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap()
            )
        )
    };
    let (st, etag, then) = call(&s, &admin, Method::GET, &at(moments[0]), None, None).await;
    assert_eq!(st, 200, "{then}");
    assert_eq!(then["profile"]["family_name"], "Kiesler");
    assert_eq!(etag.as_deref(), Some("\"0\""));
    let (_, _, then) = call(&s, &admin, Method::GET, &at(moments[1]), None, None).await;
    assert_eq!(then["profile"]["family_name"], "Markey");
    let (_, _, now) = call(&s, &admin, Method::GET, &path, None, None).await;
    assert_eq!(now["profile"]["family_name"], "Lamarr");
    let (st, _, _) = call(
        &s,
        &admin,
        Method::GET,
        &at(moments[0] - time::Duration::days(1)),
        None,
        None,
    )
    .await;
    assert_eq!(st, 404, "not yet created then");

    let (st, _, changes) = call(
        &s,
        &admin,
        Method::GET,
        &format!("{path}/history"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let changes = changes.as_array().unwrap();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[0]["type"], "user.created.v1");
    assert_eq!(changes[2]["changed"], json!(["profile"]));
    assert!(
        changes
            .iter()
            .all(|c| c["actor_id"] == admin.client_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_at_any_moment_and_their_history_on_sqlite() {
    history(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_at_any_moment_and_their_history_on_postgres() {
    history(Store::Postgres).await;
}

async fn bulk(store: Store) {
    let Some(s) = TestServer::start(store, "users_bulk").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    let mut ids = Vec::new();
    for name in ["b1", "b2", "b3"] {
        let (_, _, u) = create_user(&s, &admin, json!({"username": name})).await;
        ids.push(u["user_id"].as_str().unwrap().to_owned());
    }
    call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/users/{}/deactivate", ids[1]),
        None,
        None,
    )
    .await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let (st, _, r) = call(
        &s,
        &admin,
        Method::POST,
        "/admin/users/bulk",
        None,
        Some(json!({"action": "deactivate", "user_ids": [ids[0], ids[1], unknown, ids[2]]})),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let results: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, vec!["done", "unchanged", "refused", "done"]);
    assert_eq!(r["results"][2]["problem"]["status"], 404, "{r}");
    assert_eq!(
        (
            r["done"].as_u64(),
            r["unchanged"].as_u64(),
            r["refused"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let (_, _, page) = call(
        &s,
        &admin,
        Method::GET,
        "/admin/users?status=deactivated",
        None,
        None,
    )
    .await;
    assert_eq!(page["total"], 3);

    let (_, _, g) = call(
        &s,
        &admin,
        Method::POST,
        "/admin/groups",
        None,
        Some(json!({"organization_id": admin.organization_id, "name": "ops"})),
    )
    .await;
    let gid = g["group_id"].as_str().unwrap();
    let (_, _, r) = call(
        &s,
        &admin,
        Method::POST,
        "/admin/users/bulk",
        None,
        Some(json!({"action": "add_to_group", "group_id": gid, "user_ids": ids})),
    )
    .await;
    assert_eq!(r["done"], 3, "{r}");
    let (_, _, page) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/users?group_id={gid}"),
        None,
        None,
    )
    .await;
    assert_eq!(page["total"], 3);

    // Refused as a whole, with nothing written.
    let before = log_len(&s).await;
    let many: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    for (body, field) in [
        (
            json!({"action": "deactivate", "user_ids": many}),
            "user_ids",
        ),
        (
            json!({"action": "add_to_group", "group_id": unknown, "user_ids": [ids[0]]}),
            "group_id",
        ),
        (json!({"action": "explode", "user_ids": [ids[0]]}), "action"),
    ] {
        let (st, _, p) = call(
            &s,
            &admin,
            Method::POST,
            "/admin/users/bulk",
            None,
            Some(body),
        )
        .await;
        assert_eq!((st, p["field"].as_str()), (422, Some(field)), "{p}");
    }
    assert_eq!(log_len(&s).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_answer_per_user_on_sqlite() {
    bulk(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_answer_per_user_on_postgres() {
    bulk(Store::Postgres).await;
}

async fn refusals(store: Store) {
    let Some(s) = TestServer::start(store, "users_refusals").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    let (st, _, _) = create_user(&s, &admin, json!({"username": "taken"})).await;
    assert_eq!(st, 201);
    let before = log_len(&s).await;
    let long = "x".repeat(300);
    for (body, status, field) in [
        (
            json!({"username": "a", "email": "not-an-email"}),
            422,
            "email",
        ),
        (
            json!({"username": "a", "phone_number": "0207 123 4567"}),
            422,
            "phone_number",
        ),
        (
            json!({"username": "a", "profile": {"birthdate": "1815-02-30"}}),
            422,
            "profile.birthdate",
        ),
        (
            json!({"username": "a", "profile": {"given_name": long}}),
            422,
            "profile.given_name",
        ),
        (
            json!({"username": "a", "attributes": {"1bad": "x"}}),
            422,
            "attributes",
        ),
        (json!({"username": "has space"}), 422, "username"),
        (json!({"username": "TAKEN"}), 409, "username"),
        (
            json!({"username": "a", "password": "short"}),
            422,
            "password",
        ),
        (json!({"username": "a", "user_id": "nope"}), 422, "user_id"),
        (
            json!({"username": "a", "organization_id": uuid::Uuid::now_v7()}),
            422,
            "organization_id",
        ),
    ] {
        let (st, _, p) = create_user(&s, &admin, body.clone()).await;
        assert_eq!(st, status, "{body}: {p}");
        if !field.is_empty() {
            let named = p["field"].as_str().unwrap_or_default();
            assert!(named.starts_with(field), "{body}: {p}");
        }
        assert!(p["type"].is_string(), "an RFC 9457 problem: {p}");
    }
    // Unknown fields are named too.
    for body in [
        json!({"username": "a", "nickname": "x"}),
        json!({"username": "a", "profile": {"shoe_size": "9"}}),
    ] {
        let (st, _, p) = create_user(&s, &admin, body.clone()).await;
        assert_eq!(st, 400, "{body}: {p}");
        assert!(
            p["detail"].as_str().unwrap().contains("unknown field"),
            "{p}"
        );
    }
    assert_eq!(
        log_len(&s).await,
        before,
        "nothing was written for a refused request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_on_sqlite() {
    refusals(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_on_postgres() {
    refusals(Store::Postgres).await;
}
