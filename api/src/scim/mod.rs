//! SCIM 2.0 (RFC 7643, RFC 7644) at `/scim/v2`: users and groups of the
//! caller's organization, provisioned by another system with a client's
//! bearer token carrying the `idp:scim` scope. Every write goes through the
//! same commands as the admin API, so uniqueness, group cycles, personal
//! data encryption and the audit trail hold here too.

mod filter;
mod groups;
mod users;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::authorization::{BearerError, bearer_with_scope};
use crate::context::RequestContext;
use crate::problem::Problem;
use crate::state::AppState;

pub use filter::Op;

/// The scope a provisioning client needs.
pub const SCIM_SCOPE: &str = "idp:scim";
pub const CONTENT_TYPE: &str = "application/scim+json";
const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// The most resources one page answers.
pub const MAX_RESULTS: usize = 1000;
/// The most operations one bulk request carries.
pub const MAX_OPERATIONS: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{name}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{urn}", get(schema))
        .route("/scim/v2/Users", get(users::list).post(users::create))
        .route(
            "/scim/v2/Users/{id}",
            get(users::show)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::remove),
        )
        .route("/scim/v2/Groups", get(groups::list).post(groups::create))
        .route(
            "/scim/v2/Groups/{id}",
            get(groups::show)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::remove),
        )
        .route("/scim/v2/Users/.search", post(users::search))
        .route("/scim/v2/Groups/.search", post(groups::search))
        .route("/scim/v2/Bulk", post(bulk))
        .route("/scim/v2/Me", axum::routing::any(me))
        .route("/scim/v2/{*rest}", axum::routing::any(no_endpoint))
        .method_not_allowed_fallback(method_not_allowed)
}

/// A method an endpoint does not take: 405 in SCIM's format (the router
/// adds the `Allow` header).
async fn method_not_allowed() -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "this SCIM endpoint does not take that method",
    )
}

/// A path under `/scim/v2` that names no endpoint: 404 in SCIM's format.
async fn no_endpoint() -> ScimError {
    ScimError::new(
        StatusCode::NOT_FOUND,
        None,
        "no SCIM endpoint has this path",
    )
}

/// `/Me` (RFC 7644 §3.11): a provisioning client is no user of its own.
async fn me() -> ScimError {
    ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "/Me is not offered: a provisioning client is not a user",
    )
}

const SEARCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// The query of a `POST …/.search` body (RFC 7644 §3.4.3): the parameters
/// of a list, `attributes` and `excludedAttributes` as lists.
pub fn search_query(body: &[u8]) -> Result<ListQuery, ScimError> {
    let body = json_body(body)?;
    let schemas_ok = filter::member(&body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(SEARCH_URN)));
    if !schemas_ok {
        return Err(ScimError::bad_request(
            "invalidSyntax",
            format!("a search request's schemas must name {SEARCH_URN}"),
        ));
    }
    let invalid = |name: &str, what: &str| {
        ScimError::bad_request("invalidValue", format!("`{name}` must be {what}"))
    };
    let text = |name: &str| -> Result<Option<String>, ScimError> {
        match filter::member(&body, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(name, "a string")),
        }
    };
    let number = |name: &str| -> Result<Option<i64>, ScimError> {
        match filter::member(&body, name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| invalid(name, "an integer")),
        }
    };
    let list = |name: &str| -> Result<Option<String>, ScimError> {
        match filter::member(&body, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .ok_or_else(|| invalid(name, "a list of attribute paths"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|names| Some(names.join(","))),
            Some(_) => Err(invalid(name, "a list of attribute paths")),
        }
    };
    Ok(ListQuery {
        filter: text("filter")?,
        start_index: number("startIndex")?,
        count: number("count")?,
        sort_by: text("sortBy")?,
        sort_order: text("sortOrder")?,
        attributes: list("attributes")?,
        excluded_attributes: list("excludedAttributes")?,
    })
}

/// A single resource, or 304 when `If-None-Match` names its version
/// (RFC 7644 §3.14).
pub fn resource_unless_unchanged(headers: &HeaderMap, doc: Value) -> Response {
    let version = doc["meta"]["version"].as_str().unwrap_or_default();
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| !version.is_empty() && same_version(tag, version));
    if !unchanged {
        return resource(StatusCode::OK, doc);
    }
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(version) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// An error as RFC 7644 §3.12 says: a status, a `scimType` where one
/// applies, a detail.
#[derive(Debug, Clone)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
    /// The `WWW-Authenticate` challenge of a 401 or 403 (RFC 6750 §3).
    pub challenge: Option<String>,
}

impl ScimError {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
            challenge: None,
        }
    }

    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, format!("no such {what}"))
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, detail)
    }

    fn body(&self) -> Value {
        let mut v = json!({
            "schemas": [ERROR_URN],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(o)) = (self.scim_type, v.as_object_mut()) {
            o.insert("scimType".into(), json!(t));
        }
        v
    }
}

impl From<Problem> for ScimError {
    /// The admin API's refusal in SCIM's words.
    fn from(p: Problem) -> Self {
        let body = p.body();
        let detail = body["detail"]
            .as_str()
            .or(body["title"].as_str())
            .unwrap_or("refused")
            .to_owned();
        let slug = body["type"].as_str().unwrap_or_default();
        let scim_type = match p.status() {
            StatusCode::CONFLICT => Some("uniqueness"),
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => Some("invalidValue"),
            _ => None,
        };
        let status = match p.status() {
            // SCIM knows 400 for a value it refuses.
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        let mut e = Self::new(status, scim_type, detail);
        if slug.ends_with("group-cycle") {
            // A value SCIM cannot accept, not a clash with another resource.
            e.status = StatusCode::BAD_REQUEST;
            e.scim_type = Some("invalidValue");
        }
        e
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut resp = scim_json(self.status, self.body());
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        resp
    }
}

/// A SCIM document with its content type.
pub fn scim_json(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

/// A resource with its `ETag` (and `Location` when created).
pub fn resource(status: StatusCode, doc: Value) -> Response {
    let version = doc["meta"]["version"].as_str().map(str::to_owned);
    let location = doc["meta"]["location"].as_str().map(str::to_owned);
    let mut resp = scim_json(status, doc);
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok())
    {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    resp
}

/// The version a resource's ETag names: `W/"12"` or `"12"`.
pub fn etag(revision: i64) -> String {
    format!("W/\"{revision}\"")
}

/// The revision `If-Match` names, if any (`*` names none).
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ScimError> {
    if_match_tag(headers)?.map_or(Ok(None), |v| parse_version(&v))
}

/// The version `If-Match` names as sent, if any.
pub fn if_match_tag(headers: &HeaderMap) -> Result<Option<String>, ScimError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| ScimError::bad_request("invalidValue", "If-Match is not text"))?
        .trim();
    Ok(Some(v.to_owned()))
}

/// Whether the version a client names (`W/"…"` or `"…"`) is `current`,
/// compared weakly (RFC 7232 §2.3.2); `*` is any.
pub fn same_version(named: &str, current: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    named.trim() == "*" || opaque(named) == opaque(current)
}

fn parse_version(v: &str) -> Result<Option<u64>, ScimError> {
    if v == "*" {
        return Ok(None);
    }
    v.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u64>()
        .map(Some)
        .map_err(|_| {
            ScimError::new(
                StatusCode::PRECONDITION_FAILED,
                None,
                "the version named in If-Match is not the resource's",
            )
        })
}

/// A provisioning client: a token of this server with `idp:scim`.
pub struct ScimCaller {
    pub client_id: Uuid,
    pub organization_id: Uuid,
    /// The issuer, for `meta.location`.
    pub base: String,
}

impl ScimCaller {
    pub fn actor(&self) -> domain::Actor {
        domain::Actor::client(self.client_id.to_string())
    }
}

impl FromRequestParts<AppState> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ScimError> {
        let valid = bearer_with_scope(&parts.headers, state, SCIM_SCOPE)
            .await
            .map_err(|e| {
                let (status, challenge) = match e {
                    BearerError::MissingScope(scope) => (
                        StatusCode::FORBIDDEN,
                        format!(
                            "Bearer realm=\"idp\", error=\"insufficient_scope\", scope=\"{scope}\""
                        ),
                    ),
                    BearerError::Missing(_) => {
                        (StatusCode::UNAUTHORIZED, "Bearer realm=\"idp\"".to_owned())
                    }
                    _ => (
                        StatusCode::UNAUTHORIZED,
                        "Bearer realm=\"idp\", error=\"invalid_token\"".to_owned(),
                    ),
                };
                let mut refused = ScimError::new(status, None, e.to_string());
                refused.challenge = Some(challenge);
                refused
            })?;
        Ok(Self {
            client_id: valid.client_id,
            organization_id: valid.client.organization_id,
            base: format!("{}/scim/v2", state.tokens.issuer),
        })
    }
}

/// `startIndex`, `count`, `filter`, `sortBy`, `sortOrder`, `attributes`,
/// `excludedAttributes` (from the query, or a `.search` body).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

/// What `attributes` and `excludedAttributes` keep of the resource an
/// answer returns (RFC 7644 §3.9: every answer with a resource, writes
/// too). Read before anything is written, so a bad one writes nothing.
pub struct Narrowing {
    attributes: Vec<scim_v2::filter::AttrPath>,
    excluded: Vec<scim_v2::filter::AttrPath>,
}

impl Narrowing {
    pub fn of(
        query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    ) -> Result<Self, ScimError> {
        let axum::extract::Query(q) =
            query.map_err(|e| ScimError::bad_request("invalidValue", e.body_text()))?;
        Ok(Self {
            attributes: paths(q.attributes.as_deref())?,
            excluded: paths(q.excluded_attributes.as_deref())?,
        })
    }

    pub fn apply(&self, mut doc: Value) -> Value {
        filter::project(&mut doc, &self.attributes, &self.excluded);
        doc
    }
}

fn paths(list: Option<&str>) -> Result<Vec<scim_v2::filter::AttrPath>, ScimError> {
    list.map(|l| {
        l.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(filter::attr_path)
            .collect()
    })
    .transpose()
    .map(Option::unwrap_or_default)
}

/// Filters, sorts, pages and projects `docs` into a list response.
pub fn list_response(
    docs: Vec<Value>,
    q: &ListQuery,
    schema: &filter::Schema,
) -> Result<Value, ScimError> {
    let (total, start, page) = select(docs, q, schema)?;
    wrap(total, start, page, q)
}

/// The page of `docs` the query asks for, filtered and sorted, with the
/// total that passed the filter and the start index.
pub fn select(
    docs: Vec<Value>,
    q: &ListQuery,
    schema: &filter::Schema,
) -> Result<(usize, usize, Vec<Value>), ScimError> {
    let f = q
        .filter
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .map(|f| filter::parse(f, schema))
        .transpose()?;
    let mut docs: Vec<Value> = match &f {
        Some(f) => docs.into_iter().filter(|d| filter::matches(f, d)).collect(),
        None => docs,
    };
    if let Some(by) = q.sort_by.as_deref() {
        let by = filter::attr_path(by)?;
        schema.check(&by)?;
        let descending = q
            .sort_order
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case("descending"));
        let mut keyed: Vec<(Option<String>, Value)> = docs
            .into_iter()
            .map(|d| (filter::sort_key(&d, &by), d))
            .collect();
        // Resources without a value last when ascending, first when
        // descending (RFC 7644 §3.4.2.3); ties keep their order.
        keyed.sort_by(|(a, _), (b, _)| match (a, b, descending) {
            (Some(a), Some(b), false) => a.cmp(b),
            (Some(a), Some(b), true) => b.cmp(a),
            (a, b, false) => b.is_some().cmp(&a.is_some()),
            (a, b, true) => a.is_some().cmp(&b.is_some()),
        });
        docs = keyed.into_iter().map(|(_, d)| d).collect();
    }
    let total = docs.len();
    let start = q.start_index.unwrap_or(1).max(1) as usize;
    let count = q.count.unwrap_or(100).clamp(0, MAX_RESULTS as i64) as usize;
    let page = docs.into_iter().skip(start - 1).take(count).collect();
    Ok((total, start, page))
}

/// A list response of a selected page, projected as the query asks.
pub fn wrap(
    total: usize,
    start: usize,
    page: Vec<Value>,
    q: &ListQuery,
) -> Result<Value, ScimError> {
    let attributes = paths(q.attributes.as_deref())?;
    let excluded = paths(q.excluded_attributes.as_deref())?;
    let page: Vec<Value> = page
        .into_iter()
        .map(|mut d| {
            filter::project(&mut d, &attributes, &excluded);
            d
        })
        .collect();
    Ok(json!({
        "schemas": [LIST_URN],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": page.len(),
        "Resources": page,
    }))
}

/// One PATCH operation: what, where (a path), with what value.
pub type PatchOperation = (Op, Option<String>, Option<Value>);

/// A PATCH request's operations, checked.
pub fn patch_ops(body: &Value) -> Result<Vec<PatchOperation>, ScimError> {
    let schemas_ok = filter::member(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(PATCH_URN)));
    if !schemas_ok {
        return Err(ScimError::bad_request(
            "invalidSyntax",
            format!("a PATCH request's schemas must name {PATCH_URN}"),
        ));
    }
    let ops = filter::member(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad_request("invalidSyntax", "Operations is required"))?;
    ops.iter()
        .map(|o| {
            let op = filter::member(o, "op")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ScimError::bad_request("invalidSyntax", "each operation needs an op")
                })?;
            Ok((
                Op::parse(op)?,
                filter::member(o, "path")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                filter::member(o, "value").cloned(),
            ))
        })
        .collect()
}

async fn service_provider_config(State(state): State<AppState>) -> Response {
    scim_json(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": format!("{}/openapi.json", state.tokens.issuer),
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": MAX_OPERATIONS, "maxPayloadSize": crate::state::MAX_BODY_BYTES},
            "filter": {"supported": true, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": true},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "An access token of this server's token endpoint with the idp:scim scope (client credentials)",
                "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
                "primary": true,
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{}/scim/v2/ServiceProviderConfig", state.tokens.issuer)},
        }),
    )
}

fn resource_type_docs(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users",
            "description": "A person of the organization",
            "schema": users::USER_URN,
            "schemaExtensions": [{"schema": users::ENTERPRISE_URN, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups",
            "description": "A group of users and groups",
            "schema": groups::GROUP_URN,
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

/// A discovery list asked to filter: 403, as RFC 7644 §4 says (its query
/// parameters are ignored, and a filter would look answered).
fn refuse_filter(query: Option<&str>) -> Result<(), ScimError> {
    let filtered = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, _)| k.eq_ignore_ascii_case("filter"));
    if filtered {
        return Err(ScimError::new(
            StatusCode::FORBIDDEN,
            None,
            "this discovery endpoint takes no filter",
        ));
    }
    Ok(())
}

async fn resource_types(
    State(state): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ScimError> {
    refuse_filter(query.as_deref())?;
    let docs = resource_type_docs(&format!("{}/scim/v2", state.tokens.issuer));
    Ok(scim_json(
        StatusCode::OK,
        json!({"schemas": [LIST_URN], "totalResults": docs.len(), "startIndex": 1, "itemsPerPage": docs.len(), "Resources": docs}),
    ))
}

async fn resource_type(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    resource_type_docs(&format!("{}/scim/v2", state.tokens.issuer))
        .into_iter()
        .find(|d| d["id"] == name.as_str())
        .map_or_else(
            || ScimError::not_found("resource type").into_response(),
            |d| scim_json(StatusCode::OK, d),
        )
}

/// Whether a user must carry the attribute (RFC 7643 §4.1.1).
/// [`schema_docs`] marks the group's `displayName` (§4.2) itself.
fn required(name: &str) -> bool {
    users::SCHEMA.required.contains(&name)
}

/// An attribute definition of `/Schemas`.
fn attribute(
    name: &str,
    kind: &str,
    multi: bool,
    sub: Vec<Value>,
    mutability: &str,
    uniqueness: &str,
) -> Value {
    let mut a = json!({
        "name": name, "type": kind, "multiValued": multi, "required": required(name),
        "caseExact": name == "id" || name == "externalId", "mutability": mutability,
        "returned": if name == "password" { "never" } else { "default" }, "uniqueness": uniqueness,
        "description": name,
    });
    if !sub.is_empty()
        && let Some(o) = a.as_object_mut()
    {
        o.insert("subAttributes".into(), json!(sub));
    }
    a
}

fn required_attribute(mut a: Value) -> Value {
    if let Some(o) = a.as_object_mut() {
        o.insert("required".into(), json!(true));
    }
    a
}

/// A `reference` sub-attribute to resources of `types`.
fn reference(name: &str, types: &[&str]) -> Value {
    let mut a = attribute(name, "reference", false, vec![], "readOnly", "none");
    if let Some(o) = a.as_object_mut() {
        o.insert("referenceTypes".into(), json!(types));
    }
    a
}

/// A `reference` attribute to an outside resource, readable and writable.
fn external_reference(name: &str) -> Value {
    let mut a = attribute(name, "reference", false, vec![], "readWrite", "none");
    if let Some(o) = a.as_object_mut() {
        o.insert("referenceTypes".into(), json!(["external"]));
    }
    a
}

fn schema_docs(base: &str) -> Vec<Value> {
    let s = |n: &str| attribute(n, "string", false, vec![], "readWrite", "none");
    let multi = |n: &str| {
        attribute(
            n,
            "complex",
            true,
            vec![
                s("value"),
                s("display"),
                s("type"),
                attribute("primary", "boolean", false, vec![], "readWrite", "none"),
            ],
            "readWrite",
            "none",
        )
    };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": users::USER_URN, "name": "User", "description": "User Account",
        "attributes": [
            attribute("userName", "string", false, vec![], "readWrite", "server"),
            attribute("name", "complex", false, vec![s("formatted"), s("givenName"), s("familyName"), s("middleName")], "readWrite", "none"),
            s("displayName"), s("nickName"), external_reference("profileUrl"),
            s("title"), s("userType"), s("preferredLanguage"), s("locale"), s("timezone"),
            attribute("active", "boolean", false, vec![], "readWrite", "none"),
            attribute("password", "string", false, vec![], "writeOnly", "none"),
            multi("emails"), multi("phoneNumbers"), multi("ims"), multi("photos"),
            attribute("addresses", "complex", true, vec![s("formatted"), s("streetAddress"), s("locality"), s("region"), s("postalCode"), s("country"), s("type"), attribute("primary", "boolean", false, vec![], "readWrite", "none")], "readWrite", "none"),
            attribute("groups", "complex", true, vec![s("value"), reference("$ref", &["Group"]), s("display"), s("type")], "readOnly", "none"),
            s("externalId"),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{}", users::USER_URN)},
    });
    let enterprise = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": users::ENTERPRISE_URN, "name": "EnterpriseUser", "description": "Enterprise User",
        "attributes": [
            s("employeeNumber"), s("costCenter"), s("organization"), s("division"), s("department"),
            attribute("manager", "complex", false, vec![s("value"), s("displayName")], "readWrite", "none"),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{}", users::ENTERPRISE_URN)},
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": groups::GROUP_URN, "name": "Group", "description": "Group",
        "attributes": [
            required_attribute(attribute("displayName", "string", false, vec![], "readWrite", "none")),
            attribute("members", "complex", true, vec![s("value"), reference("$ref", &["User", "Group"]), s("type")], "readWrite", "none"),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{}", groups::GROUP_URN)},
    });
    vec![user, enterprise, group]
}

async fn schemas(
    State(state): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ScimError> {
    refuse_filter(query.as_deref())?;
    let docs = schema_docs(&format!("{}/scim/v2", state.tokens.issuer));
    Ok(scim_json(
        StatusCode::OK,
        json!({"schemas": [LIST_URN], "totalResults": docs.len(), "startIndex": 1, "itemsPerPage": docs.len(), "Resources": docs}),
    ))
}

async fn schema(
    State(state): State<AppState>,
    axum::extract::Path(urn): axum::extract::Path<String>,
) -> Response {
    schema_docs(&format!("{}/scim/v2", state.tokens.issuer))
        .into_iter()
        .find(|d| d["id"] == urn.as_str())
        .map_or_else(
            || ScimError::not_found("schema").into_response(),
            |d| scim_json(StatusCode::OK, d),
        )
}

/// A request's body, refused in SCIM's own format: over the size the
/// service provider configuration names, 413 saying so (RFC 7644 §3.7.4).
pub struct ScimBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ScimError> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ScimError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    format!(
                        "the body is larger than maxPayloadSize ({} bytes)",
                        crate::state::MAX_BODY_BYTES
                    ),
                ),
                status => ScimError::new(status, Some("invalidSyntax"), e.body_text()),
            })
    }
}

/// Reads a JSON body whatever its content type (`application/scim+json`
/// or `application/json`).
pub fn json_body(bytes: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ScimError::bad_request("invalidSyntax", format!("the body is not JSON: {e}")))
}

/// The resource type a bulk operation's path names (`/Groups/…` →
/// `Groups`).
fn kind_of(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

/// One bulk operation's answer.
/// `location`: the resource an operation other than a POST named (RFC
/// 7644 §3.7.3: every answer but a failed POST's carries one).
fn bulk_result(
    method: &str,
    bulk_id: Option<&str>,
    location: Option<String>,
    outcome: Result<(StatusCode, Option<Value>), ScimError>,
) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("method".into(), json!(method));
    if let Some(id) = bulk_id {
        o.insert("bulkId".into(), json!(id));
    }
    if let Some(l) = location {
        o.insert("location".into(), json!(l));
    }
    match outcome {
        Ok((status, doc)) => {
            o.insert("status".into(), json!(status.as_u16().to_string()));
            if let Some(doc) = doc {
                if let Some(l) = doc["meta"]["location"].as_str() {
                    o.insert("location".into(), json!(l));
                }
                if let Some(v) = doc["meta"]["version"].as_str() {
                    o.insert("version".into(), json!(v));
                }
            }
        }
        Err(e) => {
            o.insert("status".into(), json!(e.status.as_u16().to_string()));
            o.insert("response".into(), e.body());
        }
    }
    Value::Object(o)
}

/// Replaces `bulkId:x` references to resources created earlier in the
/// request with their ids.
fn resolve(value: &mut Value, created: &[(String, String)]) -> Result<(), ScimError> {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:") {
                let found = created.iter().find(|(b, _)| b == id).ok_or_else(|| {
                    ScimError::new(
                        StatusCode::CONFLICT,
                        Some("invalidValue"),
                        format!("bulkId `{id}` names no resource created before this operation"),
                    )
                })?;
                *s = found.1.clone();
            }
        }
        Value::Array(a) => a.iter_mut().try_for_each(|v| resolve(v, created))?,
        Value::Object(o) => o.values_mut().try_for_each(|v| resolve(v, created))?,
        _ => {}
    }
    Ok(())
}

/// `POST /Bulk`: the operations in order, a `bulkId` of a creation usable
/// as `bulkId:…` by those after it; stops once `failOnErrors` have failed.
async fn bulk(
    State(state): State<AppState>,
    caller: ScimCaller,
    ctx: RequestContext,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let body = json_body(&body)?;
    let schemas_ok = filter::member(&body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(BULK_REQUEST_URN)));
    if !schemas_ok {
        return Err(ScimError::bad_request(
            "invalidSyntax",
            format!("schemas must name {BULK_REQUEST_URN}"),
        ));
    }
    let ops = filter::member(&body, "Operations")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| ScimError::bad_request("invalidSyntax", "Operations is required"))?;
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("a bulk request carries at most {MAX_OPERATIONS} operations"),
        ));
    }
    let fail_on = filter::member(&body, "failOnErrors").and_then(Value::as_u64);
    let mut created: Vec<(String, String)> = Vec::new();
    let mut results = Vec::new();
    let mut errors = 0u64;
    for op in ops {
        if fail_on.is_some_and(|n| errors >= n) {
            break;
        }
        let method = filter::member(&op, "method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_uppercase();
        let bulk_id = filter::member(&op, "bulkId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let path = filter::member(&op, "path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let tag = filter::member(&op, "version")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let version = tag.as_deref().map(parse_version).transpose();
        let mut data = filter::member(&op, "data").cloned().unwrap_or(Value::Null);
        let mut location = None;
        let outcome = async {
            let version = if kind_of(&path) == "Groups" {
                None
            } else {
                version?.flatten()
            };
            resolve(&mut data, &created)?;
            let mut parts = path.trim_start_matches('/').splitn(2, '/');
            let kind = parts.next().unwrap_or("");
            let id = parts
                .next()
                .map(|raw| {
                    let raw = raw.strip_prefix("bulkId:").map_or(raw.to_owned(), |b| {
                        created
                            .iter()
                            .find(|(x, _)| x == b)
                            .map(|(_, id)| id.clone())
                            .unwrap_or_default()
                    });
                    Uuid::parse_str(&raw).map_err(|_| ScimError::not_found("resource"))
                })
                .transpose()?;
            if let Some(id) = id {
                location = Some(format!("{}/{kind}/{id}", caller.base));
            }
            match (method.as_str(), kind, id) {
                ("POST", "Users", None) => {
                    if bulk_id.is_none() {
                        return Err(ScimError::bad_request(
                            "invalidSyntax",
                            "a POST in a bulk request needs a bulkId",
                        ));
                    }
                    users::create_doc(&state, &caller, &ctx, data)
                        .await
                        .map(|d| (StatusCode::CREATED, Some(d)))
                }
                ("POST", "Groups", None) => {
                    if bulk_id.is_none() {
                        return Err(ScimError::bad_request(
                            "invalidSyntax",
                            "a POST in a bulk request needs a bulkId",
                        ));
                    }
                    groups::create_doc(&state, &caller, &ctx, data)
                        .await
                        .map(|d| (StatusCode::CREATED, Some(d)))
                }
                ("PUT", "Users", Some(id)) => {
                    users::replace_doc(&state, &caller, &ctx, id, version, data)
                        .await
                        .map(|d| (StatusCode::OK, Some(d)))
                }
                ("PUT", "Groups", Some(id)) => {
                    groups::replace_doc(&state, &caller, &ctx, id, tag.as_deref(), data)
                        .await
                        .map(|d| (StatusCode::OK, Some(d)))
                }
                ("PATCH", "Users", Some(id)) => {
                    users::patch_doc(&state, &caller, &ctx, id, version, data)
                        .await
                        .map(|d| (StatusCode::OK, Some(d)))
                }
                ("PATCH", "Groups", Some(id)) => {
                    groups::patch_doc(&state, &caller, &ctx, id, tag.as_deref(), data)
                        .await
                        .map(|d| (StatusCode::OK, Some(d)))
                }
                ("DELETE", "Users", Some(id)) => {
                    users::delete_doc(&state, &caller, &ctx, id, version)
                        .await
                        .map(|()| (StatusCode::NO_CONTENT, None))
                }
                ("DELETE", "Groups", Some(id)) => {
                    groups::delete_doc(&state, &caller, &ctx, id, tag.as_deref())
                        .await
                        .map(|()| (StatusCode::NO_CONTENT, None))
                }
                _ => Err(ScimError::bad_request(
                    "invalidSyntax",
                    format!("`{method} {path}` is not a bulk operation"),
                )),
            }
        }
        .await;
        match &outcome {
            Ok((_, Some(doc))) if method == "POST" => {
                if let (Some(b), Some(id)) = (&bulk_id, doc["id"].as_str()) {
                    created.push((b.clone(), id.to_owned()));
                }
            }
            Err(_) => errors += 1,
            _ => {}
        }
        results.push(bulk_result(&method, bulk_id.as_deref(), location, outcome));
    }
    Ok(scim_json(
        StatusCode::OK,
        json!({"schemas": [BULK_RESPONSE_URN], "Operations": results}),
    ))
}
