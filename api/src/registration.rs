//! `POST /registration/consume`: an installation trades the registration
//! token its administrator handed out for an auth token of its own.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::registration;
use domain::registration::InstanceInfo;
use domain::{Actor, ActorKind, Pii};
use serde::{Deserialize, Serialize};

use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

/// What the instance says about itself.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consume {
    pub instance_id: String,
    #[serde(default)]
    pub device_name: String,
    #[serde(default)]
    pub user_name: String,
    #[serde(default)]
    pub app_version: String,
}

/// The instance's auth token: shown once, stored only hashed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Consumed {
    pub auth_token: String,
    pub auth_token_id: String,
    pub registration_token_id: String,
    pub client_id: String,
    /// How to use it: RFC 8693 token exchange at the token endpoint.
    pub subject_token_type: &'static str,
}

/// Consume a registration token (sent as `Authorization: Bearer rt_…`).
#[utoipa::path(post, path = "/registration/consume", request_body = Consume,
    responses((status = 201, body = Consumed, description = "created"),
        (status = 401, description = "registration_token_not_found"),
        (status = 403, description = "registration_token_expired, registration_token_exhausted or registration_token_revoked")),
    tag = "registration")]
pub async fn consume(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Body(body): Body<Consume>,
) -> Response {
    let presented = match crate::authorization::authorization(&headers) {
        Ok(h) => h.filter(|h| h.is("Bearer")).map(|h| h.credentials),
        Err(e) => return Problem::invalid_request(e.to_string()).into_response(),
    };
    let Some(value) = presented else {
        // No credentials: a challenge without an error code (RFC 6750 §3.1).
        return Problem::refused(
            StatusCode::UNAUTHORIZED,
            "registration_token_not_found",
            "send the registration token as `Authorization: Bearer <token>`",
        )
        .challenge("Bearer realm=\"idp\"")
        .into_response();
    };
    let instance = InstanceInfo {
        instance_id: body.instance_id,
        device_name: body.device_name,
        user_name: Pii::new(body.user_name),
        app_version: body.app_version,
        subject: None,
    };
    // The instance is anonymous until it holds its auth token; the
    // registration token it used is in the event.
    let meta = ctx.metadata(
        Actor {
            kind: ActorKind::Anonymous,
            id: None,
        },
        None,
    );
    match registration::consume(&state.bus, value, instance, &meta).await {
        Ok((_, issued)) => {
            metrics::counter!("idp_registration_consumed_total").increment(1);
            let mut resp = (
                StatusCode::CREATED,
                Json(Consumed {
                    auth_token: issued.value.clone(),
                    auth_token_id: issued.id.to_string(),
                    registration_token_id: issued.registration_token_id.to_string(),
                    client_id: issued.client_id.to_string(),
                    subject_token_type: crate::oauth::instance::AUTH_TOKEN_TYPE,
                }),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => {
            metrics::counter!("idp_registration_refused_total", "code" => crate::errors::failure_code(&e))
                .increment(1);
            let refused = Problem::from(e);
            if refused.status() == StatusCode::UNAUTHORIZED {
                // A 401 names its scheme (RFC 9110 §15.5.2).
                return refused
                    .challenge("Bearer realm=\"idp\", error=\"invalid_token\"")
                    .into_response();
            }
            refused.into_response()
        }
    }
}
