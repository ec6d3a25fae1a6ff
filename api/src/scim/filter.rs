//! SCIM filters, projections, sorting and PATCH operations on resources as
//! their JSON documents (RFC 7644 §3.4.2.2, §3.5.2, §3.9): the parsing is
//! scim_v2's, the evaluation ours. Attribute names are matched without
//! regard to case; string values too, except the case-exact `id`,
//! `externalId` and `meta.version`.

use std::cmp::Ordering;

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::ScimError;

/// The member of `object` named `name`, whatever its case.
pub fn member<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn member_mut<'a>(object: &'a mut Map<String, Value>, name: &str) -> Option<&'a mut Value> {
    let key = object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))?
        .clone();
    object.get_mut(&key)
}

fn remove_member(object: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))?
        .clone();
    object.remove(&key)
}

/// Attributes by name, each with its sub-attributes.
pub type Attributes = &'static [(&'static str, &'static [&'static str])];

/// The attributes a resource type knows, core and extension alike (an
/// extension's attributes under its URN).
pub struct Schema {
    pub core_urn: &'static str,
    pub attributes: Attributes,
    pub extension: Option<(&'static str, Attributes)>,
    /// The core attributes a resource cannot be without.
    pub required: &'static [&'static str],
}

/// The core attributes the service provider alone writes.
const READ_ONLY: &[&str] = &["id", "meta", "groups"];

/// What a PATCH operation may do to the attribute it names.
#[derive(Debug, PartialEq, Eq)]
enum Mutability {
    Apply,
    /// It sets a read-only attribute to the value it has: nothing to do.
    Unchanged,
}

impl Schema {
    /// Refuses a path naming no attribute of the resource.
    pub fn check(&self, path: &AttrPath) -> Result<(), ScimError> {
        let unknown = || {
            ScimError::bad_request(
                "invalidFilter",
                format!(
                    "the attribute `{}` is not one of this resource's",
                    show(path)
                ),
            )
        };
        let table = match &path.uri {
            None => self.attributes,
            Some(u) if u.eq_ignore_ascii_case(self.core_urn) => self.attributes,
            Some(u) => match self.extension {
                Some((urn, attrs)) if u.eq_ignore_ascii_case(urn) => attrs,
                _ => return Err(unknown()),
            },
        };
        let Some((_, subs)) = table
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&path.name))
        else {
            // `urn:…:enterprise:2.0:User:manager` parses with the URN
            // `…:2.0` and the name `User`: look again.
            return Err(unknown());
        };
        match &path.sub_attr {
            Some(sub) if !subs.iter().any(|s| s.eq_ignore_ascii_case(sub)) => Err(unknown()),
            _ => Ok(()),
        }
    }

    /// Refuses a PATCH path naming no attribute of the resource
    /// (`invalidPath`, RFC 7644 §3.5.2): its attribute, its filter's and
    /// its sub-attribute. `schemas` is the resource's too.
    pub fn check_patch(&self, path: &PatchPath) -> Result<(), ScimError> {
        let checked = match path {
            PatchPath::Attr(p) if p.uri.is_none() && p.name.eq_ignore_ascii_case("schemas") => {
                Ok(())
            }
            PatchPath::Attr(p) => self.check(p),
            PatchPath::Value(v) => self
                .check(&v.attr)
                .and_then(|()| self.check_val(&v.attr, &v.filter))
                .and_then(|()| match &v.sub_attr {
                    Some(sub) => self.check(&AttrPath {
                        uri: v.attr.uri.clone(),
                        name: v.attr.name.clone(),
                        sub_attr: Some(sub.clone()),
                    }),
                    None => Ok(()),
                }),
        };
        checked.map_err(|e| ScimError {
            scim_type: Some("invalidPath"),
            ..e
        })
    }

    /// Refuses an operation its attribute's mutability forbids (RFC 7644
    /// §3.5.2: `mutability`): any change of a read-only attribute (setting
    /// it to the value it has changes nothing, as Okta sends `id`), and the
    /// removal of a required one.
    fn check_mutability(
        &self,
        doc: &Value,
        op: Op,
        path: &PatchPath,
        value: Option<&Value>,
    ) -> Result<Mutability, ScimError> {
        let (attr, whole) = match path {
            PatchPath::Attr(p) => (p, true),
            PatchPath::Value(v) => (&v.attr, false),
        };
        if attr
            .uri
            .as_deref()
            .is_some_and(|u| !u.eq_ignore_ascii_case(self.core_urn))
        {
            return Ok(Mutability::Apply);
        }
        let refused =
            |why: &str| ScimError::bad_request("mutability", format!("`{}` {why}", show(attr)));
        if READ_ONLY.iter().any(|n| n.eq_ignore_ascii_case(&attr.name)) {
            let current = member(doc, &attr.name).and_then(|v| match &attr.sub_attr {
                Some(sub) => member(v, sub),
                None => Some(v),
            });
            return match (op, whole, current, value) {
                (Op::Add | Op::Replace, true, Some(c), Some(v)) if c == v => {
                    Ok(Mutability::Unchanged)
                }
                _ => Err(refused("is read-only")),
            };
        }
        if op == Op::Remove
            && whole
            && attr.sub_attr.is_none()
            && self
                .required
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&attr.name))
        {
            return Err(refused("is required"));
        }
        Ok(Mutability::Apply)
    }

    /// Every attribute path of a filter checked.
    pub fn check_filter(&self, f: &Filter) -> Result<(), ScimError> {
        match f {
            Filter::Attr(e) => {
                no_boolean_order(e)?;
                self.check(attr_of(e))
            }
            Filter::ValuePath(v) => {
                self.check(&v.attr)?;
                self.check_val(&v.attr, &v.filter)
            }
            Filter::Not(inner) => self.check_filter(inner),
            Filter::And(items) | Filter::Or(items) => {
                items.iter().try_for_each(|i| self.check_filter(i))
            }
        }
    }

    fn check_val(&self, parent: &AttrPath, f: &ValFilter) -> Result<(), ScimError> {
        match f {
            ValFilter::Attr(e) => {
                no_boolean_order(e)?;
                let inner = attr_of(e);
                let path = AttrPath {
                    uri: parent.uri.clone(),
                    name: parent.name.clone(),
                    sub_attr: Some(inner.name.clone()),
                };
                self.check(&path)
            }
            ValFilter::Not(inner) => self.check_val(parent, inner),
            ValFilter::And(items) | ValFilter::Or(items) => {
                items.iter().try_for_each(|i| self.check_val(parent, i))
            }
        }
    }
}

/// `gt`, `ge`, `lt` and `le` have no meaning for booleans: refused
/// (RFC 7644 §3.4.2.2).
fn no_boolean_order(e: &AttrExp) -> Result<(), ScimError> {
    match e {
        AttrExp::Comparison(
            p,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le,
            CompValue::True | CompValue::False,
        ) => Err(ScimError::bad_request(
            "invalidFilter",
            format!("`{}` cannot be ordered against a boolean", show(p)),
        )),
        _ => Ok(()),
    }
}

fn attr_of(e: &AttrExp) -> &AttrPath {
    match e {
        AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
    }
}

fn show(path: &AttrPath) -> String {
    let mut s = String::new();
    if let Some(u) = &path.uri {
        s.push_str(u);
        s.push(':');
    }
    s.push_str(&path.name);
    if let Some(sub) = &path.sub_attr {
        s.push('.');
        s.push_str(sub);
    }
    s
}

/// The container a path's attribute lives in: the document, or the
/// extension object named by its URN.
fn container<'a>(doc: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    match &path.uri {
        Some(uri) if !uri.to_ascii_lowercase().contains(":core:") => member(doc, uri),
        _ => Some(doc),
    }
}

/// Every value `path` reaches in `doc` (a multi-valued attribute gives one
/// per element; with a sub-attribute, the elements' sub-values).
fn values<'a>(doc: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(top) = container(doc, path).and_then(|c| member(c, &path.name)) else {
        return vec![];
    };
    let items: Vec<&Value> = match top {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    match &path.sub_attr {
        Some(sub) => items.into_iter().filter_map(|v| member(v, sub)).collect(),
        // `emails co "x"`: a complex multi-valued attribute compares its
        // `value`.
        None => items
            .into_iter()
            .map(|v| {
                if v.is_object() {
                    member(v, "value").unwrap_or(v)
                } else {
                    v
                }
            })
            .collect(),
    }
}

fn case_exact(path: &AttrPath) -> bool {
    let n = path.name.to_ascii_lowercase();
    matches!(n.as_str(), "id" | "externalid")
        || (n == "meta"
            && path
                .sub_attr
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("version")))
}

fn compare(value: &Value, op: &CompareOp, wanted: &CompValue, exact: bool) -> bool {
    let text = |s: &str| {
        if exact {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    };
    match (value, wanted) {
        (Value::String(v), CompValue::Str(w)) => {
            // Date-times compare as instants (`…:05Z` before `…:05.3Z`).
            if op_orders(op)
                && let (Some(v), Some(w)) = (instant(v), instant(w))
            {
                return ordered(op, v.cmp(&w));
            }
            let (v, w) = (text(v), text(w));
            match op {
                CompareOp::Eq => v == w,
                CompareOp::Ne => v != w,
                CompareOp::Co => v.contains(&w),
                CompareOp::Sw => v.starts_with(&w),
                CompareOp::Ew => v.ends_with(&w),
                CompareOp::Gt => v > w,
                CompareOp::Ge => v >= w,
                CompareOp::Lt => v < w,
                CompareOp::Le => v <= w,
            }
        }
        (Value::Bool(v), CompValue::True | CompValue::False) => {
            let w = matches!(wanted, CompValue::True);
            match op {
                CompareOp::Eq => *v == w,
                CompareOp::Ne => *v != w,
                _ => false,
            }
        }
        (Value::Number(v), CompValue::Number(w)) => {
            let (Some(v), Some(w)) = (v.as_f64(), w.as_f64()) else {
                return false;
            };
            match v.partial_cmp(&w) {
                Some(o) => ordered(op, o),
                None => matches!(op, CompareOp::Ne),
            }
        }
        (Value::Null, CompValue::Null) => matches!(op, CompareOp::Eq),
        (_, CompValue::Null) => matches!(op, CompareOp::Ne),
        _ => matches!(op, CompareOp::Ne),
    }
}

/// Whether `op` compares by order (or equality), not by substring.
fn op_orders(op: &CompareOp) -> bool {
    matches!(
        op,
        CompareOp::Eq
            | CompareOp::Ne
            | CompareOp::Gt
            | CompareOp::Ge
            | CompareOp::Lt
            | CompareOp::Le
    )
}

/// An RFC 3339 date-time (the form SCIM's `dateTime` attributes take).
fn instant(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Whether values in order `o` pass the ordering or equality `op`.
fn ordered(op: &CompareOp, o: Ordering) -> bool {
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        _ => false,
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn attr_matches(doc: &Value, e: &AttrExp) -> bool {
    match e {
        AttrExp::Present(p) => values(doc, p).into_iter().any(present),
        AttrExp::Comparison(p, op, w) => {
            let found = values(doc, p);
            if found.is_empty() {
                // An absent attribute equals nothing and differs from
                // everything but null.
                return matches!(op, CompareOp::Ne) && !matches!(w, CompValue::Null);
            }
            let exact = case_exact(p);
            if matches!(op, CompareOp::Ne) {
                found.iter().all(|v| compare(v, op, w, exact))
            } else {
                found.iter().any(|v| compare(v, op, w, exact))
            }
        }
    }
}

/// Whether `doc` passes `f`.
pub fn matches(f: &Filter, doc: &Value) -> bool {
    match f {
        Filter::Attr(e) => attr_matches(doc, e),
        Filter::ValuePath(vp) => elements(doc, &vp.attr)
            .iter()
            .any(|el| val_matches(&vp.filter, el)),
        Filter::Not(inner) => !matches(inner, doc),
        Filter::And(items) => items.iter().all(|i| matches(i, doc)),
        Filter::Or(items) => items.iter().any(|i| matches(i, doc)),
    }
}

/// The elements of a (multi-valued) attribute.
fn elements<'a>(doc: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    match container(doc, path).and_then(|c| member(c, &path.name)) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => vec![],
    }
}

/// Whether one element of a multi-valued attribute passes `f`, whose
/// paths name its sub-attributes.
pub fn val_matches(f: &ValFilter, element: &Value) -> bool {
    match f {
        ValFilter::Attr(e) => attr_matches(element, e),
        ValFilter::Not(inner) => !val_matches(inner, element),
        ValFilter::And(items) => items.iter().all(|i| val_matches(i, element)),
        ValFilter::Or(items) => items.iter().any(|i| val_matches(i, element)),
    }
}

/// Parses a filter, refusing it (`invalidFilter`) when it does not parse
/// or names an attribute the resource does not have.
pub fn parse(text: &str, schema: &Schema) -> Result<Filter, ScimError> {
    let f: Filter = text.parse().map_err(|e| {
        ScimError::bad_request("invalidFilter", format!("the filter does not parse: {e}"))
    })?;
    schema.check_filter(&f)?;
    Ok(f)
}

/// A sort key: the value `by` reaches (of a multi-valued attribute, its
/// primary element's, else its first's), as text, folded to lower case
/// unless the attribute is case-exact; `None` when there is none.
pub fn sort_key(doc: &Value, by: &AttrPath) -> Option<String> {
    let top = container(doc, by).and_then(|c| member(c, &by.name))?;
    let element = match top {
        Value::Array(a) => a
            .iter()
            .find(|v| member(v, "primary") == Some(&Value::Bool(true)))
            .or(a.first())?,
        v => v,
    };
    let v = match &by.sub_attr {
        Some(sub) => member(element, sub)?,
        None if element.is_object() => member(element, "value")?,
        None => element,
    };
    Some(match v {
        // A date-time by its instant, in fixed width: as text, `…:05Z`
        // would sort after `…:05.3Z`.
        Value::String(s) => match instant(s) {
            Some(t) => format!("{:040}", t.unix_timestamp_nanos().saturating_add(1 << 100)),
            None if case_exact(by) => s.clone(),
            None => s.to_lowercase(),
        },
        Value::Null => return None,
        other => other.to_string(),
    })
}

/// Parses an attribute path (`name.givenName`, `urn:…:User:department`).
pub fn attr_path(text: &str) -> Result<AttrPath, ScimError> {
    let f: Filter = format!("{text} pr").parse().map_err(|_| {
        ScimError::bad_request("invalidPath", format!("`{text}` is not an attribute path"))
    })?;
    match f {
        Filter::Attr(AttrExp::Present(p)) => Ok(p),
        _ => Err(ScimError::bad_request(
            "invalidPath",
            format!("`{text}` is not an attribute path"),
        )),
    }
}

/// Whether `p` names the extension `key` as a whole: a schema URN parses
/// as a URI and its last part (`urn:…:enterprise:2.0` and `User`).
fn whole_extension(p: &AttrPath, key: &str) -> bool {
    p.sub_attr.is_none()
        && p.uri.as_deref().is_some_and(|u| {
            key.len() == u.len() + 1 + p.name.len()
                && key
                    .get(..u.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(u))
                && key
                    .get(u.len() + 1..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(&p.name))
        })
}

/// Keeps what `attributes` names (plus `id`, `schemas` and `meta`, always
/// returned), or drops what `excluded` names.
pub fn project(doc: &mut Value, attributes: &[AttrPath], excluded: &[AttrPath]) {
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    let always = |k: &str| {
        ["id", "schemas", "meta"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(k))
    };
    if !attributes.is_empty() {
        let mut kept = Map::new();
        for (k, v) in obj.iter() {
            if always(k) {
                kept.insert(k.clone(), v.clone());
                continue;
            }
            let is_extension = k.contains(':');
            let wanted: Vec<&AttrPath> = attributes
                .iter()
                .filter(|p| {
                    if is_extension {
                        p.uri.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(k))
                    } else {
                        p.name.eq_ignore_ascii_case(k)
                            && p.uri
                                .as_deref()
                                .is_none_or(|u| u.to_ascii_lowercase().contains(":core:"))
                    }
                })
                .collect();
            if wanted.is_empty() {
                if is_extension && attributes.iter().any(|p| whole_extension(p, k)) {
                    kept.insert(k.clone(), v.clone());
                }
                continue;
            }
            let narrowed = narrow(v, &wanted, is_extension);
            kept.insert(k.clone(), narrowed);
        }
        *obj = kept;
    }
    for p in excluded {
        if always(&p.name) {
            continue;
        }
        if let Some(k) = obj.keys().find(|k| whole_extension(p, k)).cloned() {
            obj.remove(&k);
            continue;
        }
        let target = match &p.uri {
            Some(u) if !u.to_ascii_lowercase().contains(":core:") => match member_mut(obj, u) {
                Some(Value::Object(ext)) => ext,
                _ => continue,
            },
            _ => &mut *obj,
        };
        match &p.sub_attr {
            None => {
                remove_member(target, &p.name);
            }
            Some(sub) => match member_mut(target, &p.name) {
                Some(Value::Object(o)) => {
                    remove_member(o, sub);
                }
                Some(Value::Array(a)) => {
                    a.iter_mut().filter_map(Value::as_object_mut).for_each(|o| {
                        remove_member(o, sub);
                    })
                }
                _ => {}
            },
        }
    }
}

/// `value` narrowed to the sub-attributes the paths name (all of it when
/// one names the whole attribute).
fn narrow(value: &Value, wanted: &[&AttrPath], extension: bool) -> Value {
    let subs: Vec<&str> = if extension {
        // Under an extension, the path's name is the attribute inside it.
        return match value {
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| wanted.iter().any(|p| p.name.eq_ignore_ascii_case(k)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            v => v.clone(),
        };
    } else if wanted.iter().any(|p| p.sub_attr.is_none()) {
        return value.clone();
    } else {
        wanted
            .iter()
            .filter_map(|p| p.sub_attr.as_deref())
            .collect()
    };
    let keep = |o: &Map<String, Value>| {
        Value::Object(
            o.iter()
                .filter(|(k, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    };
    match value {
        Value::Object(o) => keep(o),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| v.as_object().map_or_else(|| v.clone(), keep))
                .collect(),
        ),
        v => v.clone(),
    }
}

/// One PATCH operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Replace,
    Remove,
}

impl Op {
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        match s.to_ascii_lowercase().as_str() {
            "add" => Ok(Self::Add),
            "replace" => Ok(Self::Replace),
            "remove" => Ok(Self::Remove),
            other => Err(ScimError::bad_request(
                "invalidSyntax",
                format!("`{other}` is not a PATCH operation (add, replace, remove)"),
            )),
        }
    }
}

/// The object an attribute path writes into: the document or the
/// extension's object (created when adding).
fn target_object<'a>(
    doc: &'a mut Map<String, Value>,
    path: &AttrPath,
) -> Option<&'a mut Map<String, Value>> {
    match &path.uri {
        Some(u) if !u.to_ascii_lowercase().contains(":core:") => {
            if member_mut(doc, u).is_none() {
                doc.insert(u.clone(), Value::Object(Map::new()));
            }
            member_mut(doc, u).and_then(Value::as_object_mut)
        }
        _ => Some(doc),
    }
}

/// Sets `value` at `key` of `obj`: appended when the attribute is
/// multi-valued and the operation adds.
fn put(obj: &mut Map<String, Value>, key: &str, value: Value, op: Op) {
    match (member_mut(obj, key), op, value) {
        (Some(Value::Array(existing)), Op::Add, Value::Array(new)) => {
            for v in new {
                if !existing.contains(&v) {
                    existing.push(v);
                }
            }
        }
        (Some(Value::Array(existing)), Op::Add, v) => {
            if !existing.contains(&v) {
                existing.push(v);
            }
        }
        // A complex attribute keeps the sub-attributes the value does not
        // name, for add and replace alike (RFC 7644 §3.5.2.1, §3.5.2.3).
        (Some(Value::Object(existing)), Op::Add | Op::Replace, Value::Object(new)) => {
            for (k, v) in new {
                put(existing, &k, v, Op::Replace);
            }
        }
        (Some(slot), _, v) => *slot = v,
        (None, _, v) => {
            obj.insert(key.to_owned(), v);
        }
    }
}

/// Whether `key` names a schema (`urn:…:extension:enterprise:2.0:User`)
/// rather than an attribute of one (`urn:…:2.0:User:department`): a
/// schema's last part is a resource type, capitalized; an attribute's is
/// not.
fn is_schema_urn(key: &str) -> bool {
    key.contains(':')
        && key
            .rsplit(':')
            .next()
            .and_then(|last| last.chars().next())
            .is_some_and(char::is_uppercase)
}

/// The element an `add` through a value path that matches nothing
/// creates: the filter's equality terms (`emails[type eq "work"]` gives
/// `{"type": "work"}`); `None` when the filter says more than that.
fn element_of(f: &ValFilter) -> Option<Map<String, Value>> {
    fn take(f: &ValFilter, out: &mut Map<String, Value>) -> bool {
        match f {
            ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, v))
                if p.sub_attr.is_none() && p.uri.is_none() =>
            {
                let v = match v {
                    CompValue::Str(s) => Value::String(s.clone()),
                    CompValue::True => Value::Bool(true),
                    CompValue::False => Value::Bool(false),
                    CompValue::Number(n) => Value::Number(n.clone()),
                    CompValue::Null => return false,
                };
                out.insert(p.name.clone(), v);
                true
            }
            ValFilter::And(items) => items.iter().all(|i| take(i, out)),
            _ => false,
        }
    }
    let mut out = Map::new();
    take(f, &mut out).then_some(out)
}

/// Applies one PATCH operation to a resource's document. A value-path
/// (`members[value eq "…"]`) that matches nothing is `noTarget` to a
/// replace, nothing to do for a remove, and for an add through equalities
/// the element they describe. A path naming no attribute of `schema` is
/// `invalidPath`; the keys of a value without a path are applied as they
/// come (what the resource does not keep, it ignores, as on a PUT).
pub fn apply(
    doc: &mut Value,
    op: Op,
    path: Option<&str>,
    value: Option<Value>,
    schema: &Schema,
) -> Result<(), ScimError> {
    if let Some(path) = path.filter(|p| !p.trim().is_empty()) {
        let parsed: PatchPath = path.parse().map_err(|_| {
            ScimError::bad_request("invalidPath", format!("`{path}` is not a PATCH path"))
        })?;
        schema.check_patch(&parsed)?;
        if schema.check_mutability(doc, op, &parsed, value.as_ref())? == Mutability::Unchanged {
            return Ok(());
        }
    }
    apply_unchecked(doc, op, path, value)
}

fn apply_unchecked(
    doc: &mut Value,
    op: Op,
    path: Option<&str>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let Some(obj) = doc.as_object_mut() else {
        return Err(ScimError::internal("the resource is not an object"));
    };
    let needs_value = || ScimError::bad_request("invalidValue", "this operation needs a value");
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
        // No path: the value is an object of attributes to add or replace.
        if op == Op::Remove {
            return Err(ScimError::bad_request("noTarget", "a remove needs a path"));
        }
        let Some(Value::Object(values)) = value else {
            return Err(ScimError::bad_request(
                "invalidValue",
                "without a path the value must be an object",
            ));
        };
        for (k, v) in values {
            if is_schema_urn(&k) && v.is_object() {
                // An extension's attributes, merged into its object.
                let obj = doc
                    .as_object_mut()
                    .ok_or_else(|| ScimError::internal("the resource is not an object"))?;
                let ext = match member_mut(obj, &k) {
                    Some(Value::Object(e)) => e,
                    _ => {
                        obj.insert(k.clone(), Value::Object(Map::new()));
                        member_mut(obj, &k)
                            .and_then(Value::as_object_mut)
                            .ok_or_else(|| ScimError::internal("extension"))?
                    }
                };
                if let Value::Object(inner) = v {
                    for (ik, iv) in inner {
                        put(ext, &ik, iv, op);
                    }
                }
            } else {
                // Each key is a path of its own, as Entra ID and Okta send
                // them: `active`, `name.givenName`,
                // `emails[type eq "work"].value`, `urn:…:User:department`.
                apply_unchecked(doc, op, Some(&k), Some(v))?;
            }
        }
        return Ok(());
    };
    let parsed: PatchPath = path.parse().map_err(|_| {
        ScimError::bad_request("invalidPath", format!("`{path}` is not a PATCH path"))
    })?;
    match parsed {
        PatchPath::Attr(p) => {
            let target = target_object(obj, &p).ok_or_else(|| ScimError::internal("no target"))?;
            match (&p.sub_attr, op) {
                (None, Op::Remove) => match (value, member_mut(target, &p.name)) {
                    // Values named in a list (`"value": [{"value": id}]`,
                    // as Entra ID removes group members): only those go.
                    (Some(Value::Array(gone)), Some(Value::Array(held))) => {
                        let named: Vec<&Value> =
                            gone.iter().filter_map(|g| member(g, "value")).collect();
                        if named.len() != gone.len() {
                            return Err(ScimError::bad_request(
                                "invalidValue",
                                "each value to remove names its `value`",
                            ));
                        }
                        held.retain(|h| member(h, "value").is_none_or(|v| !named.contains(&v)));
                    }
                    _ => {
                        remove_member(target, &p.name);
                    }
                },
                (None, _) => put(target, &p.name, value.ok_or_else(needs_value)?, op),
                (Some(sub), Op::Remove) => match member_mut(target, &p.name) {
                    Some(Value::Object(o)) => {
                        remove_member(o, sub);
                    }
                    Some(Value::Array(a)) => {
                        a.iter_mut().filter_map(Value::as_object_mut).for_each(|o| {
                            remove_member(o, sub);
                        })
                    }
                    _ => {}
                },
                (Some(sub), _) => {
                    let v = value.ok_or_else(needs_value)?;
                    match member_mut(target, &p.name) {
                        Some(Value::Array(a)) => {
                            for o in a.iter_mut().filter_map(Value::as_object_mut) {
                                put(o, sub, v.clone(), Op::Replace);
                            }
                        }
                        Some(Value::Object(o)) => put(o, sub, v, Op::Replace),
                        _ => {
                            let mut o = Map::new();
                            o.insert(sub.clone(), v);
                            target.insert(p.name.clone(), Value::Object(o));
                        }
                    }
                }
            }
        }
        PatchPath::Value(vp) => {
            let target =
                target_object(obj, &vp.attr).ok_or_else(|| ScimError::internal("no target"))?;
            let matches = |items: &[Value]| -> Vec<usize> {
                items
                    .iter()
                    .enumerate()
                    .filter(|(_, el)| val_matches(&vp.filter, el))
                    .map(|(i, _)| i)
                    .collect()
            };
            let found = match member_mut(target, &vp.attr.name) {
                Some(Value::Array(items)) => !matches(items).is_empty(),
                _ => false,
            };
            // An add through a filter of equalities that matches nothing
            // adds the element it describes (`emails[type eq "work"].value`
            // on a user with no work email); anything else is `noTarget`.
            if !found
                && op == Op::Add
                && let Some(mut element) = element_of(&vp.filter)
            {
                let v = value.ok_or_else(needs_value)?;
                match (&vp.sub_attr, v) {
                    (Some(sub), v) => put(&mut element, sub, v, Op::Replace),
                    (None, Value::Object(new)) => {
                        for (k, nv) in new {
                            put(&mut element, &k, nv, Op::Replace);
                        }
                    }
                    (None, _) => {
                        return Err(ScimError::bad_request(
                            "invalidValue",
                            format!("`{path}` takes an object"),
                        ));
                    }
                }
                put(
                    target,
                    &vp.attr.name,
                    Value::Array(vec![Value::Object(element)]),
                    Op::Add,
                );
                return Ok(());
            }
            // A remove of what is not there changes nothing and succeeds
            // (RFC 7644 §3.5.2.2: a member that is not one); a replace is
            // `noTarget` (§3.5.2.3).
            let nothing = || {
                if op == Op::Remove {
                    Ok(())
                } else {
                    Err(ScimError::bad_request(
                        "noTarget",
                        format!("`{path}` matches nothing"),
                    ))
                }
            };
            let Some(Value::Array(items)) = member_mut(target, &vp.attr.name) else {
                return nothing();
            };
            let hits = matches(items);
            if hits.is_empty() {
                return nothing();
            }
            match (&vp.sub_attr, op) {
                (None, Op::Remove) => {
                    for i in hits.into_iter().rev() {
                        items.remove(i);
                    }
                }
                (None, _) => {
                    let v = value.ok_or_else(needs_value)?;
                    for i in hits {
                        match (&mut items[i], &v) {
                            (Value::Object(el), Value::Object(new)) => {
                                for (k, nv) in new {
                                    put(el, k, nv.clone(), Op::Replace);
                                }
                            }
                            (slot, _) => *slot = v.clone(),
                        }
                    }
                }
                (Some(sub), Op::Remove) => {
                    for i in hits {
                        if let Some(o) = items[i].as_object_mut() {
                            remove_member(o, sub);
                        }
                    }
                }
                (Some(sub), _) => {
                    let v = value.ok_or_else(needs_value)?;
                    for i in hits {
                        if let Some(o) = items[i].as_object_mut() {
                            put(o, sub, v.clone(), Op::Replace);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: Schema = Schema {
        core_urn: "urn:ietf:params:scim:schemas:core:2.0:User",
        attributes: &[
            ("id", &[]),
            ("userName", &[]),
            ("active", &[]),
            ("name", &["givenName", "familyName"]),
            ("emails", &["value", "type", "primary"]),
            ("meta", &["created", "lastModified"]),
        ],
        extension: Some((
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            &[("department", &[])],
        )),
        required: &["userName"],
    };

    const GROUPS: Schema = Schema {
        core_urn: "urn:ietf:params:scim:schemas:core:2.0:Group",
        attributes: &[("displayName", &[]), ("members", &["value", "type"])],
        extension: None,
        required: &["displayName"],
    };

    fn doc() -> Value {
        json!({
            "id": "A1", "userName": "BJensen", "active": true,
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                       {"value": "babs@home.example", "type": "home"}],
            "meta": {"created": "2026-01-02T00:00:00Z", "lastModified": "2026-01-02T00:00:05.3Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"},
        })
    }

    fn yes(f: &str) -> bool {
        matches(&parse(f, &SCHEMA).unwrap(), &doc())
    }

    #[test]
    fn every_operator_and_combination_evaluates() {
        assert!(yes(r#"userName eq "bjensen""#), "case-insensitive");
        assert!(!yes(r#"id eq "a1""#), "id is case-exact");
        assert!(yes(r#"userName ne "other""#));
        assert!(yes(r#"name.familyName co "ens""#));
        assert!(yes(r#"userName sw "bj""#));
        assert!(yes(r#"userName ew "sen""#));
        assert!(yes("name.givenName pr"));
        assert!(yes(r#"meta.created gt "2026-01-01T00:00:00Z""#));
        assert!(yes(r#"meta.created ge "2026-01-02T00:00:00Z""#));
        assert!(yes(r#"meta.created lt "2027-01-01T00:00:00Z""#));
        assert!(yes(r#"meta.created le "2026-01-02T00:00:00Z""#));
        assert!(yes("active eq true"));
        // As instants, not as text ('.' sorts before 'Z'; offsets differ).
        assert!(yes(r#"meta.lastModified gt "2026-01-02T00:00:05Z""#));
        assert!(!yes(r#"meta.lastModified lt "2026-01-02T00:00:05Z""#));
        assert!(yes(r#"meta.created eq "2026-01-02T01:00:00+01:00""#));
        assert!(yes(r#"emails[type eq "work" and value co "@example.com"]"#));
        assert!(!yes(r#"emails[type eq "work" and value co "@home"]"#));
        assert!(yes(r#"emails co "babs""#));
        assert!(yes(
            r#"userName eq "x" or (active eq true and not (userName eq "y"))"#
        ));
        assert!(yes(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#
        ));
    }

    #[test]
    fn an_unknown_attribute_or_a_broken_filter_is_invalid_filter() {
        for bad in [
            r#"nickName eq "x""#,
            r#"name.nope eq "x""#,
            "userName eq",
            "(userName pr",
            "active gt true",
            r#"emails[primary le false]"#,
        ] {
            let e = parse(bad, &SCHEMA).unwrap_err();
            assert_eq!(e.scim_type, Some("invalidFilter"), "{bad}");
        }
    }

    #[test]
    fn patch_operations_reach_value_paths_and_refuse_what_matches_nothing() {
        let mut d = doc();
        apply(
            &mut d,
            Op::Replace,
            Some(r#"emails[type eq "work"].value"#),
            Some(json!("b@new.example")),
            &SCHEMA,
        )
        .unwrap();
        assert_eq!(d["emails"][0]["value"], "b@new.example");
        apply(
            &mut d,
            Op::Remove,
            Some(r#"emails[type eq "home"]"#),
            None,
            &SCHEMA,
        )
        .unwrap();
        assert_eq!(d["emails"].as_array().unwrap().len(), 1);
        // Removing what is not there succeeds and changes nothing.
        let before = d.clone();
        apply(
            &mut d,
            Op::Remove,
            Some(r#"emails[type eq "other"]"#),
            None,
            &SCHEMA,
        )
        .unwrap();
        assert_eq!(d, before);
        apply(
            &mut d,
            Op::Add,
            Some("emails"),
            Some(json!([{"value": "x@y.example", "type": "other"}])),
            &SCHEMA,
        )
        .unwrap();
        assert_eq!(d["emails"].as_array().unwrap().len(), 2);
        apply(
            &mut d,
            Op::Replace,
            None,
            Some(json!({"active": false, "name.givenName": "Babs"})),
            &SCHEMA,
        )
        .unwrap();
        assert_eq!(
            (d["active"].clone(), d["name"]["givenName"].clone()),
            (json!(false), json!("Babs"))
        );
        apply(&mut d, Op::Remove, Some("name.familyName"), None, &SCHEMA).unwrap();
        assert!(d["name"].get("familyName").is_none());
    }

    #[test]
    fn a_replaced_complex_attribute_keeps_what_the_value_does_not_name() {
        for path in [Some("name"), None] {
            let mut d = doc();
            let value = match path {
                Some(_) => json!({"givenName": "Babs"}),
                None => json!({"name": {"GivenName": "Babs"}}),
            };
            apply(&mut d, Op::Replace, path, Some(value), &SCHEMA).unwrap();
            assert_eq!(
                d["name"],
                json!({"givenName": "Babs", "familyName": "Jensen"}),
                "{path:?}"
            );
        }
    }

    #[test]
    fn a_patch_path_naming_no_attribute_is_invalid_path() {
        for path in [
            "bogus",
            "name.bogus",
            r#"emails[bogus eq "x"]"#,
            r#"emails[type eq "x"].bogus"#,
        ] {
            let e = apply(
                &mut doc(),
                Op::Replace,
                Some(path),
                Some(json!("x")),
                &SCHEMA,
            )
            .unwrap_err();
            assert_eq!(e.scim_type, Some("invalidPath"), "{path}");
        }
        let mut d = doc();
        apply(
            &mut d,
            Op::Replace,
            Some("schemas"),
            Some(json!(["x"])),
            &SCHEMA,
        )
        .unwrap();
    }

    #[test]
    fn read_only_attributes_stay_and_required_ones_are_not_removed() {
        let refused = |op, path: &str, value: Option<Value>| {
            apply(&mut doc(), op, Some(path), value, &SCHEMA)
                .unwrap_err()
                .scim_type
        };
        assert_eq!(
            refused(Op::Replace, "id", Some(json!("B2"))),
            Some("mutability")
        );
        assert_eq!(
            refused(Op::Remove, "meta.created", None),
            Some("mutability")
        );
        assert_eq!(refused(Op::Remove, "userName", None), Some("mutability"));
        // The value it has already: nothing to do.
        let mut d = doc();
        apply(&mut d, Op::Replace, Some("id"), Some(json!("A1")), &SCHEMA).unwrap();
        assert_eq!(d, doc());
    }

    #[test]
    fn without_a_path_each_key_of_the_value_is_a_path() {
        let mut d = doc();
        apply(
            &mut d,
            Op::Replace,
            None,
            Some(json!({
                r#"emails[type eq "work"].value"#: "w@new.example",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"costCenter": "7"},
            })),
            &SCHEMA,
        )
        .unwrap();
        assert_eq!(d["emails"][0]["value"], "w@new.example", "{d}");
        let ext = &d["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
        assert_eq!(
            (ext["department"].clone(), ext["costCenter"].clone()),
            (json!("Ops"), json!("7")),
            "{d}"
        );
        assert!(d.get(r#"emails[type eq "work"].value"#).is_none(), "{d}");
    }

    #[test]
    fn an_add_through_a_filter_that_matches_nothing_adds_what_it_describes() {
        let mut d = json!({"userName": "b"});
        apply(
            &mut d,
            Op::Add,
            Some(r#"emails[type eq "work"].value"#),
            Some(json!("b@work.example")),
            &SCHEMA,
        )
        .unwrap();
        assert_eq!(
            d["emails"],
            json!([{"type": "work", "value": "b@work.example"}])
        );
        apply(
            &mut d,
            Op::Add,
            Some(r#"emails[type eq "home" and primary eq false]"#),
            Some(json!({"value": "b@home.example"})),
            &SCHEMA,
        )
        .unwrap();
        assert_eq!(
            d["emails"][1],
            json!({"type": "home", "primary": false, "value": "b@home.example"})
        );
        // A replace that matches nothing, or a filter that is not
        // equalities, is still refused.
        for (op, path) in [
            (Op::Replace, r#"emails[type eq "other"].value"#),
            (Op::Add, r#"emails[value co "zz"].type"#),
        ] {
            let e = apply(&mut d, op, Some(path), Some(json!("x")), &SCHEMA).unwrap_err();
            assert_eq!(e.scim_type, Some("noTarget"), "{path}");
        }
    }

    #[test]
    fn a_remove_with_a_list_of_values_removes_only_those() {
        let mut d = json!({"members": [{"value": "a"}, {"value": "b"}, {"value": "c"}]});
        let gone = json!([{"value": "a"}, {"value": "c"}]);
        apply(&mut d, Op::Remove, Some("members"), Some(gone), &GROUPS).unwrap();
        assert_eq!(d["members"], json!([{"value": "b"}]));
        let e = apply(
            &mut d,
            Op::Remove,
            Some("members"),
            Some(json!(["b"])),
            &GROUPS,
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some("invalidValue"));
        apply(&mut d, Op::Remove, Some("members"), None, &GROUPS).unwrap();
        assert!(d.get("members").is_none());
    }

    #[test]
    fn an_extension_named_whole_is_kept_or_dropped_whole() {
        let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let path = attr_path(ext).unwrap();
        let mut d = doc();
        project(&mut d, std::slice::from_ref(&path), &[]);
        assert_eq!(d[ext]["department"], "Sales", "{d}");
        assert!(d.get("userName").is_none(), "{d}");
        let mut d = doc();
        project(&mut d, &[], &[path]);
        assert!(d.get(ext).is_none() && d["userName"] == "BJensen", "{d}");
    }

    #[test]
    fn projections_keep_or_drop_what_they_name() {
        let mut d = doc();
        project(
            &mut d,
            &[
                attr_path("userName").unwrap(),
                attr_path("name.givenName").unwrap(),
            ],
            &[],
        );
        assert_eq!(d["userName"], "BJensen");
        assert_eq!(d["name"], json!({"givenName": "Barbara"}));
        assert!(d.get("emails").is_none());
        assert_eq!(d["id"], "A1", "always returned");
        let mut d = doc();
        project(&mut d, &[], &[attr_path("emails").unwrap()]);
        assert!(d.get("emails").is_none());
        assert_eq!(d["userName"], "BJensen");
    }
}
