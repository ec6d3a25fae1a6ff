//! Registration tokens end to end: consume, exchange, refresh with reuse
//! detection, every refusal, the admin's view, and the count under races
//! (one server, and two servers sharing one PostgreSQL database).

use futures_util::future::join_all;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{ClientId, RefreshToken, RequestTokenError, TokenResponse, TokenUrl};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{Admin, Store, TestServer, http, oauth_http};

const AUTH_TOKEN_TYPE: &str = "urn:idp:params:oauth:token-type:auth_token";

/// A public installed application and a registration token for it.
pub(crate) async fn app_and_token(
    s: &TestServer,
    admin: &Admin,
    count: u64,
    expires_in: time::Duration,
) -> (String, String, String) {
    let app = s
        .create_client(admin, json!({
            "organization_id": admin.organization_id, "client_type": "public", "name": "desktop app",
            "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange", "refresh_token"],
            "scopes": ["app"], "token_endpoint_auth_method": "none"}))
        .await;
    let app_id = app["client_id"].as_str().unwrap().to_owned();
    let expires_at = (OffsetDateTime::now_utc() + expires_in)
        .format(&Rfc3339)
        .unwrap();
    let (st, _, rt) = s
        .call(Method::POST, "/admin/registration-tokens", &admin.token,
            Some(json!({"client_id": app_id, "description": "laptops", "count": count, "expires_at": expires_at})))
        .await;
    assert_eq!(st, 201, "{rt}");
    assert_eq!(rt["count"], count);
    assert_eq!(rt["used"], 0);
    assert_eq!(rt["status"], "active");
    (
        app_id,
        rt["id"].as_str().unwrap().to_owned(),
        rt["token"].as_str().unwrap().to_owned(),
    )
}

pub(crate) async fn consume(s: &TestServer, token: &str, instance: &str) -> (u16, Value) {
    let r = http()
        .post(s.url("/registration/consume"))
        .bearer_auth(token)
        .header("user-agent", "installer/1.0")
        .json(&json!({"instance_id": instance, "device_name": "laptop-7", "user_name": "ada", "app_version": "2.1.0"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub(crate) async fn exchange(s: &TestServer, app_id: &str, auth_token: &str) -> (u16, Value) {
    let r = http()
        .post(s.url("/oauth/token"))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_id", app_id),
            ("subject_token", auth_token),
            ("subject_token_type", AUTH_TOKEN_TYPE),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub(crate) async fn refresh(
    s: &TestServer,
    app_id: &str,
    refresh: &str,
) -> Result<(String, String), BasicErrorResponseType> {
    let client = BasicClient::new(ClientId::new(app_id.into()))
        .set_token_uri(TokenUrl::new(s.url("/oauth/token")).unwrap());
    match client
        .exchange_refresh_token(&RefreshToken::new(refresh.into()))
        .request_async(&oauth_http())
        .await
    {
        Ok(t) => Ok((
            t.access_token().secret().clone(),
            t.refresh_token().unwrap().secret().clone(),
        )),
        Err(RequestTokenError::ServerResponse(e)) => Err(e.error().clone()),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

async fn active(s: &TestServer, admin: &Admin, token: &str) -> bool {
    let r = http()
        .post(s.url("/oauth/introspect"))
        .basic_auth(&admin.client_id, Some(&admin.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["active"] == true
}

/// A second exchange of one auth token means it leaked: refused, and every
/// token issued from it stops working (as for a replayed authorization code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_exchange_revokes_the_instance() {
    let s = TestServer::start(Store::Sqlite, "reg_replayed_exchange")
        .await
        .unwrap();
    let admin = s.admin().await;
    let (app_id, _, rt) = app_and_token(&s, &admin, 1, time::Duration::days(1)).await;
    let (_, issued) = consume(&s, &rt, "kiosk-1").await;
    let auth_token = issued["auth_token"].as_str().unwrap();
    let (st, grant) = exchange(&s, &app_id, auth_token).await;
    assert_eq!(st, 200, "{grant}");
    let access = grant["access_token"].as_str().unwrap();
    let first_refresh = grant["refresh_token"].as_str().unwrap();
    assert!(active(&s, &admin, access).await);

    for attempt in ["replay", "again"] {
        let (st, again) = exchange(&s, &app_id, auth_token).await;
        assert_eq!(
            (st, again["error"].as_str()),
            (400, Some("invalid_request")),
            "{attempt}: a second exchange is refused (RFC 8693 §2.2.2)"
        );
    }
    let (st, v) = exchange(&s, &app_id, "not-an-auth-token").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    assert_eq!(
        refresh(&s, &app_id, first_refresh).await.unwrap_err(),
        BasicErrorResponseType::InvalidGrant
    );
    assert!(!active(&s, &admin, access).await, "its access token died");
    let (_, _, page) = s
        .call(
            Method::GET,
            "/admin/audit?action=auth_token.reuse_detected.v1",
            &admin.token,
            None,
        )
        .await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "recorded once: {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_lifecycle_of_an_instance() {
    let s = TestServer::start(Store::Sqlite, "reg_lifecycle")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let (app_id, rt_id, rt) = app_and_token(&s, &admin, 3, time::Duration::days(1)).await;

    let (st, issued) = consume(&s, &rt, "laptop-7-a").await;
    assert_eq!(st, 201, "{issued}");
    let auth_token = issued["auth_token"].as_str().unwrap().to_owned();
    assert_eq!(issued["registration_token_id"], rt_id.as_str());
    assert_eq!(issued["subject_token_type"], AUTH_TOKEN_TYPE);

    // Exchange once.
    let (st, grant) = exchange(&s, &app_id, &auth_token).await;
    assert_eq!(st, 200, "{grant}");
    assert_eq!(
        grant["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(grant["scope"], "app");
    let access = grant["access_token"].as_str().unwrap().to_owned();
    let first_refresh = grant["refresh_token"].as_str().unwrap().to_owned();
    assert!(active(&s, &admin, &access).await);

    // Refresh rotates: each refresh token works once.
    let (access2, second_refresh) = refresh(&s, &app_id, &first_refresh).await.unwrap();
    assert_ne!(second_refresh, first_refresh);
    assert!(active(&s, &admin, &access2).await);
    let (_, third_refresh) = refresh(&s, &app_id, &second_refresh).await.unwrap();

    // Reuse of a used refresh token revokes the whole chain.
    assert_eq!(
        refresh(&s, &app_id, &first_refresh).await.unwrap_err(),
        BasicErrorResponseType::InvalidGrant
    );
    assert_eq!(
        refresh(&s, &app_id, &third_refresh).await.unwrap_err(),
        BasicErrorResponseType::InvalidGrant
    );
    assert!(
        !active(&s, &admin, &access2).await,
        "the instance's access tokens die with the chain"
    );

    // A second instance, deleted by the admin: its refresh stops at once.
    let (_, issued_b) = consume(&s, &rt, "laptop-7-b").await;
    let (_, grant_b) = exchange(&s, &app_id, issued_b["auth_token"].as_str().unwrap()).await;
    let refresh_b = grant_b["refresh_token"].as_str().unwrap();
    let access_b = grant_b["access_token"].as_str().unwrap();
    let auth_b = issued_b["auth_token_id"].as_str().unwrap();
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &format!("/admin/auth-tokens/{auth_b}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(
        refresh(&s, &app_id, refresh_b).await.unwrap_err(),
        BasicErrorResponseType::InvalidGrant
    );
    assert!(!active(&s, &admin, access_b).await);

    // The admin's view: count, used, remaining, and who used it from where.
    let (_, _, shown) = s
        .call(
            Method::GET,
            &format!("/admin/registration-tokens/{rt_id}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(
        (shown["used"].as_i64(), shown["remaining"].as_i64()),
        (Some(2), Some(1))
    );
    assert!(
        shown["created_by"]
            .as_str()
            .unwrap()
            .contains(&admin.client_id)
    );
    let (_, _, list) = s
        .call(
            Method::GET,
            &format!("/admin/registration-tokens/{rt_id}/auth-tokens"),
            &admin.token,
            None,
        )
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for i in items {
        assert_eq!(i["device_name"], "laptop-7");
        assert_eq!(i["user_name"], "ada");
        assert_eq!(i["app_version"], "2.1.0");
        assert_eq!(i["source_ip"], "127.0.0.1");
        assert_eq!(i["user_agent"], "installer/1.0");
        assert!(i["exchanged_at"].as_str().is_some());
        assert!(
            i.get("auth_token").is_none() && !i.to_string().contains("at_"),
            "no token values listed"
        );
    }
    assert!(items.iter().any(|i| i["deleted_at"].as_str().is_some()));
    assert!(
        items
            .iter()
            .any(|i| i["chain_revoked_at"].as_str().is_some())
    );

    // The log answers "who used up my count?": every consumption with its source.
    let log = &s.server().state.log;
    let events = log
        .read_stream(
            &format!("regtoken-{rt_id}"),
            eventlog::Direction::Forwards,
            None,
            100,
        )
        .await
        .unwrap();
    let consumed: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "registration_token.consumed.v1")
        .collect();
    assert_eq!(consumed.len(), 2);
    assert!(
        consumed
            .iter()
            .all(|e| e.metadata.source_ip.as_deref() == Some("127.0.0.1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_says_what_to_do() {
    let s = TestServer::start(Store::Sqlite, "reg_refusals")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;

    let (_, _, one) = app_and_token(&s, &admin, 1, time::Duration::days(1)).await;
    assert_eq!(consume(&s, &one, "a").await.0, 201);
    let (st, p) = consume(&s, &one, "b").await;
    assert_eq!(
        (st, p["error"].as_str()),
        (403, Some("registration_token_exhausted"))
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("administrator can see which instances"),
        "{p}"
    );

    let (_, rt_id, revoked) = app_and_token(&s, &admin, 5, time::Duration::days(1)).await;
    let (st, v, _) = s
        .call(
            Method::POST,
            &format!("/admin/registration-tokens/{rt_id}/revoke"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, p) = consume(&s, &revoked, "c").await;
    assert_eq!(
        (st, p["error"].as_str()),
        (403, Some("registration_token_revoked"))
    );

    let (_, exp_id, expiring) = app_and_token(&s, &admin, 5, time::Duration::seconds(2)).await;
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let (st, p) = consume(&s, &expiring, "d").await;
    assert_eq!(
        (st, p["error"].as_str()),
        (403, Some("registration_token_expired")),
        "counts left, but expired"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("request a new registration token"),
        "{p}"
    );
    let (_, _, shown) = s
        .call(
            Method::GET,
            &format!("/admin/registration-tokens/{exp_id}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(shown["status"], "expired");

    let (st, p) = consume(&s, "rt_not_a_real_token", "e").await;
    assert_eq!(
        (st, p["error"].as_str()),
        (401, Some("registration_token_not_found"))
    );
    let forged = format!("{}x", &one[..one.len() - 1]);
    let (st, _) = consume(&s, &forged, "f").await;
    assert_eq!(st, 401, "a wrong secret for a real id is refused");
    // Every 401 names its scheme; without a token, without an error code.
    let challenge = |r: reqwest::Response| {
        r.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let body =
        json!({"instance_id": "g", "device_name": "d", "user_name": "u", "app_version": "1"});
    let r = http()
        .post(s.url("/registration/consume"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(challenge(r).as_deref(), Some("Bearer realm=\"idp\""));
    let r = http()
        .post(s.url("/registration/consume"))
        .bearer_auth("rt_not_a_real_token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(challenge(r).unwrap().contains("error=\"invalid_token\""));
}

async fn race(servers: &[&TestServer], admin: &Admin, per_server: usize) {
    let s = servers[0];
    let (_, rt_id, rt) = app_and_token(s, admin, 50, time::Duration::days(1)).await;
    let calls = servers
        .iter()
        .flat_map(|srv| (0..per_server).map(move |i| (srv, i)))
        .map(|(srv, i)| {
            let rt = rt.clone();
            async move { consume(srv, &rt, &format!("instance-{i}")).await }
        });
    let results = join_all(calls).await;
    let ok = results.iter().filter(|(st, _)| *st == 201).count();
    let exhausted = results
        .iter()
        .filter(|(st, p)| *st == 403 && p["error"] == "registration_token_exhausted")
        .count();
    assert_eq!(
        (ok, exhausted),
        (50, servers.len() * per_server - 50),
        "exactly the count"
    );
    let mut listed = 0;
    for _ in 0..100 {
        let (_, _, shown) = s
            .call(
                Method::GET,
                &format!("/admin/registration-tokens/{rt_id}"),
                &admin.token,
                None,
            )
            .await;
        listed = shown["used"].as_i64().unwrap();
        if listed == 50 {
            assert_eq!(
                (shown["remaining"].as_i64(), shown["status"].as_str()),
                (Some(0), Some("exhausted"))
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(listed, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_consumers_of_a_count_of_fifty_on_sqlite() {
    let s = TestServer::start(Store::Sqlite, "reg_race").await.unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    race(&[&s], &admin, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_sharing_postgres_issue_exactly_the_count() {
    let Some(first) = TestServer::start(Store::Postgres, "reg_two_nodes").await else {
        return;
    };
    first.wait_ready().await;
    let admin = first.admin().await;
    let second = first.second_node().await;
    race(&[&first, &second], &admin, 100).await;
}
