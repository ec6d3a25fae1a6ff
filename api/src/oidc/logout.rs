//! `/oauth/end_session`: RP-initiated logout (OpenID Connect RP-Initiated
//! Logout 1.0), GET and POST. With an `id_token_hint` naming the signed-in
//! person the session ends at once; otherwise the person confirms on a
//! page. A `post_logout_redirect_uri` must be one the client registered,
//! matched exactly; `state` goes back with it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use domain::session::{RevokeReason, Session};
use domain::{Actor, Metadata};
use serde_json::Value;
use uuid::Uuid;

use super::{Params, csrf_ok, csrf_token, html, message, see_other, theme, with_query};
use crate::authentication::cookie_name;
use crate::authentication::cookies::{self, SESSION_COOKIE};
use crate::context::RequestContext;
use crate::state::AppState;

type Pairs = Vec<(String, String)>;

const PURPOSE: &str = "sign-out form";
const PARAMS: &[&str] = &[
    "id_token_hint",
    "post_logout_redirect_uri",
    "state",
    "client_id",
    "logout_hint",
    "ui_locales",
];

/// `/oauth/end_session`, GET or POST (a POST may carry the confirmation).
pub async fn handle(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    method: axum::http::Method,
    Params(pairs): Params,
) -> Response {
    let posted = method == axum::http::Method::POST;
    end_session(&state, &ctx, &headers, pairs, posted).await
}

/// The session the browser holds, live, whatever its organization.
async fn browser_session(
    state: &AppState,
    headers: &HeaderMap,
    ctx: &RequestContext,
) -> Option<Session> {
    let cookie = cookies::read(headers, &cookie_name(state, SESSION_COOKIE))?;
    let meta = ctx.metadata(Actor::system(), None);
    commands::session::authenticate(&state.bus, &cookie, &meta)
        .await
        .ok()
}

fn audience(claims: &serde_json::Map<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

async fn end_session(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    pairs: Pairs,
    posted: bool,
) -> Response {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let t = theme(state, None, get("ui_locales")).await;
    let bad = |text: &str| {
        message(
            &t,
            StatusCode::BAD_REQUEST,
            "The sign-out request is not valid",
            text,
        )
    };
    let hint = match get("id_token_hint") {
        Some(h) => match state.tokens.id_token_hint(h) {
            Some(c) => Some(c),
            None => return bad("The id_token_hint is not an ID token this server issued."),
        },
        None => None,
    };
    let hinted_clients = hint.as_ref().map(audience).unwrap_or_default();
    let client_id = match (get("client_id"), hinted_clients.first()) {
        (Some(c), _) if !hinted_clients.is_empty() && !hinted_clients.iter().any(|h| h == c) => {
            return bad("client_id is not the audience of the id_token_hint.");
        }
        (Some(c), _) => Some(c.to_owned()),
        (None, Some(h)) => Some(h.clone()),
        (None, None) => None,
    };
    let client = match client_id.as_deref().map(Uuid::parse_str) {
        Some(Ok(id)) => state.tokens.client(id).await.ok().flatten(),
        Some(Err(_)) => return bad("client_id names no client."),
        None => None,
    };
    let back = match get("post_logout_redirect_uri") {
        Some(uri) => {
            let Some(client) = &client else {
                return bad(
                    "A post_logout_redirect_uri needs the client: send id_token_hint or client_id.",
                );
            };
            if !client
                .settings
                .post_logout_redirect_uris
                .iter()
                .any(|r| r == uri)
            {
                return bad("The post_logout_redirect_uri is not one the application registered.");
            }
            Some(uri.to_owned())
        }
        None => None,
    };
    let session = browser_session(state, headers, ctx).await;
    if let Some(session) = &session {
        let named = hint.as_ref().is_some_and(|c| {
            c.get("sub").and_then(Value::as_str) == Some(session.user_id.to_string().as_str())
        });
        let confirmed = posted
            && get("confirm") == Some("yes")
            && !crate::self_service::cross_site_headers(headers, &state.config.issuer())
            && csrf_ok(state, PURPOSE, &session.id.to_string(), get("csrf"));
        if !named && !confirmed {
            let mut fields: Vec<(String, String)> = pairs
                .iter()
                .filter(|(k, _)| PARAMS.contains(&k.as_str()))
                .cloned()
                .collect();
            fields.push((
                "csrf".into(),
                csrf_token(state, PURPOSE, &session.id.to_string()),
            ));
            fields.push(("confirm".into(), "yes".into()));
            let name = client
                .as_ref()
                .map_or("this server".to_owned(), |c| c.settings.name.clone());
            return html(
                StatusCode::OK,
                pages::render(&pages::Message {
                    theme: &t,
                    title: "Sign out?".into(),
                    message: format!("Do you want to sign out of {name}?"),
                    is_error: false,
                    form: Some(pages::MessageForm {
                        action: "/oauth/end_session".into(),
                        fields,
                        button: "Sign out".into(),
                    }),
                    link: None,
                }),
            );
        }
        let meta: Metadata = ctx.metadata(
            Actor::user(session.user_id.to_string()),
            Some(session.organization_id),
        );
        if let Err(e) =
            commands::session::revoke(&state.bus, session.id, RevokeReason::SignedOut, &meta).await
        {
            tracing::error!(error = %e, "a session could not be ended");
            return message(
                &t,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "You could not be signed out. Try again.",
            );
        }
        state.tokens.sessions.invalidate(session.id);
        metrics::counter!("idp_logouts_total").increment(1);
    }
    let mut resp = match back {
        Some(uri) => {
            let mut q: Vec<(&str, &str)> = Vec::new();
            if let Some(s) = get("state") {
                q.push(("state", s));
            }
            see_other(&with_query(&uri, &q))
        }
        None => message(
            &t,
            StatusCode::OK,
            "You are signed out",
            "You can close this page.",
        ),
    };
    if let Some(v) = cookies::clear(&cookie_name(state, SESSION_COOKIE), &state.config.issuer()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}
