//! Client authentication at the token, introspection and revocation
//! endpoints: `client_secret_basic`, `client_secret_post`, `private_key_jwt`
//! (RFC 7523, each assertion usable once) and `none` for public clients.
//! Failures are counted per source address and client id, summarized in
//! the log, and slow the failing source down (`domain::throttle`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use commands::client_auth::AssertionRefused;
use commands::crypto::secret_matches;
use domain::client::{AuthMethod, Client};
use domain::{Actor, ActorKind};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::OAuthError;
use crate::context::RequestContext;
use crate::state::AppState;

pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client that proved who it is.
#[derive(Clone, Debug)]
pub struct AuthenticatedClient {
    pub client_id: Uuid,
    pub client: Arc<Client>,
    pub method: AuthMethod,
    pub secret_id: Option<Uuid>,
}

/// The form of an OAuth request, each parameter at most once (RFC 6749 §3.2).
pub struct Form(pub HashMap<String, String>);

impl Form {
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, OAuthError> {
        let mut map = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            if map.insert(k.clone(), v).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter `{k}` appears more than once"
                )));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

pub use projections::tokens::{ClientThrottle, FailureNote};

/// The client id a throttle counts under: a GUID in its one canonical form
/// (however it was spelled: upper case, without hyphens, in braces), else
/// the presented text, at most 200 characters.
pub fn canonical_client_id(presented: &str) -> String {
    match Uuid::parse_str(presented.trim()) {
        Ok(id) => id.to_string(),
        Err(_) => presented.chars().take(200).collect(),
    }
}

/// What the request presents.
enum Presented {
    Secret {
        client_id: String,
        secret: String,
        basic: bool,
    },
    Assertion {
        client_id: Option<String>,
        assertion: String,
    },
    PublicId(String),
}

fn decode_component(s: &str) -> Option<String> {
    let joined = format!("v={s}");
    url::form_urlencoded::parse(joined.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

fn presented(headers: &HeaderMap, form: &Form) -> Result<Presented, OAuthError> {
    let basic = crate::authorization::authorization(headers)
        .map_err(|e| OAuthError::invalid_request(e.to_string()))?
        .filter(|h| h.is("Basic"))
        .map(|h| h.credentials);
    let post_secret = form.get("client_secret");
    let assertion = form.get("client_assertion");
    let methods = [basic.is_some(), post_secret.is_some(), assertion.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "use exactly one client authentication method",
        ));
    }
    if let Some(b64) = basic {
        let bad = || OAuthError::invalid_client("malformed Basic credentials");
        let raw = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (id, secret) = text.split_once(':').ok_or_else(bad)?;
        let client_id = decode_component(id).ok_or_else(bad)?;
        let secret = decode_component(secret).ok_or_else(bad)?;
        if let Some(form_id) = form.get("client_id")
            && form_id != client_id
        {
            return Err(OAuthError::invalid_request(
                "client_id in the form differs from the Basic credentials",
            ));
        }
        return Ok(Presented::Secret {
            client_id,
            secret,
            basic: true,
        });
    }
    if let Some(secret) = post_secret {
        let client_id = form
            .get("client_id")
            .ok_or_else(|| OAuthError::invalid_request("client_secret needs client_id"))?;
        return Ok(Presented::Secret {
            client_id: client_id.to_owned(),
            secret: secret.to_owned(),
            basic: false,
        });
    }
    if let Some(assertion) = assertion {
        if form.get("client_assertion_type") != Some(JWT_BEARER_ASSERTION) {
            return Err(OAuthError::invalid_request(format!(
                "client_assertion_type must be {JWT_BEARER_ASSERTION}"
            )));
        }
        return Ok(Presented::Assertion {
            client_id: form.get("client_id").map(str::to_owned),
            assertion: assertion.to_owned(),
        });
    }
    match form.get("client_id") {
        Some(id) => Ok(Presented::PublicId(id.to_owned())),
        None => Err(OAuthError::invalid_client(
            "client authentication is required",
        )),
    }
}

/// Authenticates the calling client. Failures are counted per source
/// address and canonical client id (`domain::throttle`): a source past its
/// free failures waits before its next attempt is checked, and nothing is
/// recorded for an attempt refused that way.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    form: &Form,
    ctx: &RequestContext,
) -> Result<AuthenticatedClient, OAuthError> {
    let presented = presented(headers, form)?;
    let (claimed_id, method_name) = match &presented {
        Presented::Secret {
            client_id, basic, ..
        } => (
            client_id.clone(),
            if *basic {
                "client_secret_basic"
            } else {
                "client_secret_post"
            },
        ),
        Presented::Assertion {
            client_id,
            assertion,
        } => (
            client_id
                .clone()
                .or_else(|| assertion_subject(assertion))
                .unwrap_or_default(),
            "private_key_jwt",
        ),
        Presented::PublicId(id) => (id.clone(), "none"),
    };
    let now = state.clock.now();
    let key = (
        canonical_client_id(&claimed_id),
        ctx.source_ip.clone().unwrap_or_default(),
    );
    let throttle = &state.tokens.client_throttle;
    if let Some(wait) = throttle.wait(&key, now) {
        metrics::counter!("idp_client_auth_throttled_total").increment(1);
        let secs = u64::try_from(wait.whole_seconds()).unwrap_or(0) + 1;
        return Err(OAuthError::slow_down(secs));
    }
    match verify(state, ctx, presented).await {
        Ok(ok) => {
            throttle.succeeded(&key);
            Ok(ok)
        }
        Err(reason) => {
            metrics::counter!("idp_client_auth_failures_total", "method" => method_name)
                .increment(1);
            let note = FailureNote {
                auth_method: method_name,
                reason,
                metadata: ctx.metadata(
                    Actor {
                        kind: ActorKind::Anonymous,
                        id: None,
                    },
                    None,
                ),
            };
            if let Some((report, note)) = throttle.failed(key.clone(), note, now) {
                record_failures(&state.bus, &key.0, &report, &note).await;
            }
            Err(OAuthError::invalid_client("client authentication failed"))
        }
    }
}

/// Records counted failures through the command side.
async fn record_failures(
    bus: &commands::CommandBus,
    client_id: &str,
    report: &domain::throttle::Report,
    note: &FailureNote,
) {
    if let Err(e) = commands::client_auth::record_failures(
        bus,
        client_id,
        note.auth_method,
        note.reason,
        report,
        &note.metadata,
    )
    .await
    {
        tracing::error!(error = %e, "cannot record failed client authentications");
    }
}

/// Records every failure report whose window has closed (all of them with
/// `all`, at shutdown).
pub async fn flush_failures(state: &AppState, all: bool) {
    let due = state.tokens.client_throttle.due(state.clock.now(), all);
    for ((client_id, _), report, note) in due {
        record_failures(&state.bus, &client_id, &report, &note).await;
    }
}

async fn load_client(state: &AppState, id: &str) -> Result<(Uuid, Arc<Client>), &'static str> {
    let client_id = Uuid::parse_str(id).map_err(|_| "unknown client")?;
    match state.tokens.client(client_id).await {
        Ok(Some(c)) if c.is_active() => Ok((client_id, c)),
        Ok(Some(_)) => Err("client disabled or deleted"),
        Ok(None) => Err("unknown client"),
        Err(e) => {
            tracing::error!(error = %e, "cannot load a client");
            Err("client could not be loaded")
        }
    }
}

async fn verify(
    state: &AppState,
    ctx: &RequestContext,
    presented: Presented,
) -> Result<AuthenticatedClient, &'static str> {
    let now = state.clock.now();
    match presented {
        Presented::Secret {
            client_id,
            secret,
            basic,
        } => {
            let (id, client) = load_client(state, &client_id).await?;
            let expected = if basic {
                AuthMethod::ClientSecretBasic
            } else {
                AuthMethod::ClientSecretPost
            };
            if client.settings.auth_method != expected {
                return Err("client registered for another authentication method");
            }
            // Compare against every live secret so timing does not tell
            // which one (if any) matched.
            let mut matched = None;
            for s in client.live_secrets(now) {
                if secret_matches(&secret, &s.hash) && matched.is_none() {
                    matched = Some(s.id);
                }
            }
            let secret_id = matched.ok_or("wrong or expired secret")?;
            Ok(AuthenticatedClient {
                client_id: id,
                client,
                method: expected,
                secret_id: Some(secret_id),
            })
        }
        Presented::PublicId(client_id) => {
            let (id, client) = load_client(state, &client_id).await?;
            if client.settings.auth_method != AuthMethod::None {
                return Err("confidential client presented no credentials");
            }
            Ok(AuthenticatedClient {
                client_id: id,
                client,
                method: AuthMethod::None,
                secret_id: None,
            })
        }
        Presented::Assertion {
            client_id,
            assertion,
        } => {
            let subject = assertion_subject(&assertion).ok_or("malformed client assertion")?;
            if client_id.as_deref().is_some_and(|c| c != subject) {
                return Err("client_id differs from the assertion's subject");
            }
            let (id, client) = load_client(state, &subject).await?;
            if client.settings.auth_method != AuthMethod::PrivateKeyJwt {
                return Err("client registered for another authentication method");
            }
            let claims = verify_assertion(state, &client, &subject, &assertion, now)?;
            let expires_at =
                OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|_| "bad exp")?;
            let meta = ctx.metadata(Actor::client(id.to_string()), Some(client.organization_id));
            let spent = commands::client_auth::spend_assertion(
                &state.bus,
                id,
                &subject,
                &claims.jti,
                expires_at,
                &meta,
            )
            .await;
            match spent {
                Ok(()) => {}
                Err(AssertionRefused::Replayed) => return Err("client assertion replayed"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot record a client assertion");
                    return Err("client assertion could not be recorded");
                }
            }
            Ok(AuthenticatedClient {
                client_id: id,
                client,
                method: AuthMethod::PrivateKeyJwt,
                secret_id: None,
            })
        }
    }
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
    #[serde(default)]
    nbf: Option<i64>,
}

/// The `sub` of an assertion, read without trusting it (to find the client).
fn assertion_subject(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("sub")?.as_str().map(str::to_owned)
}

/// Seconds of clock difference allowed on an assertion's `exp` and `nbf`.
const ASSERTION_LEEWAY: i64 = 5;

/// The longest an assertion may live (its `exp` from now).
const MAX_ASSERTION_LIFETIME: i64 = 3600;

fn verify_assertion(
    state: &AppState,
    client: &Client,
    client_id: &str,
    assertion: &str,
    now: OffsetDateTime,
) -> Result<AssertionClaims, &'static str> {
    let header =
        jsonwebtoken::decode_header(assertion).map_err(|_| "malformed client assertion")?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::ES256 | Algorithm::PS256 | Algorithm::ES384
    ) {
        return Err("client assertion algorithm not accepted");
    }
    let jwks: JwkSet = client
        .settings
        .jwks
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or("client has no usable registered keys")?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[
        state.tokens.token_endpoint.as_str(),
        state.tokens.issuer.as_str(),
    ]);
    validation.set_issuer(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = ASSERTION_LEEWAY as u64;
    let candidates = jwks
        .keys
        .iter()
        .filter(|k| match (&header.kid, &k.common.key_id) {
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => false,
            (None, _) => true,
        });
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if let Ok(data) = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) {
            let c = data.claims;
            if c.sub != client_id || c.iss != client_id {
                return Err("client assertion issuer and subject must be the client id");
            }
            if c.jti.is_empty() || c.jti.len() > 256 {
                return Err("client assertion needs a jti");
            }
            if c.exp > now.unix_timestamp() + MAX_ASSERTION_LIFETIME {
                return Err("client assertion lives too long");
            }
            // RFC 7523 §3 item 5: not to be accepted before its `nbf`.
            if c.nbf
                .is_some_and(|nbf| nbf > now.unix_timestamp() + ASSERTION_LEEWAY)
            {
                return Err("client assertion not valid yet");
            }
            return Ok(c);
        }
    }
    Err("client assertion signature, audience or expiry invalid")
}
