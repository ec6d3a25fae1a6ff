//! Passkeys through the real server with a software authenticator that
//! signs for real (webauthn-authenticator-rs): registration from one's own
//! session, sign-in for a named person and usernameless, a verified
//! passkey counting as two factors, replayed answers and a signature
//! counter that went backwards refused.

use reqwest::Method;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RequestChallengeResponse, Url,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::harness::{Admin, Store, TestServer};
use crate::sign_in::{
    PASSWORD, admin_call, complete, create_user, home, put_policy, send, sign_in, start,
};

/// The origin pages are served from: the issuer's port on `localhost`.
fn origin(s: &TestServer) -> Url {
    Url::parse(&s.base.replace("127.0.0.1", "localhost")).unwrap()
}

async fn authenticate(s: &TestServer, c: &reqwest::Client, body: Value) -> (u16, Value) {
    let (st, _, v) = send(
        c,
        Method::POST,
        s.url("/authentication/authenticate"),
        Some(body),
    )
    .await;
    (st, v)
}

/// Registers a passkey from `c`'s session; answers its id and credential id.
async fn register(
    s: &TestServer,
    c: &reqwest::Client,
    soft: &mut SoftPasskey,
    name: &str,
) -> (String, String) {
    let (st, _, begun) = send(c, Method::POST, s.url("/self/methods/passkeys"), None).await;
    assert_eq!(st, 200, "{begun}");
    assert_eq!(
        begun["options"]["publicKey"]["authenticatorSelection"]["residentKey"],
        "required"
    );
    assert_eq!(
        begun["options"]["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    let options: CreationChallengeResponse =
        serde_json::from_value(begun["options"].clone()).unwrap();
    let answer = soft.do_registration(origin(s), options).unwrap();
    let answer = serde_json::to_value(&answer).unwrap();
    let credential_id = answer["id"].as_str().unwrap().to_owned();
    let (st, _, v) = send(
        c,
        Method::POST,
        s.url("/self/methods/passkeys/confirm"),
        Some(json!({"registration": begun["registration"], "credential": answer, "name": name})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["name"], name);
    (v["id"].as_str().unwrap().to_owned(), credential_id)
}

/// Asks for a passkey in sign-in `id`; answers the request options.
async fn ask(s: &TestServer, c: &reqwest::Client, id: &str, identifier: Option<&str>) -> Value {
    let mut body = json!({"session_id": id, "method": "passkey"});
    if let Some(i) = identifier {
        body["identifier"] = json!(i);
    }
    let (st, v) = authenticate(s, c, body).await;
    assert_eq!(st, 200, "{v}");
    v["request"].clone()
}

async fn answer(
    s: &TestServer,
    c: &reqwest::Client,
    id: &str,
    assertion: &PublicKeyCredential,
) -> (u16, Value) {
    authenticate(
        s,
        c,
        json!({"session_id": id, "method": "passkey", "assertion": serde_json::to_value(assertion).unwrap()}),
    )
    .await
}

async fn two_factor_policy(s: &TestServer, admin: &Admin) {
    put_policy(s, admin, json!({
        "methods": ["password", "totp", "passkey"], "first_factors": ["password", "passkey"], "factors_required": 2
    }))
    .await;
}

#[tokio::test]
async fn passkeys_register_and_sign_in_named_and_usernameless() {
    let s = TestServer::start(Store::Sqlite, "passkeys").await.unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let c = home();
    sign_in(&s, &c, &admin, "ada").await;
    let mut soft = SoftPasskey::new(true);
    let (passkey_id, credential_id) = register(&s, &c, &mut soft, "Laptop").await;
    let (_, _, methods) = send(&c, Method::GET, s.url("/self/methods"), None).await;
    assert_eq!(methods["passkeys"][0]["name"], "Laptop", "{methods}");
    assert!(methods["passkeys"][0]["last_used_at"].is_null());
    two_factor_policy(&s, &admin).await;

    // Named: the request lists the person's passkey; a verified passkey is
    // two factors on its own.
    let b = home();
    let (id, started) = start(&s, &b, &admin).await;
    assert!(
        started["methods"]
            .as_array()
            .unwrap()
            .contains(&json!("passkey")),
        "{started}"
    );
    let request = ask(&s, &b, &id, Some("ada")).await;
    assert_eq!(
        request["publicKey"]["allowCredentials"][0]["id"],
        credential_id.as_str()
    );
    assert_eq!(request["publicKey"]["userVerification"], "required");
    let rcr: RequestChallengeResponse = serde_json::from_value(request).unwrap();
    let assertion = soft.do_authentication(origin(&s), rcr).unwrap();
    let (st, v) = answer(&s, &b, &id, &assertion).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["remaining_factors"], 0, "{v}");
    let (st, _, done) = complete(&s, &b, &id).await;
    assert_eq!(
        (st, done["amr"].clone()),
        (200, json!(["hwk", "mfa"])),
        "a passkey that verified its user is two factors: {done}"
    );
    assert_eq!(done["user_id"], ada.as_str());
    // The same answer again: the challenge was answered once.
    let (st, v) = answer(&s, &b, &id, &assertion).await;
    assert_eq!(st, 409, "{v}");
    // An old answer to a new challenge is refused.
    let (id2, _) = start(&s, &b, &admin).await;
    ask(&s, &b, &id2, Some("ada")).await;
    let (st, v) = answer(&s, &b, &id2, &assertion).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid-credentials")),
        "{v}"
    );

    // An identifier naming nobody, or someone without a passkey, gets a
    // request shaped like Ada's: one credential, the same each time.
    create_user(&s, &admin, "Bob", Some(PASSWORD)).await;
    let shape = |r: &Value| {
        let allow = r["publicKey"]["allowCredentials"].as_array().unwrap();
        assert_eq!(allow.len(), 1, "{r}");
        assert!(r["mediation"].is_null(), "{r}");
        allow[0]["id"].as_str().unwrap().to_owned()
    };
    for who in ["nobody", "bob"] {
        let (first, _) = start(&s, &b, &admin).await;
        let once = shape(&ask(&s, &b, &first, Some(who)).await);
        let (second, _) = start(&s, &b, &admin).await;
        let again = shape(&ask(&s, &b, &second, Some(who)).await);
        assert_eq!(once, again, "{who}");
        assert_ne!(once, credential_id, "{who}");
    }

    // Usernameless: no identifier; the authenticator answers with the
    // person's handle, as a discoverable credential does.
    let (id3, _) = start(&s, &b, &admin).await;
    let request = ask(&s, &b, &id3, None).await;
    assert_eq!(request["mediation"], "conditional", "{request}");
    assert!(
        request["publicKey"]["allowCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
    let mut request = request;
    // The software authenticator keeps no resident keys: tell it which one.
    request["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": credential_id}]);
    let rcr: RequestChallengeResponse = serde_json::from_value(request).unwrap();
    let mut assertion = soft.do_authentication(origin(&s), rcr).unwrap();
    assertion.response.user_handle = Some(uuid::Uuid::parse_str(&ada).unwrap().as_bytes().to_vec());
    let (st, v) = answer(&s, &b, &id3, &assertion).await;
    assert_eq!(st, 200, "{v}");
    let (st, _, done) = complete(&s, &b, &id3).await;
    assert_eq!(
        (st, done["user_id"].as_str()),
        (200, Some(ada.as_str())),
        "{done}"
    );
    let (_, _, methods) = send(&b, Method::GET, s.url("/self/methods"), None).await;
    assert!(
        methods["passkeys"][0]["last_used_at"].is_string(),
        "{methods}"
    );

    // A malformed answer is refused plainly.
    let (id4, _) = start(&s, &b, &admin).await;
    ask(&s, &b, &id4, Some("ada")).await;
    let (st, v) = authenticate(
        &s,
        &b,
        json!({"session_id": id4, "method": "passkey", "assertion": {"id": 1}}),
    )
    .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("assertion")), "{v}");

    // Renaming needs no step-up; the export names it and withholds its key.
    let (st, _, _) = send(
        &b,
        Method::PATCH,
        s.url(&format!("/self/methods/passkeys/{passkey_id}")),
        Some(json!({"name": "Work laptop"})),
    )
    .await;
    assert_eq!(st, 204);
    let subject = format!("user:{}", ada.replace('-', ""));
    let (_, export) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/subjects/{subject}"),
        None,
    )
    .await;
    let text = export.to_string();
    assert!(text.contains("\"type\":\"passkey\""), "{text}");
    assert!(
        !text.contains("\"cred\""),
        "the passkey's record is withheld"
    );
}

#[tokio::test]
async fn a_signature_counter_that_went_backwards_is_refused() {
    let s = TestServer::start(Store::Sqlite, "passkeys_counter")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let c = home();
    sign_in(&s, &c, &admin, "ada").await;
    let mut soft = SoftPasskey::new(true);
    let (passkey_id, _) = register(&s, &c, &mut soft, "Key").await;
    // Another authenticator with the same key (a clone) has signed 100
    // times: the server last saw counter 100.
    let user = uuid::Uuid::parse_str(&ada).unwrap();
    let bus = &s.server().state.bus;
    let credentials = commands::credentials::load(bus, user).await.unwrap();
    let mut record = credentials.passkeys[0].passkey.value().unwrap().clone();
    record["cred"]["counter"] = json!(100);
    let meta = domain::Metadata::system(uuid::Uuid::now_v7(), time::OffsetDateTime::now_utc());
    commands::credentials::use_passkey(
        bus,
        user,
        uuid::Uuid::parse_str(&passkey_id).unwrap(),
        Some(record),
        &meta,
    )
    .await
    .unwrap();
    let b = home();
    let (id, _) = start(&s, &b, &admin).await;
    let request = ask(&s, &b, &id, Some("ada")).await;
    let rcr: RequestChallengeResponse = serde_json::from_value(request).unwrap();
    let assertion = soft.do_authentication(origin(&s), rcr).unwrap();
    let (st, v) = answer(&s, &b, &id, &assertion).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid-credentials")),
        "{v}"
    );
    // The trail says why.
    let subject = format!("user:{}", ada.replace('-', ""));
    for _ in 0..200 {
        let (_, page) = admin_call(
            &s,
            &admin,
            Method::GET,
            &format!("/admin/audit?subject={subject}&action=signin.step_failed.v1"),
            None,
        )
        .await;
        if let Some(e) = page["items"].as_array().unwrap().first() {
            let (_, event) = admin_call(
                &s,
                &admin,
                Method::GET,
                &format!("/admin/audit/events/{}", e["position"].as_str().unwrap()),
                None,
            )
            .await;
            assert_eq!(event["data"]["reason"], "counter_regressed", "{event}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no failed step in the trail");
}

/// A passkey proves who one is for a step-up, as a password or a code
/// does: the request, the authenticator's answer, counted once.
#[tokio::test]
async fn a_passkey_steps_up_once_per_answer() {
    let (s, clock, _admin, c) = crate::sign_in::ada_signed_in("passkeys_step_up").await;
    let mut soft = SoftPasskey::new(true);
    register(&s, &c, &mut soft, "Laptop").await;
    clock.advance(time::Duration::minutes(6));
    let (st, _, v) = send(&c, Method::POST, s.url("/self/methods/totp"), None).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (403, Some("step-up-required")),
        "{v}"
    );

    let step_up = |body: Value| send(&c, Method::POST, s.url("/self/step-up"), Some(body));
    let (st, _, asked) = step_up(json!({"method": "passkey"})).await;
    assert_eq!(st, 200, "{asked}");
    assert_eq!(
        asked["request"]["publicKey"]["userVerification"],
        "required"
    );
    let rcr: RequestChallengeResponse = serde_json::from_value(asked["request"].clone()).unwrap();
    let assertion = soft.do_authentication(origin(&s), rcr).unwrap();
    let answer = json!({
        "method": "passkey",
        "ceremony": asked["ceremony"],
        "assertion": serde_json::to_value(&assertion).unwrap(),
    });
    let (st, _, v) = step_up(answer.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["step_up_until"].is_string(), "{v}");
    let (st, _, v) = step_up(answer).await;
    assert_eq!(
        (st, v["field"].as_str()),
        (422, Some("ceremony")),
        "an answer counts once: {v}"
    );
    let (st, _, v) = send(&c, Method::POST, s.url("/self/methods/totp"), None).await;
    assert_eq!(st, 200, "fresh now: {v}");
}
