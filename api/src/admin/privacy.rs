//! `/admin/subjects`: data subject requests. Find a person's subject id,
//! export everything held about them, correct their values, erase them.
//! Every request is recorded as an event (the audit trail shows who asked).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AdminCaller, settle_at};
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;
use privacy::{self, Erasure, SubjectExport};

type PathRejection = axum::extract::rejection::PathRejection;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/subjects", get(find))
        .route("/admin/subjects/{subject}", get(export).delete(erase))
        .route("/admin/subjects/{subject}/correction", post(correct))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindQuery {
    pub organization_id: Uuid,
    /// The user name an instance gave when it registered.
    pub user_name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FoundSubject {
    pub subject: String,
    /// How many events name this subject.
    pub events: usize,
}

/// The subject id of the person a user name names within an organization
/// (a keyed pseudonym: the name itself is never stored in the clear in the
/// log). A lookup that finds someone is recorded as
/// `privacy.subject_found.v1`, without the name. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/subjects", params(FindQuery),
    responses((status = 200, body = FoundSubject, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "privacy")]
pub async fn find(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    query: Result<Query<FindQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FoundSubject>, Problem> {
    let Query(q) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    caller.within(Some(q.organization_id), "organization")?;
    let subject = state
        .bus
        .person_ids()
        .and_then(|ids| ids.subject(q.organization_id, &q.user_name))
        .ok_or_else(|| Problem::bad_request("user_name must not be blank"))?;
    let meta = ctx.metadata(caller.actor(), Some(q.organization_id));
    let events = privacy::found(&state.bus, &subject, q.organization_id, &meta)
        .await
        .map_err(Problem::from)?;
    Ok(Json(FoundSubject { subject, events }))
}

/// The organization of a subject the caller may act on: an organization's
/// admin reaches only subjects named by its own organization's events
/// alone, and another's are answered as not found.
async fn subject_within(
    state: &AppState,
    caller: &AdminCaller,
    subject: &str,
) -> Result<Option<Uuid>, Problem> {
    let orgs = privacy::organizations_of(&state.bus, subject)
        .await
        .map_err(Problem::from)?;
    if caller.platform {
        return Ok(match orgs.as_slice() {
            [one] => Some(*one),
            _ => None,
        });
    }
    if !orgs.is_empty() && orgs.iter().all(|o| *o == caller.organization_id) {
        Ok(Some(caller.organization_id))
    } else {
        Err(Problem::not_found("subject"))
    }
}

/// Everything held about one subject, replayed from their events (format:
/// docs/SUBJECT_EXPORT.md). The export is itself recorded. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/subjects/{subject}",
    params(("subject" = String, Path, description = "The subject id (`person:…`)")),
    responses((status = 200, body = SubjectExport, description = "done"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "privacy")]
pub async fn export(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(subject) = path?;
    let organization = subject_within(&state, &caller, &subject).await?;
    let meta = ctx.metadata(caller.actor(), organization);
    let doc = privacy::hand_out(&state.bus, &subject, &meta)
        .await
        .map_err(Problem::from)?;
    let mut resp = Json(doc).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    pub user_name: Option<String>,
    pub device_name: Option<String>,
    /// For a user (`user:…`): the profile fields to correct (`null` clears
    /// one).
    pub profile: Option<super::users::ProfilePatchBody>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Corrected {
    /// The auth tokens whose instance values changed.
    pub auth_token_ids: Vec<String>,
    /// The user whose profile was corrected, if the subject is a user's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// Record corrected values for every instance of the subject. Needs
/// `idp:admin`.
#[utoipa::path(post, path = "/admin/subjects/{subject}/correction",
    params(("subject" = String, Path, description = "The subject id (`person:…`)")), request_body = Correction,
    responses((status = 200, body = Corrected, description = "done"), (status = 404, description = "not found (or in another organization)"), (status = 422, description = "a rule is broken: an RFC 9457 problem")),
    security(("bearer" = ["idp:admin"])), tag = "privacy")]
pub async fn correct(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
    Body(body): Body<Correction>,
) -> Result<Json<Corrected>, Problem> {
    let Path(subject) = path?;
    let organization = subject_within(&state, &caller, &subject).await?;
    let meta = ctx.metadata(caller.actor(), organization);
    if let Some(user_id) = privacy::people::user_of_subject(&subject) {
        let patch = body.profile.ok_or_else(|| {
            Problem::validation("name the profile fields to correct").with("field", "profile")
        })?;
        let out = privacy::people::correct_profile(&state.bus, user_id, patch.into(), &meta)
            .await
            .map_err(Problem::from)?;
        super::settle(&state, &out).await?;
        return Ok(Json(Corrected {
            auth_token_ids: vec![],
            user_id: Some(user_id.to_string()),
        }));
    }
    let (changed, last) = privacy::correct(
        &state.bus,
        &subject,
        body.user_name,
        body.device_name,
        &meta,
    )
    .await
    .map_err(Problem::from)?;
    if let Some(at) = last.and_then(|out| out.position) {
        settle_at(&state, at).await?;
    }
    Ok(Json(Corrected {
        auth_token_ids: changed.iter().map(Uuid::to_string).collect(),
        user_id: None,
    }))
}

/// Erase a subject: their key is deleted, so every personal value of theirs
/// reads as erased from now on; the read models drop them; the erasure is
/// recorded. Erasing again answers 200 with `key_deleted: false`; a subject
/// no event names and no key belongs to is 404. Needs `idp:admin`.
#[utoipa::path(delete, path = "/admin/subjects/{subject}",
    params(("subject" = String, Path, description = "The subject id (`person:…`)")),
    responses((status = 200, body = Erasure, description = "done"),
        (status = 404, description = "nothing is held about this subject")),
    security(("bearer" = ["idp:admin"])), tag = "privacy")]
pub async fn erase(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Erasure>, Problem> {
    let Path(subject) = path?;
    let organization = subject_within(&state, &caller, &subject).await?;
    let meta = ctx.metadata(caller.actor(), organization);
    let done = privacy::erase(&state.bus, &state.subject_keys, &subject, &meta)
        .await
        .map_err(Problem::from)?;
    // Once the read models have applied the erasure, push SQLite's
    // write-ahead log into the files so the old values are gone from it.
    settle_at(&state, done.position).await?;
    state
        .read_db
        .checkpoint()
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(done))
}
