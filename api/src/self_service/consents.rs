//! `/self/consents`: the applications a person allowed, with the scopes
//! allowed to each; withdrawing one ends the grants made under it (their
//! refresh tokens are refused from then on).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::SessionCaller;
use crate::problem::Problem;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/self/consents", get(list_consents))
        .route("/self/consents/{client_id}", delete(revoke_consent))
}

/// One application's consent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsentView {
    pub client_id: Uuid,
    /// The application's name.
    pub client_name: String,
    pub scopes: Vec<String>,
    /// RFC 3339: when it was first given.
    pub granted_at: String,
    /// RFC 3339: when it last grew.
    pub updated_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsentList {
    pub items: Vec<ConsentView>,
}

/// The person's consents. Needs a session.
#[utoipa::path(get, path = "/self/consents", responses((status = 200, body = ConsentList, description = "done"),
    (status = 401, description = "no valid session cookie")), tag = "self")]
pub async fn list_consents(
    State(state): State<AppState>,
    caller: SessionCaller,
) -> Result<Json<ConsentList>, Problem> {
    let consents = commands::grant::consents(&state.bus, caller.session.user_id)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let mut items = Vec::with_capacity(consents.by_client.len());
    for (client_id, c) in consents.by_client {
        let client_name = match state.tokens.client(client_id).await {
            Ok(Some(client)) => client.settings.name.clone(),
            _ => String::new(),
        };
        items.push(ConsentView {
            client_id,
            client_name,
            scopes: c.scopes,
            granted_at: c.since.format(&Rfc3339).unwrap_or_default(),
            updated_at: c.updated_at.format(&Rfc3339).unwrap_or_default(),
        });
    }
    Ok(Json(ConsentList { items }))
}

/// Withdraw the consent given to an application: its refresh tokens stop
/// working, and the next sign-in there asks again. Needs a session.
#[utoipa::path(delete, path = "/self/consents/{client_id}",
    params(("client_id" = Uuid, Path, description = "The application's client id")),
    responses((status = 204, description = "withdrawn"), (status = 401, description = "no valid session cookie"),
        (status = 404, description = "no consent for this application")), tag = "self")]
pub async fn revoke_consent(
    State(state): State<AppState>,
    caller: SessionCaller,
    path: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(client_id) = path?;
    match commands::grant::revoke_consent(
        &state.bus,
        caller.session.user_id,
        client_id,
        &caller.metadata(),
    )
    .await
    {
        Ok(out) => {
            state.tokens.consents.invalidate(caller.session.user_id);
            crate::admin::settle(&state, &out).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(commands::CommandError::Domain(_)) => Err(Problem::not_found("consent")),
        Err(e) => Err(Problem::internal(&e)),
    }
}
