//! Roles over the admin API, on SQLite and PostgreSQL: inheritance through
//! nested groups and the organization, refusals that write nothing, ETags,
//! and the roles and permissions a client's tokens and their introspection
//! carry as assignments change.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Admin, Store, TestServer, http};
use crate::oauth::confidential;

async fn call(
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

async fn create_role(s: &TestServer, admin: &Admin, name: &str, permissions: &[&str]) -> String {
    let (st, r) = call(
        s,
        admin,
        Method::POST,
        "/admin/roles",
        Some(json!({
            "organization_id": admin.organization_id,
            "name": name,
            "permissions": permissions,
        })),
    )
    .await;
    assert_eq!(st, 201, "{r}");
    r["role_id"].as_str().unwrap().to_owned()
}

async fn create(s: &TestServer, admin: &Admin, path: &str, body: Value, id: &str) -> String {
    let mut body = body;
    body["organization_id"] = json!(admin.organization_id);
    let (st, v) = call(s, admin, Method::POST, path, Some(body)).await;
    assert_eq!(st, 201, "{v}");
    v[id].as_str().unwrap().to_owned()
}

async fn assign(
    s: &TestServer,
    admin: &Admin,
    role: &str,
    kind: &str,
    holder: &str,
) -> (u16, Value) {
    call(
        s,
        admin,
        Method::PUT,
        &format!("/admin/roles/{role}/holders/{kind}/{holder}"),
        None,
    )
    .await
}

/// The role names of a user's effective roles, each with how it is held.
async fn effective(
    s: &TestServer,
    admin: &Admin,
    user: &str,
) -> (Vec<(String, Vec<String>)>, Value) {
    let (st, v) = call(
        s,
        admin,
        Method::GET,
        &format!("/admin/users/{user}/roles"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let roles = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let via = r["via"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["type"].as_str().unwrap().to_owned())
                .collect();
            (r["name"].as_str().unwrap().to_owned(), via)
        })
        .collect();
    (roles, v["permissions"].clone())
}

async fn inheritance(store: Store) {
    let Some(s) = TestServer::start(store, "roles_inheritance").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    let eng = create_role(&s, &admin, "engineer", &["repo:*"]).await;
    let support = create_role(&s, &admin, "support", &["tickets:read", "users:read"]).await;
    let staff = create_role(&s, &admin, "staff", &["wiki:read"]).await;

    let engineering = create(
        &s,
        &admin,
        "/admin/groups",
        json!({"name": "engineering"}),
        "group_id",
    )
    .await;
    let platform = create(
        &s,
        &admin,
        "/admin/groups",
        json!({"name": "platform"}),
        "group_id",
    )
    .await;
    let alan = create(
        &s,
        &admin,
        "/admin/users",
        json!({"username": "alan"}),
        "user_id",
    )
    .await;
    let (st, _) = call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/groups/{engineering}/members"),
        Some(json!({"group_id": platform})),
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/groups/{platform}/members"),
        Some(json!({"user_id": alan})),
    )
    .await;
    assert_eq!(st, 204);

    assert_eq!(
        assign(&s, &admin, &eng, "groups", &engineering).await.0,
        204
    );
    assert_eq!(assign(&s, &admin, &support, "users", &alan).await.0, 204);
    assert_eq!(
        assign(&s, &admin, &staff, "organizations", &admin.organization_id)
            .await
            .0,
        204
    );
    // Assigning again changes nothing.
    let before = log_len(&s).await;
    assert_eq!(assign(&s, &admin, &support, "users", &alan).await.0, 204);
    assert_eq!(
        log_len(&s).await,
        before,
        "a repeated assignment writes nothing"
    );

    let (roles, permissions) = effective(&s, &admin, &alan).await;
    assert_eq!(
        roles,
        [
            ("engineer".to_owned(), vec!["group".to_owned()]),
            ("staff".to_owned(), vec!["organization".to_owned()]),
            ("support".to_owned(), vec!["user".to_owned()]),
        ],
        "a role through a group two levels up, the organization's, and the user's own"
    );
    assert_eq!(
        permissions,
        json!(["repo:*", "tickets:read", "users:read", "wiki:read"])
    );

    // Leaving the nesting takes the group's role away.
    let (st, _) = call(
        &s,
        &admin,
        Method::DELETE,
        &format!("/admin/groups/{engineering}/members/{platform}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (roles, _) = effective(&s, &admin, &alan).await;
    let names: Vec<&str> = roles.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["staff", "support"]);

    // Holders of a role, and a change of its permissions under an ETag.
    let (st, holders) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/roles/{support}/holders"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(holders["items"][0]["type"], "user");
    assert_eq!(holders["items"][0]["id"], json!(alan));
    let (st, etag, r) = s_get_with_etag(&s, &admin, &format!("/admin/roles/{support}")).await;
    assert_eq!(st, 200, "{r}");
    let patch = |tag: &str| {
        http()
            .patch(s.url(&format!("/admin/roles/{support}")))
            .bearer_auth(&admin.token)
            .header("if-match", tag.to_owned())
            .json(&json!({"permissions": ["tickets:*"]}))
            .send()
    };
    let ok = patch(&etag).await.unwrap();
    assert_eq!(ok.status(), 200);
    let stale = patch(&etag).await.unwrap();
    assert_eq!(stale.status(), 412, "the old version is stale now");
    let (_, permissions) = effective(&s, &admin, &alan).await;
    assert_eq!(permissions, json!(["tickets:*", "wiki:read"]));

    // Refusals write nothing.
    let before = log_len(&s).await;
    let (st, p) = call(&s, &admin, Method::POST, "/admin/roles",
        Some(json!({"organization_id": admin.organization_id, "name": "bad", "permissions": ["users:read", "users read"]}))).await;
    assert_eq!(
        (st, p["field"].as_str(), p["permission"].as_str()),
        (422, Some("permissions"), Some("users read")),
        "{p}"
    );
    let (st, p) = assign(
        &s,
        &admin,
        &support,
        "users",
        &uuid::Uuid::now_v7().to_string(),
    )
    .await;
    assert_eq!((st, p["field"].as_str()), (422, Some("holder_id")), "{p}");
    let (st, _) = assign(&s, &admin, &support, "planets", &alan).await;
    assert_eq!(st, 404);
    let (st, p) = assign(
        &s,
        &admin,
        &support,
        "organizations",
        &uuid::Uuid::now_v7().to_string(),
    )
    .await;
    assert_eq!(st, 422, "{p}");
    assert_eq!(
        log_len(&s).await,
        before,
        "refused role commands write nothing"
    );

    // A deleted role leaves every holder.
    let (st, _) = call(
        &s,
        &admin,
        Method::DELETE,
        &format!("/admin/roles/{staff}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (roles, _) = effective(&s, &admin, &alan).await;
    let names: Vec<&str> = roles.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["support"]);
    let (st, _) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/roles/{staff}"),
        None,
    )
    .await;
    assert_eq!(st, 404);

    // A bulk assignment: one result per user, a stranger refused alone.
    let grace = create(
        &s,
        &admin,
        "/admin/users",
        json!({"username": "grace"}),
        "user_id",
    )
    .await;
    let stranger = uuid::Uuid::now_v7().to_string();
    let (st, bulk) = call(
        &s,
        &admin,
        Method::POST,
        "/admin/users/bulk",
        Some(json!({
            "action": "assign_role", "role_id": eng, "user_ids": [alan, grace, stranger],
        })),
    )
    .await;
    assert_eq!(st, 200, "{bulk}");
    let results: Vec<&str> = bulk["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["done", "done", "refused"], "{bulk}");
    let (roles, _) = effective(&s, &admin, &grace).await;
    assert_eq!(roles, [("engineer".to_owned(), vec!["user".to_owned()])]);

    // A role inside a role: its holders hold the inner one too; a cycle is
    // refused and writes nothing.
    let lead = create_role(&s, &admin, "lead", &["teams:manage"]).await;
    let (st, _) = call(
        &s,
        &admin,
        Method::PUT,
        &format!("/admin/roles/{lead}/includes/{support}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    assert_eq!(assign(&s, &admin, &lead, "users", &grace).await.0, 204);
    let (roles, permissions) = effective(&s, &admin, &grace).await;
    assert_eq!(
        roles,
        [
            ("engineer".to_owned(), vec!["user".to_owned()]),
            ("lead".to_owned(), vec!["user".to_owned()]),
            ("support".to_owned(), vec!["role".to_owned()]),
        ]
    );
    assert_eq!(permissions, json!(["repo:*", "teams:manage", "tickets:*"]));
    let before = log_len(&s).await;
    let (st, p) = call(
        &s,
        &admin,
        Method::PUT,
        &format!("/admin/roles/{support}/includes/{lead}"),
        None,
    )
    .await;
    assert_eq!(
        (st, p["type"].as_str().map(|t| t.ends_with("role-cycle"))),
        (409, Some(true)),
        "{p}"
    );
    assert_eq!(p["cycle"].as_array().map(Vec::len), Some(3), "{p}");
    assert_eq!(
        log_len(&s).await,
        before,
        "a refused inclusion writes nothing"
    );
    let (_, r) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/roles/{lead}"),
        None,
    )
    .await;
    assert_eq!(r["includes"], json!([support]));

    // The assignment is in the audit trail with its actor.
    let (st, audit) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/audit?action=role.assigned.v1&target=role-{support}"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{audit}");
    let entry = &audit["items"][0];
    assert_eq!(entry["actor_id"], json!(admin.client_id), "{audit}");
    assert_eq!(
        entry["subject"],
        json!(format!("user:{}", alan.replace('-', ""))),
        "{audit}"
    );
}

async fn s_get_with_etag(s: &TestServer, admin: &Admin, path: &str) -> (u16, String, Value) {
    let r = http()
        .get(s.url(path))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    (st, etag, r.json().await.unwrap())
}

#[tokio::test]
async fn roles_are_inherited_through_nested_groups_and_the_organization_on_sqlite() {
    inheritance(Store::Sqlite).await;
}

#[tokio::test]
async fn roles_are_inherited_through_nested_groups_and_the_organization_on_postgres() {
    inheritance(Store::Postgres).await;
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn introspect(s: &TestServer, id: &str, secret: &str, token: &str) -> Value {
    http()
        .post(s.url("/oauth/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_clients_tokens_and_introspection_follow_its_roles() {
    let (mut config, dir) = TestServer::config(Store::Sqlite, "roles_tokens")
        .await
        .unwrap();
    config.role_claims_max = 4;
    let s = TestServer::start_with(config, Some(dir)).await;
    s.wait_ready().await;
    let admin = s.admin().await;
    let c = s
        .create_client(
            &admin,
            confidential(&admin.organization_id, "client_secret_basic", &["read"]),
        )
        .await;
    let id = c["client_id"].as_str().unwrap().to_owned();
    let (_, secret) = s.create_secret(&admin, &id).await;

    let before = s.token_basic(&id, &secret, Some("read")).await;
    assert_eq!(payload(&before).get("roles"), None, "no role, no claim");
    let seen = introspect(&s, &id, &secret, &before).await;
    assert_eq!(
        (seen["active"].clone(), seen["roles"].clone()),
        (json!(true), json!([]))
    );

    let reporter = create_role(&s, &admin, "reporter", &["reports:read"]).await;
    assert_eq!(assign(&s, &admin, &reporter, "clients", &id).await.0, 204);
    let after = s.token_basic(&id, &secret, Some("read")).await;
    let claims = payload(&after);
    assert_eq!(claims["roles"], json!(["reporter"]));
    assert_eq!(claims["permissions"], json!(["reports:read"]));
    // Introspection answers the roles as they are now, even for the token
    // issued before the assignment.
    let seen = introspect(&s, &id, &secret, &before).await;
    assert_eq!(seen["roles"], json!(["reporter"]));
    assert_eq!(seen["permissions"], json!(["reports:read"]));
    let (st, v) = call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/clients/{id}/roles"),
        None,
    )
    .await;
    assert_eq!(
        (st, v["permissions"].clone()),
        (200, json!(["reports:read"]))
    );

    // Past the cap the token carries neither list; introspection has all.
    let writer = create_role(&s, &admin, "writer", &["reports:write", "drafts:write"]).await;
    assert_eq!(assign(&s, &admin, &writer, "clients", &id).await.0, 204);
    let capped = payload(&s.token_basic(&id, &secret, Some("read")).await);
    assert_eq!(capped.get("roles"), None, "{capped}");
    assert_eq!(capped["roles_omitted"], json!(true));
    let seen = introspect(&s, &id, &secret, &after).await;
    assert_eq!(seen["roles"], json!(["reporter", "writer"]));

    // Taken away: gone from introspection at once.
    for role in [&reporter, &writer] {
        let (st, _) = call(
            &s,
            &admin,
            Method::DELETE,
            &format!("/admin/roles/{role}/holders/clients/{id}"),
            None,
        )
        .await;
        assert_eq!(st, 204);
    }
    let seen = introspect(&s, &id, &secret, &after).await;
    assert_eq!(seen["roles"], json!([]));
    assert_eq!(seen["permissions"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_role_taken_away_on_one_node_leaves_the_tokens_of_the_other() {
    let Some(first) = TestServer::start(Store::Postgres, "roles_two_nodes").await else {
        return;
    };
    first.wait_ready().await;
    let admin = first.admin().await;
    let second = first.second_node().await;
    let c = first
        .create_client(
            &admin,
            confidential(&admin.organization_id, "client_secret_basic", &["read"]),
        )
        .await;
    let id = c["client_id"].as_str().unwrap().to_owned();
    let (_, secret) = first.create_secret(&admin, &id).await;
    let reporter = create_role(&first, &admin, "reporter", &["reports:read"]).await;
    assert_eq!(
        assign(&first, &admin, &reporter, "clients", &id).await.0,
        204
    );
    // Each node issues a token with the role, and keeps its claims.
    for s in [&first, &second] {
        let claims = roles_become(s, &id, &secret, Some(json!(["reporter"]))).await;
        assert_eq!(claims["roles"], json!(["reporter"]), "{claims}");
    }
    // Taken away through the second node: the first node's next tokens
    // lose it too, whichever node's read model applied the change.
    let (st, _) = call(
        &second,
        &admin,
        Method::DELETE,
        &format!("/admin/roles/{reporter}/holders/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    for s in [&second, &first] {
        let claims = roles_become(s, &id, &secret, None).await;
        assert_eq!(claims.get("roles"), None, "{claims}");
    }
}

/// The claims of the tokens `s` issues to the client, polled until their
/// roles claim is `want` (the last ones seen otherwise).
async fn roles_become(s: &TestServer, id: &str, secret: &str, want: Option<Value>) -> Value {
    let mut claims = Value::Null;
    for _ in 0..200 {
        claims = payload(&s.token_basic(id, secret, Some("read")).await);
        if claims.get("roles") == want.as_ref() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    claims
}

/// A client of `org` with the admin scope and the given built-in roles
/// (none: its organization's admin); its admin token.
async fn admin_client(s: &TestServer, admin: &Admin, org: &str, templates: &[&str]) -> String {
    let c = s
        .create_client(
            admin,
            confidential(org, "client_secret_basic", &["idp:admin"]),
        )
        .await;
    let id = c["client_id"].as_str().unwrap().to_owned();
    let (_, secret) = s.create_secret(admin, &id).await;
    for t in templates {
        let (st, r) = call(
            s,
            admin,
            Method::POST,
            "/admin/roles",
            Some(json!({"organization_id": org, "template": t})),
        )
        .await;
        assert_eq!(st, 201, "{r}");
        let role = r["role_id"].as_str().unwrap();
        assert_eq!(assign(s, admin, role, "clients", &id).await.0, 204);
    }
    s.token_basic(&id, &secret, Some("idp:admin")).await
}

#[tokio::test]
async fn the_admin_api_asks_for_permissions_and_stays_within_an_organization() {
    let s = TestServer::start(Store::Sqlite, "roles_admin_permissions")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let org = admin.organization_id.clone();
    let alan = create(
        &s,
        &admin,
        "/admin/users",
        json!({"username": "alan"}),
        "user_id",
    )
    .await;

    let auditor = admin_client(&s, &admin, &org, &["auditor"]).await;
    let as_auditor = |method: Method, path: String, body: Option<Value>| {
        let (s, token) = (&s, auditor.clone());
        async move { s.call(method, &path, &token, body).await }
    };
    let (st, _, _) = as_auditor(Method::GET, "/admin/users".into(), None).await;
    assert_eq!(st, 200);
    let (st, _, _) = as_auditor(Method::GET, "/admin/audit".into(), None).await;
    assert_eq!(st, 200);
    let (st, _, p) = as_auditor(
        Method::POST,
        "/admin/users".into(),
        Some(json!({"organization_id": org, "username": "eve"})),
    )
    .await;
    assert_eq!(
        (st, p["permission"].as_str()),
        (403, Some("users:write")),
        "{p}"
    );
    let (st, _, p) = as_auditor(
        Method::GET,
        format!("/admin/subjects?organization_id={org}&user_name=alan"),
        None,
    )
    .await;
    assert_eq!(
        (st, p["permission"].as_str()),
        (403, Some("privacy:read")),
        "{p}"
    );
    let (st, _, p) = as_auditor(
        Method::POST,
        format!("/admin/users/{alan}/deactivate"),
        None,
    )
    .await;
    assert_eq!(
        (st, p["permission"].as_str()),
        (403, Some("users:write")),
        "{p}"
    );

    // A user admin changes users but not clients.
    let user_admin = admin_client(&s, &admin, &org, &["user_admin"]).await;
    let (st, _, _) = s
        .call(
            Method::POST,
            &format!("/admin/users/{alan}/deactivate"),
            &user_admin,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, _, p) = s
        .call(
            Method::POST,
            "/admin/clients",
            &user_admin,
            Some(confidential(&org, "client_secret_basic", &["read"])),
        )
        .await;
    assert_eq!(
        (st, p["permission"].as_str()),
        (403, Some("clients:write")),
        "{p}"
    );

    // Another organization's admin sees nothing of this one.
    let (st, _, other) = s
        .call(
            Method::POST,
            "/admin/organizations",
            &admin.token,
            Some(json!({"name": "Other"})),
        )
        .await;
    assert_eq!(st, 201);
    let other_org = other["id"].as_str().unwrap().to_owned();
    let other_admin = admin_client(&s, &admin, &other_org, &["organization_admin"]).await;
    let (st, _, _) = s
        .call(
            Method::GET,
            &format!("/admin/users/{alan}"),
            &other_admin,
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (st, _, _) = s
        .call(
            Method::GET,
            &format!("/admin/users?organization_id={org}"),
            &other_admin,
            None,
        )
        .await;
    assert_eq!(st, 403);
    let (st, _, p) = s
        .call(
            Method::POST,
            "/admin/roles",
            &other_admin,
            Some(json!({"organization_id": org, "template": "organization_admin"})),
        )
        .await;
    assert_eq!(st, 404, "{p}");
    // … and a role of this organization cannot be given to its client.
    let (st, _, r) = s
        .call(
            Method::POST,
            "/admin/roles",
            &admin.token,
            Some(json!({"organization_id": org, "template": "viewer"})),
        )
        .await;
    assert_eq!(st, 201);
    let viewer = r["role_id"].as_str().unwrap();
    let (_, _, clients) = s
        .call(
            Method::GET,
            &format!("/admin/clients?organization_id={other_org}"),
            &admin.token,
            None,
        )
        .await;
    let other_client = clients["items"][0]["client_id"].as_str().unwrap();
    let (st, p) = assign(&s, &admin, viewer, "clients", other_client).await;
    assert_eq!(st, 422, "{p}");
    let (st, _, t) = s
        .call(Method::GET, "/admin/roles/templates", &admin.token, None)
        .await;
    assert_eq!((st, t.as_array().map(Vec::len)), (200, Some(5)));
}

#[tokio::test]
async fn access_at_any_moment_is_replayed_from_the_log() {
    use commands::Clock;
    use time::format_description::well_known::Rfc3339;
    let (s, clock) = TestServer::start_clocked(Store::Sqlite, "roles_as_of")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let at = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap();
    let writer = create_role(&s, &admin, "writer", &["users:write"]).await;
    let team = create(
        &s,
        &admin,
        "/admin/groups",
        json!({"name": "team"}),
        "group_id",
    )
    .await;
    let alan = create(
        &s,
        &admin,
        "/admin/users",
        json!({"username": "alan"}),
        "user_id",
    )
    .await;
    let before = clock.now() + time::Duration::seconds(30);
    clock.advance(time::Duration::minutes(1));
    let (st, _) = call(
        &s,
        &admin,
        Method::POST,
        &format!("/admin/groups/{team}/members"),
        Some(json!({"user_id": alan})),
    )
    .await;
    assert_eq!(st, 204);
    assert_eq!(assign(&s, &admin, &writer, "groups", &team).await.0, 204);
    let during = clock.now() + time::Duration::seconds(30);
    clock.advance(time::Duration::minutes(1));
    let (st, _) = call(
        &s,
        &admin,
        Method::DELETE,
        &format!("/admin/roles/{writer}/holders/groups/{team}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let after = clock.now() + time::Duration::seconds(30);
    clock.advance(time::Duration::minutes(1));

    let access = |t: time::OffsetDateTime| {
        let (s, admin, path) = (
            &s,
            &admin,
            format!("/admin/access?user={alan}&as_of={}", at(t)),
        );
        async move { call(s, admin, Method::GET, &path, None).await }
    };
    let (st, v) = access(before).await;
    assert_eq!(
        (st, v["existed"].clone(), v["roles"].clone()),
        (200, json!(true), json!([])),
        "{v}"
    );
    let (_, v) = access(during).await;
    assert_eq!(v["roles"][0]["name"], "writer", "{v}");
    assert_eq!(
        v["roles"][0]["via"][0],
        json!({"type": "group", "id": team})
    );
    assert_eq!(v["permissions"], json!(["users:write"]));
    assert_eq!(v["groups"], json!([team]));
    let (_, v) = access(after).await;
    assert_eq!(v["roles"], json!([]), "{v}");
    let (_, v) = access(before - time::Duration::hours(1)).await;
    assert_eq!(
        v["existed"],
        json!(false),
        "before the user was created: {v}"
    );

    let holders = |t: time::OffsetDateTime| {
        let (s, admin, path) = (
            &s,
            &admin,
            format!(
                "/admin/access/holders?permission=users:write&as_of={}",
                at(t)
            ),
        );
        async move { call(s, admin, Method::GET, &path, None).await }
    };
    let (st, v) = holders(during).await;
    assert_eq!(st, 200, "{v}");
    let held: Vec<(&str, &str)> = v["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["type"].as_str().unwrap(), h["id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        held,
        [("group", team.as_str()), ("user", alan.as_str())],
        "{v}"
    );
    let (_, v) = holders(after).await;
    assert_eq!(v["holders"], json!([]), "{v}");
    let (st, _) = call(
        &s,
        &admin,
        Method::GET,
        "/admin/access/holders?permission=users",
        None,
    )
    .await;
    assert_eq!(st, 422);
}

/// A user's access then is replayed from their own events and the groups
/// they name: a role given to them directly, one reaching them through a
/// parent group, another user's roles and memberships never counted, and a
/// group's deletion ending what it gave.
#[tokio::test]
async fn access_at_a_moment_reads_the_users_own_memberships() {
    use commands::Clock;
    use time::format_description::well_known::Rfc3339;
    let (s, clock) = TestServer::start_clocked(Store::Sqlite, "roles_as_of_own")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let reader = create_role(&s, &admin, "reader", &["users:read"]).await;
    let auditor = create_role(&s, &admin, "auditor", &["audit:read"]).await;
    let writer = create_role(&s, &admin, "writer", &["users:write"]).await;
    let mut ids = Vec::new();
    for name in ["parent", "child", "doomed"] {
        ids.push(
            create(
                &s,
                &admin,
                "/admin/groups",
                json!({"name": name}),
                "group_id",
            )
            .await,
        );
    }
    let [parent, child, doomed] = [ids[0].clone(), ids[1].clone(), ids[2].clone()];
    let mut people = Vec::new();
    for name in ["ada", "bob"] {
        people.push(
            create(
                &s,
                &admin,
                "/admin/users",
                json!({"username": name}),
                "user_id",
            )
            .await,
        );
    }
    let [ada, bob] = [people[0].clone(), people[1].clone()];
    let add = |group: String, body: Value| {
        let (s, admin) = (&s, &admin);
        async move {
            let path = format!("/admin/groups/{group}/members");
            let (st, v) = call(s, admin, Method::POST, &path, Some(body)).await;
            assert_eq!(st, 204, "{v}");
        }
    };
    add(parent.clone(), json!({"group_id": child})).await;
    add(child.clone(), json!({"user_id": ada})).await;
    add(doomed.clone(), json!({"user_id": ada})).await;
    add(child.clone(), json!({"user_id": bob})).await;
    assert_eq!(assign(&s, &admin, &reader, "groups", &parent).await.0, 204);
    assert_eq!(assign(&s, &admin, &auditor, "groups", &doomed).await.0, 204);
    assert_eq!(assign(&s, &admin, &writer, "users", &bob).await.0, 204);
    let before_deletion = clock.now() + time::Duration::seconds(30);
    clock.advance(time::Duration::minutes(1));
    let (st, v) = call(
        &s,
        &admin,
        Method::DELETE,
        &format!("/admin/groups/{doomed}"),
        None,
    )
    .await;
    assert_eq!(st, 204, "{v}");
    assert_eq!(assign(&s, &admin, &writer, "users", &ada).await.0, 204);
    clock.advance(time::Duration::minutes(1));

    let access = |user: &str, t: time::OffsetDateTime| {
        let path = format!(
            "/admin/access?user={user}&as_of={}",
            t.format(&Rfc3339).unwrap()
        );
        let (s, admin) = (&s, &admin);
        async move {
            let (st, v) = call(s, admin, Method::GET, &path, None).await;
            assert_eq!(st, 200, "{v}");
            v
        }
    };
    let v = access(&ada, before_deletion).await;
    assert_eq!(v["permissions"], json!(["audit:read", "users:read"]), "{v}");
    let mut groups: Vec<String> = serde_json::from_value(v["groups"].clone()).unwrap();
    groups.sort();
    let mut expected = vec![parent.clone(), child.clone(), doomed.clone()];
    expected.sort();
    assert_eq!(groups, expected, "{v}");
    let now = clock.now();
    let v = access(&ada, now).await;
    assert_eq!(
        v["permissions"],
        json!(["users:read", "users:write"]),
        "the deleted group gives nothing, the direct role counts: {v}"
    );
    let writer_via = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "writer")
        .map(|r| r["via"].clone());
    assert_eq!(
        writer_via,
        Some(json!([{"type": "user", "id": ada}])),
        "{v}"
    );
    let v = access(&bob, before_deletion).await;
    assert_eq!(
        v["permissions"],
        json!(["users:read", "users:write"]),
        "{v}"
    );
    assert_eq!(v["groups"].as_array().map(Vec::len), Some(2), "{v}");
}
