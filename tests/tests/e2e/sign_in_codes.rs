//! One-time codes through real receivers: an email code read from a real
//! SMTP server, an SMS code from a real HTTP gateway (with its shared
//! secret), a WhatsApp code kept in the outbox when no provider is set;
//! the same answer for an identifier nobody holds; expiry, exhaustion and
//! resending limits; the admin's list of messages with their delivery.

use reqwest::Method;
use serde_json::{Value, json};
use time::Duration;

use crate::harness::{Store, TestServer};
use crate::messages::{Gateway, Smtp, code_in};
use crate::sign_in::{
    PASSWORD, admin_call, complete, create_user, home, password, put_policy, send, start,
};

async fn ask_code(
    s: &TestServer,
    c: &reqwest::Client,
    id: &str,
    method: &str,
    identifier: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({"session_id": id, "method": method});
    if let Some(i) = identifier {
        body["identifier"] = json!(i);
    }
    let (st, _, v) = send(
        c,
        Method::POST,
        s.url("/authentication/authenticate"),
        Some(body),
    )
    .await;
    (st, v)
}

async fn verify(s: &TestServer, c: &reqwest::Client, id: &str, code: &str) -> (u16, Value) {
    let (st, _, v) = send(
        c,
        Method::POST,
        s.url("/authentication/verify-otp"),
        Some(json!({"session_id": id, "code": code})),
    )
    .await;
    (st, v)
}

async fn notifications(
    s: &TestServer,
    admin: &crate::harness::Admin,
    user: &str,
    until: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..400 {
        let (st, v) = admin_call(
            s,
            admin,
            Method::GET,
            &format!("/admin/users/{user}/notifications"),
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let items = v["items"].as_array().unwrap().clone();
        if until(&items) {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the notifications never became as expected");
}

#[tokio::test]
async fn codes_by_email_sms_and_the_outbox() {
    let smtp = Smtp::start().await;
    let gateway = Gateway::start(200).await;
    let (mut config, dir) = TestServer::config(Store::Sqlite, "sign_in_codes")
        .await
        .unwrap();
    config.smtp_url = Some(smtp.url());
    config.smtp_from = "Acme <no-reply@acme.test>".into();
    config.sms_webhook_url = Some(gateway.url.clone());
    config.webhook_secret = Some("gateway-secret".into());
    let (s, clock) = TestServer::start_clocked_with(config, dir).await;
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let (st, v) = admin_call(
        &s,
        &admin,
        Method::PATCH,
        &format!("/admin/users/{ada}"),
        Some(json!({"phone_number": "+442071234567", "phone_verified": true})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    put_policy(&s, &admin, json!({
        "methods": ["password", "email", "sms", "whatsapp", "totp"],
        "first_factors": ["password", "email", "sms"], "factors_required": 1, "passwordless_codes": true
    }))
    .await;

    // Passwordless by email: the code arrives over SMTP.
    let c = home();
    let (id, started) = start(&s, &c, &admin).await;
    assert_eq!(started["methods"], json!(["password", "email", "sms"]));
    let (st, sent) = ask_code(&s, &c, &id, "email", Some("ada")).await;
    assert_eq!(st, 202, "{sent}");
    assert_eq!(sent["code"]["method"], "email");
    let mail = smtp.message(0).await;
    assert!(mail.contains("To: ada@example.org"), "{mail}");
    assert!(mail.contains("From: Acme <no-reply@acme.test>"), "{mail}");
    let code = code_in(&mail[mail.find("is ").unwrap()..]);
    // Another code at once is refused; a wrong code counts.
    let (st, v) = ask_code(&s, &c, &id, "email", Some("ada")).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (429, Some("too-many-codes")),
        "{v}"
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (st, v) = verify(&s, &c, &id, wrong).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid-credentials")),
        "{v}"
    );
    let (st, v) = verify(&s, &c, &id, &code).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["can_complete"], true);
    let (st, _, done) = complete(&s, &c, &id).await;
    assert_eq!((st, done["amr"].clone()), (200, json!(["otp"])), "{done}");
    let (st, v) = verify(&s, &c, &id, &code).await;
    assert_eq!(st, 409, "the sign-in is over: {v}");

    // An identifier nobody holds: the same answer, and nothing is sent.
    let (nobody_id, _) = start(&s, &c, &admin).await;
    let (st, v) = ask_code(&s, &c, &nobody_id, "email", Some("nobody@example.org")).await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["code"]["method"], "email");
    let (st, _) = verify(&s, &c, &nobody_id, &code).await;
    assert_eq!(st, 401);

    // Five wrong codes use a code up; an expired one is refused.
    let (id, _) = start(&s, &c, &admin).await;
    let (st, v) = ask_code(&s, &c, &id, "email", Some("ada")).await;
    assert_eq!(st, 202, "{v}");
    let mail = smtp.message(1).await;
    let code = code_in(mail.split("is ").nth(1).unwrap());
    for _ in 0..5 {
        let (st, _) = verify(&s, &c, &id, "999999").await;
        assert!(st == 401 || st == 429, "{st}");
    }
    let (st, v) = verify(&s, &c, &id, &code).await;
    assert!(
        st == 409 || st == 429,
        "used up after five wrong codes: {st} {v}"
    );
    // The five failures made this address wait a moment.
    clock.advance(Duration::seconds(2));
    // A code by SMS through the gateway, with its secret; expired later.
    let b = home();
    let (id, _) = start(&s, &b, &admin).await;
    let (st, v) = ask_code(&s, &b, &id, "sms", Some("ada")).await;
    assert_eq!(st, 202, "{v}");
    let (secret, sms) = gateway.request(0).await;
    assert_eq!(secret.as_deref(), Some("gateway-secret"));
    assert_eq!(sms["to"], "+442071234567");
    assert_eq!(sms["channel"], "sms");
    let code = code_in(sms["text"].as_str().unwrap());
    clock.advance(Duration::minutes(10));
    let (st, v) = verify(&s, &b, &id, &code).await;
    assert_eq!(st, 410, "expired: {v}");

    // The admin sees each message and how it went; never its text.
    let items = notifications(&s, &admin, &ada, |items| {
        items.len() >= 3 && items.iter().all(|i| i["status"] != "queued")
    })
    .await;
    assert!(
        items
            .iter()
            .any(|i| i["channel"] == "sms" && i["provider"] == "webhook" && i["status"] == "sent"),
        "{items:?}"
    );
    assert!(items.iter().any(|i| i["channel"] == "email"
        && i["provider"] == "smtp"
        && i["recipient"] == "ada@example.org"));
    assert!(!serde_json::to_string(&items).unwrap().contains(&code));
    assert_eq!(
        smtp.count(),
        2,
        "nothing was mailed for the unknown identifier"
    );
}

#[tokio::test]
async fn without_a_provider_codes_wait_in_the_outbox_and_failures_are_recorded() {
    let gateway = Gateway::start(500).await;
    let (mut config, dir) = TestServer::config(Store::Sqlite, "sign_in_outbox")
        .await
        .unwrap();
    config.sms_webhook_url = Some(gateway.url.clone());
    let (s, _clock) = TestServer::start_clocked_with(config, dir).await;
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    let (st, _) = admin_call(
        &s,
        &admin,
        Method::PATCH,
        &format!("/admin/users/{ada}"),
        Some(json!({"phone_number": "+442071234567", "phone_verified": true})),
    )
    .await;
    assert_eq!(st, 200);
    put_policy(&s, &admin, json!({
        "methods": ["password", "whatsapp", "sms"], "first_factors": ["password"], "factors_required": 2
    }))
    .await;
    let c = home();
    let (id, _) = start(&s, &c, &admin).await;
    password(&s, &c, &id, "ada", PASSWORD).await;
    let (st, v) = ask_code(&s, &c, &id, "whatsapp", None).await;
    assert_eq!(st, 202, "{v}");
    let mut outbox = Value::Null;
    for _ in 0..200 {
        let (st, v) = admin_call(&s, &admin, Method::GET, "/admin/outbox", None).await;
        assert_eq!(st, 200, "{v}");
        if !v.as_array().unwrap().is_empty() {
            outbox = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(outbox[0]["channel"], "whatsapp", "{outbox}");
    assert_eq!(outbox[0]["to"], "+442071234567");
    let code = code_in(outbox[0]["text"].as_str().unwrap());
    let (st, v) = verify(&s, &c, &id, &code).await;
    assert_eq!((st, v["can_complete"].as_bool()), (200, Some(true)), "{v}");

    // A gateway that fails: the failure and its reason are recorded.
    let (id, _) = start(&s, &c, &admin).await;
    password(&s, &c, &id, "ada", PASSWORD).await;
    let (st, _) = ask_code(&s, &c, &id, "sms", None).await;
    assert_eq!(st, 202);
    gateway.request(0).await;
    let items = notifications(&s, &admin, &ada, |items| {
        items.iter().any(|i| i["status"] == "failed")
    })
    .await;
    let failed = items.iter().find(|i| i["status"] == "failed").unwrap();
    assert_eq!(
        failed["reason"], "the gateway answered 500 Internal Server Error",
        "{failed}"
    );
    assert!(
        items
            .iter()
            .any(|i| i["provider"] == "outbox" && i["status"] == "sent")
    );

    // A later step is about the person the first step named: naming
    // someone else there, or nobody, gets the same answer, and the code
    // goes to the first person (so nothing is learnt or counted about
    // anyone else).
    let bea = create_user(&s, &admin, "Bea", Some(PASSWORD)).await;
    let (st, _) = admin_call(
        &s,
        &admin,
        Method::PATCH,
        &format!("/admin/users/{bea}"),
        Some(json!({"phone_number": "+442079999999", "phone_verified": true})),
    )
    .await;
    assert_eq!(st, 200);
    let mut answers = Vec::new();
    for named in ["bea", "nobody"] {
        let c = home();
        let (id, _) = start(&s, &c, &admin).await;
        password(&s, &c, &id, "ada", PASSWORD).await;
        let (st, v) = ask_code(&s, &c, &id, "whatsapp", Some(named)).await;
        answers.push((
            st,
            v["code"]["method"].clone(),
            v["remaining_factors"].clone(),
        ));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 202);
    let mut outbox = Vec::new();
    for _ in 0..200 {
        let (_, v) = admin_call(&s, &admin, Method::GET, "/admin/outbox", None).await;
        outbox = v.as_array().unwrap().clone();
        if outbox.iter().filter(|m| m["channel"] == "whatsapp").count() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let to: Vec<&str> = outbox
        .iter()
        .filter(|m| m["channel"] == "whatsapp")
        .map(|m| m["to"].as_str().unwrap())
        .collect();
    assert_eq!(to, ["+442071234567"; 3], "{outbox:?}");
}

#[tokio::test]
async fn the_limit_on_sending_codes_outlives_a_restart() {
    let (s, clock) = TestServer::start_clocked(Store::Sqlite, "code_limit")
        .await
        .unwrap();
    let mut s = s;
    s.wait_ready().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    put_policy(
        &s,
        &admin,
        json!({
            "methods": ["password", "email"], "first_factors": ["password", "email"],
            "factors_required": 1, "passwordless_codes": true
        }),
    )
    .await;
    // Each sign-in may send its own code; the account's sends add up.
    async fn send_one(s: &TestServer, admin: &crate::harness::Admin) -> (u16, Value) {
        let c = home();
        let (id, _) = start(s, &c, admin).await;
        ask_code(s, &c, &id, "email", Some("ada")).await
    }
    for n in 1..=6 {
        let (st, v) = send_one(&s, &admin).await;
        assert_eq!(st, 202, "send {n}: {v}");
    }
    let (st, v) = send_one(&s, &admin).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (429, Some("too-many-attempts")),
        "{v}"
    );
    // Every send is recorded: a restarted node (or any other one) limits
    // the account the same.
    s.restart_clocked(clock.clone()).await;
    s.wait_ready().await;
    let (st, v) = send_one(&s, &admin).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (429, Some("too-many-attempts")),
        "{v}"
    );
    clock.advance(Duration::seconds(2));
    let (st, v) = send_one(&s, &admin).await;
    assert_eq!(st, 202, "the wait is over: {v}");
}
