//! `/consent`: the screen that names the client and each scope asked for,
//! and the person's decision. An allowed request is remembered (a
//! `consent.given` event) and answered with the code at once.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use domain::user::User;

use super::authorize::{as_person, current_session, issue, login_path, refused};
use super::request::{self, PARAMS};
use super::{Params, csrf_ok, csrf_token, html, message, see_other, theme};
use crate::context::RequestContext;
use crate::state::AppState;

type Pairs = Vec<(String, String)>;

const PURPOSE: &str = "consent form";

pub async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Params(pairs): Params,
) -> Response {
    let req = match request::parse(&state, pairs).await {
        Ok(r) => r,
        Err(refusal) => return refused(&state, &ctx, refusal).await,
    };
    let Some(session) = current_session(&state, &headers, &ctx, req.client.organization_id).await
    else {
        return see_other(&login_path(&req));
    };
    let user_name = match state.bus.load::<User>(&session.user_id.to_string()).await {
        Ok((u, _)) => u
            .email
            .as_ref()
            .and_then(|e| e.value().cloned())
            .or_else(|| u.username.value().cloned())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let t = theme(
        &state,
        Some(req.client.organization_id),
        req.ui_locales.as_deref(),
    )
    .await;
    let scopes = req
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(super::claims::describe)
        .collect();
    html(
        StatusCode::OK,
        pages::render(&pages::Consent {
            theme: &t,
            client_name: req.client.settings.name.clone(),
            user_name,
            scopes,
            csrf: csrf_token(&state, PURPOSE, &session.id.to_string()),
            params: req.params.clone(),
        }),
    )
}

pub async fn decide(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Params(pairs): Params,
) -> Response {
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let csrf = field("csrf");
    let decision = field("decision");
    let params: Pairs = pairs
        .iter()
        .filter(|(k, _)| PARAMS.contains(&k.as_str()))
        .cloned()
        .collect();
    let req = match request::parse(&state, params).await {
        Ok(r) => r,
        Err(refusal) => return refused(&state, &ctx, refusal).await,
    };
    let organization = req.client.organization_id;
    let Some(session) = current_session(&state, &headers, &ctx, organization).await else {
        return see_other(&login_path(&req));
    };
    if crate::self_service::cross_site_headers(&headers, &state.config.issuer())
        || !csrf_ok(&state, PURPOSE, &session.id.to_string(), csrf.as_deref())
    {
        let t = theme(&state, Some(organization), None).await;
        return message(
            &t,
            StatusCode::FORBIDDEN,
            "This form has expired",
            "The form was not sent from this page. Go back to the application and try again.",
        );
    }
    if decision.as_deref() != Some("allow") {
        return refused(
            &state,
            &ctx,
            req.refuse("access_denied", "the person denied the request"),
        )
        .await;
    }
    let meta = as_person(&ctx, &session);
    let scopes: Vec<String> = req
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let given = commands::grant::give_consent(
        &state.bus,
        session.user_id,
        organization,
        req.client_id,
        scopes,
        &meta,
    )
    .await;
    state.tokens.consents.invalidate(session.user_id);
    if let Err(e) = given {
        tracing::error!(error = %e, "a consent could not be recorded");
        return refused(
            &state,
            &ctx,
            req.refuse("server_error", "the consent could not be recorded"),
        )
        .await;
    }
    let since = match commands::grant::consents(&state.bus, session.user_id).await {
        Ok(c) => c.by_client.get(&req.client_id).map(|c| c.since),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a person's consents");
            return refused(
                &state,
                &ctx,
                req.refuse("server_error", "the consent could not be read"),
            )
            .await;
        }
    };
    issue(&state, &ctx, &req, &session, since).await
}
