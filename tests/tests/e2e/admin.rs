//! The admin API: authentication, problem documents, pagination, the
//! client-id and secret rules under concurrency, read-your-writes.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Store, TestServer, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_an_admin_token() {
    let s = TestServer::start(Store::Sqlite, "admin_auth")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;

    let r = http()
        .get(s.url("/admin/organizations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"idp\"",
        "no credentials: a challenge without an error code (RFC 6750 §3.1)"
    );
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], 401);
    assert!(p["type"].as_str().unwrap().starts_with("urn:idp:problem:"));

    let (st, ct, _) = s
        .call(Method::GET, "/admin/organizations", "garbage", None)
        .await;
    assert_eq!((st, ct.as_str()), (401, "application/problem+json"));
    let r = http()
        .get(s.url("/admin/organizations"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""),
        "a bad token is named as such"
    );

    // A valid token without the admin scope: 403.
    let c = s
        .create_client(&admin, json!({
            "organization_id": admin.organization_id, "client_type": "confidential", "name": "reader",
            "grant_types": ["client_credentials"], "scopes": ["read"],
            "token_endpoint_auth_method": "client_secret_basic"}))
        .await;
    let id = c["client_id"].as_str().unwrap();
    let (_, secret) = s.create_secret(&admin, id).await;
    let reader = s.token_basic(id, &secret, None).await;
    let (st, _, p) = s
        .call(Method::GET, "/admin/organizations", &reader, None)
        .await;
    assert_eq!(st, 403, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("idp:admin"));

    // A revoked admin token stops working at once.
    let t = s.token_basic(&admin.client_id, &admin.secret, None).await;
    let r = http()
        .post(s.url("/oauth/revoke"))
        .basic_auth(&admin.client_id, Some(&admin.secret))
        .form(&[("token", t.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, _, _) = s.call(Method::GET, "/admin/organizations", &t, None).await;
    assert_eq!(st, 401);

    // The OpenAPI document describes the admin API.
    let doc: Value = http()
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/admin/organizations",
        "/admin/clients",
        "/admin/clients/{id}/secrets",
        "/admin/keys/rotate",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
}

async fn organizations_and_pagination(store: Store) {
    let Some(s) = TestServer::start(store, "orgs").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    let mut ids = vec![admin.organization_id.clone()];
    for i in 0..5 {
        let (st, _, o) = s
            .call(
                Method::POST,
                "/admin/organizations",
                &admin.token,
                Some(json!({"name": format!("Org {i}")})),
            )
            .await;
        assert_eq!(st, 201, "{o}");
        // Read-your-writes: the next request sees it.
        let id = o["id"].as_str().unwrap().to_owned();
        let (st, _, got) = s
            .call(
                Method::GET,
                &format!("/admin/organizations/{id}"),
                &admin.token,
                None,
            )
            .await;
        assert_eq!(
            (st, got["name"].as_str()),
            (200, Some(format!("Org {i}").as_str()))
        );
        ids.push(id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/organizations?limit=2&cursor={c}"),
            None => "/admin/organizations?limit=2".to_owned(),
        };
        let (st, _, page) = s.call(Method::GET, &path, &admin.token, None).await;
        assert_eq!(st, 200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every organization once, in order");

    let (st, _, p) = s
        .call(
            Method::PATCH,
            &format!("/admin/organizations/{}", ids[1]),
            &admin.token,
            Some(json!({"name": "  "})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &format!("/admin/organizations/{}", ids[1]),
            &admin.token,
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!((st, p["name"].as_str()), (200, Some("Renamed")));
    let (st, _, _) = s
        .call(
            Method::GET,
            &format!("/admin/organizations/{}", Uuid::now_v7()),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (st, _, _) = s
        .call(
            Method::GET,
            "/admin/organizations/not-a-uuid",
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 400);
    let (st, _, _) = s
        .call(
            Method::GET,
            "/admin/organizations?limit=0",
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 400);
    let (st, _, _) = s
        .call(
            Method::POST,
            "/admin/organizations",
            &admin.token,
            Some(json!({"nom": "x"})),
        )
        .await;
    assert!(st == 400 || st == 422, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_and_pagination_on_sqlite() {
    organizations_and_pagination(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_and_pagination_on_postgres() {
    organizations_and_pagination(Store::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_are_guids_and_unique_under_concurrency() {
    let s = TestServer::start(Store::Sqlite, "client_ids")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let body = |id: &str| {
        json!({
        "organization_id": admin.organization_id, "client_id": id, "client_type": "confidential",
        "name": "svc", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"})
    };

    let (st, ct, p) = s
        .call(
            Method::POST,
            "/admin/clients",
            &admin.token,
            Some(body("not-a-guid")),
        )
        .await;
    assert_eq!((st, ct.as_str()), (422, "application/problem+json"));
    assert!(p["detail"].as_str().unwrap().contains("GUID"), "{p}");

    let id = Uuid::new_v4().to_string();
    let results = join_all((0..10).map(|_| {
        s.call(
            Method::POST,
            "/admin/clients",
            &admin.token,
            Some(body(&id)),
        )
    }))
    .await;
    let created = results.iter().filter(|(st, _, _)| *st == 201).count();
    let taken = results.iter().filter(|(st, _, _)| *st == 409).count();
    assert_eq!((created, taken), (1, 9), "{results:?}");
    assert_eq!(
        results.iter().find(|r| r.0 == 201).unwrap().2["client_id"],
        id.as_str()
    );

    // Redirect URIs: https, or http only on loopback.
    let mut web = body(&Uuid::new_v4().to_string());
    web["grant_types"] = json!(["authorization_code"]);
    web["redirect_uris"] = json!(["http://app.example/cb"]);
    let (st, _, p) = s
        .call(
            Method::POST,
            "/admin/clients",
            &admin.token,
            Some(web.clone()),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    web["redirect_uris"] = json!(["http://127.0.0.1:9000/cb", "https://app.example/cb"]);
    let (st, _, p) = s
        .call(Method::POST, "/admin/clients", &admin.token, Some(web))
        .await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(
        p["redirect_uris"],
        json!(["http://127.0.0.1:9000/cb", "https://app.example/cb"])
    );

    // Unknown organization: refused.
    let mut orphan = body(&Uuid::new_v4().to_string());
    orphan["organization_id"] = json!(Uuid::now_v7().to_string());
    let (st, _, _) = s
        .call(Method::POST, "/admin/clients", &admin.token, Some(orphan))
        .await;
    assert_eq!(st, 422);

    // Filters.
    let (_, _, page) = s
        .call(
            Method::GET,
            &format!(
                "/admin/clients?organization_id={}&name_contains=SV",
                admin.organization_id
            ),
            &admin.token,
            None,
        )
        .await;
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["svc", "svc"]);
}

async fn secret_limit_race(store: Store) {
    let Some(s) = TestServer::start(store, "secret_race").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    let c = s
        .create_client(&admin, json!({
            "organization_id": admin.organization_id, "client_type": "confidential", "name": "busy",
            "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}))
        .await;
    let id = c["client_id"].as_str().unwrap().to_owned();
    let path = format!("/admin/clients/{id}/secrets");
    let results = join_all((0..50).map(|i| {
        s.call(
            Method::POST,
            &path,
            &admin.token,
            Some(json!({"description": format!("s{i}")})),
        )
    }))
    .await;
    let ok: Vec<&Value> = results
        .iter()
        .filter(|r| r.0 == 201)
        .map(|r| &r.2)
        .collect();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|r| r.0 == 409)
        .map(|r| &r.2)
        .collect();
    assert_eq!((ok.len(), refused.len()), (10, 40));
    assert!(
        refused
            .iter()
            .all(|p| p["type"] == "urn:idp:problem:secret-limit" && p["limit"] == 10)
    );
    assert!(
        refused[0]["detail"]
            .as_str()
            .unwrap()
            .contains("at most 10")
    );
    for created in &ok {
        assert_eq!(created["secret"].as_str().unwrap().len(), 43);
        assert!(
            created["expires_at"].as_str().is_some(),
            "secrets expire by default"
        );
    }

    let (st, _, list) = s.call(Method::GET, &path, &admin.token, None).await;
    assert_eq!(st, 200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    let text = list.to_string();
    for created in &ok {
        assert!(
            !text.contains(created["secret"].as_str().unwrap()),
            "values are never listed"
        );
    }
    assert!(
        items
            .iter()
            .all(|i| i.get("hash").is_none() && i["expires_at"].as_str().is_some())
    );

    // A secret that never expires is refused by default configuration; so is
    // one beyond the maximum lifetime.
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &format!("{path}/{}", items[0]["id"].as_str().unwrap()),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _, p) = s
        .call(
            Method::POST,
            &path,
            &admin.token,
            Some(json!({"never_expires": true})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    let (st, _, p) = s
        .call(
            Method::POST,
            &path,
            &admin.token,
            Some(json!({"expires_at": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(st, 422, "{p}");

    // The last-used time appears once a secret authenticates.
    let (st, _, fresh) = s
        .call(
            Method::POST,
            &path,
            &admin.token,
            Some(json!({"description": "used"})),
        )
        .await;
    assert_eq!(st, 201);
    let token = s
        .token_basic(&id, fresh["secret"].as_str().unwrap(), None)
        .await;
    assert!(!token.is_empty());
    let mut used = None;
    for _ in 0..100 {
        let (_, _, list) = s.call(Method::GET, &path, &admin.token, None).await;
        used = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == fresh["id"])
            .and_then(|i| i["last_used_at"].as_str().map(str::to_owned));
        if used.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(used.is_some(), "last_used_at is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_secret_creates_leave_ten_on_sqlite() {
    secret_limit_race(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_secret_creates_leave_ten_on_postgres() {
    secret_limit_race(Store::Postgres).await;
}
