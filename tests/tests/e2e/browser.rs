//! A real browser through the pages: Debian's Chromium, headless, driven
//! over the DevTools protocol. A person signs in with a password on the
//! sign-in page, consents, and the application gets its code; they add a
//! passkey (Chromium's virtual authenticator), sign out, and sign in again
//! with the passkey alone. axe-core checks every page on the way for
//! accessibility violations (WCAG 2 A and AA: labels, contrast, language,
//! names).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::web_authn::{
    AddVirtualAuthenticatorParams, AuthenticatorProtocol, AuthenticatorTransport, EnableParams,
    VirtualAuthenticatorOptions,
};
use futures_util::StreamExt;
use serde_json::Value;

use crate::harness::{Store, TestServer};
use crate::sign_in::{PASSWORD, create_user};

const VERIFIER: &str = "a-browser-verifier-of-at-least-forty-three-characters-0123";

/// Chromium's path, or `None` (then the test says it was skipped; CI
/// installs Chromium, so there it fails instead).
fn chromium() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("CHROMIUM")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                .into_iter()
                .map(std::path::PathBuf::from)
                .find(|p| p.exists())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium (.ci/run does)"
        );
        eprintln!("SKIPPED: the browser test: Chromium is not installed");
    }
    found
}

/// axe-core's script (`AXE_CORE_JS`, which .ci/run installs from npm).
fn axe_source() -> Option<String> {
    let path = std::env::var("AXE_CORE_JS").ok();
    let text = path
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok());
    if text.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install axe-core and set AXE_CORE_JS (.ci/run does)"
        );
        eprintln!("SKIPPED: the browser test: AXE_CORE_JS names no axe-core script");
    }
    text
}

/// The application's redirect endpoint: it keeps the query strings it
/// receives.
async fn callback_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |uri: axum::http::Uri| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock().unwrap().push(uri.query().unwrap_or_default().to_owned());
                axum::response::Html("<!doctype html><html lang=en><title>App</title><h1>Back in the app</h1></html>")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

/// Runs axe-core on the page; answers the violations (rule: nodes).
async fn violations(page: &Page, axe: &str) -> Vec<String> {
    page.evaluate_expression(axe.to_owned()).await.unwrap();
    let found = page
        .evaluate_expression(
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
                .then(r => r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')))",
        )
        .await
        .unwrap();
    found.into_value::<Vec<String>>().unwrap()
}

async fn wait_for_path(page: &Page, part: &str) -> String {
    for _ in 0..100 {
        if let Ok(Some(url)) = page.url().await
            && url.contains(part)
        {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the browser never reached {part}: {:?}", page.url().await);
}

/// Types `text` into the field `selector`, as a person would.
async fn fill(page: &Page, selector: &str, text: &str) {
    page.find_element(selector)
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(text)
        .await
        .unwrap();
}

/// Clicks the element `selector`.
async fn press(page: &Page, selector: &str) {
    page.find_element(selector)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn wait_for_text(page: &Page, text: &str) {
    for _ in 0..100 {
        if page.content().await.is_ok_and(|html| html.contains(text)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never showed {text:?}");
}

async fn wait_for_callback(seen: &Arc<Mutex<Vec<String>>>, count: usize) -> String {
    for _ in 0..100 {
        if let Some(q) = seen.lock().unwrap().get(count - 1) {
            return q.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the application never got its code");
}

async fn redeem(s: &TestServer, client_id: &str, redirect: &str, query: &str) -> Value {
    let q: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(q["state"], "browser-state");
    let r = reqwest::Client::new()
        .post(s.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", &q["code"]),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_person_signs_in_through_the_pages_with_a_password_then_a_passkey() {
    let (Some(chromium), Some(axe)) = (chromium(), axe_source()) else {
        return;
    };
    // WebAuthn needs a host name, not an IP address: the issuer is
    // localhost on a port chosen now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut config, dir) = TestServer::config(Store::Sqlite, "browser").await.unwrap();
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.issuer = Some(format!("http://localhost:{port}"));
    let s = TestServer::start_with(config, Some(dir)).await;
    let admin = s.admin().await;
    create_user(&s, &admin, "ada", Some(PASSWORD)).await;
    let (cb_port, seen) = callback_server().await;
    let redirect = format!("http://127.0.0.1:{cb_port}/callback");
    let client = s
        .create_client(
            &admin,
            serde_json::json!({
                "organization_id": admin.organization_id,
                "client_type": "public",
                "name": "Notes",
                "redirect_uris": [redirect],
                "grant_types": ["authorization_code"],
                "scopes": ["openid", "email"],
                "token_endpoint_auth_method": "none",
            }),
        )
        .await;
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let authorize = format!(
        "http://localhost:{port}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid%20email&state=browser-state&code_challenge={}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>(),
        commands::grant::s256(VERIFIER),
    );

    let profile = tempfile::tempdir().unwrap();
    let (mut browser, mut handler) = Browser::launch(
        BrowserConfig::builder()
            .chrome_executable(chromium)
            .no_sandbox()
            .user_data_dir(profile.path())
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page("about:blank").await.unwrap();
    page.execute(EnableParams::default()).await.unwrap();
    let options = VirtualAuthenticatorOptions::builder()
        .protocol(AuthenticatorProtocol::Ctap2)
        .transport(AuthenticatorTransport::Internal)
        .has_resident_key(true)
        .has_user_verification(true)
        .is_user_verified(true)
        .automatic_presence_simulation(true)
        .build()
        .unwrap();
    page.execute(AddVirtualAuthenticatorParams::new(options))
        .await
        .unwrap();

    // The sign-in page, filled and submitted as a person would.
    page.goto(authorize.as_str()).await.unwrap();
    wait_for_path(&page, "/login").await;
    assert_eq!(
        violations(&page, &axe).await,
        Vec::<String>::new(),
        "the sign-in page"
    );
    fill(&page, "#identifier", "ada").await;
    fill(&page, "#password", "wrong password!").await;
    press(&page, "button[value=password]").await;
    wait_for_text(&page, "is not right").await;
    assert_eq!(
        violations(&page, &axe).await,
        Vec::<String>::new(),
        "the page with an error"
    );
    fill(&page, "#password", PASSWORD).await;
    press(&page, "button[value=password]").await;
    wait_for_path(&page, "/consent").await;
    wait_for_text(&page, "Allow Notes to access your account?").await;
    assert_eq!(
        violations(&page, &axe).await,
        Vec::<String>::new(),
        "the consent page"
    );
    press(&page, "button[value=allow]").await;
    let query = wait_for_callback(&seen, 1).await;
    let tokens = redeem(&s, &client_id, &redirect, &query).await;
    assert!(tokens["id_token"].is_string());

    // A passkey, added with the session the sign-in opened.
    page.goto(format!("http://localhost:{port}/self").as_str())
        .await
        .unwrap();
    let status = page
        .evaluate_expression(
            "(async () => {
                const begin = await fetch('/self/methods/passkeys', {method: 'POST'}).then(r => r.json());
                const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(begin.options.publicKey);
                const credential = await navigator.credentials.create({publicKey});
                const done = await fetch('/self/methods/passkeys/confirm', {
                    method: 'POST', headers: {'content-type': 'application/json'},
                    body: JSON.stringify({registration: begin.registration, credential: credential.toJSON(), name: 'Chromium'})});
                return done.status;
            })()",
        )
        .await
        .unwrap()
        .into_value::<u16>()
        .unwrap();
    assert_eq!(status, 201, "the passkey was added");

    // Sign out (confirmed on a page), then back with the passkey alone.
    page.goto(format!("http://localhost:{port}/oauth/end_session").as_str())
        .await
        .unwrap();
    assert_eq!(
        violations(&page, &axe).await,
        Vec::<String>::new(),
        "the sign-out page"
    );
    press(&page, "button[type=submit]").await;
    wait_for_text(&page, "You are signed out").await;
    page.goto(authorize.as_str()).await.unwrap();
    wait_for_path(&page, "/login").await;
    press(&page, "#passkey").await;
    let query = wait_for_callback(&seen, 2).await;
    let tokens = redeem(&s, &client_id, &redirect, &query).await;
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    let claims: Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        claims["amr"],
        serde_json::json!(["hwk", "mfa"]),
        "signed in by the passkey alone, which verified its user: two factors"
    );
    assert_eq!(claims["acr"], api::oidc::authorize::ACR_MFA);

    browser.close().await.unwrap();
    driver.await.unwrap();
}
