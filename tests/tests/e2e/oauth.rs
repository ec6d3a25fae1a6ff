//! The token endpoint, introspection, revocation, keys and discovery, spoken
//! to by a real OAuth client (the `oauth2` crate) and plain HTTP.

use std::sync::Arc;

use base64::Engine;
use eventlog::{Filter, Position};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{AuthType, ClientId, ClientSecret, RequestTokenError, Scope, TokenResponse, TokenUrl};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Admin, Store, TestServer, http, oauth_http};

pub(crate) fn confidential(org: &str, method: &str, scopes: &[&str]) -> Value {
    json!({
        "organization_id": org,
        "client_type": "confidential",
        "name": "service",
        "grant_types": ["client_credentials"],
        "scopes": scopes,
        "token_endpoint_auth_method": method,
        "access_token_lifetime": 600,
    })
}

pub(crate) async fn jwks(s: &TestServer) -> JwkSet {
    http()
        .get(s.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Verifies an access token the way a resource server would: with the
/// published JWKS, checking type, issuer and audience.
async fn verify(s: &TestServer, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::ES256);
    let set = jwks(s).await;
    let kid = header.kid.clone().unwrap();
    let jwk = set.find(&kid).expect("the signing key is published");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[&s.base]);
    v.set_audience(&[&s.base]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims
}

/// The `token.issued` events of one client, once `want` of them are
/// readable (a reader on PostgreSQL sees a commit once every older
/// transaction in the cluster has finished, so give it a moment).
async fn token_events(s: &TestServer, client_id: &str, want: usize) -> usize {
    let log = &s.server().state.log;
    let mut n = 0;
    for _ in 0..100 {
        n = 0;
        let mut after = Position::START;
        loop {
            let page = log
                .read_all(after, &Filter::categories(["tokens"]), 1000)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            n += page
                .iter()
                .filter(|e| {
                    e.event_type == "token.issued.v1"
                        && e.data.value().unwrap()["client_id"] == client_id
                })
                .count();
        }
        if n >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    n
}

async fn client_credentials_flow(store: Store) {
    let Some(s) = TestServer::start(store, "cc_flow").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;

    // client_secret_basic
    let basic = s
        .create_client(
            &admin,
            confidential(
                &admin.organization_id,
                "client_secret_basic",
                &["read", "write"],
            ),
        )
        .await;
    let basic_id = basic["client_id"].as_str().unwrap();
    let (_, basic_secret) = s.create_secret(&admin, basic_id).await;
    let token = s.token_basic(basic_id, &basic_secret, Some("read")).await;
    let claims = verify(&s, &token).await;
    assert_eq!(claims["sub"], basic_id);
    assert_eq!(claims["client_id"], basic_id);
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["iss"], s.base);
    assert!(claims["jti"].as_str().is_some());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );

    // client_secret_post, no scope asked: every allowed scope
    let post = s
        .create_client(
            &admin,
            confidential(
                &admin.organization_id,
                "client_secret_post",
                &["read", "write"],
            ),
        )
        .await;
    let post_id = post["client_id"].as_str().unwrap();
    let (_, post_secret) = s.create_secret(&admin, post_id).await;
    let oauth = BasicClient::new(ClientId::new(post_id.into()))
        .set_client_secret(ClientSecret::new(post_secret.clone()))
        .set_token_uri(TokenUrl::new(s.url("/oauth/token")).unwrap())
        .set_auth_type(AuthType::RequestBody);
    let t = oauth
        .exchange_client_credentials()
        .request_async(&oauth_http())
        .await
        .unwrap();
    assert_eq!(
        t.scopes()
            .unwrap()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
        vec!["read", "write"]
    );
    assert_eq!(
        verify(&s, t.access_token().secret()).await["scope"],
        "read write"
    );

    // Basic credentials for a client registered for post: refused.
    let r = http()
        .post(s.url("/oauth/token"))
        .basic_auth(post_id, Some(&post_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Every grant is an event; the refused request issued nothing.
    assert_eq!(token_events(&s, basic_id, 1).await, 1);
    assert_eq!(token_events(&s, post_id, 1).await, 1);
    assert_eq!(token_events(&s, &admin.client_id, 1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_secrets_on_sqlite() {
    client_credentials_flow(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_secrets_on_postgres() {
    client_credentials_flow(Store::Postgres).await;
}

pub(crate) fn es256_client_key() -> (EncodingKey, Value) {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
    let mut jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
    jwk["kid"] = json!("client-key-1");
    jwk["alg"] = json!("ES256");
    jwk["use"] = json!("sig");
    (
        EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        json!({ "keys": [jwk] }),
    )
}

fn assertion(key: &EncodingKey, client_id: &str, aud: &str, jti: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("client-key-1".into());
    let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "jti": jti, "iat": now, "exp": now + 120});
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

pub(crate) async fn jwt_grant(
    s: &TestServer,
    client_id: &str,
    assertion: &str,
) -> Result<String, BasicErrorResponseType> {
    let oauth = BasicClient::new(ClientId::new(client_id.into()))
        .set_token_uri(TokenUrl::new(s.url("/oauth/token")).unwrap())
        .set_auth_type(AuthType::RequestBody);
    match oauth
        .exchange_client_credentials()
        .add_extra_param(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .add_extra_param("client_assertion", assertion.to_owned())
        .add_scope(Scope::new("read".into()))
        .request_async(&oauth_http())
        .await
    {
        Ok(t) => Ok(t.access_token().secret().clone()),
        Err(RequestTokenError::ServerResponse(e)) => Err(e.error().clone()),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_works_once_per_assertion() {
    let s = TestServer::start(Store::Sqlite, "pkjwt").await.unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let (key, jwks) = es256_client_key();
    let mut body = confidential(&admin.organization_id, "private_key_jwt", &["read"]);
    body["jwks"] = jwks;
    let c = s.create_client(&admin, body).await;
    let id = c["client_id"].as_str().unwrap();
    let token_url = s.url("/oauth/token");

    let a = assertion(&key, id, &token_url, &Uuid::now_v7().to_string());
    let token = jwt_grant(&s, id, &a).await.unwrap();
    assert_eq!(verify(&s, &token).await["client_id"], id);

    // The same assertion again: a replay.
    assert_eq!(
        jwt_grant(&s, id, &a).await.unwrap_err(),
        BasicErrorResponseType::InvalidClient
    );
    // A fresh one works; the issuer as audience is accepted too.
    let b = assertion(&key, id, &s.base, &Uuid::now_v7().to_string());
    assert!(jwt_grant(&s, id, &b).await.is_ok());
    // Signed by another key: refused.
    let (other, _) = es256_client_key();
    let c2 = assertion(&other, id, &token_url, &Uuid::now_v7().to_string());
    assert_eq!(
        jwt_grant(&s, id, &c2).await.unwrap_err(),
        BasicErrorResponseType::InvalidClient
    );
    // Wrong audience: refused.
    let d = assertion(
        &key,
        id,
        "https://elsewhere.example",
        &Uuid::now_v7().to_string(),
    );
    assert_eq!(
        jwt_grant(&s, id, &d).await.unwrap_err(),
        BasicErrorResponseType::InvalidClient
    );
}

pub(crate) async fn raw_token(
    s: &TestServer,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Option<String>, Value, reqwest::header::HeaderMap) {
    let mut req = http().post(s.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let challenge = headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        challenge,
        r.json().await.unwrap_or(Value::Null),
        headers,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_errors_follow_rfc_6749() {
    let s = TestServer::start(Store::Sqlite, "token_errors")
        .await
        .unwrap();
    s.wait_ready().await;
    let admin = s.admin().await;
    let c = s
        .create_client(
            &admin,
            confidential(&admin.organization_id, "client_secret_basic", &["read"]),
        )
        .await;
    let id = c["client_id"].as_str().unwrap().to_owned();
    let (_, secret) = s.create_secret(&admin, &id).await;
    let ok = Some((id.as_str(), secret.as_str()));

    let (st, ch, body, headers) = raw_token(
        &s,
        &[("grant_type", "client_credentials")],
        Some((&id, "wrong-secret")),
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(
        ch.unwrap().starts_with("Basic"),
        "Basic used: the 401 challenges Basic"
    );
    assert_eq!(headers["cache-control"], "no-store");

    let (st, _, body, _) = raw_token(
        &s,
        &[("grant_type", "client_credentials")],
        Some((&Uuid::now_v7().to_string(), "x")),
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (401, Some("invalid_client")));
    // No credentials at all: the 401 names the scheme the endpoint takes.
    let (st, ch, body, _) = raw_token(&s, &[("grant_type", "client_credentials")], None).await;
    assert_eq!((st, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(
        ch.unwrap().starts_with("Basic"),
        "never Bearer at the token endpoint"
    );
    // A description quoting what was sent stays in RFC 6749's characters.
    let (st, _, body, _) = raw_token(&s, &[("grant_type", "ünknown \"grant\"")], ok).await;
    assert_eq!(st, 400);
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description
            .chars()
            .all(|c| matches!(c, ' ' | '!' | '#'..='[' | ']'..='~')),
        "{description}"
    );

    let (st, _, body, _) = raw_token(
        &s,
        &[
            ("grant_type", "password"),
            ("username", "u"),
            ("password", "p"),
        ],
        ok,
    )
    .await;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    let (st, _, body, _) = raw_token(&s, &[("scope", "read")], ok).await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_request")));

    let (st, _, body, _) = raw_token(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "read admin"),
        ],
        ok,
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_scope")));

    let (st, _, body, _) = raw_token(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ],
        ok,
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_request")));

    let (st, _, body, _) = raw_token(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
        ok,
    )
    .await;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_request")),
        "two authentication methods"
    );

    // A client without the grant: unauthorized_client.
    let mut body = confidential(&admin.organization_id, "client_secret_basic", &["read"]);
    body["grant_types"] = json!(["authorization_code"]);
    body["redirect_uris"] = json!(["https://app.example/cb"]);
    let web = s.create_client(&admin, body).await;
    let web_id = web["client_id"].as_str().unwrap();
    let (_, web_secret) = s.create_secret(&admin, web_id).await;
    let (st, _, body, _) = raw_token(
        &s,
        &[("grant_type", "client_credentials")],
        Some((web_id, &web_secret)),
    )
    .await;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );

    // A disabled client cannot authenticate.
    let (st, _, _) = s
        .call(
            Method::POST,
            &format!("/admin/clients/{id}/disable"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, _, body, _) = raw_token(&s, &[("grant_type", "client_credentials")], ok).await;
    assert_eq!((st, body["error"].as_str()), (401, Some("invalid_client")));

    // Failed authentications are in the log, counted, with who tried: the
    // first of a window at once, the rest when the window closes (here, at
    // shutdown).
    let log = Arc::clone(s.server().state.bus.log());
    let mut s = s;
    s.stop().await;
    let failures = log
        .read_all(Position::START, &Filter::categories(["authfailures"]), 100)
        .await
        .unwrap();
    let counted: u64 = failures
        .iter()
        .map(|e| e.data.value().unwrap()["count"].as_u64().unwrap_or(1))
        .sum();
    assert!(counted >= 3, "{counted}");
    assert!(
        failures.len() < 3 + 2,
        "counted, not one event each: {}",
        failures.len()
    );
    assert!(
        failures
            .iter()
            .all(|e| e.event_type == "client.authentication_failed.v1")
    );
    assert!(
        failures
            .iter()
            .any(|e| e.data.value().unwrap()["client_id"] == id.as_str())
    );
    assert!(
        failures
            .iter()
            .all(|e| e.metadata.source_ip.as_deref() == Some("127.0.0.1"))
    );
    assert!(
        !failures
            .iter()
            .any(|e| e.data.text().contains("wrong-secret")),
        "no secret in the log"
    );
}

pub(crate) async fn introspect(s: &TestServer, who: (&str, &str), token: &str) -> Value {
    let r = http()
        .post(s.url("/oauth/introspect"))
        .basic_auth(who.0, Some(who.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

pub(crate) async fn revoke(s: &TestServer, who: (&str, &str), token: &str) -> u16 {
    http()
        .post(s.url("/oauth/revoke"))
        .basic_auth(who.0, Some(who.1))
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn introspection_revocation_and_lifecycle(store: Store) {
    let Some(s) = TestServer::start(store, "introspect").await else {
        return;
    };
    s.wait_ready().await;
    let admin = s.admin().await;
    let me = (admin.client_id.as_str(), admin.secret.as_str());
    let svc = s
        .create_client(
            &admin,
            confidential(&admin.organization_id, "client_secret_basic", &["read"]),
        )
        .await;
    let svc_id = svc["client_id"].as_str().unwrap().to_owned();
    let (_, svc_secret) = s.create_secret(&admin, &svc_id).await;
    let svc_auth = (svc_id.as_str(), svc_secret.as_str());

    let t1 = s.token_basic(&svc_id, &svc_secret, None).await;
    let v = introspect(&s, me, &t1).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], svc_id.as_str());
    assert_eq!(v["scope"], "read");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(
        introspect(&s, me, "not-a-token").await,
        json!({"active": false})
    );

    // Introspection needs an authenticated client.
    let r = http()
        .post(s.url("/oauth/introspect"))
        .form(&[("token", t1.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Revocation by another client changes nothing and says nothing (the
    // answer is the same as for an invalid token); by the owner it works.
    assert_eq!(revoke(&s, me, &t1).await, 200);
    assert_eq!(introspect(&s, me, &t1).await["active"], true);
    assert_eq!(revoke(&s, svc_auth, &t1).await, 200);
    assert_eq!(introspect(&s, me, &t1).await, json!({"active": false}));
    assert_eq!(
        revoke(&s, svc_auth, &t1).await,
        200,
        "revoking again is fine"
    );
    assert_eq!(
        revoke(&s, svc_auth, "garbage").await,
        200,
        "RFC 7009: unknown tokens are no error"
    );

    // A disabled client's tokens are inactive; enabled again, active again.
    let t2 = s.token_basic(&svc_id, &svc_secret, None).await;
    assert_eq!(introspect(&s, me, &t2).await["active"], true);
    s.call(
        Method::POST,
        &format!("/admin/clients/{svc_id}/disable"),
        &admin.token,
        None,
    )
    .await;
    assert_eq!(introspect(&s, me, &t2).await["active"], false);
    s.call(
        Method::POST,
        &format!("/admin/clients/{svc_id}/enable"),
        &admin.token,
        None,
    )
    .await;
    assert_eq!(introspect(&s, me, &t2).await["active"], true);

    // Secret rotation: a second secret, both work, the first deleted stops.
    let (first_id, _) = {
        let (_, _, list) = s
            .call(
                Method::GET,
                &format!("/admin/clients/{svc_id}/secrets"),
                &admin.token,
                None,
            )
            .await;
        (list["items"][0]["id"].as_str().unwrap().to_owned(), ())
    };
    let (_, second) = s.create_secret(&admin, &svc_id).await;
    s.token_basic(&svc_id, &svc_secret, None).await;
    s.token_basic(&svc_id, &second, None).await;
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &format!("/admin/clients/{svc_id}/secrets/{first_id}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _, _, _) = raw(&s, &svc_id, &svc_secret).await;
    assert_eq!(st, 401, "the deleted secret no longer authenticates");
    s.token_basic(&svc_id, &second, None).await;

    // A deleted client's tokens are inactive.
    let t3 = s.token_basic(&svc_id, &second, None).await;
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &format!("/admin/clients/{svc_id}"),
            &admin.token,
            None,
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(introspect(&s, me, &t3).await["active"], false);
}

async fn raw(
    s: &TestServer,
    id: &str,
    secret: &str,
) -> (u16, Option<String>, Value, reqwest::header::HeaderMap) {
    raw_token(
        s,
        &[("grant_type", "client_credentials")],
        Some((id, secret)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_revocation_and_client_lifecycle_on_sqlite() {
    introspection_revocation_and_lifecycle(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_revocation_and_client_lifecycle_on_postgres() {
    introspection_revocation_and_lifecycle(Store::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_old_tokens_verifiable() {
    let s = TestServer::start(Store::Sqlite, "rotation").await.unwrap();
    s.wait_ready().await;
    let admin: Admin = s.admin().await;
    let me = (admin.client_id.as_str(), admin.secret.as_str());
    let old = s.token_basic(&admin.client_id, &admin.secret, None).await;
    let old_kid = jsonwebtoken::decode_header(&old).unwrap().kid.unwrap();

    let (st, _, rotated) = s
        .call(
            Method::POST,
            "/admin/keys/rotate",
            &admin.token,
            Some(json!({"alg": "ES256"})),
        )
        .await;
    assert_eq!(st, 200, "{rotated}");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    let new = s.token_basic(&admin.client_id, &admin.secret, None).await;
    assert_eq!(
        jsonwebtoken::decode_header(&new).unwrap().kid.unwrap(),
        new_kid,
        "new tokens use the new key"
    );
    let set = jwks(&s).await;
    assert!(
        set.find(&old_kid).is_some(),
        "the retired key is still published"
    );
    assert!(set.find(&new_kid).is_some());
    verify(&s, &old).await;
    verify(&s, &new).await;
    assert_eq!(introspect(&s, me, &old).await["active"], true);

    let (_, _, keys) = s.call(Method::GET, "/admin/keys", &admin.token, None).await;
    let statuses: Vec<(String, String)> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&(old_kid, "retired".into())),
        "{statuses:?}"
    );
    assert!(statuses.contains(&(new_kid, "active".into())));
    // No private material anywhere in the key listing or the JWKS.
    let text = format!("{keys}{}", serde_json::to_string(&set).unwrap());
    assert!(!text.contains("\"d\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_what_is_implemented() {
    let s = TestServer::start(Store::Sqlite, "discovery").await.unwrap();
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let d: Value = http()
            .get(s.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["issuer"], s.base);
        assert_eq!(d["token_endpoint"], s.url("/oauth/token"));
        assert_eq!(d["jwks_uri"], s.url("/oauth/jwks"));
        assert_eq!(d["introspection_endpoint"], s.url("/oauth/introspect"));
        assert_eq!(d["revocation_endpoint"], s.url("/oauth/revoke"));
        assert_eq!(
            d["grant_types_supported"],
            json!([
                "authorization_code",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange",
                "refresh_token"
            ])
        );
        assert_eq!(
            d["token_exchange_subject_token_types_supported"],
            json!(["urn:idp:params:oauth:token-type:auth_token"])
        );
        assert_eq!(
            d["token_endpoint_auth_methods_supported"],
            json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none"
            ])
        );
        assert_eq!(d["authorization_endpoint"], s.url("/authorize"));
    }
    let set = jwks(&s).await;
    assert!(
        set.keys
            .iter()
            .any(|k| k.common.key_algorithm == Some(jsonwebtoken::jwk::KeyAlgorithm::ES256))
    );
    assert!(
        set.keys
            .iter()
            .any(|k| k.common.key_algorithm == Some(jsonwebtoken::jwk::KeyAlgorithm::RS256))
    );
    // The bootstrap secret is in a private file; the credentials decode.
    let admin = s.admin().await;
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&admin.secret)
            .unwrap()
            .len(),
        32
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.data_dir.join("bootstrap.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
