//! `/scim/v2/Groups`: the organization's groups as SCIM Group resources,
//! their members users and groups. A change of members is a series of the
//! group commands (add, remove, nest, unnest), so a cycle is refused as in
//! the admin API.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use projections::users::GroupRow;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::filter::{Schema, member};
use super::{ListQuery, ScimCaller, ScimError, if_match_tag, json_body, list_response, resource};
use crate::context::RequestContext;
use crate::problem::Problem;
use crate::state::AppState;

pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

pub const SCHEMA: Schema = Schema {
    core_urn: GROUP_URN,
    attributes: &[
        ("id", &[]),
        ("externalId", &[]),
        ("displayName", &[]),
        ("members", &["value", "display", "type", "$ref"]),
        (
            "meta",
            &[
                "resourceType",
                "created",
                "lastModified",
                "location",
                "version",
            ],
        ),
    ],
    extension: None,
    required: &["displayName"],
};

/// The members of a group: `(id, "User" | "Group")`.
async fn members(state: &AppState, group: &str) -> Result<Vec<(String, &'static str)>, ScimError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = projections::users::group_members(&state.read_db, group, after.as_deref(), 1000)
            .await
            .map_err(|e| ScimError::internal(e.to_string()))?;
        for m in &page {
            out.push((
                m.member_id.clone(),
                if m.member_type == "group" {
                    "Group"
                } else {
                    "User"
                },
            ));
        }
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.member_id.clone()),
            _ => break,
        }
    }
    Ok(out)
}

/// A group's version: its stream's revision and a digest of its members.
/// A group nested in it is recorded in the organization's tree of groups,
/// not in its own stream, so the revision alone would stay the same when a
/// nested group comes or goes (RFC 7644 §3.14: the version changes with
/// the resource).
fn version(revision: i64, members: &[(String, &str)]) -> String {
    let mut listed: Vec<String> = members
        .iter()
        .map(|(id, kind)| format!("{kind}:{id}"))
        .collect();
    listed.sort();
    let digest = Sha256::digest(listed.join(",").as_bytes());
    format!("W/\"{revision}-{}\"", hex::encode(&digest[..6]))
}

/// The revision a named version (`If-Match`, a bulk operation's
/// `version`) stands for if it is the group's current one (`None` when
/// none is named or `*`); 412 when it is not.
fn expected(named: Option<&str>, current: &Value) -> Result<Option<u64>, ScimError> {
    let Some(named) = named.filter(|n| n.trim() != "*") else {
        return Ok(None);
    };
    let version = current["meta"]["version"].as_str().unwrap_or_default();
    if !super::same_version(named, version) {
        return Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            "the group changed since that version",
        ));
    }
    Ok(version
        .trim_start_matches("W/\"")
        .split('-')
        .next()
        .and_then(|r| r.parse().ok()))
}

pub async fn group_doc(state: &AppState, base: &str, g: &GroupRow) -> Result<Value, ScimError> {
    let listed = members(state, &g.id).await?;
    let version = version(g.revision, &listed);
    let members: Vec<Value> = listed
        .into_iter()
        .map(|(id, kind)| {
            json!({
                "value": id,
                "type": kind,
                "$ref": format!("{base}/{}s/{id}", kind),
            })
        })
        .collect();
    let mut doc = json!({
        "schemas": [GROUP_URN],
        "id": g.id,
        "displayName": g.name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": g.created_at,
            "lastModified": g.updated_at,
            "location": format!("{base}/Groups/{}", g.id),
            "version": version,
        },
    });
    if let (Some(x), Some(o)) = (&g.external_id, doc.as_object_mut()) {
        o.insert("externalId".into(), json!(x));
    }
    Ok(doc)
}

/// The `externalId` a document gives, if any (a string).
fn external_id(doc: &Value) -> Result<Option<String>, ScimError> {
    match member(doc, "externalId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::bad_request(
            "invalidValue",
            "externalId must be a string",
        )),
    }
}

async fn load(state: &AppState, caller: &ScimCaller, id: Uuid) -> Result<GroupRow, ScimError> {
    projections::users::get_group(&state.read_db, &id.to_string())
        .await
        .map_err(|e| ScimError::internal(e.to_string()))?
        .filter(|g| g.organization_id == caller.organization_id.to_string())
        .ok_or_else(|| ScimError::not_found("group"))
}

fn failure(e: commands::group::GroupFailure) -> ScimError {
    ScimError::from(Problem::from(e))
}

/// The members a document names: ids, each a user or a group of the
/// organization (which, is looked up). One that is neither is refused here,
/// before anything is written.
async fn wanted_members(
    state: &AppState,
    organization: Uuid,
    doc: &Value,
) -> Result<BTreeSet<(String, bool)>, ScimError> {
    let mut out = BTreeSet::new();
    let Some(items) = member(doc, "members") else {
        return Ok(out);
    };
    let items = items
        .as_array()
        .ok_or_else(|| ScimError::bad_request("invalidValue", "members must be a list"))?;
    let internal = |e: projections::ProjectionError| ScimError::internal(e.to_string());
    let ours = organization.to_string();
    for m in items {
        let value = member(m, "value")
            .and_then(Value::as_str)
            .ok_or_else(|| ScimError::bad_request("invalidValue", "each member needs a value"))?;
        let id = Uuid::parse_str(value).map_err(|_| {
            ScimError::bad_request("invalidValue", format!("member `{value}` is not an id"))
        })?;
        let id = id.to_string();
        let kind = member(m, "type").and_then(Value::as_str);
        let group = match kind {
            Some(t) if t.eq_ignore_ascii_case("user") => None,
            _ => projections::users::get_group(&state.read_db, &id)
                .await
                .map_err(internal)?
                .filter(|g| g.organization_id == ours),
        };
        let is_group = group.is_some();
        let known = is_group
            || (!kind.is_some_and(|t| t.eq_ignore_ascii_case("group"))
                && projections::users::get_user(&state.read_db, &id)
                    .await
                    .map_err(internal)?
                    .is_some_and(|u| u.organization_id == ours));
        if !known {
            return Err(ScimError::bad_request(
                "invalidValue",
                format!("member `{value}` is no user or group of this organization"),
            ));
        }
        out.insert((id, is_group));
    }
    Ok(out)
}

fn display_name(doc: &Value) -> Result<String, ScimError> {
    member(doc, "displayName")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ScimError::bad_request("invalidValue", "displayName is required"))
}

pub async fn create_doc(
    state: &AppState,
    caller: &ScimCaller,
    ctx: &RequestContext,
    doc: Value,
) -> Result<Value, ScimError> {
    let name = display_name(&doc)?;
    let wanted = wanted_members(state, caller.organization_id, &doc).await?;
    let id = Uuid::now_v7();
    let meta = ctx.metadata(caller.actor(), Some(caller.organization_id));
    let replacement = replacement(name, external_id(&doc)?, &wanted)?;
    let out = commands::group::create(
        &state.bus,
        id,
        caller.organization_id,
        replacement.name.clone(),
        String::new(),
        replacement.external_id.clone(),
        &meta,
    )
    .await
    .map_err(failure)?;
    // The members in two appends, whatever their number (a new group is in
    // no other, so nesting others in it closes no cycle).
    let out = match out.revision {
        Some(at) if !wanted.is_empty() => {
            commands::group::replace(&state.bus, id, Some(at), replacement, &meta)
                .await
                .map_err(failure)?
        }
        _ => out,
    };
    crate::admin::settle(state, &out).await?;
    group_doc(state, &caller.base, &load(state, caller, id).await?).await
}

/// The group a document describes: its name, external id and members.
fn replacement(
    name: String,
    external_id: Option<String>,
    wanted: &BTreeSet<(String, bool)>,
) -> Result<commands::group::GroupReplacement, ScimError> {
    let ids = |groups: bool| -> Result<BTreeSet<Uuid>, ScimError> {
        wanted
            .iter()
            .filter(|(_, is_group)| *is_group == groups)
            .map(|(id, _)| Uuid::parse_str(id).map_err(|e| ScimError::internal(e.to_string())))
            .collect()
    };
    Ok(commands::group::GroupReplacement {
        name,
        external_id,
        users: ids(false)?,
        groups: ids(true)?,
    })
}

pub async fn replace_doc(
    state: &AppState,
    caller: &ScimCaller,
    ctx: &RequestContext,
    id: Uuid,
    named: Option<&str>,
    doc: Value,
) -> Result<Value, ScimError> {
    let current = group_doc(state, &caller.base, &load(state, caller, id).await?).await?;
    let version = expected(named, &current)?;
    let name = display_name(&doc)?;
    let wanted = wanted_members(state, caller.organization_id, &doc).await?;
    let meta = ctx.metadata(caller.actor(), Some(caller.organization_id));
    // A replacement without an external id clears it (RFC 7644 §3.5.1).
    let replacement = replacement(name, external_id(&doc)?, &wanted)?;
    let out = commands::group::replace(&state.bus, id, version, replacement, &meta)
        .await
        .map_err(failure)?;
    crate::admin::settle(state, &out).await?;
    group_doc(state, &caller.base, &load(state, caller, id).await?).await
}

pub async fn patch_doc(
    state: &AppState,
    caller: &ScimCaller,
    ctx: &RequestContext,
    id: Uuid,
    named: Option<&str>,
    body: Value,
) -> Result<Value, ScimError> {
    let ops = super::patch_ops(&body)?;
    let mut doc = group_doc(state, &caller.base, &load(state, caller, id).await?).await?;
    expected(named, &doc)?;
    // The operations apply to this version: a change in between is a
    // conflict, not something to overwrite.
    let current = doc["meta"]["version"].as_str().map(str::to_owned);
    for (op, path, value) in ops {
        super::filter::apply(&mut doc, op, path.as_deref(), value, &SCHEMA)?;
    }
    replace_doc(state, caller, ctx, id, current.as_deref(), doc).await
}

pub async fn delete_doc(
    state: &AppState,
    caller: &ScimCaller,
    ctx: &RequestContext,
    id: Uuid,
    named: Option<&str>,
) -> Result<(), ScimError> {
    let current = group_doc(state, &caller.base, &load(state, caller, id).await?).await?;
    let version = expected(named, &current)?;
    let meta = ctx.metadata(caller.actor(), Some(caller.organization_id));
    let out = commands::group::delete(&state.bus, id, version, &meta)
        .await
        .map_err(failure)?;
    crate::admin::settle(state, &out)
        .await
        .map_err(ScimError::from)
}

type Rejection<T> = Result<T, axum::extract::rejection::QueryRejection>;
type PathRejection = axum::extract::rejection::PathRejection;

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ScimError> {
    let Path(raw) = path.map_err(|_| ScimError::not_found("group"))?;
    Uuid::parse_str(&raw).map_err(|_| ScimError::not_found("group"))
}

pub async fn list(
    State(state): State<AppState>,
    caller: ScimCaller,
    query: Rejection<Query<ListQuery>>,
) -> Result<Response, ScimError> {
    let Query(q) = query.map_err(|e| ScimError::bad_request("invalidValue", e.body_text()))?;
    list_docs(&state, &caller, &q).await
}

/// `POST /Groups/.search`: a list whose parameters come in the body.
pub async fn search(
    State(state): State<AppState>,
    caller: ScimCaller,
    super::ScimBody(body): super::ScimBody,
) -> Result<Response, ScimError> {
    list_docs(&state, &caller, &super::search_query(&body)?).await
}

async fn list_docs(
    state: &AppState,
    caller: &ScimCaller,
    q: &ListQuery,
) -> Result<Response, ScimError> {
    let org = caller.organization_id.to_string();
    let mut docs = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page =
            projections::users::list_groups(&state.read_db, Some(&org), after.as_deref(), 1000)
                .await
                .map_err(|e| ScimError::internal(e.to_string()))?;
        for g in &page {
            docs.push(group_doc(state, &caller.base, g).await?);
        }
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.id.clone()),
            _ => break,
        }
    }
    Ok(super::scim_json(
        StatusCode::OK,
        list_response(docs, q, &SCHEMA)?,
    ))
}

pub async fn show(
    State(state): State<AppState>,
    caller: ScimCaller,
    headers: axum::http::HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Rejection<Query<ListQuery>>,
) -> Result<Response, ScimError> {
    let id = path_id(path)?;
    let narrowing = super::Narrowing::of(query)?;
    let doc = group_doc(&state, &caller.base, &load(&state, &caller, id).await?).await?;
    Ok(super::resource_unless_unchanged(
        &headers,
        narrowing.apply(doc),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    caller: ScimCaller,
    ctx: RequestContext,
    query: Rejection<Query<ListQuery>>,
    super::ScimBody(body): super::ScimBody,
) -> Result<Response, ScimError> {
    let narrowing = super::Narrowing::of(query)?;
    let doc = create_doc(&state, &caller, &ctx, json_body(&body)?).await?;
    Ok(resource(StatusCode::CREATED, narrowing.apply(doc)))
}

pub async fn replace(
    State(state): State<AppState>,
    caller: ScimCaller,
    ctx: RequestContext,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Rejection<Query<ListQuery>>,
    super::ScimBody(body): super::ScimBody,
) -> Result<Response, ScimError> {
    let id = path_id(path)?;
    let narrowing = super::Narrowing::of(query)?;
    let named = if_match_tag(&headers)?;
    let doc = replace_doc(
        &state,
        &caller,
        &ctx,
        id,
        named.as_deref(),
        json_body(&body)?,
    )
    .await?;
    Ok(resource(StatusCode::OK, narrowing.apply(doc)))
}

pub async fn patch(
    State(state): State<AppState>,
    caller: ScimCaller,
    ctx: RequestContext,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Rejection<Query<ListQuery>>,
    super::ScimBody(body): super::ScimBody,
) -> Result<Response, ScimError> {
    let id = path_id(path)?;
    let narrowing = super::Narrowing::of(query)?;
    let named = if_match_tag(&headers)?;
    let doc = patch_doc(
        &state,
        &caller,
        &ctx,
        id,
        named.as_deref(),
        json_body(&body)?,
    )
    .await?;
    Ok(resource(StatusCode::OK, narrowing.apply(doc)))
}

pub async fn remove(
    State(state): State<AppState>,
    caller: ScimCaller,
    ctx: RequestContext,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ScimError> {
    let id = path_id(path)?;
    let named = if_match_tag(&headers)?;
    delete_doc(&state, &caller, &ctx, id, named.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
