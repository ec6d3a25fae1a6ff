//! An authorization request (RFC 6749 §4.1.1, OAuth 2.1, OpenID Connect
//! Core §3.1.2.1) read and checked. Until the client and its redirect URI
//! are known to be right, a refusal is a page; after, it goes back to the
//! client as RFC 6749 §4.1.2.1 says.

use std::sync::Arc;

use domain::client::{Client, GrantType, granted_scope};
use url::Url;
use uuid::Uuid;

use crate::state::AppState;

/// The parameters an authorization request may carry, and which are kept
/// when it is carried across the sign-in and consent pages.
pub const PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "ui_locales",
    "acr_values",
    "response_mode",
    "claims_locales",
    "display",
    "id_token_hint",
];

/// The `prompt` values (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client_id: Uuid,
    pub client: Arc<Client>,
    pub redirect_uri: String,
    /// The scope granted if the person agrees.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    pub acr_values: Option<String>,
    /// The person an `id_token_hint` names (its `sub`): only they may be
    /// signed in for this request.
    pub hinted_subject: Option<String>,
    /// The request's parameters as received (known names only).
    pub params: Vec<(String, String)>,
}

/// Why a request is refused.
#[derive(Debug)]
pub enum Refusal {
    /// Shown to the person: the client or its redirect URI is not right,
    /// so nothing may be sent back.
    Page { title: String, message: String },
    /// Sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
        client_id: Uuid,
        organization_id: Uuid,
    },
}

impl Refusal {
    fn page(title: &str, message: impl Into<String>) -> Self {
        Self::Page {
            title: title.to_owned(),
            message: message.into(),
        }
    }
}

impl AuthRequest {
    /// A refusal sent back to the client.
    pub fn refuse(&self, error: &'static str, description: impl Into<String>) -> Refusal {
        Refusal::Redirect {
            redirect_uri: self.redirect_uri.clone(),
            error,
            description: description.into(),
            state: self.state.clone(),
            client_id: self.client_id,
            organization_id: self.client.organization_id,
        }
    }

    /// The request as a query string, with what a fresh sign-in answers
    /// left out (`prompt` login and select_account, `max_age`): where the
    /// sign-in pages continue to.
    pub fn continue_path(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.params {
            if k == "max_age" {
                continue;
            }
            if k == "prompt" {
                let kept: Vec<&str> = v
                    .split(' ')
                    .filter(|p| !p.is_empty() && *p != "login" && *p != "select_account")
                    .collect();
                if !kept.is_empty() {
                    q.append_pair(k, &kept.join(" "));
                }
            } else {
                q.append_pair(k, v);
            }
        }
        format!("/authorize?{}", q.finish())
    }
}

/// Whether `uri` is a loopback IP literal redirect (RFC 8252 §7.3).
fn loopback_ip(url: &Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    url.scheme() == "http" && loopback
}

/// Whether `asked` is one of the `registered` redirect URIs: the same
/// string, or for a registered loopback IP literal the same URI on any
/// port (RFC 8252 §7.3).
pub fn redirect_matches(asked: &str, registered: &[String]) -> bool {
    if registered.iter().any(|r| r == asked) {
        return true;
    }
    let Ok(a) = Url::parse(asked) else {
        return false;
    };
    if !loopback_ip(&a) || a.fragment().is_some() {
        return false;
    }
    registered.iter().any(|r| {
        Url::parse(r).is_ok_and(|r| {
            loopback_ip(&r)
                && r.scheme() == a.scheme()
                && r.host() == a.host()
                && r.path() == a.path()
                && r.query() == a.query()
        })
    })
}

/// Reads and checks an authorization request's parameters.
pub async fn parse(state: &AppState, pairs: Vec<(String, String)>) -> Result<AuthRequest, Refusal> {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut repeated = None;
    // Request objects are not supported: said so, not ignored (OpenID
    // Connect Core §6.1, §6.2), lest their contents be taken for granted.
    let mut request_object = None;
    for (k, v) in pairs {
        if k == "request" || k == "request_uri" {
            request_object = Some(k);
            continue;
        }
        if !PARAMS.contains(&k.as_str()) {
            continue;
        }
        if params.iter().any(|(n, _)| *n == k) {
            repeated = Some(k.clone());
        }
        params.push((k, v));
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    // The client and its redirect URI first: until both are right nothing
    // goes back to the redirect URI.
    let client_id = get("client_id").ok_or_else(|| {
        Refusal::page(
            "The request is not valid",
            "The request names no client (client_id).",
        )
    })?;
    let unknown = || {
        Refusal::page(
            "Unknown application",
            "The application that sent you here is not known to this server, or is disabled.",
        )
    };
    let client_id = Uuid::parse_str(client_id).map_err(|_| unknown())?;
    let client = match state.tokens.client(client_id).await {
        Ok(Some(c)) if c.is_active() => c,
        Ok(_) => return Err(unknown()),
        Err(e) => {
            tracing::error!(error = %e, "cannot load a client for an authorization request");
            return Err(Refusal::page(
                "Something went wrong",
                "The request could not be checked. Try again later.",
            ));
        }
    };
    let redirect_uri = get("redirect_uri").ok_or_else(|| {
        Refusal::page(
            "The request is not valid",
            "The request names no redirect_uri, which OpenID Connect requires.",
        )
    })?;
    if !redirect_matches(redirect_uri, &client.settings.redirect_uris) {
        return Err(Refusal::page(
            "The request is not valid",
            "The redirect_uri is not one the application registered, so you cannot be sent back to it.",
        ));
    }
    if repeated
        .as_deref()
        .is_some_and(|k| k == "client_id" || k == "redirect_uri")
    {
        return Err(Refusal::page(
            "The request is not valid",
            "A parameter of the request is given twice.",
        ));
    }
    let mut req = AuthRequest {
        client_id,
        client: Arc::clone(&client),
        redirect_uri: redirect_uri.to_owned(),
        scope: String::new(),
        state: get("state").map(str::to_owned),
        nonce: get("nonce").map(str::to_owned),
        code_challenge: String::new(),
        prompt: Prompt::default(),
        max_age: None,
        login_hint: get("login_hint").map(str::to_owned),
        ui_locales: get("ui_locales").map(str::to_owned),
        acr_values: get("acr_values").map(str::to_owned),
        hinted_subject: None,
        params: Vec::new(),
    };
    if let Some(k) = repeated {
        return Err(req.refuse("invalid_request", format!("{k} is given more than once")));
    }
    match get("response_type") {
        Some("code") => {}
        None => return Err(req.refuse("invalid_request", "response_type is required")),
        Some(_) => {
            return Err(req.refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    match request_object.as_deref() {
        Some("request") => {
            return Err(req.refuse(
                "request_not_supported",
                "request objects (the request parameter) are not supported",
            ));
        }
        Some(_) => {
            return Err(req.refuse(
                "request_uri_not_supported",
                "request objects by reference (request_uri) are not supported",
            ));
        }
        None => {}
    }
    if let Some(hint) = get("id_token_hint") {
        let claims = state.tokens.id_token_hint(hint).ok_or_else(|| {
            req.refuse(
                "invalid_request",
                "id_token_hint is not an ID token this server issued",
            )
        })?;
        req.hinted_subject = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
    }
    if get("response_mode").is_some_and(|m| m != "query") {
        return Err(req.refuse("invalid_request", "only response_mode=query is supported"));
    }
    if client.may_use(GrantType::AuthorizationCode).is_err() {
        return Err(req.refuse(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        ));
    }
    // PKCE, S256 only, for every client (OAuth 2.1).
    match (get("code_challenge"), get("code_challenge_method")) {
        (None, _) => {
            return Err(req.refuse("invalid_request", "code_challenge is required (PKCE)"));
        }
        (Some(_), Some("S256")) => {}
        (Some(_), None | Some("plain")) => {
            return Err(req.refuse(
                "invalid_request",
                "code_challenge_method must be S256; plain is not allowed",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(req.refuse("invalid_request", "code_challenge_method must be S256"));
        }
    }
    let challenge = get("code_challenge").unwrap_or_default();
    if !commands::grant::is_pkce_value(challenge) {
        return Err(req.refuse(
            "invalid_request",
            "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]",
        ));
    }
    req.code_challenge = challenge.to_owned();
    // Scopes: each must be allowed to the client; the platform's own
    // scopes are never granted to a person's application.
    let asked = get("scope");
    if let Some(s) = asked.and_then(|s| s.split(' ').find(|s| s.starts_with("idp:"))) {
        return Err(req.refuse(
            "invalid_scope",
            format!("the scope `{s}` cannot be granted by a person"),
        ));
    }
    req.scope = granted_scope(asked, &client.settings.scopes)
        .map_err(|e| req.refuse("invalid_scope", e.to_string()))?;
    if asked.is_none() {
        req.scope = req
            .scope
            .split(' ')
            .filter(|s| !s.starts_with("idp:"))
            .collect::<Vec<_>>()
            .join(" ");
    }
    for p in get("prompt")
        .unwrap_or_default()
        .split(' ')
        .filter(|p| !p.is_empty())
    {
        match p {
            "none" => req.prompt.none = true,
            "login" => req.prompt.login = true,
            "consent" => req.prompt.consent = true,
            "select_account" => req.prompt.select_account = true,
            other => {
                return Err(req.refuse(
                    "invalid_request",
                    format!("prompt `{other}` is not supported"),
                ));
            }
        }
    }
    let p = req.prompt;
    if p.none && (p.login || p.consent || p.select_account) {
        return Err(req.refuse(
            "invalid_request",
            "prompt=none cannot be combined with another value",
        ));
    }
    if let Some(m) = get("max_age") {
        req.max_age = Some(m.parse::<i64>().ok().filter(|m| *m >= 0).ok_or_else(|| {
            req.refuse("invalid_request", "max_age must be a non-negative integer")
        })?);
    }
    if let Some(n) = &req.nonce
        && n.len() > 512
    {
        return Err(req.refuse("invalid_request", "nonce is longer than 512 characters"));
    }
    if req.state.as_ref().is_some_and(|s| s.len() > 1024) {
        return Err(req.refuse("invalid_request", "state is longer than 1024 characters"));
    }
    req.params = params;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_match_exactly_or_on_any_loopback_port() {
        let registered = vec![
            "https://app.example/cb".to_owned(),
            "http://127.0.0.1/native".to_owned(),
            "http://[::1]/native".to_owned(),
        ];
        assert!(redirect_matches("https://app.example/cb", &registered));
        assert!(!redirect_matches("https://app.example/cb/", &registered));
        assert!(!redirect_matches("https://app.example/cb?x=1", &registered));
        assert!(!redirect_matches("https://APP.example/cb", &registered));
        assert!(redirect_matches(
            "http://127.0.0.1:51234/native",
            &registered
        ));
        assert!(redirect_matches("http://[::1]:8080/native", &registered));
        assert!(!redirect_matches(
            "http://127.0.0.1:51234/other",
            &registered
        ));
        assert!(!redirect_matches(
            "http://localhost:51234/native",
            &registered
        ));
        assert!(!redirect_matches(
            "https://127.0.0.1:51234/native",
            &registered
        ));
    }
}
