//! OpenID Connect for people: the authorization endpoint with its sign-in
//! and consent pages, the authorization code and refresh grants of a
//! person's grant (`token.rs`, called by the token endpoint), the ID token,
//! UserInfo and RP-initiated logout.
//!
//! The pages are rendered by the `pages` crate; the sign-in page drives
//! the authentication flow API (`crate::authentication`) in process.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use uuid::Uuid;

use crate::state::AppState;

pub mod authorize;
pub mod claims;
pub mod consent;
pub mod login;
pub mod logout;
pub mod request;
pub mod token;
pub mod userinfo;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/authorize", get(authorize::handle).post(authorize::handle))
        .route("/consent", get(consent::show).post(consent::decide))
        .route("/login", get(login::show).post(login::step))
        .route(
            "/oauth/userinfo",
            get(userinfo::get)
                .post(userinfo::post)
                .options(crate::oauth::preflight)
                .layer(crate::oauth::cors()),
        )
        .route(
            "/oauth/end_session",
            get(logout::handle).post(logout::handle),
        )
        .route("/assets/pages.css", get(stylesheet))
        .route("/assets/passkey.js", get(passkey_script))
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", pages::STYLESHEET)
}

async fn passkey_script() -> Response {
    asset("text/javascript; charset=utf-8", pages::PASSKEY_SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The look of an organization's pages: its name, logo and accent colour
/// from its settings (the default theme otherwise), in the first language
/// asked for.
pub async fn theme(
    state: &AppState,
    organization_id: Option<Uuid>,
    ui_locales: Option<&str>,
) -> pages::Theme {
    let org = match organization_id {
        Some(id) => state
            .bus
            .load::<domain::organization::Organization>(&id.to_string())
            .await
            .ok()
            .map(|(o, _)| o),
        None => None,
    };
    let name = org
        .as_ref()
        .map(|o| o.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "idp".to_owned());
    let branding = org.map(|o| o.branding).unwrap_or_default();
    let lang = ui_locales
        .and_then(|l| l.split(' ').next())
        .filter(|l| l.len() <= 35 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or("en");
    pages::Theme::new(
        &name,
        branding.logo_url,
        branding.accent_color.as_deref(),
        lang,
    )
}

/// An HTML page: never cached, never framed, no referrer to other sites,
/// scripts only
/// from here.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' https: data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "x-robots-tag",
        HeaderValue::from_static("noindex, nofollow"),
    );
    resp
}

/// A page that says one thing.
pub fn message(theme: &pages::Theme, status: StatusCode, title: &str, text: &str) -> Response {
    html(
        status,
        pages::render(&pages::Message {
            theme,
            title: title.to_owned(),
            message: text.to_owned(),
            is_error: status.is_client_error() || status.is_server_error(),
            form: None,
            link: None,
        }),
    )
}

/// A request's parameters, each pair as sent: the query string of a GET,
/// the form body of a POST (a body that cannot be read is none).
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        if req.method() == axum::http::Method::POST {
            let form = axum::Form::<Vec<(String, String)>>::from_request(req, state).await;
            return Ok(Self(form.map(|axum::Form(f)| f).unwrap_or_default()));
        }
        let query = req.uri().query().unwrap_or_default();
        Ok(Self(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

/// A redirect the browser follows with GET (303), never cached.
pub fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `uri` with `pairs` added to its query, each once.
pub fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

/// A CSRF token for a form tied to `binding` (a session's or a sign-in's
/// id with its cookie): a keyed digest only this server can make.
pub fn csrf_token(state: &AppState, purpose: &str, binding: &str) -> String {
    commands::crypto::keyed_digest(&state.master_key, purpose, binding)
}

/// Whether a presented CSRF token is the one for `binding`, compared in
/// constant time.
pub fn csrf_ok(state: &AppState, purpose: &str, binding: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| {
        commands::crypto::secret_matches_digest(&csrf_token(state, purpose, binding), p)
    })
}
