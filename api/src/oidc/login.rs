//! `/login`: the sign-in page. It drives the authentication flow API
//! (`crate::authentication`) in process, with the browser's own cookies,
//! so the page and a script calling the API take the same steps, counted
//! and recorded alike. Every part works without JavaScript except the
//! passkey button.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{csrf_ok, csrf_token, html, message, see_other, theme};
use crate::authentication::cookies::{self, SIGN_IN_COOKIE};
use crate::authentication::{
    self as flow, AuthenticateBody, CompleteBody, StartBody, StatusQuery, VerifyOtpBody,
    cookie_name,
};
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

const PURPOSE: &str = "sign-in form";

/// What the page is started with.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    pub client_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    /// A path here to continue to once signed in.
    #[serde(rename = "continue")]
    pub continue_to: Option<String>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
}

/// A step submitted by the page's forms.
#[derive(Debug, Default, Deserialize)]
pub struct StepForm {
    pub sign_in: Option<Uuid>,
    pub csrf: Option<String>,
    pub restart: Option<String>,
    pub method: Option<String>,
    pub identifier: Option<String>,
    pub password: Option<String>,
    pub code: Option<String>,
}

/// What an in-process call of the flow API answered.
struct Answer {
    status: StatusCode,
    body: Value,
    set_cookies: Vec<HeaderValue>,
}

async fn answer(result: Result<Response, Problem>) -> Answer {
    match result {
        Ok(resp) => {
            let status = resp.status();
            let set_cookies = resp
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .cloned()
                .collect();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            Answer {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                set_cookies,
            }
        }
        Err(p) => Answer {
            status: p.status(),
            body: p.body(),
            set_cookies: Vec::new(),
        },
    }
}

/// The value a `Set-Cookie` header gives the cookie `name`.
fn cookie_set(set: &[HeaderValue], name: &str) -> Option<String> {
    set.iter().find_map(|v| {
        let (pair, _) = v
            .to_str()
            .ok()?
            .split_once(';')
            .unwrap_or((v.to_str().ok()?, ""));
        let (k, value) = pair.split_once('=')?;
        (k.trim() == name).then(|| value.trim().to_owned())
    })
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn label(method: &str) -> &'static str {
    match method {
        "sms" => "text message",
        "whatsapp" => "WhatsApp",
        _ => "email",
    }
}

/// The page for a sign-in as `view` (the flow API's status) has it.
struct Render<'a> {
    view: &'a Value,
    identifier: String,
    error: Option<String>,
    notice: Option<String>,
    restart: bool,
    restart_href: String,
    csrf: String,
}

async fn render(state: &AppState, r: Render<'_>, status: StatusCode) -> Response {
    let view = r.view;
    let organization = view
        .get("organization_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    let client_name = match view
        .get("client_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
    {
        Some(id) => state
            .tokens
            .client(id)
            .await
            .ok()
            .flatten()
            .map(|c| c.settings.name.clone()),
        None => None,
    };
    let t = theme(state, organization, None).await;
    let methods = strings(view, "methods");
    let has = |m: &str| methods.iter().any(|x| x == m);
    let first = view
        .get("completed_steps")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    let code_sent = view
        .get("code")
        .and_then(|c| c.get("method"))
        .and_then(Value::as_str)
        .map(label);
    let send_code = ["email", "sms", "whatsapp"]
        .into_iter()
        .filter(|m| has(m))
        .map(|m| pages::CodeChoice {
            method: m,
            label: match m {
                "sms" => "Text me a code",
                "whatsapp" => "Send me a code on WhatsApp",
                _ => "Email me a code",
            },
        })
        .collect();
    let sign_in = view
        .get("session_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    html(
        status,
        pages::render(&pages::Login {
            theme: &t,
            client_name,
            sign_in,
            csrf: r.csrf,
            identifier: r.identifier,
            ask_identifier: first,
            password: has("password"),
            totp: has("totp"),
            send_code,
            passkey: has("passkey"),
            code_sent,
            error: r.error,
            notice: r.notice,
            restart: r.restart,
            restart_href: r.restart_href,
        }),
    )
}

/// `/login?…`: starts a sign-in and shows its first step.
pub async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = query.unwrap_or_default();
    let restart_href = restart_href(&q);
    let organization_id = match (q.organization_id, q.client_id) {
        (Some(o), _) => Some(o),
        (None, Some(c)) => state
            .tokens
            .client(c)
            .await
            .ok()
            .flatten()
            .map(|c| c.organization_id),
        (None, None) => None,
    };
    let Some(organization_id) = organization_id else {
        let t = theme(&state, None, None).await;
        return message(
            &t,
            StatusCode::BAD_REQUEST,
            "Nothing to sign in to",
            "Open this page from an application: it names no organization or application.",
        );
    };
    let start = StartBody {
        organization_id: Some(organization_id),
        client_id: q.client_id,
        continue_to: q.continue_to.clone(),
        login_hint: q.login_hint.clone(),
    };
    let started =
        answer(flow::start(State(state.clone()), ctx, headers.clone(), Body(start)).await).await;
    if !started.status.is_success() {
        let t = theme(&state, Some(organization_id), q.ui_locales.as_deref()).await;
        let detail = started
            .body
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("The sign-in could not start.");
        return message(&t, started.status, "The sign-in could not start", detail);
    }
    let name = cookie_name(&state, SIGN_IN_COOKIE);
    let cookie = cookie_set(&started.set_cookies, &name)
        .or_else(|| cookies::read(&headers, &name))
        .unwrap_or_default();
    let sign_in = started
        .body
        .get("session_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let csrf = csrf_token(&state, PURPOSE, &format!("{sign_in}:{cookie}"));
    let mut resp = render(
        &state,
        Render {
            view: &started.body,
            identifier: q.login_hint.unwrap_or_default(),
            error: None,
            notice: None,
            restart: false,
            restart_href,
            csrf,
        },
        StatusCode::OK,
    )
    .await;
    for c in started.set_cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

fn restart_href(q: &LoginQuery) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    if let Some(c) = q.client_id {
        s.append_pair("client_id", &c.to_string());
    }
    if let Some(o) = q.organization_id {
        s.append_pair("organization_id", &o.to_string());
    }
    if let Some(c) = &q.continue_to {
        s.append_pair("continue", c);
    }
    format!("/login?{}", s.finish())
}

/// A restart link from a form: only a path to this page.
fn checked_restart(value: Option<&str>) -> String {
    value
        .filter(|v| v.starts_with("/login?") && domain::sign_in::validate_continue_to(v).is_ok())
        .unwrap_or("/login")
        .to_owned()
}

/// What a refusal of the flow API says on the page.
fn refusal_text(a: &Answer) -> String {
    match a.status {
        StatusCode::UNAUTHORIZED => "The identifier, the password or the code is not right.".into(),
        StatusCode::TOO_MANY_REQUESTS => {
            let secs = a
                .body
                .get("retry_after")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            format!("Too many attempts. Wait {secs} seconds, then try again.")
        }
        _ => a
            .body
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("That did not work. Try again.")
            .to_owned(),
    }
}

/// `POST /login`: one step of the page's sign-in.
pub async fn step(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    form: Result<Form<StepForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let restart_href = checked_restart(form.restart.as_deref());
    let name = cookie_name(&state, SIGN_IN_COOKIE);
    let cookie = cookies::read(&headers, &name).unwrap_or_default();
    let Some(sign_in) = form.sign_in else {
        return lost(
            &state,
            &restart_href,
            "This sign-in is not known. Start again.",
        )
        .await;
    };
    let binding = format!("{sign_in}:{cookie}");
    if crate::self_service::cross_site_headers(&headers, &state.config.issuer())
        || !csrf_ok(&state, PURPOSE, &binding, form.csrf.as_deref())
    {
        return lost(
            &state,
            &restart_href,
            "The form was not sent from this page, or its sign-in is over. Start again.",
        )
        .await;
    }
    let csrf = csrf_token(&state, PURPOSE, &binding);
    let method = form.method.clone().unwrap_or_default();
    let identifier = form.identifier.clone().unwrap_or_default();
    let stepped = match method.as_str() {
        "verify-otp" => Some(
            answer(
                flow::verify_otp(
                    State(state.clone()),
                    ctx.clone(),
                    headers.clone(),
                    Body(VerifyOtpBody {
                        session_id: sign_in,
                        code: form.code.clone().unwrap_or_default(),
                    }),
                )
                .await,
            )
            .await,
        ),
        "complete" => None,
        _ => Some(
            answer(
                flow::authenticate(
                    State(state.clone()),
                    ctx.clone(),
                    headers.clone(),
                    Body(AuthenticateBody {
                        session_id: sign_in,
                        method: method.clone(),
                        identifier: Some(identifier.clone()).filter(|i| !i.trim().is_empty()),
                        password: form.password.clone(),
                        code: form.code.clone(),
                        assertion: None,
                    }),
                )
                .await,
            )
            .await,
        ),
    };
    let status = flow::status(
        State(state.clone()),
        ctx.clone(),
        headers.clone(),
        Ok(Query(StatusQuery {
            session_id: sign_in,
        })),
    )
    .await;
    let view = match status {
        Ok(axum::Json(v)) => serde_json::to_value(v).unwrap_or(Value::Null),
        Err(_) => {
            return lost(
                &state,
                &restart_href,
                "This sign-in is not known to this browser. Start again.",
            )
            .await;
        }
    };
    let phase = view
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if phase != "in_progress" {
        return lost(
            &state,
            &restart_href,
            "This sign-in is over (it took too long, or is already done). Start again.",
        )
        .await;
    }
    let failed = stepped.as_ref().filter(|a| !a.status.is_success());
    let can_complete = view
        .get("can_complete")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if failed.is_none() && can_complete {
        return finish(&state, ctx, headers, sign_in).await;
    }
    let notice = stepped
        .as_ref()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .map(|_| "If the account has that address, a code is on its way.".to_owned());
    let (error, code) = match failed {
        Some(a) => (Some(refusal_text(a)), a.status),
        None => (None, StatusCode::OK),
    };
    render(
        &state,
        Render {
            view: &view,
            identifier,
            error,
            notice,
            restart: false,
            restart_href,
            csrf,
        },
        code,
    )
    .await
}

/// The page of a sign-in that is over or not this browser's.
async fn lost(state: &AppState, restart_href: &str, text: &str) -> Response {
    let t = theme(state, None, None).await;
    html(
        StatusCode::BAD_REQUEST,
        pages::render(&pages::Message {
            theme: &t,
            title: "Sign in again".into(),
            message: text.to_owned(),
            is_error: true,
            form: None,
            link: Some(pages::Link {
                href: restart_href.to_owned(),
                text: "Start again".into(),
            }),
        }),
    )
}

/// Completes the sign-in into a session and continues where it was going.
async fn finish(
    state: &AppState,
    ctx: RequestContext,
    headers: HeaderMap,
    sign_in: Uuid,
) -> Response {
    let done = answer(
        flow::complete(
            State(state.clone()),
            ctx,
            headers,
            Body(CompleteBody {
                session_id: sign_in,
            }),
        )
        .await,
    )
    .await;
    let organization = done
        .body
        .get("organization_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    let t = theme(state, organization, None).await;
    if !done.status.is_success() {
        return message(
            &t,
            done.status,
            "The sign-in could not be completed",
            &refusal_text(&done),
        );
    }
    let mut resp = match done.body.get("continue_to").and_then(Value::as_str) {
        Some(path) => see_other(path),
        None => message(
            &t,
            StatusCode::OK,
            "You are signed in",
            "You can close this page.",
        ),
    };
    for c in done.set_cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}
