//! The policy decision point: `POST /authz/decide` (one evaluation, the
//! shape of OpenID AuthZEN's evaluation API) and `POST /authz/decide/batch`
//! (many, AuthZEN's evaluations API), behind a bearer token with the
//! `idp:authz` scope, deciding with the caller's organization's active Rego
//! policy.
//!
//! The policy's input is the request's subject, resource, action and
//! context, with what the platform knows of the subject added: a user's
//! status, effective roles and permissions, groups and custom attributes,
//! or a client's roles; and the time, from the server's clock. Denials, and
//! every decision when the organization asks, are recorded.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::post;
use axum::{Json, Router};
use commands::rego::{self, Policy, Value as RegoValue};
use domain::authz_policy::{AuthzPolicy, Decided};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::access::{self, Subject};
use crate::authorization::{BearerError, bearer_with_scope};
use crate::context::RequestContext;
use crate::extract::Body;
use crate::problem::Problem;
use crate::state::AppState;

/// The scope a decision point's caller needs.
pub const AUTHZ_SCOPE: &str = "idp:authz";
/// The most evaluations one batch may carry.
pub const MAX_BATCH: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/authz/decide", post(decide))
        .route("/authz/decide/batch", post(decide_batch))
}

/// Compiled policies by (organization, version), shared by every request.
#[derive(Default)]
pub struct CompiledPolicies {
    map: RwLock<HashMap<(Uuid, u32), Policy>>,
}

impl CompiledPolicies {
    /// The compiled active version of `policies`, compiled once per version.
    fn active(&self, policies: &AuthzPolicy) -> Option<(u32, Policy)> {
        let version = policies.active_version()?;
        let key = (policies.organization_id, version.version);
        if let Some(p) = self.map.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Some((version.version, p));
        }
        match rego::compile(&version.source) {
            Ok(p) => {
                if let Ok(mut m) = self.map.write() {
                    m.retain(|(org, _), _| *org != key.0);
                    m.insert(key, p.clone());
                }
                Some((version.version, p))
            }
            Err(e) => {
                // Every version compiled when it was uploaded; a newer
                // regorus may disagree. Deny rather than guess.
                tracing::error!(error = %e, version = version.version, "an active policy no longer compiles");
                None
            }
        }
    }
}

/// How long what the platform knows of a subject is reused at most. A
/// change the read models apply, here or in another process, ends it at
/// once (`RunnerHandle::access_generation`, also moved when a rebuilt read
/// model is switched in); this bounds what a process learns late.
const FACTS_FOR: time::Duration = time::Duration::seconds(60);
/// Subjects remembered at most.
const FACTS_KEPT: usize = 100_000;

/// An organization, a subject type and id.
type SubjectKey = (Uuid, String, String);
/// What is known of a subject; `None`: not one of the organization's.
/// Kept in the policy's own form, so that each decision shares it.
type Facts = Option<RegoValue>;

/// What the platform knows of each subject lately asked about.
#[derive(Default)]
pub struct SubjectFacts {
    map: RwLock<HashMap<SubjectKey, (u64, OffsetDateTime, Facts)>>,
}

impl SubjectFacts {
    fn get(&self, key: &SubjectKey, generation: u64, now: OffsetDateTime) -> Option<Facts> {
        let map = self.map.read().ok()?;
        let (g, at, facts) = map.get(key)?;
        (*g == generation && now - *at < FACTS_FOR).then(|| facts.clone())
    }

    fn put(&self, key: SubjectKey, generation: u64, facts: Facts, now: OffsetDateTime) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= FACTS_KEPT {
                map.clear();
            }
            map.insert(key, (generation, now, facts));
        }
    }
}

/// A caller of the decision point: a client's token with `idp:authz`.
pub struct AuthzCaller {
    pub client_id: Uuid,
    pub organization_id: Uuid,
}

impl FromRequestParts<AppState> for AuthzCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let valid = bearer_with_scope(&parts.headers, state, AUTHZ_SCOPE)
            .await
            .map_err(|e| match e {
                BearerError::Malformed(e) => Problem::invalid_request(e.to_string()),
                BearerError::Missing(d) => Problem::unauthenticated(d),
                BearerError::Unauthenticated(d) => Problem::unauthorized(d),
                BearerError::MissingScope(scope) => Problem::forbidden(scope),
            })?;
        Ok(Self {
            client_id: valid.client_id,
            organization_id: valid.client.organization_id,
        })
    }
}

/// Who asks: a `user` or a `client` of the caller's organization.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthzSubject {
    #[serde(rename = "type")]
    pub subject_type: String,
    pub id: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

/// What is asked about.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthzResource {
    #[serde(rename = "type")]
    pub resource_type: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

/// What would be done.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthzAction {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

/// One evaluation: a subject, a resource, an action and the context (the
/// end user's `ip`, and anything else the policy reads).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    pub subject: AuthzSubject,
    pub resource: AuthzResource,
    pub action: AuthzAction,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
}

/// Many evaluations; each takes what it leaves out from the defaults at
/// the top.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Evaluations {
    pub subject: Option<AuthzSubject>,
    pub resource: Option<AuthzResource>,
    pub action: Option<AuthzAction>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    pub evaluations: Vec<PartialEvaluation>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartialEvaluation {
    pub subject: Option<AuthzSubject>,
    pub resource: Option<AuthzResource>,
    pub action: Option<AuthzAction>,
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
}

/// A decision, with the policy version that made it (absent when no
/// policy is active: then everything is denied).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionView {
    pub decision: bool,
    #[schema(value_type = Object)]
    pub context: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionsView {
    pub evaluations: Vec<DecisionView>,
}

/// What the platform knows of a subject, from [`SubjectFacts`] while the
/// read models have not changed since.
async fn cached_facts(
    state: &AppState,
    organization_id: Uuid,
    subject: &AuthzSubject,
) -> Result<Facts, Problem> {
    let key = (
        organization_id,
        subject.subject_type.clone(),
        subject.id.clone(),
    );
    let now = state.clock.now();
    let generation = state.projections.access_generation();
    if let Some(hit) = state.subject_facts.get(&key, generation, now) {
        return Ok(hit);
    }
    let facts = subject_facts(state, organization_id, subject)
        .await?
        .map(|f| RegoValue::from(Value::Object(f)));
    state.subject_facts.put(key, generation, facts.clone(), now);
    Ok(facts)
}

/// What the platform knows of a subject, for the policy's input; `None`
/// when the subject is not one of the organization's.
async fn subject_facts(
    state: &AppState,
    organization_id: Uuid,
    subject: &AuthzSubject,
) -> Result<Option<Map<String, Value>>, Problem> {
    let Ok(id) = Uuid::parse_str(&subject.id) else {
        return Ok(None);
    };
    let internal = |e: projections::ProjectionError| Problem::internal(&e);
    let mut facts = Map::new();
    match subject.subject_type.as_str() {
        "user" => {
            let Some(user) = projections::users::get_user(&state.read_db, &subject.id)
                .await
                .map_err(internal)?
                .filter(|u| u.organization_id == organization_id.to_string())
            else {
                return Ok(None);
            };
            let roles = access::effective_roles(
                state,
                Subject::User {
                    id,
                    organization_id,
                },
            )
            .await
            .map_err(internal)?;
            let groups = projections::users::user_groups(&state.read_db, &subject.id)
                .await
                .map_err(internal)?;
            let (names, permissions) = access::names_and_permissions(&roles);
            facts.insert("status".into(), json!(user.status));
            facts.insert("roles".into(), json!(names));
            facts.insert("permissions".into(), json!(permissions));
            let group_names: Vec<&str> = groups.iter().map(|g| g.group.name.as_str()).collect();
            facts.insert("groups".into(), json!(group_names));
            facts.insert("attributes".into(), user.attributes);
        }
        "client" => {
            let Some(client) = state
                .tokens
                .client(id)
                .await
                .map_err(|e| Problem::internal(&e))?
            else {
                return Ok(None);
            };
            if client.organization_id != organization_id || !client.is_active() {
                return Ok(None);
            }
            let roles = access::effective_roles(state, Subject::Client(id))
                .await
                .map_err(internal)?;
            let (names, permissions) = access::names_and_permissions(&roles);
            facts.insert("roles".into(), json!(names));
            facts.insert("permissions".into(), json!(permissions));
        }
        _ => return Ok(None),
    }
    Ok(Some(facts))
}

/// A policy's input: what is known of the subject (shared, not copied)
/// with the subject's type, id and properties as asked, and the other
/// parts.
fn policy_input(
    facts: &RegoValue,
    asked: &AuthzSubject,
    parts: [(&str, Value); 3],
) -> Result<RegoValue, String> {
    let mut subject = facts.clone();
    let known = subject.as_object_mut().map_err(|e| e.to_string())?;
    known.insert(
        RegoValue::from("type"),
        RegoValue::from(asked.subject_type.as_str()),
    );
    known.insert(RegoValue::from("id"), RegoValue::from(asked.id.as_str()));
    known.insert(
        RegoValue::from("properties"),
        RegoValue::from(Value::Object(asked.properties.clone())),
    );
    let mut input = RegoValue::new_object();
    let top = input.as_object_mut().map_err(|e| e.to_string())?;
    top.insert(RegoValue::from("subject"), subject);
    for (name, part) in parts {
        top.insert(RegoValue::from(name), RegoValue::from(part));
    }
    Ok(input)
}

/// The time as policies read it.
fn time_input(now: OffsetDateTime) -> Value {
    json!({
        "rfc3339": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "unix": now.unix_timestamp(),
        "hour": now.hour(),
        "minute": now.minute(),
        "weekday": now.weekday().to_string(),
        "day_of_week": now.weekday().number_from_monday(),
    })
}

/// Decides one evaluation and records it when it must be.
async fn evaluate(
    state: &AppState,
    caller: &AuthzCaller,
    ctx: &RequestContext,
    policies: Option<&AuthzPolicy>,
    policy: Option<&(u32, Policy)>,
    e: Evaluation,
) -> Result<DecisionView, Problem> {
    let now = state.clock.now();
    let facts = cached_facts(state, caller.organization_id, &e.subject).await?;
    let (decision, reason) = match (policy, &facts) {
        (None, _) => (false, Some("no policy is active")),
        (_, None) => (false, Some("the subject is not one of the organization's")),
        (Some((_, p)), Some(facts)) => {
            let mut context = e.context.clone();
            context.insert("time".into(), time_input(now));
            let input = policy_input(
                facts,
                &e.subject,
                [
                    ("resource", json!(e.resource)),
                    ("action", json!(e.action)),
                    ("context", Value::Object(context)),
                ],
            );
            match input.and_then(|input| p.allows_value(input).map_err(|e| e.to_string())) {
                Ok(d) => (d, None),
                Err(err) => {
                    tracing::warn!(error = %err, "a policy evaluation failed; denied");
                    (false, Some("the policy failed to evaluate"))
                }
            }
        }
    };
    let version = policy.map(|(v, _)| *v);
    if !decision || policies.is_some_and(|p| p.log_all) {
        let decided = Decided {
            organization_id: caller.organization_id,
            policy_version: version,
            decision,
            subject_type: e.subject.subject_type.clone(),
            subject_id: e.subject.id.clone(),
            resource_type: e.resource.resource_type.clone(),
            resource_id: e.resource.id.clone(),
            action: e.action.name.clone(),
            at: now,
        };
        let meta = ctx.metadata(
            domain::Actor::client(caller.client_id.to_string()),
            Some(caller.organization_id),
        );
        state
            .decisions
            .record(decided, meta)
            .await
            .map_err(|e| Problem::internal(&e))?;
    }
    let mut context = json!({ "policy_version": version });
    if let (Some(reason), Some(o)) = (reason, context.as_object_mut()) {
        o.insert("reason".into(), json!(reason));
    }
    Ok(DecisionView { decision, context })
}

async fn active_policy(
    state: &AppState,
    organization_id: Uuid,
) -> Result<(Option<Arc<AuthzPolicy>>, Option<(u32, Policy)>), Problem> {
    let log = state.bus.log();
    let policies = state
        .tokens
        .authz_policies
        .get(log, organization_id)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let policy = policies
        .as_deref()
        .and_then(|p| state.compiled_policies.active(p));
    Ok((policies, policy))
}

/// Decide whether a subject may do an action on a resource, with the
/// organization's active policy. Needs `idp:authz`.
#[utoipa::path(post, path = "/authz/decide", request_body = Evaluation,
    responses((status = 200, body = DecisionView, description = "decided; `context.policy_version` names the version")),
    security(("bearer" = ["idp:authz"])), tag = "authorization")]
pub async fn decide(
    State(state): State<AppState>,
    caller: AuthzCaller,
    ctx: RequestContext,
    Body(body): Body<Evaluation>,
) -> Result<Json<DecisionView>, Problem> {
    let (policies, policy) = active_policy(&state, caller.organization_id).await?;
    Ok(Json(
        evaluate(
            &state,
            &caller,
            &ctx,
            policies.as_deref(),
            policy.as_ref(),
            body,
        )
        .await?,
    ))
}

/// Decide many evaluations at once (up to 1,000), in order. Needs
/// `idp:authz`.
#[utoipa::path(post, path = "/authz/decide/batch", request_body = Evaluations,
    responses((status = 200, body = DecisionsView, description = "one decision per evaluation, in order"),
        (status = 422, description = "an evaluation lacks a subject, resource or action, or there are too many")),
    security(("bearer" = ["idp:authz"])), tag = "authorization")]
pub async fn decide_batch(
    State(state): State<AppState>,
    caller: AuthzCaller,
    ctx: RequestContext,
    Body(body): Body<Evaluations>,
) -> Result<Json<DecisionsView>, Problem> {
    if body.evaluations.is_empty() || body.evaluations.len() > MAX_BATCH {
        return Err(Problem::validation(format!(
            "evaluations must hold 1 to {MAX_BATCH} items ({} given)",
            body.evaluations.len()
        ))
        .with("field", "evaluations"));
    }
    let mut complete = Vec::with_capacity(body.evaluations.len());
    for (i, p) in body.evaluations.into_iter().enumerate() {
        let missing = |what: &str| {
            Problem::validation(format!(
                "evaluation {i} has no {what}, and no default is given"
            ))
            .with("field", format!("evaluations[{i}].{what}"))
        };
        complete.push(Evaluation {
            subject: p
                .subject
                .or_else(|| body.subject.clone())
                .ok_or_else(|| missing("subject"))?,
            resource: p
                .resource
                .or_else(|| body.resource.clone())
                .ok_or_else(|| missing("resource"))?,
            action: p
                .action
                .or_else(|| body.action.clone())
                .ok_or_else(|| missing("action"))?,
            context: p.context.unwrap_or_else(|| body.context.clone()),
        });
    }
    let (policies, policy) = active_policy(&state, caller.organization_id).await?;
    let mut evaluations = Vec::with_capacity(complete.len());
    for e in complete {
        evaluations.push(
            evaluate(
                &state,
                &caller,
                &ctx,
                policies.as_deref(),
                policy.as_ref(),
                e,
            )
            .await?,
        );
    }
    Ok(Json(DecisionsView { evaluations }))
}
