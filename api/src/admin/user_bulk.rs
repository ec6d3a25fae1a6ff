//! `POST /admin/users/bulk`: one action over up to 1,000 users, each
//! user's change its own command; the answer says, per user, whether it
//! was done, changed nothing, or was refused and why.

use axum::Json;
use axum::extract::State;
use domain::role::Holder;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{AdminCaller, settle_at};
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

/// The most users one bulk request may name.
pub const MAX_BULK: usize = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// `deactivate`, `reactivate`, `add_to_group`, `remove_from_group`,
    /// `assign_role` or `unassign_role`.
    pub action: String,
    /// 1 to 1,000 users.
    pub user_ids: Vec<Uuid>,
    /// The group of `add_to_group` and `remove_from_group`.
    pub group_id: Option<Uuid>,
    /// The role of `assign_role` and `unassign_role`.
    pub role_id: Option<Uuid>,
}

/// What happened to one user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkResult {
    pub user_id: String,
    /// `done`, `unchanged` (already so) or `refused`.
    pub result: &'static str,
    /// The refusal, as an RFC 9457 problem.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkResponse {
    pub results: Vec<BulkResult>,
    pub done: usize,
    pub unchanged: usize,
    pub refused: usize,
}

#[derive(Clone, Copy)]
enum Action {
    Deactivate,
    Reactivate,
    AddToGroup(Uuid),
    RemoveFromGroup(Uuid),
    AssignRole(Uuid),
    UnassignRole(Uuid),
}

/// Apply one action to many users, each separately. Needs `idp:admin`.
#[utoipa::path(post, path = "/admin/users/bulk", request_body = BulkRequest,
    responses((status = 200, body = BulkResponse, description = "one result per user, in the order given"),
        (status = 422, description = "the request itself is refused (unknown action or group, over 1,000 users): nothing was done")),
    security(("bearer" = ["idp:admin"])), tag = "users")]
pub async fn bulk(
    State(state): State<AppState>,
    caller: AdminCaller,
    ctx: RequestContext,
    Body(body): Body<BulkRequest>,
) -> Result<Json<BulkResponse>, Problem> {
    if body.user_ids.is_empty() || body.user_ids.len() > MAX_BULK {
        return Err(Problem::validation(format!(
            "user_ids must name 1 to {MAX_BULK} users ({} given)",
            body.user_ids.len()
        ))
        .with("field", "user_ids")
        .with("limit", MAX_BULK));
    }
    let group = |g: Option<Uuid>| {
        g.ok_or_else(|| {
            Problem::validation("group_id is required for this action").with("field", "group_id")
        })
    };
    let role = |r: Option<Uuid>| {
        r.ok_or_else(|| {
            Problem::validation("role_id is required for this action").with("field", "role_id")
        })
    };
    let action = match body.action.as_str() {
        "deactivate" => Action::Deactivate,
        "reactivate" => Action::Reactivate,
        "add_to_group" => Action::AddToGroup(group(body.group_id)?),
        "remove_from_group" => Action::RemoveFromGroup(group(body.group_id)?),
        "assign_role" => Action::AssignRole(role(body.role_id)?),
        "unassign_role" => Action::UnassignRole(role(body.role_id)?),
        other => {
            return Err(Problem::validation(format!(
                "action `{other}` is not one of deactivate, reactivate, add_to_group, remove_from_group, assign_role, unassign_role"
            ))
            .with("field", "action"));
        }
    };
    if let Action::AddToGroup(g) | Action::RemoveFromGroup(g) = action {
        let row = projections::users::get_group(&state.read_db, &g.to_string())
            .await
            .map_err(|e| Problem::internal(&e))?
            .ok_or_else(|| {
                Problem::validation(format!("group_id {g} names no group"))
                    .with("field", "group_id")
            })?;
        caller
            .within(Uuid::parse_str(&row.organization_id).ok(), "group")
            .map_err(|_| {
                Problem::validation(format!("group_id {g} names no group"))
                    .with("field", "group_id")
            })?;
    }
    if let Action::AssignRole(r) | Action::UnassignRole(r) = action {
        let unknown =
            || Problem::validation(format!("role_id {r} names no role")).with("field", "role_id");
        let row = projections::roles::get_role(&state.read_db, &r.to_string())
            .await
            .map_err(|e| Problem::internal(&e))?
            .ok_or_else(unknown)?;
        caller
            .within(Uuid::parse_str(&row.organization_id).ok(), "role")
            .map_err(|_| unknown())?;
    }
    let mut results = Vec::with_capacity(body.user_ids.len());
    let mut last = None;
    for id in body.user_ids {
        let outcome = one(&state, &caller, &ctx, action, id).await;
        let (result, problem) = match outcome {
            Ok(out) if out.events > 0 => {
                last = last.max(out.position);
                ("done", None)
            }
            Ok(_) => ("unchanged", None),
            Err(p) => ("refused", Some(p.body())),
        };
        results.push(BulkResult {
            user_id: id.to_string(),
            result,
            problem,
        });
    }
    if let Some(at) = last {
        settle_at(&state, at).await?;
    }
    let count = |r: &str| results.iter().filter(|x| x.result == r).count();
    Ok(Json(BulkResponse {
        done: count("done"),
        unchanged: count("unchanged"),
        refused: count("refused"),
        results,
    }))
}

async fn one(
    state: &AppState,
    caller: &AdminCaller,
    ctx: &RequestContext,
    action: Action,
    id: Uuid,
) -> Result<commands::Outcome, Problem> {
    let organization = super::users::organization_of(state, caller, id).await?;
    let meta = ctx.metadata(caller.actor(), Some(organization));
    Ok(match action {
        Action::Deactivate => super::users::deactivate_user(state, id, None, &meta).await?,
        Action::Reactivate => commands::user::reactivate(&state.bus, id, None, &meta).await?,
        Action::AddToGroup(g) => commands::group::add_user(&state.bus, g, id, &meta).await?,
        Action::RemoveFromGroup(g) => {
            commands::group::remove_user(&state.bus, g, id, &meta).await?
        }
        Action::AssignRole(r) => {
            commands::role::assign(&state.bus, r, Holder::User(id), &meta).await?
        }
        Action::UnassignRole(r) => {
            commands::role::unassign(&state.bus, r, Holder::User(id), &meta).await?
        }
    })
}
