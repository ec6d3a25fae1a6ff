//! Personal data end to end: user names encrypted per subject in the log,
//! a subject found, exported, corrected and erased through the admin API,
//! every request audited, nothing of the erased person left in the
//! database files, and the tamper evidence still intact.

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{Admin, Store, TestServer, http};

const AUTH_TOKEN_TYPE: &str = "urn:idp:params:oauth:token-type:auth_token";

async fn registration_token(s: &TestServer, admin: &Admin) -> (String, String) {
    let app = s
        .create_client(
            admin,
            json!({
            "organization_id": admin.organization_id, "client_type": "public", "name": "field app",
            "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange", "refresh_token"],
            "scopes": ["app"], "token_endpoint_auth_method": "none"}),
        )
        .await;
    let app_id = app["client_id"].as_str().unwrap().to_owned();
    let expires_at = (OffsetDateTime::now_utc() + time::Duration::days(1))
        .format(&Rfc3339)
        .unwrap();
    let (st, _, rt) = s
        .call(
            Method::POST,
            "/admin/registration-tokens",
            &admin.token,
            Some(json!({"client_id": app_id, "count": 10, "expires_at": expires_at})),
        )
        .await;
    assert_eq!(st, 201, "{rt}");
    (app_id, rt["token"].as_str().unwrap().to_owned())
}

async fn consume(s: &TestServer, token: &str, instance: &str, user_name: &str) -> Value {
    let device_name = device_of(user_name, instance);
    let r = http()
        .post(s.url("/registration/consume"))
        .bearer_auth(token)
        .json(&json!({"instance_id": instance, "device_name": device_name, "user_name": user_name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// What a person calls a device: after themselves, as people often do
/// ("Grace's g-laptop 1f2e…", the tag being the user name's last word).
fn device_of(user_name: &str, instance: &str) -> String {
    let first = user_name.split(' ').next().unwrap_or_default();
    let tag = user_name.rsplit(' ').next().unwrap_or_default();
    format!("{first}'s {instance} {tag}")
}

/// Every file under `dir`, read whole.
pub(crate) fn files_under(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((
                path.display().to_string(),
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            ));
        }
    }
    out
}

pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// `GET /admin/subjects/{subject}`: status and document.
/// Looks a person up by user name within the admin's organization.
async fn find(s: &TestServer, admin: &Admin, user_name: &str) -> (u16, Value) {
    let (st, _, found) = s
        .call(
            Method::GET,
            &format!(
                "/admin/subjects?organization_id={}&user_name={}",
                admin.organization_id,
                user_name.replace(' ', "%20")
            ),
            &admin.token,
            None,
        )
        .await;
    (st, found)
}

async fn export(s: &TestServer, admin: &Admin, subject: &str) -> (u16, Value) {
    subject_request(s, admin, Method::GET, subject).await
}

async fn erase(s: &TestServer, admin: &Admin, subject: &str) -> (u16, Value) {
    subject_request(s, admin, Method::DELETE, subject).await
}

async fn subject_request(
    s: &TestServer,
    admin: &Admin,
    method: Method,
    subject: &str,
) -> (u16, Value) {
    let (st, _, doc) = s
        .call(
            method,
            &format!("/admin/subjects/{subject}"),
            &admin.token,
            None,
        )
        .await;
    (st, doc)
}

/// Stored events whose data or metadata contain `text`, read straight from
/// the log's database.
async fn stored_events_mentioning(s: &TestServer, text: &str) -> i64 {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = s.server().state.config.eventstore_url();
    let mut log_db = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM events WHERE data LIKE $1 OR metadata LIKE $1")
        .bind(format!("%{text}%"))
        .fetch_one(&mut log_db)
        .await
        .unwrap()
}

async fn data_subject_requests(store: Store) {
    let Some(mut s) = TestServer::start(store, "privacy").await else {
        return;
    };
    let admin = s.admin().await;
    let (app_id, token) = registration_token(&s, &admin).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let grace = format!("Grace Hopper {tag}");
    let corrected = format!("Grace B. Hopper {tag}");
    let alan = format!("Alan Turing {tag}");

    // One person on two devices, another on one.
    let g1 = consume(&s, &token, "g-laptop", &grace).await;
    let g2 = consume(&s, &token, "g-phone", &grace).await;
    let a1 = consume(&s, &token, "a-laptop", &alan).await;
    let r = http()
        .post(s.url("/oauth/token"))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_id", app_id.as_str()),
            ("subject_token", g1["auth_token"].as_str().unwrap()),
            ("subject_token_type", AUTH_TOKEN_TYPE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The log holds the names, and the device names, only encrypted.
    assert_eq!(stored_events_mentioning(&s, &grace).await, 0);
    assert_eq!(stored_events_mentioning(&s, &alan).await, 0);
    assert_eq!(
        stored_events_mentioning(&s, &device_of(&grace, "g-laptop")).await,
        0
    );
    assert!(stored_events_mentioning(&s, "$pii_enc").await >= 6);

    // Found by name within the organization.
    let (st, found) = find(&s, &admin, &grace).await;
    assert_eq!(st, 200, "{found}");
    let subject = found["subject"].as_str().unwrap().to_owned();
    assert!(subject.starts_with("person:"), "{subject}");
    assert_eq!(found["events"], 4, "two consumptions and two auth tokens");
    let (st, _) = find(&s, &admin, "Nobody").await;
    assert_eq!(st, 404);
    // The lookup that found her is in the trail (without the name); the one
    // that found nobody left nothing.
    let (_, _, trail) = s
        .call(
            Method::GET,
            "/admin/audit?action=privacy.subject_found.v1",
            &admin.token,
            None,
        )
        .await;
    let lookups = trail["items"].as_array().unwrap();
    assert_eq!(lookups.len(), 1, "{trail}");
    assert_eq!(lookups[0]["subject"], subject.as_str());
    assert_eq!(lookups[0]["actor_id"], admin.client_id.as_str());
    assert_eq!(lookups[0]["organization"], admin.organization_id.as_str());
    assert!(!trail.to_string().contains(&grace));

    // Export: current data and the whole history, exchange included.
    let (st, doc) = export(&s, &admin, &subject).await;
    assert_eq!(st, 200, "{doc}");
    assert_eq!(doc["schema"], "idp.subject-export.v1");
    assert_eq!(doc["subject"], subject.as_str());
    assert!(doc["erasure"].is_null());
    let instances = doc["current"]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2);
    assert!(instances.iter().all(|i| i["user_name"] == grace.as_str()));
    let g1_id = g1["auth_token_id"].as_str().unwrap();
    assert!(
        instances
            .iter()
            .any(|i| i["auth_token_id"] == g1_id && i["exchanged"] == true)
    );
    let types: Vec<&str> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "registration_token.consumed.v1",
        "auth_token.issued.v1",
        "auth_token.exchanged.v1",
        "privacy.subject_found.v1",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    assert!(!doc.to_string().contains(&alan), "only this subject");

    assert_eq!(export(&s, &admin, "person:unknown").await.0, 404);

    // Correction: recorded as events, applied everywhere; nothing to correct
    // is refused.
    let (st, _, _) = s
        .call(
            Method::POST,
            &format!("/admin/subjects/{subject}/correction"),
            &admin.token,
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 422);
    let (st, _, c) = s
        .call(
            Method::POST,
            &format!("/admin/subjects/{subject}/correction"),
            &admin.token,
            Some(json!({"user_name": corrected})),
        )
        .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["auth_token_ids"].as_array().unwrap().len(), 2);
    let (_, doc) = export(&s, &admin, &subject).await;
    assert!(
        doc["current"]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["user_name"] == corrected.as_str())
    );
    assert_eq!(stored_events_mentioning(&s, &corrected).await, 0);

    // Erasure.
    let (st, erased) = erase(&s, &admin, &subject).await;
    assert_eq!(st, 200, "{erased}");
    assert_eq!(erased["key_deleted"], true);
    // Again: nothing left to delete, and still an erasure on record.
    let (st, again) = erase(&s, &admin, &subject).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["key_deleted"], false);
    // A subject nothing is held about is refused, and not made up.
    let typo = format!("{subject}x");
    let (st, refused) = erase(&s, &admin, &typo).await;
    assert_eq!(st, 404, "{refused}");
    assert_eq!(export(&s, &admin, &typo).await.0, 404);

    let (st, doc) = export(&s, &admin, &subject).await;
    assert_eq!(st, 200);
    assert_eq!(doc["erasure"]["actor_id"], admin.client_id.as_str());
    assert!(
        doc["current"]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["user_name"].is_null())
    );
    let text = doc.to_string();
    assert!(!text.contains(&grace) && !text.contains(&corrected));
    assert!(text.contains("$pii_erased"));

    // The read models dropped her; the other person is untouched.
    let rt_id = g2["registration_token_id"].as_str().unwrap();
    let (_, _, list) = s
        .call(
            Method::GET,
            &format!("/admin/registration-tokens/{rt_id}/auth-tokens"),
            &admin.token,
            None,
        )
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for i in items {
        if i["id"] == a1["auth_token_id"] {
            assert_eq!(i["user_name"], alan.as_str());
        } else {
            assert!(i["user_name"].is_null(), "{i}");
        }
    }

    // Each request is in the audit trail, with who asked.
    for action in [
        "privacy.subject_exported.v1",
        "auth_token.instance_corrected.v1",
        "privacy.subject_erased.v1",
    ] {
        let (st, _, page) = s
            .call(
                Method::GET,
                &format!("/admin/audit?action={action}"),
                &admin.token,
                None,
            )
            .await;
        assert_eq!(st, 200);
        let items = page["items"].as_array().unwrap();
        assert!(!items.is_empty(), "{action} not audited");
        assert!(
            items
                .iter()
                .all(|e| e["actor_id"] == admin.client_id.as_str()),
            "{page}"
        );
    }

    // Nothing else in the log changed: the chain and anchors still verify.
    let log = std::sync::Arc::clone(s.server().state.bus.log());
    log.seal().await.unwrap();
    let report = log.verify(&|_| {}).await.unwrap();
    assert_eq!(report.problems, 0, "{report:?}");

    if store == Store::Sqlite {
        let dir = s.data_dir.clone();
        // Stopped (the files closed), the storage kept until the end.
        let (config, kept) = s.stop().await;
        let files = files_under(&dir);
        assert!(
            files.iter().any(|(_, bytes)| contains(bytes, &alan)),
            "the search finds a person who was not erased"
        );
        assert!(
            files
                .iter()
                .any(|(_, bytes)| contains(bytes, &device_of(&alan, "a-laptop"))),
            "and their device"
        );
        let devices = [device_of(&grace, "g-laptop"), device_of(&grace, "g-phone")];
        for (path, bytes) in &files {
            for name in [&grace, &corrected].into_iter().chain(&devices) {
                assert!(!contains(bytes, name), "{name:?} found in {path}");
            }
        }

        // The read models' file is disposable: without it a start rebuilds
        // them from the log, and every person who was not erased is still
        // readable (their keys are not kept with the read models).
        for f in ["read.db", "read.db-wal", "read.db-shm"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let s = TestServer::start_with(config, kept).await;
        s.wait_ready().await;
        let admin = s.admin().await;
        let (st, found) = find(&s, &admin, &alan).await;
        assert_eq!(st, 200, "{found}");
        let (st, doc) = export(&s, &admin, found["subject"].as_str().unwrap()).await;
        assert_eq!(st, 200, "{doc}");
        let instances = doc["current"]["instances"].as_array().unwrap();
        assert_eq!(instances.len(), 1, "{doc}");
        assert_eq!(instances[0]["user_name"], alan.as_str(), "{doc}");
        assert_eq!(
            instances[0]["device_name"],
            device_of(&alan, "a-laptop").as_str(),
            "{doc}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_subject_requests_on_sqlite() {
    data_subject_requests(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_subject_requests_on_postgres() {
    data_subject_requests(Store::Postgres).await;
}
