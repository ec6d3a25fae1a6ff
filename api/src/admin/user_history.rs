//! A user now, at any past moment (`?as_of=`, by folding their stream up
//! to it), and the list of their changes with actor and time.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::AdminCaller;
use super::users::{UserView, fold_until, load_for, organization_of, rfc3339, with_etag};
use crate::problem::Problem;
use crate::state::AppState;

type PathRejection = axum::extract::rejection::PathRejection;
type QueryRejection = axum::extract::rejection::QueryRejection;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// An RFC 3339 time: the user as they were then, folded from their
    /// stream.
    pub as_of: Option<String>,
}

/// Show a user, now or (`as_of`) as they were at a past moment. Needs
/// `idp:admin`.
#[utoipa::path(get, path = "/admin/users/{id}",
    params(("id" = Uuid, Path, description = "The user's id"), ShowQuery),
    responses((status = 200, body = UserView, description = "done; the ETag header holds its version"),
        (status = 404, description = "not found (or in another organization, or not yet created at as_of)")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn show(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
    query: Result<Query<ShowQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Path(id) = path?;
    let Query(q) = query?;
    let Some(as_of) = q.as_of else {
        return Ok(with_etag(
            load_for(&state, &caller, id).await?,
            StatusCode::OK,
        ));
    };
    let at = OffsetDateTime::parse(&as_of, &Rfc3339)
        .map_err(|_| Problem::bad_request("as_of must be an RFC 3339 date-time"))?;
    organization_of(&state, &caller, id).await?;
    let (user, revision, _) = fold_until(&state, id, Some(at))
        .await?
        .ok_or_else(|| Problem::not_found("user at that time"))?;
    if user.deleted {
        return Err(Problem::not_found("user at that time"));
    }
    Ok(with_etag(
        UserView::of_state(&user, revision),
        StatusCode::OK,
    ))
}

/// One change of a user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeView {
    /// The user's version after the change.
    pub version: String,
    /// The event's type, e.g. `user.email_changed.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What the change touched (`username`, `email`, `profile`, …).
    pub changed: Vec<&'static str>,
    pub occurred_at: String,
    pub recorded_at: String,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub source_ip: Option<String>,
    pub correlation_id: String,
}

fn changed(event_type: &str) -> Vec<&'static str> {
    use domain::user as u;
    match event_type {
        u::CREATED_V1 => vec!["created"],
        u::USERNAME_CHANGED_V1 => vec!["username"],
        u::EMAIL_CHANGED_V1 => vec!["email", "email_verified"],
        u::PHONE_CHANGED_V1 => vec!["phone_number", "phone_verified"],
        u::VERIFICATION_CHANGED_V1 => vec!["email_verified", "phone_verified"],
        u::PROFILE_CHANGED_V1 => vec!["profile"],
        u::ATTRIBUTES_CHANGED_V1 => vec!["attributes"],
        u::DEACTIVATED_V1 | u::REACTIVATED_V1 => vec!["status"],
        u::PASSWORD_SET_V1 | u::PASSWORD_CLEARED_V1 => vec!["password"],
        u::PASSWORD_CHANGE_REQUIRED_V1 => vec!["must_change_password"],
        u::SIGNED_IN_V1 => vec!["last_sign_in_at"],
        u::DELETED_V1 => vec!["deleted"],
        _ => vec![],
    }
}

/// Every change of a user, oldest first, with who made it and when (also
/// once the user is deleted). Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/users/{id}/history",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, body = Vec<ChangeView>, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn history(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Vec<ChangeView>>, Problem> {
    let Path(id) = path?;
    organization_of(&state, &caller, id).await?;
    let Some((_, _, events)) = fold_until(&state, id, None).await? else {
        return Err(Problem::not_found("user"));
    };
    Ok(Json(
        events
            .iter()
            .map(|e| ChangeView {
                version: format!("\"{}\"", e.revision),
                event_type: e.event_type.clone(),
                changed: changed(&e.event_type),
                occurred_at: rfc3339(e.metadata.occurred_at),
                recorded_at: rfc3339(e.recorded_at),
                actor_kind: projections::audit::actor_kind_str(e.metadata.actor.kind).to_owned(),
                actor_id: e.metadata.actor.id.clone(),
                source_ip: e.metadata.source_ip.clone(),
                correlation_id: e.metadata.correlation_id.to_string(),
            })
            .collect(),
    ))
}
