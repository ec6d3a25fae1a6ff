//! `/admin/audit`: the audit trail. Every event of the log is an entry
//! (who, what, which stream, from where, when, success or refusal); entries
//! are listed newest first, exported as JSON lines or CSV, and each links to
//! its stored event. Reading the trail changes nothing, so it records
//! nothing.

use std::net::IpAddr;
use std::sync::LazyLock;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use eventlog::{Direction, Position, RecordedEvent};
use projections::ReadDb;
use projections::audit::{self as model, ActionFilter, AuditEntry, AuditFilter, AuditOutcome};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{AdminCaller, Page, PageQuery};
use crate::problem::Problem;
use crate::state::AppState;

type QueryRejection = axum::extract::rejection::QueryRejection;
type PathRejection = axum::extract::rejection::PathRejection;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/audit", get(list))
        .route("/admin/audit/export", get(export))
        // A position reads `commit/prepare` when its halves differ.
        .route("/admin/audit/events/{*position}", get(event))
}

/// The filters of the audit trail; all that are given must hold.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditFilterQuery {
    /// The actor's id: a client id, a user id.
    pub actor_id: Option<String>,
    /// `user`, `client`, `system` or `anonymous`.
    pub actor_kind: Option<String>,
    /// An event type (`client.created.v1`), or a prefix of one ending with
    /// `*` (`client.*`).
    pub action: Option<String>,
    /// The stream an event was appended to (`client-{id}`).
    pub target: Option<String>,
    /// The category of that stream (`client`, `tokens`, `authfailures`).
    pub category: Option<String>,
    /// The data subject an event is about.
    pub subject: Option<String>,
    /// An organization id (a GUID).
    pub organization: Option<String>,
    /// The IP address a request came from.
    pub source_ip: Option<String>,
    /// The `User-Agent` header a request carried, exactly as recorded.
    pub user_agent: Option<String>,
    /// The id shared by the events of one request (a GUID).
    pub correlation_id: Option<String>,
    /// `success`, or `failure` for recorded refusals (failed client
    /// authentications, refresh-token reuse).
    pub outcome: Option<String>,
    /// RFC 3339: entries that occurred at or after this time.
    pub from_time: Option<String>,
    /// RFC 3339: entries that occurred before this time.
    pub to_time: Option<String>,
}

/// How to export.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `jsonl` (one JSON entry per line; the default) or `csv` (RFC 4180,
    /// with a header row).
    pub format: Option<String>,
}

/// A GUID parameter.
fn guid(name: &str, v: Option<String>) -> Result<Option<Uuid>, Problem> {
    v.map(|g| {
        Uuid::parse_str(&g).map_err(|_| Problem::bad_request(format!("{name} must be a GUID")))
    })
    .transpose()
}

/// The names of the filters, from the OpenAPI description of
/// [`AuditFilterQuery`] (so they cannot drift from its fields), built once.
static FILTER_NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
    AuditFilterQuery::into_params(|| None)
        .into_iter()
        .map(|p| p.name)
        .collect()
});

/// The query parameters a request gave, each at most once, in a map that
/// the filter struct is read from (it refuses names it does not know).
struct Params(Map<String, Value>);

impl Params {
    fn of(pairs: Vec<(String, String)>) -> Result<Self, Problem> {
        let mut map = Map::new();
        for (k, v) in pairs {
            if v.is_empty() {
                return Err(Problem::bad_request(format!(
                    "`{k}` is empty; leave it out to match any value"
                )));
            }
            if map.insert(k.clone(), Value::String(v)).is_some() {
                return Err(Problem::bad_request(format!("`{k}` is given twice")));
            }
        }
        Ok(Self(map))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        match self.0.remove(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The audit filter from the remaining parameters; `taken` names the
    /// endpoint's other parameters, for the answer to a name it does not
    /// know.
    fn filter(self, taken: &[&str]) -> Result<AuditFilter, Problem> {
        let filters = &*FILTER_NAMES;
        if let Some(unknown) = self.0.keys().find(|k| !filters.contains(k)) {
            let known: Vec<String> = taken
                .iter()
                .copied()
                .chain(filters.iter().map(String::as_str))
                .map(|n| format!("`{n}`"))
                .collect();
            return Err(Problem::bad_request(format!(
                "unknown parameter `{unknown}`; this endpoint takes {}",
                known.join(", ")
            )));
        }
        let q: AuditFilterQuery = serde_json::from_value(Value::Object(self.0))
            .map_err(|e| Problem::bad_request(e.to_string()))?;
        let time = |name: &str, v: Option<String>| {
            v.map(|t| {
                OffsetDateTime::parse(&t, &Rfc3339).map_err(|_| {
                    Problem::bad_request(format!("{name} must be an RFC 3339 date-time"))
                })
            })
            .transpose()
        };
        let from_time = time("from_time", q.from_time)?;
        let to_time = time("to_time", q.to_time)?;
        if let (Some(f), Some(t)) = (from_time, to_time)
            && f > t
        {
            return Err(Problem::bad_request("from_time is after to_time"));
        }
        let action = match q.action {
            Some(a) if a.trim_end_matches('*').contains('*') || a.ends_with("**") => {
                return Err(Problem::bad_request(
                    "action is an event type, or a prefix of one ending with a single `*`",
                ));
            }
            Some(a) => Some(ActionFilter::parse(&a)),
            None => None,
        };
        Ok(AuditFilter {
            actor_id: q.actor_id,
            actor_kind: q
                .actor_kind
                .map(|k| {
                    model::parse_actor_kind(&k).ok_or_else(|| {
                        Problem::bad_request(
                            "actor_kind must be `user`, `client`, `system` or `anonymous`",
                        )
                    })
                })
                .transpose()?,
            action,
            target: q.target,
            category: q.category,
            subject: q.subject,
            organization: guid("organization", q.organization)?,
            // The form the request context records.
            source_ip: q
                .source_ip
                .map(|ip| {
                    ip.parse::<IpAddr>()
                        .map(|ip| ip.to_string())
                        .map_err(|_| Problem::bad_request("source_ip must be an IP address"))
                })
                .transpose()?,
            user_agent: q.user_agent,
            correlation_id: guid("correlation_id", q.correlation_id)?,
            outcome: q
                .outcome
                .map(|o| {
                    AuditOutcome::parse(&o).ok_or_else(|| {
                        Problem::bad_request("outcome must be `success` or `failure`")
                    })
                })
                .transpose()?,
            from_time,
            to_time,
        })
    }
}

/// Where an entry's stored event can be read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditLinks {
    pub event: String,
}

/// One audited event: its envelope, never its data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntryView {
    /// The event's position in the log (also the pagination cursor).
    pub position: String,
    pub commit_position: u64,
    pub prepare_position: u64,
    pub event_id: String,
    /// When it happened (RFC 3339, UTC).
    pub occurred_at: String,
    /// When the log stored it.
    pub recorded_at: String,
    /// `user`, `client`, `system` or `anonymous`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    /// The event type.
    pub action: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The stream the event was appended to.
    pub target: String,
    pub category: String,
    /// The event's revision in its stream.
    pub revision: u64,
    pub subject: Option<String>,
    pub organization: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub links: AuditLinks,
}

fn event_link(at: Position) -> String {
    format!("/admin/audit/events/{at}")
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        Self {
            position: e.position.to_string(),
            commit_position: e.position.commit,
            prepare_position: e.position.prepare,
            event_id: e.event_id,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            actor_kind: e.actor_kind,
            actor_id: e.actor_id,
            action: e.action,
            outcome: e.outcome.as_str().to_owned(),
            target: e.stream,
            category: e.category,
            revision: e.revision,
            subject: e.subject,
            organization: e.organization_id,
            source_ip: e.source_ip,
            user_agent: e.user_agent,
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            links: AuditLinks {
                event: event_link(e.position),
            },
        }
    }
}

fn cursor(s: &str) -> Result<Position, Problem> {
    s.parse()
        .map_err(|_| Problem::bad_request("cursor is not one this API gave out"))
}

/// The audit trail, newest first, filtered, a page at a time. Needs `idp:admin`.
/// Waits until the trail holds every event the log had committed when the
/// request arrived: an admin who just saw something happen finds it.
async fn as_of_now(state: &AppState) -> Result<(), Problem> {
    match state.log.head().await.map_err(|e| Problem::internal(&e))? {
        Some(head) => super::settle_at(state, head).await,
        None => Ok(()),
    }
}

#[utoipa::path(get, path = "/admin/audit", params(AuditFilterQuery, PageQuery),
    responses((status = 200, body = Page<AuditEntryView>, description = "done"),
        (status = 400, description = "an unknown filter, a bad value or time"),
        (status = 503, description = "the trail has not caught up with the log within 10 s")),
    security(("bearer" = ["idp:admin"])), tag = "audit")]
pub async fn list(
    State(state): State<AppState>,
    caller: AdminCaller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Page<AuditEntryView>>, Problem> {
    let Query(pairs) = query?;
    let mut params = Params::of(pairs)?;
    let limit = params
        .take("limit")
        .map(|n| {
            n.parse::<i64>()
                .map_err(|_| Problem::bad_request("limit must be a number"))
        })
        .transpose()?;
    let limit = PageQuery {
        limit,
        cursor: None,
    }
    .limit()?;
    let before = params.take("cursor").as_deref().map(cursor).transpose()?;
    let mut filter = params.filter(&["limit", "cursor"])?;
    filter.organization = caller.list_scope(filter.organization)?;
    as_of_now(&state).await?;
    let rows = model::query(&state.read_db, &filter, before, limit + 1)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let items: Vec<AuditEntryView> = rows.into_iter().map(Into::into).collect();
    Ok(Json(Page::from_overfetch(items, limit, |e| {
        e.position.clone()
    })))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
}

/// Entries read from the read model per query while exporting.
const EXPORT_PAGE: i64 = 500;

const CSV_COLUMNS: [&str; 19] = [
    "position",
    "event_id",
    "occurred_at",
    "recorded_at",
    "actor_kind",
    "actor_id",
    "action",
    "outcome",
    "target",
    "category",
    "revision",
    "subject",
    "organization",
    "source_ip",
    "user_agent",
    "correlation_id",
    "causation_id",
    "commit_position",
    "prepare_position",
];

fn csv_fields(v: AuditEntryView) -> [String; 19] {
    let o = Option::unwrap_or_default;
    [
        v.position,
        v.event_id,
        v.occurred_at,
        v.recorded_at,
        v.actor_kind,
        o(v.actor_id),
        v.action,
        v.outcome,
        v.target,
        v.category,
        v.revision.to_string(),
        o(v.subject),
        o(v.organization),
        o(v.source_ip),
        o(v.user_agent),
        v.correlation_id,
        o(v.causation_id),
        v.commit_position.to_string(),
        v.prepare_position.to_string(),
    ]
}

/// One RFC 4180 record: fields with a comma, a quote or a line break are
/// quoted, quotes doubled; CRLF ends it.
fn csv_record<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let f = f.as_ref();
        // A field a spreadsheet would run as a formula (a user agent is the
        // caller's to choose) is prefixed with an apostrophe (OWASP's CSV
        // injection advice); no field the platform writes starts that way.
        let neutralized;
        let f = if f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            neutralized = format!("'{f}");
            neutralized.as_str()
        } else {
            f
        };
        if f.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push_str("\r\n");
}

fn encode(page: Vec<AuditEntry>, format: Format, out: &mut String) {
    for e in page {
        let view = AuditEntryView::from(e);
        match format {
            Format::Jsonl => {
                // A struct of strings and numbers always serializes.
                out.push_str(&serde_json::to_string(&view).unwrap_or_default());
                out.push('\n');
            }
            Format::Csv => csv_record(out, &csv_fields(view)),
        }
    }
}

/// What the export stream does next.
enum Step {
    /// Send this page (the first, read before the response started).
    Send(Vec<AuditEntry>),
    /// Read and send the page before this position.
    Fetch(Position),
    Done,
}

/// An export in progress: what it reads and how it writes.
struct Export {
    db: ReadDb,
    filter: AuditFilter,
    format: Format,
    page_size: i64,
}

impl Export {
    /// Encodes a page (after `out`, the CSV header on the first) and says
    /// what follows it.
    fn emit(&self, page: Vec<AuditEntry>, mut out: String) -> (Bytes, Step) {
        let next = match page.last() {
            Some(last) if page.len() as i64 >= self.page_size => Step::Fetch(last.position),
            _ => Step::Done,
        };
        encode(page, self.format, &mut out);
        (Bytes::from(out), next)
    }

    /// The body: `first` (already read), then one page per read until the
    /// filter matches no more. A failed read ends the stream with an error,
    /// which cuts the download off rather than leaving it silently short.
    fn stream(
        self,
        first: Vec<AuditEntry>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let mut head = match self.format {
            Format::Csv => {
                let mut h = String::new();
                csv_record(&mut h, &CSV_COLUMNS);
                Some(h)
            }
            Format::Jsonl => None,
        };
        futures_util::stream::unfold((Step::Send(first), self), move |(step, export)| {
            let head = head.take().unwrap_or_default();
            async move {
                let page = match step {
                    Step::Done => return None,
                    Step::Send(page) => page,
                    Step::Fetch(before) => {
                        let read = model::query(
                            &export.db,
                            &export.filter,
                            Some(before),
                            export.page_size,
                        )
                        .await;
                        match read {
                            Ok(page) if page.is_empty() => return None,
                            Ok(page) => page,
                            Err(e) => {
                                tracing::error!(error = %e, "audit export failed; the download is cut off");
                                let e = std::io::Error::other(e.to_string());
                                return Some((Err(e), (Step::Done, export)));
                            }
                        }
                    }
                };
                let (bytes, next) = export.emit(page, head);
                Some((Ok(bytes), (next, export)))
            }
        })
    }
}

/// Every entry that passes the filters, newest first, streamed as JSON lines
/// or CSV, read from the read model a page at a time. Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/audit/export", params(ExportQuery, AuditFilterQuery),
    responses((status = 200, description = "application/x-ndjson or text/csv", body = String),
        (status = 400, description = "an unknown filter or format, a bad value or time"),
        (status = 503, description = "the trail has not caught up with the log within 10 s")),
    security(("bearer" = ["idp:admin"])), tag = "audit")]
pub async fn export(
    State(state): State<AppState>,
    caller: AdminCaller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(pairs) = query?;
    let mut params = Params::of(pairs)?;
    let format = match params.take("format").as_deref() {
        None | Some("jsonl") => Format::Jsonl,
        Some("csv") => Format::Csv,
        Some(_) => return Err(Problem::bad_request("format must be `jsonl` or `csv`")),
    };
    let mut filter = params.filter(&["format"])?;
    filter.organization = caller.list_scope(filter.organization)?;
    as_of_now(&state).await?;
    // The first page is read before answering, so that a failing read model
    // is a problem document rather than a cut-off download.
    let first = model::query(&state.read_db, &filter, None, EXPORT_PAGE)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let stream = Export {
        db: state.read_db.clone(),
        filter,
        format,
        page_size: EXPORT_PAGE,
    }
    .stream(first);
    let (content_type, ext) = match format {
        Format::Jsonl => ("application/x-ndjson", "jsonl"),
        Format::Csv => ("text/csv; charset=utf-8; header=present", "csv"),
    };
    let stamp = state
        .clock
        .now()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    let mut resp = Body::from_stream(stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"audit-{stamp}.{ext}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// An event as the log stores it, envelope and data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoredEventView {
    pub id: String,
    pub position: String,
    pub stream: String,
    pub revision: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's data. Secret hashes show as
    /// `{"$redacted": "sha256", "prefix": …}` and sealed keys as
    /// `{"$redacted": "sealed"}`.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Actor, correlation and causation ids, source IP, user agent,
    /// organization, occurred_at.
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub subject: Option<String>,
    pub recorded_at: String,
}

/// Replaces what derives from a secret: hashes (`hash`, `…_hash`) keep an
/// 8-character prefix to match against, sealed private keys nothing.
fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "hash" || k.ends_with("_hash") {
                    if let Value::String(h) = v {
                        let prefix: String = h.chars().take(8).collect();
                        *v = json!({ "$redacted": "sha256", "prefix": prefix });
                    }
                } else if k.starts_with("sealed_") {
                    *v = json!({ "$redacted": "sealed" });
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

impl TryFrom<RecordedEvent> for StoredEventView {
    type Error = serde_json::Error;

    fn try_from(e: RecordedEvent) -> Result<Self, serde_json::Error> {
        let mut data = e.data.into_value()?;
        redact(&mut data);
        Ok(Self {
            id: e.id.to_string(),
            position: e.position.to_string(),
            stream: e.stream,
            revision: e.revision,
            event_type: e.event_type,
            data,
            metadata: serde_json::to_value(&e.metadata).unwrap_or(Value::Null),
            subject: e.subject,
            recorded_at: e
                .recorded_at
                .to_offset(time::UtcOffset::UTC)
                .format(&Rfc3339)
                .unwrap_or_default(),
        })
    }
}

/// The stored event behind an audit entry, read from the log (404 once a
/// retention policy has dropped its stream). Needs `idp:admin`.
#[utoipa::path(get, path = "/admin/audit/events/{position}",
    params(("position" = String, Path, description = "The entry's `position`")),
    responses((status = 200, body = StoredEventView, description = "done"), (status = 400, description = "malformed: an RFC 9457 problem"), (status = 404, description = "not found (or in another organization)")),
    security(("bearer" = ["idp:admin"])), tag = "audit")]
pub async fn event(
    State(state): State<AppState>,
    caller: AdminCaller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<StoredEventView>, Problem> {
    let Path(position) = path?;
    let at: Position = position
        .parse()
        .map_err(|_| Problem::bad_request("not a log position"))?;
    let entry = model::get(&state.read_db, at)
        .await
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(|| Problem::not_found("audit entry"))?;
    if !caller.platform {
        caller.within(
            entry
                .organization_id
                .as_deref()
                .and_then(|o| Uuid::parse_str(o).ok()),
            "audit entry",
        )?;
    }
    let found = state
        .log
        .read_stream(&entry.stream, Direction::Forwards, Some(entry.revision), 1)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let stored = found
        .into_iter()
        .find(|e| e.id.to_string() == entry.event_id)
        .ok_or_else(|| Problem::not_found("event in the log"))?;
    let view = StoredEventView::try_from(stored).map_err(|e| Problem::internal(&e))?;
    Ok(Json(view))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = String::new();
        csv_record(
            &mut out,
            &["plain", "a,b", "say \"hi\"", "two\nlines", "", "cr\r"],
        );
        assert_eq!(
            out,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",,\"cr\r\"\r\n"
        );
    }

    #[test]
    fn csv_fields_a_spreadsheet_would_run_are_neutralized() {
        let mut out = String::new();
        csv_record(
            &mut out,
            &["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "curl/8.0"],
        );
        assert_eq!(
            out,
            "\"'=HYPERLINK(\"\"x\"\")\",'+1,'-2,'@SUM(A1),curl/8.0\r\n"
        );
    }

    #[test]
    fn hashes_and_sealed_keys_are_redacted() {
        let mut v = json!({"secret_id": "s", "hash": "0123456789abcdef", "nested": [{"refresh_hash": "fedcba9876543210"}],
            "sealed_private_key": "AAAA", "hashes": "kept"});
        redact(&mut v);
        assert_eq!(
            v["hash"],
            json!({"$redacted": "sha256", "prefix": "01234567"})
        );
        assert_eq!(v["nested"][0]["refresh_hash"]["prefix"], "fedcba98");
        assert_eq!(v["sealed_private_key"], json!({"$redacted": "sealed"}));
        assert_eq!(
            (v["secret_id"].as_str(), v["hashes"].as_str()),
            (Some("s"), Some("kept"))
        );
    }

    /// When the entries of [`trail`] happened (any instant will do).
    const AT: OffsetDateTime = time::macros::datetime!(2026-12-01 12:00 UTC);

    /// A read model holding `n` audit entries at positions 1..=n.
    async fn trail(dir: &tempfile::TempDir, n: u64) -> ReadDb {
        use projections::Projection;
        let url = format!("sqlite:{}", dir.path().join("read.db").display());
        let db = ReadDb::connect(&url, 2).await.unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        for i in 1..=n {
            let event = RecordedEvent {
                id: Uuid::now_v7(),
                stream: format!("thing-{i}"),
                revision: 0,
                position: Position::new(i, i),
                event_type: if i % 3 == 0 {
                    "client.authentication_failed.v1"
                } else {
                    "thing.done.v1"
                }
                .to_owned(),
                data: json!({}).into(),
                metadata: domain::Metadata {
                    user_agent: Some(format!("agent {i}, \"quoted\"")),
                    ..domain::Metadata::system(Uuid::now_v7(), AT)
                },
                subject: None,
                recorded_at: AT,
            };
            model::AuditProjection
                .apply(&mut conn, projections::Tables::live(db.dialect), &event)
                .await
                .unwrap();
        }
        db
    }

    async fn export_all(
        db: &ReadDb,
        filter: AuditFilter,
        format: Format,
        page_size: i64,
    ) -> String {
        use futures_util::StreamExt;
        let first = model::query(db, &filter, None, page_size).await.unwrap();
        let export = Export {
            db: db.clone(),
            filter,
            format,
            page_size,
        };
        let chunks: Vec<_> = export.stream(first).collect().await;
        chunks
            .into_iter()
            .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn an_export_reads_page_after_page_until_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let db = trail(&dir, 10).await;
        for page_size in [1, 3, 5, 10, 500] {
            let jsonl = export_all(&db, AuditFilter::default(), Format::Jsonl, page_size).await;
            let positions: Vec<String> = jsonl
                .lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["position"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect();
            let want: Vec<String> = (1..=10).rev().map(|i: u64| i.to_string()).collect();
            assert_eq!(positions, want, "page size {page_size}");

            let csv = export_all(&db, AuditFilter::default(), Format::Csv, page_size).await;
            assert!(csv.starts_with("position,event_id,"));
            assert_eq!(csv.matches("\r\n").count(), 11, "a header and ten records");
            assert!(csv.contains("\"agent 7, \"\"quoted\"\"\""), "{csv}");
        }
        let failures = AuditFilter {
            outcome: Some(AuditOutcome::Failure),
            ..AuditFilter::default()
        };
        let csv = export_all(&db, failures, Format::Csv, 2).await;
        let first_column: Vec<&str> = csv.lines().map(|l| l.split(',').next().unwrap()).collect();
        assert_eq!(first_column, vec!["position", "9", "6", "3"]);
        let empty = AuditFilter {
            actor_id: Some("nobody".into()),
            ..AuditFilter::default()
        };
        assert_eq!(export_all(&db, empty, Format::Jsonl, 2).await, "");
    }

    #[test]
    fn filters_refuse_unknown_names_and_values() {
        let p = |pairs: &[(&str, &str)]| {
            Params::of(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
            .and_then(|params| params.filter(&["limit"]))
        };
        let unknown = format!("{:?}", p(&[("actor", "x")]).unwrap_err());
        assert!(
            unknown.contains("unknown parameter `actor`")
                && unknown.contains("`limit`, `actor_id`")
                && unknown.contains("`to_time`"),
            "{unknown}"
        );
        assert!(p(&[("outcome", "maybe")]).is_err());
        assert!(p(&[("actor_kind", "robot")]).is_err());
        assert!(p(&[("from_time", "yesterday")]).is_err());
        assert!(p(&[("action", "client.*.v1")]).is_err());
        assert!(p(&[("actor_id", "a"), ("actor_id", "b")]).is_err());
        assert!(p(&[("actor_id", "")]).is_err());
        let f = p(&[
            ("action", "client.*"),
            ("outcome", "failure"),
            ("source_ip", "127.0.0.1"),
            ("from_time", "2026-01-01T00:00:00Z"),
        ])
        .unwrap();
        assert_eq!(f.action, Some(ActionFilter::Prefix("client.".into())));
        assert_eq!(f.outcome, Some(AuditOutcome::Failure));
    }
}
