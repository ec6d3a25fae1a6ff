//! OpenID Connect for people, end to end: a certified-shape relying party
//! (the `openidconnect` crate) discovers the server, sends a person through
//! `/authorize`, the sign-in page (submitted as a browser would, cookies
//! kept, no script) and the consent page, redeems the code with PKCE,
//! verifies the ID token against the JWKS with its nonce and `at_hash`,
//! reads UserInfo, refreshes with rotation, detects reuse and logs out; for
//! a confidential and a public client. Then every refusal the flow owes.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Admin, Store, TestServer};
use crate::oauth::introspect;
use crate::sign_in::{PASSWORD, admin_call, create_user};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const AFTER_LOGOUT: &str = "http://127.0.0.1:9/signed-out";

/// A browser that keeps cookies and does not follow redirects, so each
/// hop can be looked at.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn rp_http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What a browser sees of a response: status, Location, body.
struct Seen {
    status: u16,
    location: Option<String>,
    body: String,
}

async fn visit(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    form: Option<&[(String, String)]>,
) -> Seen {
    let mut req = c.request(method, url);
    if let Some(f) = form {
        req = req.form(f);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = r.text().await.unwrap();
    Seen {
        status,
        location,
        body,
    }
}

fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// The hidden inputs of the page's first form, in order.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let start = html.find("<form").unwrap();
    let end = html[start..].find("</form>").unwrap() + start;
    html[start..end]
        .split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            (attr(tag, "type")? == "hidden").then(|| {
                (
                    attr(tag, "name").unwrap(),
                    attr(tag, "value").unwrap_or_default(),
                )
            })
        })
        .collect()
}

fn absolute(s: &TestServer, location: &str) -> String {
    if location.starts_with('/') {
        s.url(location)
    } else {
        location.to_owned()
    }
}

fn query(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Follows a person from the authorization URL to the client's redirect:
/// the sign-in page with a password when asked, the consent page when
/// shown (allowing). Answers the final redirect and whether consent was
/// asked.
async fn through_pages(
    s: &TestServer,
    c: &reqwest::Client,
    start: &str,
    identifier: &str,
) -> (String, bool) {
    let mut url = start.to_owned();
    let mut consented = false;
    for _ in 0..10 {
        let seen = visit(c, Method::GET, &url, None).await;
        if seen.status == 303 {
            let next = absolute(s, seen.location.as_deref().unwrap());
            if next.starts_with("http://127.0.0.1:9/") {
                return (next, consented);
            }
            url = next;
            continue;
        }
        assert_eq!(seen.status, 200, "{}", seen.body);
        let mut form = hidden_inputs(&seen.body);
        let action = if url.contains("/login") {
            assert!(seen.body.contains(r#"<label for="identifier">"#));
            form.push(("identifier".into(), identifier.into()));
            form.push(("password".into(), PASSWORD.into()));
            form.push(("method".into(), "password".into()));
            "/login"
        } else {
            assert!(url.contains("/consent"), "{url}");
            assert!(
                seen.body.contains("See your email address"),
                "scopes in words"
            );
            consented = true;
            form.push(("decision".into(), "allow".into()));
            "/consent"
        };
        let posted = visit(c, Method::POST, &s.url(action), Some(&form)).await;
        assert_eq!(posted.status, 303, "{}", posted.body);
        let next = absolute(s, posted.location.as_deref().unwrap());
        if next.starts_with("http://127.0.0.1:9/") {
            return (next, consented);
        }
        url = next;
    }
    panic!("the pages never sent the browser back");
}

async fn make_client(s: &TestServer, admin: &Admin, public: bool) -> (String, Option<String>) {
    let mut body = json!({
        "organization_id": admin.organization_id,
        "client_type": if public { "public" } else { "confidential" },
        "name": if public { "Mobile app" } else { "Web shop" },
        "redirect_uris": [REDIRECT, "http://127.0.0.1/native"],
        "post_logout_redirect_uris": [AFTER_LOGOUT],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_method": if public { "none" } else { "client_secret_basic" },
    });
    if public {
        body["id_token_signed_response_alg"] = json!("RS256");
    }
    let v = s.create_client(admin, body).await;
    let id = v["client_id"].as_str().unwrap().to_owned();
    let secret = if public {
        None
    } else {
        Some(s.create_secret(admin, &id).await.1)
    };
    (id, secret)
}

async fn relying_party(
    s: &TestServer,
    id: &str,
    secret: Option<String>,
) -> CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
> {
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(s.url("")).unwrap(), &rp_http())
        .await
        .unwrap();
    CoreClient::from_provider_metadata(
        meta,
        ClientId::new(id.into()),
        secret.map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
}

async fn userinfo_status(s: &TestServer, token: &str) -> (u16, Value, String) {
    let r = reqwest::Client::new()
        .get(s.url("/oauth/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, r.json().await.unwrap_or(Value::Null), challenge)
}

async fn whole_flow(store: Store, public: bool) {
    let name = if public {
        "oidc_public"
    } else {
        "oidc_confidential"
    };
    let Some(s) = TestServer::start(store, name).await else {
        return;
    };
    let admin = s.admin().await;
    let user_id = create_user(&s, &admin, "ada", Some(PASSWORD)).await;
    let (client_id, secret) = make_client(&s, &admin, public).await;
    let rp = relying_party(&s, &client_id, secret).await;
    let alg = if public {
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
    } else {
        CoreJwsSigningAlgorithm::EcdsaP256Sha256
    };
    let browser = browser();

    let authorize = |scopes: &[&str]| {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = rp.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for sc in scopes {
            req = req.add_scope(Scope::new((*sc).into()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        (url.to_string(), state, nonce, verifier)
    };

    // Sign in, consent, code.
    let (url, csrf, nonce, verifier) = authorize(&["email", "profile", "offline_access"]);
    let (back, consented) = through_pages(&s, &browser, &url, "ada").await;
    assert!(consented, "the first request asks for consent");
    let q = query(&back);
    assert_eq!(q["state"], *csrf.secret());
    assert_eq!(q["iss"], s.url(""), "RFC 9207");
    let code = q["code"].clone();

    let http = rp_http();
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().expect("an ID token");
    let id_verifier = rp.id_token_verifier().set_allowed_algs(vec![alg]);
    let claims = id_token.claims(&id_verifier, &nonce).unwrap();
    assert_eq!(claims.subject().as_str(), user_id);
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.org"));
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("ada"));
    assert!(claims.auth_time().is_some());
    assert_eq!(
        claims.authorized_party().map(|a| a.as_str()),
        Some(client_id.as_str())
    );
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&id_verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    let raw: Value = {
        use base64::Engine;
        let payload = id_token.to_string().split('.').nth(1).unwrap().to_owned();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(raw["amr"], json!(["pwd"]));
    assert!(raw["sid"].is_string());
    assert!(raw["acr"].is_string());

    // UserInfo through the relying party.
    let info: openidconnect::core::CoreUserInfoClaims = rp
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(info.subject().as_str(), user_id);
    assert_eq!(info.email().map(|e| e.as_str()), Some("ada@example.org"));

    // Refresh with rotation; the old token again revokes the family.
    let first_refresh = tokens
        .refresh_token()
        .expect("offline_access earns a refresh token")
        .clone();
    let refreshed = rp
        .exchange_refresh_token(&first_refresh)
        .unwrap()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("email".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        refreshed
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        Some(vec!["openid".to_owned(), "email".to_owned()]),
        "the scope narrowed"
    );
    let second_refresh = refreshed.refresh_token().expect("rotated").clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    let (st, _, _) = userinfo_status(&s, refreshed.access_token().secret()).await;
    assert_eq!(st, 200);
    let reuse = rp
        .exchange_refresh_token(&first_refresh)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(reuse.is_err(), "a used refresh token is refused");
    let after = rp
        .exchange_refresh_token(&second_refresh)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(after.is_err(), "reuse revoked the whole family");
    let (st, _, challenge) = userinfo_status(&s, refreshed.access_token().secret()).await;
    assert_eq!(st, 401, "the family's access tokens stop too");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );

    // A second request for the same scopes skips the consent screen; a
    // code used twice revokes what its first use issued.
    let (url, _, nonce, verifier) = authorize(&["email"]);
    let (back, consented) = through_pages(&s, &browser, &url, "ada").await;
    assert!(!consented, "consent is remembered");
    let code = query(&back)["code"].clone();
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    tokens
        .id_token()
        .unwrap()
        .claims(&id_verifier, &nonce)
        .unwrap();
    assert!(
        tokens.refresh_token().is_none(),
        "no offline_access, no refresh token"
    );
    let (st, _, _) = userinfo_status(&s, tokens.access_token().secret()).await;
    assert_eq!(st, 200);
    let replay = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new("x".repeat(43)))
        .request_async(&http)
        .await;
    assert!(replay.is_err());
    let (st, _, _) = userinfo_status(&s, tokens.access_token().secret()).await;
    assert_eq!(st, 401, "the replay revoked the first use's token");

    // The person lists and withdraws the consent; a grant made under it
    // stops refreshing.
    let (url, _, _, verifier) = authorize(&["email", "offline_access"]);
    let (back, _) = through_pages(&s, &browser, &url, "ada").await;
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query(&back)["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let r = browser.get(s.url("/self/consents")).send().await.unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["items"][0]["client_id"], json!(client_id));
    assert!(
        list["items"][0]["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("email"))
    );
    let r = browser
        .delete(s.url(&format!("/self/consents/{client_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let refused = rp
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .unwrap()
        .request_async(&http)
        .await;
    assert!(refused.is_err(), "withdrawn consent ends the grant");

    // RP-initiated logout with the ID token as hint: back to a registered
    // URI with the state; the session is over (prompt=none then fails).
    let (url, _, _, verifier) = authorize(&["email", "offline_access"]);
    let (back, consented) = through_pages(&s, &browser, &url, "ada").await;
    assert!(consented, "a withdrawn consent is asked again");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(query(&back)["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let hint = tokens.id_token().unwrap().to_string();
    let logout = format!(
        "{}?id_token_hint={hint}&post_logout_redirect_uri={}&state=bye",
        s.url("/oauth/end_session"),
        url::form_urlencoded::byte_serialize(AFTER_LOGOUT.as_bytes()).collect::<String>()
    );
    let seen = visit(&browser, Method::GET, &logout, None).await;
    assert_eq!(seen.status, 303, "{}", seen.body);
    assert_eq!(
        seen.location.as_deref(),
        Some(format!("{AFTER_LOGOUT}?state=bye").as_str())
    );
    let refused = rp
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .unwrap()
        .request_async(&http)
        .await;
    assert!(
        refused.is_err(),
        "ending the session ends its refresh tokens"
    );
    let (url, _, _, _) = authorize(&["email"]);
    let seen = visit(&browser, Method::GET, &format!("{url}&prompt=none"), None).await;
    assert_eq!(seen.status, 303);
    let q = query(seen.location.as_deref().unwrap());
    assert_eq!(q["error"], "login_required");

    // Every step is in the audit trail.
    for a in [
        "grant.code_issued.v1",
        "grant.code_redeemed.v1",
        "grant.code_replayed.v1",
        "grant.refreshed.v1",
        "grant.reuse_detected.v1",
        "grant.revoked.v1",
        "consent.given.v1",
        "consent.revoked.v1",
        "session.revoked.v1",
    ] {
        let (st, v) = admin_call(
            &s,
            &admin,
            Method::GET,
            &format!("/admin/audit?action={a}&limit=5"),
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert!(!v["items"].as_array().unwrap().is_empty(), "{a} is audited");
    }
}

#[tokio::test]
async fn a_confidential_client_signs_a_person_in_on_sqlite() {
    whole_flow(Store::Sqlite, false).await;
}

#[tokio::test]
async fn a_public_client_signs_a_person_in_on_sqlite() {
    whole_flow(Store::Sqlite, true).await;
}

#[tokio::test]
async fn a_confidential_client_signs_a_person_in_on_postgres() {
    whole_flow(Store::Postgres, false).await;
}

/// `/authorize?…` with `params` over a well-formed request.
fn authorize_url(s: &TestServer, client_id: &str, params: &[(&str, &str)]) -> String {
    let mut all: Vec<(String, String)> = vec![
        ("response_type".into(), "code".into()),
        ("client_id".into(), client_id.into()),
        ("redirect_uri".into(), REDIRECT.into()),
        ("scope".into(), "openid email".into()),
        ("state".into(), "st-1".into()),
        ("nonce".into(), "n-1".into()),
        ("code_challenge".into(), commands::grant::s256(VERIFIER)),
        ("code_challenge_method".into(), "S256".into()),
    ];
    for (k, v) in params {
        all.retain(|(n, _)| n != k);
        if !v.is_empty() {
            all.push(((*k).into(), (*v).into()));
        }
    }
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(all)
        .finish();
    s.url(&format!("/authorize?{q}"))
}

const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-0123456789";

async fn token_call(
    s: &TestServer,
    client_id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(s.url("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The error an authorization request was sent back with.
async fn sent_back(c: &reqwest::Client, url: &str) -> std::collections::HashMap<String, String> {
    let seen = visit(c, Method::GET, url, None).await;
    assert_eq!(seen.status, 303, "{}", seen.body);
    let location = seen.location.unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    query(&location)
}

#[tokio::test]
async fn every_refusal_the_flow_owes() {
    let Some((s, clock)) = TestServer::start_clocked(Store::Sqlite, "oidc_refusals").await else {
        return;
    };
    let admin = s.admin().await;
    create_user(&s, &admin, "ada", Some(PASSWORD)).await;
    let (client_id, secret) = make_client(&s, &admin, false).await;
    let secret = secret.unwrap();
    let c = browser();

    // The client or its redirect URI is wrong: a page, never a redirect.
    for url in [
        authorize_url(
            &s,
            &client_id,
            &[("redirect_uri", "http://127.0.0.1:9/elsewhere")],
        ),
        authorize_url(
            &s,
            &client_id,
            &[("redirect_uri", "http://127.0.0.1:9/callback/")],
        ),
        authorize_url(&s, &client_id, &[("redirect_uri", "")]),
        authorize_url(&s, "00000000-0000-0000-0000-000000000000", &[]),
    ] {
        let seen = visit(&c, Method::GET, &url, None).await;
        assert_eq!(seen.status, 400, "{url}");
        assert!(seen.location.is_none());
        assert!(seen.body.contains("noindex"));
    }
    // Everything else goes back to the client, with its state and our iss.
    for (params, error) in [
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("scope", "openid payroll:write")], "invalid_scope"),
        (vec![("scope", "openid idp:admin")], "invalid_scope"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("prompt", "none")], "login_required"),
        (vec![("prompt", "none login")], "invalid_request"),
        (
            vec![("request", "eyJhbGciOiJub25lIn0.eyJzdGF0ZSI6IngifQ.")],
            "request_not_supported",
        ),
        (
            vec![("request_uri", "https://rp.example/request.jwt")],
            "request_uri_not_supported",
        ),
        (vec![("id_token_hint", "eyJ.e30.x")], "invalid_request"),
    ] {
        let q = sent_back(&c, &authorize_url(&s, &client_id, &params)).await;
        assert_eq!(q["error"], error, "{params:?}");
        assert_eq!(q["state"], "st-1");
        assert_eq!(q["iss"], s.url(""));
    }
    // A native app's loopback redirect may use any port (RFC 8252).
    let seen = visit(
        &c,
        Method::GET,
        &authorize_url(
            &s,
            &client_id,
            &[("redirect_uri", "http://127.0.0.1:53121/native")],
        ),
        None,
    )
    .await;
    assert_eq!(seen.status, 303);
    assert!(seen.location.unwrap().starts_with("/login?"));

    // A code: the wrong verifier, the wrong redirect URI, then too late.
    let (back, _) = through_pages(&s, &c, &authorize_url(&s, &client_id, &[]), "ada").await;
    let code = query(&back)["code"].clone();
    let redeem = |verifier: &'static str, redirect: &'static str, code: String| {
        let (id, secret) = (client_id.clone(), secret.clone());
        let s = &s;
        async move {
            token_call(
                s,
                &id,
                &secret,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                ],
            )
            .await
        }
    };
    let (st, v) = redeem(
        "another-verifier-of-at-least-forty-three-characters-01",
        REDIRECT,
        code.clone(),
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (st, v) = redeem(VERIFIER, "http://127.0.0.1/native", code.clone()).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (st, v) = token_call(
        &s,
        &client_id,
        &secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_request")),
        "a missing verifier: {v}"
    );
    let (st, v) = redeem(VERIFIER, REDIRECT, code.clone()).await;
    assert_eq!(st, 200, "refusals did not spend the code: {v}");
    let (st, v) = redeem(VERIFIER, REDIRECT, code).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );

    let (back, _) = through_pages(&s, &c, &authorize_url(&s, &client_id, &[]), "ada").await;
    let code = query(&back)["code"].clone();
    clock.advance(time::Duration::seconds(61));
    let (st, v) = redeem(VERIFIER, REDIRECT, code).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(
        v["error_description"].as_str().unwrap().contains("expired"),
        "{v}"
    );

    // max_age=0 asks for a sign-in even with a session, then answers.
    let url = authorize_url(&s, &client_id, &[("max_age", "0")]);
    let seen = visit(&c, Method::GET, &url, None).await;
    assert!(
        seen.location.unwrap().starts_with("/login?"),
        "max_age=0 signs in again"
    );
    let (back, _) = through_pages(&s, &c, &url, "ada").await;
    assert!(
        query(&back).contains_key("code"),
        "and then answers: {back}"
    );

    // An id_token_hint names whom the client expects: someone else signed
    // in is refused, the person it names gets a code.
    create_user(&s, &admin, "bea", Some(PASSWORD)).await;
    let bea = browser();
    let (back, _) = through_pages(&s, &bea, &authorize_url(&s, &client_id, &[]), "bea").await;
    let (st, v) = redeem(VERIFIER, REDIRECT, query(&back)["code"].clone()).await;
    assert_eq!(st, 200, "{v}");
    let hint = v["id_token"].as_str().unwrap().to_owned();
    let hinted = [("id_token_hint", hint.as_str()), ("prompt", "none")];
    let q = sent_back(&c, &authorize_url(&s, &client_id, &hinted)).await;
    assert_eq!(q["error"], "login_required", "ada is signed in, not bea");
    let q = sent_back(&bea, &authorize_url(&s, &client_id, &hinted)).await;
    assert!(q.contains_key("code"), "{q:?}");

    // Signed in, but another client was never consented to: prompt=none
    // cannot ask.
    let (other, _) = make_client(&s, &admin, false).await;
    let q = sent_back(&c, &authorize_url(&s, &other, &[("prompt", "none")])).await;
    assert_eq!(q["error"], "consent_required");
    // Denying consent is access_denied.
    let seen = visit(&c, Method::GET, &authorize_url(&s, &other, &[]), None).await;
    let consent = s.url(seen.location.as_deref().unwrap());
    let page = visit(&c, Method::GET, &consent, None).await;
    let mut form = hidden_inputs(&page.body);
    form.push(("decision".into(), "deny".into()));
    let posted = visit(&c, Method::POST, &s.url("/consent"), Some(&form)).await;
    assert_eq!(
        query(posted.location.as_deref().unwrap())["error"],
        "access_denied"
    );
    // A forged consent (no CSRF token) is refused.
    let forged: Vec<(String, String)> = form.into_iter().filter(|(k, _)| k != "csrf").collect();
    let posted = visit(&c, Method::POST, &s.url("/consent"), Some(&forged)).await;
    assert_eq!(posted.status, 403);

    // A first-party client needs no consent, unless the request asks.
    let (st, v) = admin_call(
        &s,
        &admin,
        Method::PATCH,
        &format!("/admin/clients/{other}"),
        Some(json!({"skip_consent": true})),
    )
    .await;
    assert_eq!((st, &v["skip_consent"]), (200, &json!(true)), "{v}");
    let q = sent_back(&c, &authorize_url(&s, &other, &[])).await;
    assert!(q.contains_key("code"), "no consent screen: {q:?}");
    let seen = visit(
        &c,
        Method::GET,
        &authorize_url(&s, &other, &[("prompt", "consent")]),
        None,
    )
    .await;
    assert!(
        seen.location.unwrap().starts_with("/consent?"),
        "prompt=consent asks anyway"
    );

    // UserInfo without a token, and with a client's own token.
    let r = reqwest::Client::new()
        .get(s.url("/oauth/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (st, _, challenge) = userinfo_status(&s, &admin.token).await;
    assert_eq!(st, 403, "{challenge}");
    assert!(challenge.contains("insufficient_scope"));

    // Requests sent back with an error are in the audit trail.
    let (st, v) = admin_call(
        &s,
        &admin,
        Method::GET,
        "/admin/audit?action=authorization.refused.v1&limit=50",
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let items = v["items"].as_array().unwrap();
    assert!(items.len() >= 8, "{v}");
    assert!(items.iter().all(|e| e["source_ip"].is_string()), "{v}");
}

#[tokio::test]
async fn discovery_lists_what_is_implemented() {
    let Some(s) = TestServer::start(Store::Sqlite, "oidc_discovery").await else {
        return;
    };
    let v: Value = reqwest::get(s.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["authorization_endpoint"], s.url("/authorize"));
    assert_eq!(v["userinfo_endpoint"], s.url("/oauth/userinfo"));
    assert_eq!(v["end_session_endpoint"], s.url("/oauth/end_session"));
    assert_eq!(v["response_types_supported"], json!(["code"]));
    assert!(
        v["revocation_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none")),
        "a public client revokes its own tokens"
    );
    assert_eq!(v["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        v["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    assert_eq!(
        v["id_token_signing_alg_values_supported"],
        json!(["ES256", "RS256"])
    );
    assert_eq!(
        v["prompt_values_supported"],
        json!(["none", "login", "consent", "select_account"])
    );
    for g in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(
            v["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(g))
        );
    }
    for c in ["sub", "email", "nonce", "at_hash", "sid"] {
        assert!(
            v["claims_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(c))
        );
    }
    assert!(
        v["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("offline_access"))
    );

    // A client in a browser may call discovery, the keys, the token,
    // revocation and UserInfo endpoints from its own origin; the pages
    // and the admin API stay same-origin.
    let origin = "https://spa.example";
    for (method, path) in [
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/oauth/jwks"),
        ("POST", "/oauth/token"),
        ("POST", "/oauth/revoke"),
        ("GET", "/oauth/userinfo"),
    ] {
        let r = reqwest::Client::new()
            .request(Method::OPTIONS, s.url(path))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "preflight of {path}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
        assert!(
            r.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
    }
    let r = reqwest::Client::new()
        .get(s.url("/oauth/jwks"))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = reqwest::Client::new()
        .get(s.url("/admin/users"))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn the_pages_wear_the_organizations_branding() {
    let Some(s) = TestServer::start(Store::Sqlite, "oidc_branding").await else {
        return;
    };
    let admin = s.admin().await;
    let (client_id, _) = make_client(&s, &admin, false).await;
    let path = format!("/admin/organizations/{}/branding", admin.organization_id);
    for bad in [
        json!({"accent_color": "red;}body{display:none"}),
        json!({"logo_url": "http://cdn.example/logo.png"}),
    ] {
        let (st, v) = admin_call(&s, &admin, Method::PUT, &path, Some(bad)).await;
        assert_eq!(st, 422, "{v}");
    }
    let good = json!({"logo_url": "https://cdn.example/logo.png", "accent_color": "#FFE066"});
    let (st, v) = admin_call(&s, &admin, Method::PUT, &path, Some(good)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["accent_color"], "#ffe066");
    let r = browser()
        .get(s.url(&format!("/login?client_id={client_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(h["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(
        html.contains(r#"<img src="https://cdn.example/logo.png""#),
        "{html}"
    );
    assert!(
        html.contains("--accent:#ffe066;--on-accent:#000000"),
        "light accent, dark text"
    );
    assert!(html.contains(r#"<meta name="robots" content="noindex, nofollow">"#));
    assert!(html.contains("Web shop"), "the client is named");
}

/// A confidential client of `org` for the client credentials grant, given
/// a role made from the `resource_server` template: its id and secret.
async fn resource_server(s: &TestServer, admin: &Admin, org: &str) -> (String, String) {
    let c = s
        .create_client(
            admin,
            crate::oauth::confidential(org, "client_secret_basic", &["read"]),
        )
        .await;
    let id = c["client_id"].as_str().unwrap().to_owned();
    let (_, secret) = s.create_secret(admin, &id).await;
    (id, secret)
}

async fn give_role(
    s: &TestServer,
    admin: &Admin,
    org: &str,
    role: Value,
    kind: &str,
    holder: &str,
) {
    let mut role = role;
    role["organization_id"] = json!(org);
    let (st, r) = admin_call(s, admin, Method::POST, "/admin/roles", Some(role)).await;
    assert_eq!(st, 201, "{r}");
    let path = format!(
        "/admin/roles/{}/holders/{kind}/{holder}",
        r["role_id"].as_str().unwrap()
    );
    let (st, v) = admin_call(s, admin, Method::PUT, &path, None).await;
    assert_eq!(st, 204, "{v}");
}

#[tokio::test]
async fn a_resource_server_introspects_a_persons_token_with_their_roles() {
    let Some(s) = TestServer::start(Store::Sqlite, "oidc_resource_server").await else {
        return;
    };
    let admin = s.admin().await;
    let org = admin.organization_id.clone();
    let ada = create_user(&s, &admin, "ada", Some(PASSWORD)).await;
    let (client_id, secret) = make_client(&s, &admin, false).await;
    let secret = secret.unwrap();
    let c = browser();
    let (back, _) = through_pages(&s, &c, &authorize_url(&s, &client_id, &[]), "ada").await;
    let code = query(&back)["code"].clone();
    let (st, tokens) = token_call(
        &s,
        &client_id,
        &secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(st, 200, "{tokens}");
    let token = tokens["access_token"].as_str().unwrap();

    // The client that got it learns about it, with the person's roles as
    // they are now; another client of the organization learns nothing...
    let (rs, rs_secret) = resource_server(&s, &admin, &org).await;
    assert_eq!(
        introspect(&s, (&rs, &rs_secret), token).await,
        json!({"active": false})
    );
    let seen = introspect(&s, (&client_id, &secret), token).await;
    assert_eq!(
        (seen["active"].clone(), seen["sub"].clone()),
        (json!(true), json!(ada))
    );
    assert_eq!(seen["roles"], json!([]));
    give_role(
        &s,
        &admin,
        &org,
        json!({"name": "reader", "permissions": ["reports:read"]}),
        "users",
        &ada,
    )
    .await;

    // ...until its roles grant `tokens:introspect`: then it reads who the
    // person is and what they may do.
    give_role(
        &s,
        &admin,
        &org,
        json!({"template": "resource_server"}),
        "clients",
        &rs,
    )
    .await;
    let seen = introspect(&s, (&rs, &rs_secret), token).await;
    assert_eq!(seen["active"], json!(true), "{seen}");
    assert_eq!(seen["sub"], json!(ada));
    assert_eq!(seen["client_id"], json!(client_id));
    assert_eq!(seen["roles"], json!(["reader"]), "{seen}");
    assert_eq!(seen["permissions"], json!(["reports:read"]), "{seen}");

    // The same role in another organization reads nothing of this one.
    let (st, other) = admin_call(
        &s,
        &admin,
        Method::POST,
        "/admin/organizations",
        Some(json!({"name": "Other"})),
    )
    .await;
    assert_eq!(st, 201, "{other}");
    let other = other["id"].as_str().unwrap().to_owned();
    let (stranger, stranger_secret) = resource_server(&s, &admin, &other).await;
    give_role(
        &s,
        &admin,
        &other,
        json!({"template": "resource_server"}),
        "clients",
        &stranger,
    )
    .await;
    assert_eq!(
        introspect(&s, (&stranger, &stranger_secret), token).await,
        json!({"active": false})
    );
}
