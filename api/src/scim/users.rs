//! `/scim/v2/Users`: the organization's users as SCIM User resources with
//! the enterprise extension.
//!
//! What SCIM names maps onto the user: `userName`; the primary (or first)
//! of `emails` and of `phoneNumbers` (when in E.164 form) as the user's
//! email and number; `name`, `displayName`, `nickName`, `locale`,
//! `timezone`, the primary of `photos` and `addresses` onto the profile;
//! the other elements of those and `ims`, with every element's `type` and
//! `display`, onto the profile's contacts; `active` onto the status;
//! `externalId`, `title`, `userType`, `preferredLanguage`, `profileUrl`
//! and the enterprise extension's attributes onto custom attributes of
//! the same names (so a Rego policy reads `department` as SCIM set it).
//! `groups` is read-only.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use commands::user::{NewUser, UserPatch};
use domain::user::{
    Address, AttributeValue, AttributesPatch, Contacts, Label, Labeled, Profile, ProfilePatch,
    e164_of,
};
use projections::users::{UserFilter, UserRow, UserSort};
use scim_v2::filter::{AttrExp, CompValue, CompareOp, Filter};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::filter::{Schema, member};
use super::{ListQuery, ScimCaller, ScimError, etag, if_match, json_body, resource};
use crate::context::RequestContext;
use crate::state::AppState;

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The core schema's further singular attributes, kept as custom
/// attributes of the same names.
const CORE: &[&str] = &["title", "userType", "preferredLanguage", "profileUrl"];

/// The enterprise extension's attributes kept as custom attributes.
const ENTERPRISE: &[&str] = &[
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
];

pub const SCHEMA: Schema = Schema {
    core_urn: USER_URN,
    attributes: &[
        ("id", &[]),
        ("externalId", &[]),
        ("userName", &[]),
        (
            "name",
            &["formatted", "givenName", "familyName", "middleName"],
        ),
        ("displayName", &[]),
        ("nickName", &[]),
        ("profileUrl", &[]),
        ("title", &[]),
        ("userType", &[]),
        ("preferredLanguage", &[]),
        ("locale", &[]),
        ("timezone", &[]),
        ("active", &[]),
        ("password", &[]),
        ("emails", &["value", "type", "primary", "display"]),
        ("phoneNumbers", &["value", "type", "primary", "display"]),
        ("ims", &["value", "type", "primary", "display"]),
        ("photos", &["value", "type", "primary", "display"]),
        (
            "addresses",
            &[
                "formatted",
                "streetAddress",
                "locality",
                "region",
                "postalCode",
                "country",
                "type",
                "primary",
                "display",
            ],
        ),
        ("groups", &["value", "display", "type", "$ref"]),
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
    extension: Some((
        ENTERPRISE_URN,
        &[
            ("employeeNumber", &[]),
            ("costCenter", &[]),
            ("organization", &[]),
            ("division", &[]),
            ("department", &[]),
            ("manager", &["value", "displayName", "$ref"]),
        ],
    )),
    required: &["userName"],
};

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The elements of a multi-valued attribute (none when absent).
fn elements(doc: &Value, name: &str) -> Vec<Value> {
    member(doc, name)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Which element is the primary one, else the first. Of several marked
/// primary the last is: a value added as primary takes the mark from the
/// one before it (RFC 7644 §3.5.2).
fn primary(items: &[Value]) -> Option<usize> {
    items
        .iter()
        .rposition(marked)
        .or((!items.is_empty()).then_some(0))
}

fn marked(v: &Value) -> bool {
    member(v, "primary").and_then(Value::as_bool) == Some(true)
}

fn label(v: &Value) -> Label {
    Label {
        kind: text(member(v, "type")),
        display: text(member(v, "display")),
        written: None,
    }
}

/// The elements other than the user's own (`own`, when `taken`: else
/// every element, the primary keeping its mark), each with its label.
fn further<T>(
    items: &[Value],
    own: Option<usize>,
    taken: bool,
    value: impl Fn(&Value) -> Option<T>,
) -> Vec<Labeled<T>> {
    items
        .iter()
        .enumerate()
        .filter(|(i, _)| !(taken && own == Some(*i)))
        .filter_map(|(i, v)| {
            let l = label(v);
            Some(Labeled {
                value: value(v)?,
                kind: l.kind,
                display: l.display,
                primary: !taken && own == Some(i) && marked(v),
            })
        })
        .collect()
}

fn address_of(a: &Value) -> Address {
    Address {
        formatted: text(member(a, "formatted")),
        street_address: text(member(a, "streetAddress")),
        locality: text(member(a, "locality")),
        region: text(member(a, "region")),
        postal_code: text(member(a, "postalCode")),
        country: text(member(a, "country")),
    }
}

/// A user as SCIM shows them.
pub async fn user_doc(state: &AppState, base: &str, u: &UserRow) -> Result<Value, ScimError> {
    let groups = projections::users::user_groups(&state.read_db, &u.id)
        .await
        .map_err(|e| ScimError::internal(e.to_string()))?;
    Ok(doc_of(base, u, &groups))
}

fn doc_of(base: &str, u: &UserRow, groups: &[projections::users::UserGroupRow]) -> Value {
    let p = &u.profile;
    let attr = |k: &str| u.attributes.get(k).cloned();
    let mut o = match json!({
        "schemas": [USER_URN],
        "id": u.id,
        "userName": u.username,
        "active": u.status == "active",
        "meta": {
            "resourceType": "User",
            "created": u.created_at,
            "lastModified": u.updated_at,
            "location": format!("{base}/Users/{}", u.id),
            "version": etag(u.revision),
        },
    }) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for k in std::iter::once(&"externalId").chain(CORE) {
        if let Some(x) = attr(k) {
            o.insert((*k).into(), x);
        }
    }
    let mut name = Map::new();
    for (from, to) in [
        ("given_name", "givenName"),
        ("family_name", "familyName"),
        ("middle_name", "middleName"),
    ] {
        if let Some(v) = p.get(from) {
            name.insert(to.into(), v.clone());
        }
    }
    if !name.is_empty() {
        let formatted: Vec<&str> = ["givenName", "middleName", "familyName"]
            .iter()
            .filter_map(|k| name.get(*k).and_then(Value::as_str))
            .collect();
        name.insert("formatted".into(), json!(formatted.join(" ")));
        o.insert("name".into(), Value::Object(name));
    }
    for (from, to) in [
        ("name", "displayName"),
        ("nickname", "nickName"),
        ("locale", "locale"),
        ("zoneinfo", "timezone"),
    ] {
        if let Some(v) = p.get(from) {
            o.insert(to.into(), v.clone());
        }
    }
    let contacts: Contacts = p
        .get("contacts")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let c = &contacts;
    let text = |v: &String| value_doc(v);
    let email = u.email.as_deref().map(|e| (value_doc(e), &c.email, "work"));
    if let Some(v) = items(email, &c.emails, text) {
        o.insert("emails".into(), v);
    }
    // The number as the provisioning system wrote it, while it is still
    // the user's number.
    let phone = u.phone_number.as_deref().map(|ph| {
        let written = c.phone_number.written.as_deref();
        let shown = written.filter(|w| e164_of(w).as_deref() == Some(ph));
        (value_doc(shown.unwrap_or(ph)), &c.phone_number, "work")
    });
    if let Some(v) = items(phone, &c.phone_numbers, text) {
        o.insert("phoneNumbers".into(), v);
    }
    if let Some(v) = items(None, &c.ims, text) {
        o.insert("ims".into(), v);
    }
    let picture = p
        .get("picture")
        .and_then(Value::as_str)
        .map(|pic| (value_doc(pic), &c.picture, "photo"));
    if let Some(v) = items(picture, &c.photos, text) {
        o.insert("photos".into(), v);
    }
    let address = p
        .get("address")
        .and_then(|a| serde_json::from_value::<Address>(a.clone()).ok())
        .map(|a| (address_doc(&a), &c.address, "work"));
    if let Some(v) = items(address, &c.addresses, address_doc) {
        o.insert("addresses".into(), v);
    }
    if !groups.is_empty() {
        o.insert("groups".into(), groups_of(base, groups));
    }
    let mut ext = Map::new();
    for k in ENTERPRISE {
        if let Some(v) = attr(k) {
            ext.insert((*k).into(), v);
        }
    }
    if let Some(m) = attr("manager") {
        ext.insert("manager".into(), json!({"value": m}));
    }
    if !ext.is_empty() {
        o.insert(ENTERPRISE_URN.into(), Value::Object(ext));
        o.insert("schemas".into(), json!([USER_URN, ENTERPRISE_URN]));
    }
    Value::Object(o)
}

/// A postal address as SCIM names its parts.
fn address_doc(a: &Address) -> Map<String, Value> {
    [
        ("formatted", &a.formatted),
        ("streetAddress", &a.street_address),
        ("locality", &a.locality),
        ("region", &a.region),
        ("postalCode", &a.postal_code),
        ("country", &a.country),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), json!(v))))
    .collect()
}

/// One item of a multi-valued attribute.
fn item_doc(
    mut item: Map<String, Value>,
    kind: Option<&str>,
    display: Option<&str>,
    primary: bool,
) -> Value {
    if let Some(k) = kind {
        item.insert("type".into(), json!(k));
    }
    if let Some(d) = display {
        item.insert("display".into(), json!(d));
    }
    item.insert("primary".into(), json!(primary));
    Value::Object(item)
}

/// A value as an element of a multi-valued attribute shows it.
fn value_doc(v: &str) -> Map<String, Value> {
    Map::from_iter([("value".to_owned(), json!(v))])
}

/// A multi-valued attribute: the user's own value first, primary and
/// labelled (`default_kind` when the label names no kind), then the
/// further ones, primary as recorded only when the user has no value of
/// their own.
fn items<T>(
    own: Option<(Map<String, Value>, &Label, &str)>,
    others: &[Labeled<T>],
    doc: impl Fn(&T) -> Map<String, Value>,
) -> Option<Value> {
    let has_own = own.is_some();
    let mut out = Vec::with_capacity(others.len() + 1);
    if let Some((v, label, default_kind)) = own {
        let kind = label.kind.as_deref().unwrap_or(default_kind);
        out.push(item_doc(v, Some(kind), label.display.as_deref(), true));
    }
    out.extend(others.iter().map(|o| {
        let primary = !has_own && o.primary;
        item_doc(
            doc(&o.value),
            o.kind.as_deref(),
            o.display.as_deref(),
            primary,
        )
    }));
    (!out.is_empty()).then_some(Value::Array(out))
}

/// The `groups` of a user: direct, or through a group inside another.
fn groups_of(base: &str, groups: &[projections::users::UserGroupRow]) -> Value {
    Value::Array(
        groups
            .iter()
            .map(|g| {
                json!({
                    "value": g.group.id,
                    "display": g.group.name,
                    "type": if g.direct { "direct" } else { "indirect" },
                    "$ref": format!("{base}/Groups/{}", g.group.id),
                })
            })
            .collect(),
    )
}

/// What a SCIM User document sets.
struct Fields {
    username: String,
    email: Option<String>,
    phone: Option<String>,
    profile: ProfilePatch,
    attributes: AttributesPatch,
    active: Option<bool>,
    password: Option<String>,
}

fn fields(doc: &Value) -> Result<Fields, ScimError> {
    let username = text(member(doc, "userName"))
        .ok_or_else(|| ScimError::bad_request("invalidValue", "userName is required"))?;
    let emails = elements(doc, "emails");
    let own = primary(&emails);
    let email = own.and_then(|i| text(member(&emails[i], "value")));
    let same_email = |v: &str| email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(v));
    let mut contacts = Contacts {
        email: own.map(|i| label(&emails[i])).unwrap_or_default(),
        emails: further(&emails, own, true, |v| {
            text(member(v, "value")).filter(|x| !same_email(x))
        }),
        ..Contacts::default()
    };
    // A number in E.164 form (separators and `tel:` allowed) is the
    // user's, which codes are sent to; any other is a further one.
    let phones = elements(doc, "phoneNumbers");
    let own = primary(&phones);
    let written = own.and_then(|i| text(member(&phones[i], "value")));
    let phone = written.as_deref().and_then(e164_of);
    if let (Some(i), Some(p)) = (own, &phone) {
        contacts.phone_number = Label {
            written: written.filter(|w| w != p),
            ..label(&phones[i])
        };
    }
    contacts.phone_numbers = further(&phones, own, phone.is_some(), |v| {
        text(member(v, "value")).filter(|x| phone.is_none() || e164_of(x) != phone)
    });
    let ims = elements(doc, "ims");
    contacts.ims = further(&ims, primary(&ims), false, |v| text(member(v, "value")));
    let photos = elements(doc, "photos");
    let own = primary(&photos);
    let picture = own.and_then(|i| text(member(&photos[i], "value")));
    contacts.picture = own.map(|i| label(&photos[i])).unwrap_or_default();
    contacts.photos = further(&photos, own, true, |v| text(member(v, "value")));
    let addresses = elements(doc, "addresses");
    let own = primary(&addresses);
    let address = own.map(|i| address_of(&addresses[i]));
    contacts.address = own.map(|i| label(&addresses[i])).unwrap_or_default();
    contacts.addresses = further(&addresses, own, true, |v| Some(address_of(v)));
    let name = member(doc, "name").cloned().unwrap_or(Value::Null);
    let profile = ProfilePatch {
        given_name: Some(text(member(&name, "givenName"))),
        family_name: Some(text(member(&name, "familyName"))),
        middle_name: Some(text(member(&name, "middleName"))),
        nickname: Some(text(member(doc, "nickName"))),
        name: Some(text(member(doc, "displayName"))),
        locale: Some(text(member(doc, "locale"))),
        zoneinfo: Some(text(member(doc, "timezone"))),
        picture: Some(picture),
        address: Some(address),
        contacts: Some(contacts),
        ..ProfilePatch::default()
    };
    let ext = member(doc, ENTERPRISE_URN).cloned().unwrap_or(Value::Null);
    let mut attributes = AttributesPatch::new();
    attributes.insert(
        "externalId".into(),
        text(member(doc, "externalId")).map(AttributeValue::One),
    );
    for k in CORE {
        attributes.insert((*k).into(), text(member(doc, k)).map(AttributeValue::One));
    }
    for k in ENTERPRISE {
        attributes.insert((*k).into(), text(member(&ext, k)).map(AttributeValue::One));
    }
    let manager =
        member(&ext, "manager").and_then(|m| text(member(m, "value")).or_else(|| text(Some(m))));
    attributes.insert("manager".into(), manager.map(AttributeValue::One));
    let active = match member(doc, "active") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        Some(_) => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "active must be a boolean",
            ));
        }
    };
    Ok(Fields {
        username,
        email,
        phone,
        profile,
        attributes,
        active,
        password: text(member(doc, "password")),
    })
}

/// The user `id` of the caller's organization.
async fn load(state: &AppState, caller: &ScimCaller, id: Uuid) -> Result<UserRow, ScimError> {
    projections::users::get_user(&state.read_db, &id.to_string())
        .await
        .map_err(|e| ScimError::internal(e.to_string()))?
        .filter(|u| u.organization_id == caller.organization_id.to_string())
        .ok_or_else(|| ScimError::not_found("user"))
}

async fn settle(state: &AppState, out: &commands::Outcome) -> Result<(), ScimError> {
    crate::admin::settle(state, out)
        .await
        .map_err(ScimError::from)
}

/// Sets the status `active` asks for (nothing when it already is).
async fn set_active(
    state: &AppState,
    id: Uuid,
    active: Option<bool>,
    meta: &domain::Metadata,
) -> Result<(), ScimError> {
    let out = match active {
        Some(true) => commands::user::reactivate(&state.bus, id, None, meta)
            .await
            .map_err(crate::problem::Problem::from),
        Some(false) => crate::admin::users::deactivate_user(state, id, None, meta).await,
        None => return Ok(()),
    }
    .map_err(ScimError::from)?;
    settle(state, &out).await
}

pub async fn create_doc(
    state: &AppState,
    caller: &ScimCaller,
    ctx: &RequestContext,
    doc: Value,
) -> Result<Value, ScimError> {
    let f = fields(&doc)?;
    let id = Uuid::now_v7();
    let profile = f.profile.apply(&Profile::default());
    let attributes = f
        .attributes
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let meta = ctx.metadata(caller.actor(), Some(caller.organization_id));
    let new = NewUser {
        id,
        organization_id: caller.organization_id,
        username: f.username,
        email: f.email,
        email_verified: false,
        phone_number: f.phone,
        phone_verified: false,
        profile,
        attributes,
        password: f.password,
        must_change_password: false,
    };
    let out = commands::user::create(&state.bus, &state.passwords, new, &meta)
        .await
        .map_err(|e| ScimError::from(crate::problem::Problem::from(e)))?;
    settle(state, &out).await?;
    if f.active == Some(false) {
        set_active(state, id, Some(false), &meta).await?;
    }
    user_doc(state, &caller.base, &load(state, caller, id).await?).await
}

pub async fn replace_doc(
    state: &AppState,
    caller: &ScimCaller,
    ctx: &RequestContext,
    id: Uuid,
    version: Option<u64>,
    doc: Value,
) -> Result<Value, ScimError> {
    let current = load(state, caller, id).await?;
    let f = fields(&doc)?;
    // A password the policy refuses fails the whole request before any
    // part of it is written (checked as the command will, against the
    // username and email the change leaves).
    if let Some(p) = &f.password {
        state
            .passwords
            .check(p, &f.username, f.email.as_deref())
            .map_err(|e| {
                ScimError::from(crate::problem::Problem::from(
                    commands::user::UserFailure::Password(e),
                ))
            })?;
    }
    let meta = ctx.metadata(caller.actor(), Some(caller.organization_id));
    let patch = UserPatch {
        username: Some(f.username),
        email: Some(f.email),
        phone_number: Some(f.phone),
        profile_patch: Some(f.profile),
        attributes_patch: Some(f.attributes),
        ..UserPatch::default()
    };
    let out = commands::user::change(&state.bus, id, version, patch, &meta)
        .await
        .map_err(|e| ScimError::from(crate::problem::Problem::from(e)))?;
    settle(state, &out).await?;
    let is_active = current.status == "active";
    if f.active.is_some_and(|a| a != is_active) {
        set_active(state, id, f.active, &meta).await?;
    }
    if let Some(p) = &f.password {
        let out = commands::user::set_password(&state.bus, &state.passwords, id, p, false, &meta)
            .await
            .map_err(|e| ScimError::from(crate::problem::Problem::from(e)))?;
        settle(state, &out).await?;
    }
    user_doc(state, &caller.base, &load(state, caller, id).await?).await
}

pub async fn patch_doc(
    state: &AppState,
    caller: &ScimCaller,
    ctx: &RequestContext,
    id: Uuid,
    version: Option<u64>,
    body: Value,
) -> Result<Value, ScimError> {
    let ops = super::patch_ops(&body)?;
    let current = load(state, caller, id).await?;
    if version.is_some_and(|v| v != current.revision as u64) {
        return Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            "the user changed since that version",
        ));
    }
    let mut doc = user_doc(state, &caller.base, &current).await?;
    for (op, path, value) in ops {
        super::filter::apply(&mut doc, op, path.as_deref(), value, &SCHEMA)?;
    }
    replace_doc(
        state,
        caller,
        ctx,
        id,
        version.or(Some(current.revision as u64)),
        doc,
    )
    .await
}

pub async fn delete_doc(
    state: &AppState,
    caller: &ScimCaller,
    ctx: &RequestContext,
    id: Uuid,
    version: Option<u64>,
) -> Result<(), ScimError> {
    load(state, caller, id).await?;
    let meta = ctx.metadata(caller.actor(), Some(caller.organization_id));
    let erased = privacy::people::delete_user(&state.bus, &state.subject_keys, id, version, &meta)
        .await
        .map_err(|e| ScimError::from(crate::problem::Problem::from(e)))?;
    crate::admin::settle_at(state, erased.position)
        .await
        .map_err(ScimError::from)
}

/// The users of the organization the filter may match, as SCIM
/// documents: narrowed in SQL by each term of its top-level conjunction
/// that SQL answers exactly (see [`pushdown`]); the whole filter is then
/// evaluated on them.
async fn candidates(
    state: &AppState,
    caller: &ScimCaller,
    q: &ListQuery,
) -> Result<Vec<Value>, ScimError> {
    let mut f = UserFilter {
        organization_id: Some(caller.organization_id.to_string()),
        ..UserFilter::default()
    };
    if let Some(text) = q.filter.as_deref().filter(|t| !t.trim().is_empty()) {
        narrow(&super::filter::parse(text, &SCHEMA)?, &mut f);
    }
    let mentions_groups =
        |t: Option<&str>| t.is_some_and(|t| t.to_ascii_lowercase().contains("groups"));
    let with_groups = mentions_groups(q.filter.as_deref()) || mentions_groups(q.sort_by.as_deref());
    let mut docs = Vec::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let page = projections::users::list_users(
            &state.read_db,
            &f,
            UserSort::Created,
            false,
            after.as_ref().map(|(k, i)| (k.as_str(), i.as_str())),
            1000,
        )
        .await
        .map_err(|e| ScimError::internal(e.to_string()))?;
        for u in &page {
            // A user's groups cost a query: only when the filter or the
            // order reads them; the page gets them after.
            docs.push(if with_groups {
                user_doc(state, &caller.base, u).await?
            } else {
                doc_of(&caller.base, u, &[])
            });
        }
        match page.last() {
            Some(last) if page.len() == 1000 => {
                after = Some((last.sort_key.clone(), last.id.clone()))
            }
            _ => break,
        }
    }
    Ok(docs)
}

/// Adds to `into` what `f` asks when SQL can answer it exactly:
/// conjunctions of `userName eq`, `externalId eq`, `active eq` and the
/// enterprise attributes `eq`. `false`: evaluate the filter in memory.
fn pushdown(f: &Filter, into: &mut UserFilter) -> bool {
    match f {
        Filter::And(items) => items.iter().all(|i| pushdown(i, into)),
        Filter::Attr(AttrExp::Comparison(p, CompareOp::Eq, v)) if p.sub_attr.is_none() => {
            let core = p
                .uri
                .as_deref()
                .is_none_or(|u| u.eq_ignore_ascii_case(USER_URN));
            let extension = p
                .uri
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(ENTERPRISE_URN));
            let name = |n: &str| core && p.name.eq_ignore_ascii_case(n);
            match v {
                CompValue::Str(s) if name("userName") && into.username.is_none() => {
                    into.username = Some(s.clone());
                    true
                }
                CompValue::Str(s) if name("externalId") && into.attribute.is_none() => {
                    into.attribute = Some(("externalId".into(), s.clone()));
                    true
                }
                CompValue::True | CompValue::False if name("active") && into.status.is_none() => {
                    let active = matches!(v, CompValue::True);
                    into.status = Some(if active { "active" } else { "deactivated" }.into());
                    true
                }
                CompValue::Str(s) if extension => {
                    match ENTERPRISE.iter().find(|k| k.eq_ignore_ascii_case(&p.name)) {
                        Some(k) => {
                            into.attributes_any_case.push(((*k).to_owned(), s.clone()));
                            true
                        }
                        None => false,
                    }
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Adds to `into` every term of `f`'s top-level conjunction that
/// [`pushdown`] takes (a necessary condition of `f`); the others are left
/// to the evaluation in memory.
fn narrow(f: &Filter, into: &mut UserFilter) {
    match f {
        Filter::And(items) => items.iter().for_each(|i| narrow(i, into)),
        term => {
            let mut with = into.clone();
            if pushdown(term, &mut with) {
                *into = with;
            }
        }
    }
}

/// A list SQL answers whole (the filter pushed down, the total counted,
/// the page read by index): `None` when it cannot.
async fn list_in_sql(
    state: &AppState,
    caller: &ScimCaller,
    q: &ListQuery,
) -> Result<Option<Value>, ScimError> {
    if q.sort_by.is_some() {
        return Ok(None);
    }
    let mut f = UserFilter {
        organization_id: Some(caller.organization_id.to_string()),
        ..UserFilter::default()
    };
    if let Some(text) = q.filter.as_deref().filter(|t| !t.trim().is_empty()) {
        let parsed = super::filter::parse(text, &SCHEMA)?;
        if !pushdown(&parsed, &mut f) {
            return Ok(None);
        }
    }
    let internal = |e: projections::ProjectionError| ScimError::internal(e.to_string());
    let total = projections::users::count_users(&state.read_db, &f)
        .await
        .map_err(internal)?;
    let start = q.start_index.unwrap_or(1).max(1);
    let count = q.count.unwrap_or(100).clamp(0, super::MAX_RESULTS as i64);
    let rows = projections::users::list_users_at(&state.read_db, &f, start - 1, count)
        .await
        .map_err(internal)?;
    let mut page = Vec::with_capacity(rows.len());
    for u in &rows {
        page.push(user_doc(state, &caller.base, u).await?);
    }
    Ok(Some(super::wrap(
        total.max(0) as usize,
        start as usize,
        page,
        q,
    )?))
}

type Rejection<T> = Result<T, axum::extract::rejection::QueryRejection>;
type PathRejection = axum::extract::rejection::PathRejection;

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ScimError> {
    let Path(raw) = path.map_err(|_| ScimError::not_found("user"))?;
    Uuid::parse_str(&raw).map_err(|_| ScimError::not_found("user"))
}

pub async fn list(
    State(state): State<AppState>,
    caller: ScimCaller,
    query: Rejection<Query<ListQuery>>,
) -> Result<Response, ScimError> {
    let Query(q) = query.map_err(|e| ScimError::bad_request("invalidValue", e.body_text()))?;
    list_docs(&state, &caller, &q).await
}

/// `POST /Users/.search`: a list whose parameters come in the body.
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
    if let Some(list) = list_in_sql(state, caller, q).await? {
        return Ok(super::scim_json(StatusCode::OK, list));
    }
    let docs = candidates(state, caller, q).await?;
    let (total, start, mut page) = super::select(docs, q, &SCHEMA)?;
    for doc in &mut page {
        if doc.get("groups").is_none()
            && let Some(id) = doc["id"].as_str()
        {
            let groups = projections::users::user_groups(&state.read_db, id)
                .await
                .map_err(|e| ScimError::internal(e.to_string()))?;
            if let (false, Some(o)) = (groups.is_empty(), doc.as_object_mut()) {
                o.insert("groups".into(), groups_of(&caller.base, &groups));
            }
        }
    }
    Ok(super::scim_json(
        StatusCode::OK,
        super::wrap(total, start, page, q)?,
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
    let doc = user_doc(&state, &caller.base, &load(&state, &caller, id).await?).await?;
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
    let version = if_match(&headers)?;
    let doc = replace_doc(&state, &caller, &ctx, id, version, json_body(&body)?).await?;
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
    let version = if_match(&headers)?;
    let doc = patch_doc(&state, &caller, &ctx, id, version, json_body(&body)?).await?;
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
    let version = if_match(&headers)?;
    delete_doc(&state, &caller, &ctx, id, version).await?;
    Ok(StatusCode::NO_CONTENT)
}
