//! What a person does for themselves and what guards them: changing an
//! email address or a phone number through a code sent to the new one;
//! an account attacked from many addresses at once is slowed down for
//! every attempt (never locked), its person is mailed and the trail says
//! so.

use std::net::Ipv4Addr;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Admin, Store, TestServer};
use crate::messages::code_in;
use crate::sign_in::{
    PASSWORD, admin_call, browser, create_user, home, password, send, sign_in, start,
};

/// The outbox's messages once `until` holds of them.
async fn outbox(s: &TestServer, admin: &Admin, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..400 {
        let (st, v) = admin_call(s, admin, Method::GET, "/admin/outbox", None).await;
        assert_eq!(st, 200, "{v}");
        let items = v.as_array().unwrap().clone();
        if until(&items) {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the outbox never became as expected");
}

/// Asks from `c`'s session to change the email to `address`: the
/// verification, and the code that went there.
async fn email_code(
    s: &TestServer,
    c: &reqwest::Client,
    admin: &Admin,
    address: &str,
) -> (Value, String) {
    let (st, _, begun) = send(
        c,
        Method::PUT,
        s.url("/self/methods/email"),
        Some(json!({"email": address})),
    )
    .await;
    assert_eq!(st, 202, "{begun}");
    let mail = outbox(s, admin, |m| m.iter().any(|e| e["to"] == address)).await;
    let sent = mail.iter().find(|e| e["to"] == address).unwrap();
    (begun, code_in(sent["text"].as_str().unwrap()))
}

/// Sends back `code` for the verification `begun` of an `email` or a
/// `phone`.
async fn confirm(
    s: &TestServer,
    c: &reqwest::Client,
    kind: &str,
    begun: &Value,
    code: &str,
) -> (u16, Value) {
    let (st, _, v) = send(
        c,
        Method::POST,
        s.url(&format!("/self/methods/{kind}/verify")),
        Some(json!({"verification": begun["verification"], "code": code})),
    )
    .await;
    (st, v)
}

#[tokio::test]
async fn an_address_changes_only_through_a_code_sent_to_it() {
    let s = TestServer::start(Store::Sqlite, "self_addresses")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    create_user(&s, &admin, "Bob", Some(PASSWORD)).await;
    let c = home();
    sign_in(&s, &c, &admin, "ada").await;

    let (st, _, v) = send(
        &c,
        Method::PUT,
        s.url("/self/methods/email"),
        Some(json!({"email": "not an address"})),
    )
    .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("email")), "{v}");
    let (begun, code) = email_code(&s, &c, &admin, "ada@lovelace.example").await;
    // Nothing changes before the code comes back, nor with a wrong one.
    let (_, user) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/users/{ada}"),
        None,
    )
    .await;
    assert_eq!(user["email"], "ada@example.org");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (st, _) = confirm(&s, &c, "email", &begun, wrong).await;
    assert_eq!(st, 401);
    let (st, v) = confirm(&s, &c, "email", &begun, &code).await;
    assert_eq!(st, 204, "{v}");
    let (_, user) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/users/{ada}"),
        None,
    )
    .await;
    assert_eq!(
        (user["email"].as_str(), user["email_verified"].as_bool()),
        (Some("ada@lovelace.example"), Some(true)),
        "{user}"
    );
    // A code is spent once.
    let (st, v) = confirm(&s, &c, "email", &begun, &code).await;
    assert_eq!(
        (st, v["field"].as_str()),
        (422, Some("verification")),
        "{v}"
    );
    // Another person's address is taken.
    let (begun, code) = email_code(&s, &c, &admin, "bob@example.org").await;
    let (st, v) = confirm(&s, &c, "email", &begun, &code).await;
    assert_eq!(st, 409, "{v}");

    // A phone number by WhatsApp; it can then carry sign-in codes.
    let (st, _, begun) = send(
        &c,
        Method::PUT,
        s.url("/self/methods/phone"),
        Some(json!({"phone_number": "+442071234567", "channel": "whatsapp"})),
    )
    .await;
    assert_eq!(st, 202, "{begun}");
    let msg = outbox(&s, &admin, |m| m.iter().any(|e| e["to"] == "+442071234567")).await;
    assert_eq!(msg[0]["channel"], "whatsapp");
    let code = code_in(msg[0]["text"].as_str().unwrap());
    let (st, _) = confirm(&s, &c, "phone", &begun, &code).await;
    assert_eq!(st, 204);
    let (_, _, methods) = send(&c, Method::GET, s.url("/self/methods"), None).await;
    assert_eq!(
        methods["phone"],
        json!({"value": "+442071234567", "verified": true}),
        "{methods}"
    );
    // A verification is this session's only.
    let other = home();
    sign_in(&s, &other, &admin, "ada").await;
    let (st, v) = confirm(&s, &other, "phone", &begun, &code).await;
    assert_eq!(
        (st, v["field"].as_str()),
        (422, Some("verification")),
        "{v}"
    );
    let (st, _, _) = send(&c, Method::DELETE, s.url("/self/methods/phone"), None).await;
    assert_eq!(st, 204);
    let (_, _, methods) = send(&c, Method::GET, s.url("/self/methods"), None).await;
    assert_eq!(methods["phone"]["value"], Value::Null);
    // Five wrong tries use a code up: the right one then confirms nothing
    // (last: the five failures make this address wait a moment).
    let (begun, code) = email_code(&s, &c, &admin, "ada@analytical.example").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..domain::session::ADDRESS_CODE_TRIES {
        let (st, v) = confirm(&s, &c, "email", &begun, wrong).await;
        assert_eq!(st, 401, "{v}");
    }
    let (st, v) = confirm(&s, &c, "email", &begun, &code).await;
    assert_eq!(
        (st, v["field"].as_str()),
        (422, Some("verification")),
        "{v}"
    );
    let (_, user) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/users/{ada}"),
        None,
    )
    .await;
    assert_eq!(user["email"], "ada@lovelace.example");
}

#[tokio::test]
async fn an_account_attacked_from_many_addresses_is_slowed_never_locked() {
    let s = TestServer::start(Store::Sqlite, "self_attacked")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "Ada", Some(PASSWORD)).await;
    // Five failures from each of eleven addresses: no address is made to
    // wait, but the account took 55 in the hour.
    for n in 10..21u8 {
        let attacker = browser(Ipv4Addr::new(127, 0, 0, n));
        let (id, _) = start(&s, &attacker, &admin).await;
        for _ in 0..5 {
            let (st, _, v) = password(&s, &attacker, &id, "ada", "guess guess guess").await;
            assert_eq!(st, 401, "{v}");
        }
    }
    // The person is told, once, by email; the trail says so.
    let notice = outbox(&s, &admin, |m| {
        m.iter().any(|e| e["purpose"] == "lockout_notice")
    })
    .await;
    assert_eq!(
        notice
            .iter()
            .filter(|e| e["purpose"] == "lockout_notice")
            .count(),
        1
    );
    assert_eq!(notice[0]["to"], "ada@example.org");
    let subject = format!("user:{}", ada.replace('-', ""));
    let (_, page) = admin_call(
        &s,
        &admin,
        Method::GET,
        &format!("/admin/audit?subject={subject}&action=signin.account_slowed.v1"),
        None,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    // The person still signs in, a second slower.
    let c = home();
    let (id, _) = start(&s, &c, &admin).await;
    let began = eventlog::clock::monotonic();
    let (st, _, v) = password(&s, &c, &id, "ada", PASSWORD).await;
    assert_eq!(st, 200, "{v}");
    assert!(
        began.elapsed() >= std::time::Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
}
