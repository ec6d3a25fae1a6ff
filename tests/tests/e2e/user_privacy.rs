//! Data subject requests about users: the export holds their record, their
//! groups and their credentials' metadata (never a hash); correction is an
//! event; deleting a user erases them, down to the bytes of the data
//! directory, while another user's values stay readable.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Admin, Store, TestServer};
use crate::privacy::{contains, files_under};

async fn create(s: &TestServer, admin: &Admin, body: Value) -> Value {
    let mut body = body;
    body["organization_id"] = json!(admin.organization_id);
    let (st, _, u) = s
        .call(Method::POST, "/admin/users", &admin.token, Some(body))
        .await;
    assert_eq!(st, 201, "{u}");
    u
}

fn subject_of(user: &Value) -> String {
    format!(
        "user:{}",
        user["user_id"].as_str().unwrap().replace('-', "")
    )
}

async fn requests(store: Store) {
    let Some(mut s) = TestServer::start(store, "user_privacy").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    // Values unique to this run, so that a stray copy cannot come from elsewhere.
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let grace = format!("grace{}", &tag[20..]);
    let grace_mail = format!("hopper.{}@navy.example", &tag[24..]);
    let grace_family = format!("Hopper{}", &tag[26..]);
    let grace_phone = format!(
        "+1202{}",
        &tag[..6]
            .bytes()
            .map(|b| (b % 10 + b'0') as char)
            .collect::<String>()
    );
    let ada = format!("ada{}", &tag[20..]);
    let ada_family = format!("Lovelace{}", &tag[26..]);

    let g = create(
        &s,
        &admin,
        json!({"username": grace, "email": grace_mail, "phone_number": grace_phone,
               "profile": {"family_name": grace_family, "given_name": "Grace"},
               "password": "a compiler of one's own"}),
    )
    .await;
    let a = create(
        &s,
        &admin,
        json!({"username": ada, "profile": {"family_name": ada_family}}),
    )
    .await;
    let (st, _, group) = s
        .call(
            Method::POST,
            "/admin/groups",
            &admin.token,
            Some(json!({"organization_id": admin.organization_id, "name": "navy"})),
        )
        .await;
    assert_eq!(st, 201);
    let gid = group["group_id"].as_str().unwrap();
    let (st, _, _) = s
        .call(
            Method::POST,
            &format!("/admin/groups/{gid}/members"),
            &admin.token,
            Some(json!({"user_id": g["user_id"]})),
        )
        .await;
    assert_eq!(st, 204);

    // Correction: a profile field, by an event.
    let subject = subject_of(&g);
    let (st, _, done) = s
        .call(
            Method::POST,
            &format!("/admin/subjects/{subject}/correction"),
            &admin.token,
            Some(json!({"profile": {"given_name": "Grace Brewster"}})),
        )
        .await;
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["user_id"], g["user_id"]);

    // The export: the record, the group, the password's metadata, no hash.
    let (st, _, doc) = s
        .call(
            Method::GET,
            &format!("/admin/subjects/{subject}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 200, "{doc}");
    let user = &doc["current"]["user"];
    assert_eq!(user["username"], grace.as_str(), "{doc}");
    assert_eq!(user["email"], grace_mail.as_str());
    assert_eq!(user["phone_number"], grace_phone.as_str());
    assert_eq!(user["profile"]["given_name"], "Grace Brewster");
    assert_eq!(user["profile"]["family_name"], grace_family.as_str());
    assert_eq!(user["status"], "active");
    assert_eq!(user["groups"], json!([gid]));
    assert_eq!(user["credentials"][0]["type"], "password");
    assert!(user["credentials"][0]["created_at"].is_string());
    let text = doc.to_string();
    assert!(!text.contains("argon2"), "no hash in the export: {text}");
    let types: Vec<&str> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "user.created.v1",
        "user.password_set.v1",
        "user.profile_changed.v1",
        "group.user_added.v1",
    ] {
        assert!(types.contains(&t), "{t} missing: {types:?}");
    }

    // Deleting the user erases them; the name and address are free again.
    let (st, _, p) = s
        .call(
            Method::DELETE,
            &format!("/admin/users/{}", g["user_id"].as_str().unwrap()),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 204, "{p}");
    let (st, _, doc) = s
        .call(
            Method::GET,
            &format!("/admin/subjects/{subject}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert!(doc["erasure"]["erased_at"].is_string(), "{doc}");
    assert!(doc["current"]["user"]["username"].is_null(), "{doc}");
    assert_eq!(doc["current"]["user"]["deleted"], true);
    let (_, _, found) = s
        .call(
            Method::GET,
            &format!("/admin/users?q={grace}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(found["total"], 0, "{found}");
    let (_, _, groups) = s
        .call(
            Method::GET,
            &format!("/admin/groups/{gid}/members"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(groups["items"], json!([]), "{groups}");
    create(&s, &admin, json!({"username": grace, "email": grace_mail})).await;

    // The same values again belong to someone new: delete them too, then
    // look for every byte.
    let (_, _, again) = s
        .call(
            Method::GET,
            &format!("/admin/users?q={grace}"),
            &admin.token,
            None,
        )
        .await;
    let second = again["items"][0]["user_id"].as_str().unwrap().to_owned();
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &format!("/admin/users/{second}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (_, _, still) = s
        .call(
            Method::GET,
            &format!("/admin/users/{}", a["user_id"].as_str().unwrap()),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(still["profile"]["family_name"], ada_family.as_str());

    if store == Store::Sqlite {
        let dir = s.data_dir.clone();
        let _kept = s.stop().await;
        let files = files_under(&dir);
        assert!(
            files.iter().any(|(_, b)| contains(b, &ada_family)),
            "another user's values are still there"
        );
        for (path, bytes) in &files {
            for value in [&grace, &grace_mail, &grace_family, &grace_phone] {
                assert!(!contains(bytes, value), "{value:?} found in {path}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_exported_corrected_and_erased_on_sqlite() {
    requests(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_exported_corrected_and_erased_on_postgres() {
    requests(Store::Postgres).await;
}
