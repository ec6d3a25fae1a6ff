//! `idp bench oidc`: OpenID Connect for people against a running server.
//!
//! Creates a person and a confidential client, signs the person in
//! `--concurrency` times over the flow API (one session cookie per worker)
//! and gives consent once through the consent page. Then, each phase with
//! `--concurrency` requests in flight for `--duration` seconds:
//!
//! - `/authorize` with a session and a consent, to the code (a 303 with
//!   `code=`);
//! - code redemptions at the token endpoint (PKCE, client_secret_basic),
//!   newest code first, each earning an access token, an ID token and a refresh token;
//! - refreshes with rotation: each refresh token taken from a pool, spent
//!   once, and its successor put back (so no token is ever presented twice);
//! - UserInfo with the access tokens the refreshes issued.
//!
//! Prints requests/s, success, p50 and p99 of each phase.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

use super::BenchError;
use super::exchange::drive;

/// The PKCE verifier every request uses, and its S256 challenge.
const VERIFIER: &str = "bench-verifier-of-at-least-forty-three-characters-0123456789";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const PASSWORD: &str = "a bench password that is long";

#[derive(Debug, Clone, clap::Args)]
pub struct OidcArgs {
    #[command(flatten)]
    pub server: super::AdminServer,
    /// Requests in flight (and sessions signed in).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long each phase runs, in seconds (codes live 60 s: keep the
    /// authorize phase shorter than that).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Accepted for the common script; unused.
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// What to print in front of each result line.
    #[arg(long, default_value = "")]
    pub label: String,
}

fn setup(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("setting up: {e}"))
}

fn challenge() -> String {
    commands::grant::s256(VERIFIER)
}

async fn json_call(req: reqwest::RequestBuilder, what: &str) -> Result<Value, BenchError> {
    let r = req.send().await.map_err(setup)?;
    let status = r.status();
    let text = r.text().await.map_err(setup)?;
    if !status.is_success() {
        return Err(setup(format!("{what}: {status} {text}")));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A value of `name="…" value="…"` in a page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(
        rest[..rest.find('"')?]
            .replace("&#38;", "&")
            .replace("&amp;", "&"),
    )
}

fn location(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub async fn run(args: OidcArgs) -> Result<(), BenchError> {
    let base = args.server.base();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(setup)?;
    let admin_token = args.server.token(&http, "idp:admin").await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let username = format!("bench-{}", &run[20..]);
    json_call(
        http.post(format!("{base}/admin/users"))
            .bearer_auth(&admin_token)
            .json(&json!({
                "organization_id": args.server.organization_id, "username": username,
                "email": format!("{username}@example.org"), "email_verified": true,
                "password": PASSWORD,
            })),
        "user",
    )
    .await?;
    let client = json_call(
        http.post(format!("{base}/admin/clients"))
            .bearer_auth(&admin_token)
            .json(&json!({
                "organization_id": args.server.organization_id, "client_type": "confidential",
                "name": "OIDC bench", "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "scopes": ["openid", "email", "profile", "offline_access"],
                "token_endpoint_auth_method": "client_secret_basic",
            })),
        "client",
    )
    .await?;
    let client_id = client["client_id"].as_str().unwrap_or_default().to_owned();
    let secret = json_call(
        http.post(format!("{base}/admin/clients/{client_id}/secrets"))
            .bearer_auth(&admin_token)
            .json(&json!({"description": "bench"})),
        "secret",
    )
    .await?["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // One signed-in browser per worker.
    let mut browsers = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency.max(1) {
        let b = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(setup)?;
        let started = json_call(
            b.post(format!("{base}/authentication/start")).json(
                &json!({"organization_id": args.server.organization_id, "client_id": client_id}),
            ),
            "start",
        )
        .await?;
        let id = started["session_id"].clone();
        json_call(b.post(format!("{base}/authentication/authenticate")).json(&json!({
                "session_id": id, "method": "password", "identifier": username, "password": PASSWORD,
            })),
            "password",
        )
        .await?;
        json_call(
            b.post(format!("{base}/authentication/complete"))
                .json(&json!({"session_id": id})),
            "complete",
        )
        .await?;
        browsers.push(b);
    }
    let authorize = format!(
        "{base}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid%20email%20offline_access&state=s&nonce=n&code_challenge={}&code_challenge_method=S256",
        "http%3A%2F%2F127.0.0.1%3A9%2Fcallback",
        challenge()
    );
    // Consent, once, through the page.
    let first = &browsers[0];
    let r = first.get(&authorize).send().await.map_err(setup)?;
    let consent = location(&r).ok_or_else(|| setup("authorize did not redirect"))?;
    let page = first
        .get(format!("{base}{consent}"))
        .send()
        .await
        .map_err(setup)?
        .text()
        .await
        .map_err(setup)?;
    let csrf = hidden(&page, "csrf").ok_or_else(|| setup("no consent form"))?;
    let mut form: Vec<(String, String)> = url::form_urlencoded::parse(
        consent
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or("")
            .as_bytes(),
    )
    .into_owned()
    .collect();
    form.push(("csrf".into(), csrf));
    form.push(("decision".into(), "allow".into()));
    let r = first
        .post(format!("{base}/consent"))
        .form(&form)
        .send()
        .await
        .map_err(setup)?;
    if !location(&r).is_some_and(|l| l.contains("code=")) {
        return Err(setup("the consent did not answer a code"));
    }

    let duration = Some(Duration::from_secs(args.duration));
    let label = args.label.as_str();
    let browsers = Arc::new(browsers);

    // Phase 1: /authorize to the code.
    let codes: Arc<Mutex<Vec<String>>> = Arc::default();
    let phase = {
        let (browsers, codes, url) = (Arc::clone(&browsers), Arc::clone(&codes), authorize.clone());
        drive(args.concurrency, usize::MAX, duration, move |i| {
            let b = browsers[i % browsers.len()].clone();
            let (codes, url) = (Arc::clone(&codes), url.clone());
            async move {
                let Ok(r) = b.get(&url).send().await else {
                    return (None, false);
                };
                let status = r.status().as_u16();
                let code = location(&r).and_then(|l| {
                    url::Url::parse(&l)
                        .ok()?
                        .query_pairs()
                        .find(|(k, _)| k == "code")
                        .map(|(_, v)| v.into_owned())
                });
                let ok = code.is_some();
                if let Some(c) = code {
                    codes.lock().unwrap_or_else(PoisonError::into_inner).push(c);
                }
                (Some(status), ok)
            }
        })
        .await?
    };
    println!("{}", phase.line(label, "authorize"));

    // Phase 2: the codes redeemed, newest first (a client redeems its code
    // within a second of getting it, while the grant is still in the
    // server's cache).
    let codes = Arc::new({
        let mut all = std::mem::take(&mut *codes.lock().unwrap_or_else(PoisonError::into_inner));
        all.reverse();
        all
    });
    let refreshes: Arc<Mutex<Vec<String>>> = Arc::default();
    let phase = {
        let (codes, refreshes) = (Arc::clone(&codes), Arc::clone(&refreshes));
        let (http, url, id, secret) = (
            http.clone(),
            format!("{base}/oauth/token"),
            client_id.clone(),
            secret.clone(),
        );
        drive(args.concurrency, codes.len(), duration, move |i| {
            let req = http.post(&url).basic_auth(&id, Some(&secret)).form(&[
                ("grant_type", "authorization_code"),
                ("code", codes[i].as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ]);
            let refreshes = Arc::clone(&refreshes);
            async move {
                let Ok(r) = req.send().await else {
                    return (None, false);
                };
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let ok = status == 200 && v["id_token"].is_string();
                if let Some(t) = v["refresh_token"].as_str() {
                    refreshes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(t.to_owned());
                }
                (Some(status), ok)
            }
        })
        .await?
    };
    println!("{}", phase.line(label, "redeem"));

    // Phase 3: refreshes, each token spent once and its successor pooled.
    let access: Arc<Mutex<Vec<String>>> = Arc::default();
    let phase = {
        let (pool, access) = (Arc::clone(&refreshes), Arc::clone(&access));
        let (http, url, id, secret) = (
            http.clone(),
            format!("{base}/oauth/token"),
            client_id.clone(),
            secret.clone(),
        );
        drive(args.concurrency, usize::MAX, duration, move |_| {
            let (pool, access) = (Arc::clone(&pool), Arc::clone(&access));
            let (http, url, id, secret) = (http.clone(), url.clone(), id.clone(), secret.clone());
            async move {
                let token = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let Some(token) = token else {
                    tokio::task::yield_now().await;
                    return (None, false);
                };
                let sent = http
                    .post(&url)
                    .basic_auth(&id, Some(&secret))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", token.as_str()),
                    ])
                    .send()
                    .await;
                let Ok(r) = sent else {
                    return (None, false);
                };
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let next = v["refresh_token"].as_str().map(str::to_owned);
                let ok = status == 200 && next.is_some();
                if let Some(n) = next {
                    pool.lock().unwrap_or_else(PoisonError::into_inner).push(n);
                }
                if let Some(a) = v["access_token"].as_str() {
                    let mut kept = access.lock().unwrap_or_else(PoisonError::into_inner);
                    if kept.len() < 1000 {
                        kept.push(a.to_owned());
                    }
                }
                (Some(status), ok)
            }
        })
        .await?
    };
    println!("{}", phase.line(label, "refresh"));

    // Phase 4: UserInfo.
    let access = Arc::new(std::mem::take(
        &mut *access.lock().unwrap_or_else(PoisonError::into_inner),
    ));
    if access.is_empty() {
        return Err(setup("no access token came out of the refreshes"));
    }
    let phase = {
        let (http, url) = (http.clone(), format!("{base}/oauth/userinfo"));
        drive(args.concurrency, usize::MAX, duration, move |i| {
            let req = http.get(&url).bearer_auth(&access[i % access.len()]);
            async move {
                let Ok(r) = req.send().await else {
                    return (None, false);
                };
                let status = r.status().as_u16();
                let ok = status == 200 && r.bytes().await.is_ok();
                (Some(status), ok)
            }
        })
        .await?
    };
    println!("{}", phase.line(label, "userinfo"));
    Ok(())
}
