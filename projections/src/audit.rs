//! The audit trail: every event of the log as one entry of who did what to
//! which stream, from where, when, and whether it was a refusal. Only the
//! envelope is kept; event data (secret hashes, personal values) never
//! reaches this read model, and the full event stays in the log.

use std::collections::BTreeMap;

use async_trait::async_trait;
use domain::ActorKind;
use domain::registration::AUTH_TOKEN_REUSE_DETECTED_V1;
use domain::token::{CLIENT_AUTH_FAILED_V1, JOURNAL_CATEGORIES, JOURNAL_EVENT_TYPES};
use eventlog::category_of;
use eventlog::{Position, RecordedEvent};
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::db::{Dialect, ReadDb};
use crate::fields::values_sql;
use crate::generation::Tables;
use crate::runner::{Projection, ProjectionError};

/// The event types that record a refusal: their entries have the outcome
/// `failure`, every other event's `success`.
pub const FAILURE_EVENT_TYPES: &[&str] = &[
    CLIENT_AUTH_FAILED_V1,
    AUTH_TOKEN_REUSE_DETECTED_V1,
    domain::sign_in::STEP_FAILED_V1,
    domain::sign_in::ACCOUNT_SLOWED_V1,
];

/// Whether an audited action succeeded or recorded a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    Success,
    Failure,
}

impl AuditOutcome {
    /// The outcome an event of `event_type` records.
    pub fn of(event_type: &str) -> Self {
        if FAILURE_EVENT_TYPES.contains(&event_type) {
            Self::Failure
        } else {
            Self::Success
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            _ => None,
        }
    }
}

/// The wire name of an actor kind (as `Metadata` serializes it).
pub fn actor_kind_str(kind: ActorKind) -> &'static str {
    match kind {
        ActorKind::User => "user",
        ActorKind::Client => "client",
        ActorKind::System => "system",
        ActorKind::Anonymous => "anonymous",
    }
}

pub fn parse_actor_kind(s: &str) -> Option<ActorKind> {
    [
        ActorKind::User,
        ActorKind::Client,
        ActorKind::System,
        ActorKind::Anonymous,
    ]
    .into_iter()
    .find(|k| actor_kind_str(*k) == s)
}

pub struct AuditProjection;

fn utc_text(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Unix microseconds: the column time ranges compare.
pub fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// RFC 3339 UTC of unix microseconds, as entries show their times.
fn micros_text(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map(utc_text)
        .unwrap_or_default()
}

/// The minute of `audit_minutes` that unix microseconds fall in.
fn minute_of(us: i64) -> i64 {
    us.div_euclid(60_000_000)
}

/// Whether entries of streams in `category` are journal entries (indexed
/// only by actor, organization and correlation: see the migration).
fn journal_category(category: &str) -> bool {
    JOURNAL_CATEGORIES.contains(&category)
}

const ENTRY_COLUMNS: &str =
    "commit_pos, prepare_pos, event_id, stream, category, revision, action, journal,
     outcome, occurred_us, recorded_us, actor_kind, actor_id, subject, organization_id,
     source_ip, user_agent, correlation_id, causation_id";
/// Values per entry (the columns above).
const PER_ROW: usize = 19;

/// Entries per INSERT: fewer statements (each a hop to SQLite's worker
/// thread) for SQLite, whose limit is 32,766 parameters; PostgreSQL's
/// planner prefers shorter statements.
fn rows_per_insert(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Sqlite => 500,
        Dialect::Postgres => 50,
    }
}

/// `INSERT ... VALUES (...), (...)` for `rows` entries. SQLite gets
/// anonymous `?` parameters: for numbered ones it looks up each
/// parameter's name in a list as long as the statement's parameters, which
/// made binding many of them cost more than the insert itself.
fn insert_sql(table: &str, dialect: Dialect, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({ENTRY_COLUMNS}) VALUES ");
    values_sql(&mut sql, dialect, rows, PER_ROW);
    sql.push_str(" ON CONFLICT (commit_pos, prepare_pos) DO NOTHING");
    sql
}

/// Widens each minute's range of positions by this batch's entries.
fn minutes_sql(table: &str, dialect: Dialect, rows: usize) -> String {
    let (least, greatest) = match dialect {
        Dialect::Sqlite => ("min", "max"),
        Dialect::Postgres => ("LEAST", "GREATEST"),
    };
    let mut sql = format!("INSERT INTO {table} (minute, first_commit, last_commit) VALUES ");
    values_sql(&mut sql, dialect, rows, 3);
    sql.push_str(&format!(
        " ON CONFLICT (minute) DO UPDATE SET
            first_commit = {least}({table}.first_commit, excluded.first_commit),
            last_commit = {greatest}({table}.last_commit, excluded.last_commit)"
    ));
    sql
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds the [`ENTRY_COLUMNS`] of one event's entry. Only the envelope is read.
fn bind_entry<'q>(q: AnyQuery<'q>, e: &RecordedEvent) -> AnyQuery<'q> {
    let m = &e.metadata;
    let category = e.category();
    q.bind(e.position.commit as i64)
        .bind(e.position.prepare as i64)
        .bind(e.id.as_bytes().to_vec())
        .bind(e.stream.clone())
        .bind(category.to_owned())
        .bind(e.revision as i64)
        .bind(e.event_type.clone())
        .bind(i64::from(journal_category(category)))
        .bind(AuditOutcome::of(&e.event_type).as_str())
        .bind(micros(m.occurred_at))
        .bind(micros(e.recorded_at))
        .bind(actor_kind_str(m.actor.kind))
        .bind(m.actor.id.clone())
        .bind(e.subject.clone())
        .bind(m.organization.map(|o| o.as_bytes().to_vec()))
        .bind(m.source_ip.clone())
        .bind(m.user_agent.clone())
        .bind(m.correlation_id.as_bytes().to_vec())
        .bind(m.causation_id.map(|c| c.as_bytes().to_vec()))
}

#[async_trait]
impl Projection for AuditProjection {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn version(&self) -> u32 {
        3
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_entries", "audit_minutes", crate::sign_ins::TABLE]
    }

    fn handles(&self, _: &RecordedEvent) -> bool {
        true
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, tables, &[e]).await
    }

    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        tables: Tables,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // Many entries per statement inside the runner's batch transaction,
        // and no decoding of event data: this keeps up with the per-token
        // journal.
        let table = tables.name("audit_entries");
        let mut minutes: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for chunk in events.chunks(rows_per_insert(tables.dialect)) {
            let sql = insert_sql(&table, tables.dialect, chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                q = bind_entry(q, e);
                let at = e.position.commit as i64;
                let span = minutes
                    .entry(minute_of(micros(e.metadata.occurred_at)))
                    .or_insert((at, at));
                span.0 = span.0.min(at);
                span.1 = span.1.max(at);
            }
            q.execute(&mut *conn).await?;
        }
        let table = tables.name("audit_minutes");
        let minutes: Vec<_> = minutes.into_iter().collect();
        for chunk in minutes.chunks(rows_per_insert(tables.dialect)) {
            let sql = minutes_sql(&table, tables.dialect, chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (minute, (first, last)) in chunk {
                q = q.bind(*minute).bind(*first).bind(*last);
            }
            q.execute(&mut *conn).await?;
        }
        // A stream retention dropped takes its entries along: the trail
        // keeps the record of the drop, as a rebuild would.
        let table = tables.name("audit_entries");
        for e in events
            .iter()
            .filter(|e| e.event_type == domain::retention::STREAM_DROPPED_V1)
        {
            let dropped: domain::retention::StreamDropped =
                eventlog::decode(e).map_err(|err| ProjectionError::Apply {
                    projection: "audit",
                    event: format!("{} at {}", e.event_type, e.position),
                    reason: err.to_string(),
                })?;
            let journal = i32::from(journal_category(category_of(&dropped.stream)));
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE stream = $1 AND journal = $2 AND commit_pos < $3"
            )))
            .bind(dropped.stream)
            .bind(journal)
            .bind(e.position.commit as i64)
            .execute(&mut *conn)
            .await?;
        }
        crate::sign_ins::apply(conn, tables, events).await
    }
}

/// One audited event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub position: Position,
    pub event_id: String,
    /// The stream the event was appended to (the target).
    pub stream: String,
    pub category: String,
    pub revision: u64,
    /// The event type.
    pub action: String,
    pub outcome: AuditOutcome,
    /// `metadata.occurred_at`, RFC 3339 UTC.
    pub occurred_at: String,
    pub recorded_at: String,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub subject: Option<String>,
    pub organization_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: String,
    pub causation_id: Option<String>,
}

/// An action filter: one event type, or every type starting with a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionFilter {
    Exact(String),
    Prefix(String),
}

impl ActionFilter {
    /// `client.created.v1` is exact; `client.*` is the prefix `client.`.
    pub fn parse(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some(prefix) => Self::Prefix(prefix.to_owned()),
            None => Self::Exact(s.to_owned()),
        }
    }
}

/// Filters of the audit trail; `None` means any. All of them must hold.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    pub actor_kind: Option<ActorKind>,
    pub action: Option<ActionFilter>,
    /// The stream.
    pub target: Option<String>,
    pub category: Option<String>,
    pub subject: Option<String>,
    pub organization: Option<Uuid>,
    pub source_ip: Option<String>,
    /// The User-Agent a request carried, exactly.
    pub user_agent: Option<String>,
    pub correlation_id: Option<Uuid>,
    pub outcome: Option<AuditOutcome>,
    /// Inclusive.
    pub from_time: Option<OffsetDateTime>,
    /// Exclusive.
    pub to_time: Option<OffsetDateTime>,
}

/// The smallest string above every string that starts with `prefix`, if
/// there is one (bytewise order, which is code point order in UTF-8).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

enum Arg {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
}

/// A WHERE clause built from the filters that are set, so that each query
/// names only the columns it filters on and the planner can pick the index.
#[derive(Default)]
struct Where {
    terms: Vec<String>,
    args: Vec<Arg>,
    /// Whether the filters only match entries of aggregate streams, so that
    /// the partial indexes over them (`WHERE journal = 0`) apply.
    aggregates_only: bool,
}

impl Where {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    fn eq(&mut self, column: &str, value: &Option<String>) {
        if let Some(v) = value {
            let p = self.arg(Arg::Text(v.clone()));
            self.terms.push(format!("{column} = {p}"));
        }
    }

    /// A UUID column, stored as its 16 bytes.
    fn eq_uuid(&mut self, column: &str, value: Option<Uuid>) {
        if let Some(v) = value {
            let p = self.arg(Arg::Bytes(v.as_bytes().to_vec()));
            self.terms.push(format!("{column} = {p}"));
        }
    }

    fn of(filter: &AuditFilter, before: Option<Position>) -> Self {
        let mut w = Self::default();
        w.eq("actor_id", &filter.actor_id);
        w.eq(
            "actor_kind",
            &filter.actor_kind.map(|k| actor_kind_str(k).to_owned()),
        );
        match &filter.action {
            Some(ActionFilter::Exact(a)) => {
                w.aggregates_only |= !JOURNAL_EVENT_TYPES.contains(&a.as_str());
                w.eq("action", &Some(a.clone()));
            }
            Some(ActionFilter::Prefix(p)) if !p.is_empty() => {
                w.aggregates_only |= !JOURNAL_EVENT_TYPES
                    .iter()
                    .any(|t| t.starts_with(p.as_str()));
                let lo = w.arg(Arg::Text(p.clone()));
                w.terms.push(format!("action >= {lo}"));
                if let Some(upper) = prefix_upper_bound(p) {
                    let hi = w.arg(Arg::Text(upper));
                    w.terms.push(format!("action < {hi}"));
                }
            }
            _ => {}
        }
        if let Some(stream) = &filter.target {
            w.aggregates_only |= !journal_category(category_of(stream));
        }
        w.eq("stream", &filter.target);
        if let Some(category) = &filter.category {
            w.aggregates_only |= !journal_category(category);
        }
        w.eq("category", &filter.category);
        w.eq("subject", &filter.subject);
        w.eq_uuid("organization_id", filter.organization);
        w.eq("source_ip", &filter.source_ip);
        w.eq("user_agent", &filter.user_agent);
        w.eq_uuid("correlation_id", filter.correlation_id);
        if let Some(o) = filter.outcome {
            // A literal from a closed set, so the partial index of failures
            // matches the query.
            w.terms.push(format!("outcome = '{}'", o.as_str()));
        }
        if w.aggregates_only {
            // Implied by the filters above, but the planner only uses a
            // partial index whose condition the query states.
            w.terms.push("journal = 0".to_owned());
        }
        w.time_range(filter.from_time.map(micros), filter.to_time.map(micros));
        if let Some(at) = before {
            let c = w.arg(Arg::Int(at.commit as i64));
            let p = w.arg(Arg::Int(at.prepare as i64));
            w.terms.push(format!(
                "commit_pos <= {c} AND (commit_pos < {c} OR prepare_pos < {p})"
            ));
        }
        w
    }

    /// `from` inclusive, `to` exclusive (unix microseconds). The entries of
    /// the minutes the range touches lie between the lowest and highest
    /// positions `audit_minutes` holds for them, so the range is first a
    /// range of positions (walked newest first by whichever index the other
    /// filters pick), then checked exactly against each entry's time.
    fn time_range(&mut self, from: Option<i64>, to: Option<i64>) {
        if from.is_none() && to.is_none() {
            return;
        }
        let mut minutes = Vec::new();
        if let Some(from) = from {
            let m = self.arg(Arg::Int(minute_of(from)));
            minutes.push(format!("minute >= {m}"));
        }
        if let Some(to) = to {
            let m = self.arg(Arg::Int(minute_of(to.saturating_sub(1))));
            minutes.push(format!("minute <= {m}"));
        }
        let minutes = minutes.join(" AND ");
        self.terms.push(format!(
            "commit_pos >= (SELECT min(first_commit) FROM audit_minutes WHERE {minutes})"
        ));
        self.terms.push(format!(
            "commit_pos <= (SELECT max(last_commit) FROM audit_minutes WHERE {minutes})"
        ));
        if let Some(from) = from {
            let p = self.arg(Arg::Int(from));
            self.terms.push(format!("occurred_us >= {p}"));
        }
        if let Some(to) = to {
            let p = self.arg(Arg::Int(to));
            self.terms.push(format!("occurred_us < {p}"));
        }
    }

    fn sql(&self) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.terms.join(" AND "))
        }
    }
}

const COLUMNS: &str =
    "commit_pos, prepare_pos, event_id, stream, category, revision, action, outcome,
    occurred_us, recorded_us, actor_kind, actor_id, subject, organization_id, source_ip, user_agent,
    correlation_id, causation_id";

/// A UUID stored as its 16 bytes, in its text form.
fn uuid_text(bytes: &[u8]) -> Result<String, ProjectionError> {
    Uuid::from_slice(bytes)
        .map(|u| u.to_string())
        .map_err(|_| ProjectionError::Db(format!("{} bytes in an audit UUID column", bytes.len())))
}

/// Nullable UUID column `i`.
fn uuid_column(r: &sqlx::any::AnyRow, i: usize) -> Result<Option<String>, ProjectionError> {
    let bytes: Option<Vec<u8>> = r.try_get(i)?;
    bytes.as_deref().map(uuid_text).transpose()
}

fn entry(r: &sqlx::any::AnyRow) -> Result<AuditEntry, ProjectionError> {
    let commit: i64 = r.try_get(0)?;
    let prepare: i64 = r.try_get(1)?;
    let revision: i64 = r.try_get(5)?;
    let outcome: String = r.try_get(7)?;
    let occurred: i64 = r.try_get(8)?;
    let recorded: i64 = r.try_get(9)?;
    let event_id: Vec<u8> = r.try_get(2)?;
    let correlation: Vec<u8> = r.try_get(16)?;
    Ok(AuditEntry {
        position: Position::new(commit as u64, prepare as u64),
        event_id: uuid_text(&event_id)?,
        stream: r.try_get(3)?,
        category: r.try_get(4)?,
        revision: revision as u64,
        action: r.try_get(6)?,
        outcome: AuditOutcome::parse(&outcome).unwrap_or(AuditOutcome::Success),
        occurred_at: micros_text(occurred),
        recorded_at: micros_text(recorded),
        actor_kind: r.try_get(10)?,
        actor_id: r.try_get(11)?,
        subject: r.try_get(12)?,
        organization_id: uuid_column(r, 13)?,
        source_ip: r.try_get(14)?,
        user_agent: r.try_get(15)?,
        correlation_id: uuid_text(&correlation)?,
        causation_id: uuid_column(r, 17)?,
    })
}

/// Entries that pass `filter`, newest first (by log position), strictly
/// before `before`, at most `limit`.
/// The subject of the newest entry that names one (for benchmarks).
pub async fn newest_subject(db: &ReadDb) -> Result<Option<String>, ProjectionError> {
    let row = sqlx::query(
        "SELECT subject FROM audit_entries WHERE subject IS NOT NULL
         ORDER BY commit_pos DESC, prepare_pos DESC LIMIT 1",
    )
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// The actor with the most entries (for benchmarks).
pub async fn busiest_actor(db: &ReadDb) -> Result<Option<String>, ProjectionError> {
    let row = sqlx::query(
        "SELECT actor_id FROM audit_entries WHERE actor_id IS NOT NULL
         GROUP BY actor_id ORDER BY count(*) DESC LIMIT 1",
    )
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

pub async fn query(
    db: &ReadDb,
    filter: &AuditFilter,
    before: Option<Position>,
    limit: i64,
) -> Result<Vec<AuditEntry>, ProjectionError> {
    let mut w = Where::of(filter, before);
    let limit_arg = w.arg(Arg::Int(limit));
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_entries {} ORDER BY commit_pos DESC, prepare_pos DESC LIMIT {limit_arg}",
        w.sql()
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in w.args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(n) => q.bind(n),
            Arg::Bytes(b) => q.bind(b),
        };
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter().map(entry).collect()
}

/// The entry of the event at `at`.
pub async fn get(db: &ReadDb, at: Position) -> Result<Option<AuditEntry>, ProjectionError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_entries WHERE commit_pos = $1 AND prepare_pos = $2"
    )))
    .bind(at.commit as i64)
    .bind(at.prepare as i64)
    .fetch_optional(&db.pool)
    .await?;
    r.as_ref().map(entry).transpose()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_failures_and_everything_else_succeeds() {
        assert_eq!(
            AuditOutcome::of("client.authentication_failed.v1"),
            AuditOutcome::Failure
        );
        assert_eq!(
            AuditOutcome::of("auth_token.reuse_detected.v1"),
            AuditOutcome::Failure
        );
        assert_eq!(AuditOutcome::of("client.created.v1"), AuditOutcome::Success);
    }

    #[test]
    fn an_action_prefix_is_a_range() {
        assert_eq!(
            ActionFilter::parse("client.*"),
            ActionFilter::Prefix("client.".into())
        );
        assert_eq!(
            ActionFilter::parse("client.created.v1"),
            ActionFilter::Exact("client.created.v1".into())
        );
        assert_eq!(prefix_upper_bound("client.").as_deref(), Some("client/"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(
            prefix_upper_bound("x\u{D7FF}").as_deref(),
            Some("x\u{E000}")
        );
    }

    #[test]
    fn actor_kinds_round_trip_through_their_wire_names() {
        for k in [
            ActorKind::User,
            ActorKind::Client,
            ActorKind::System,
            ActorKind::Anonymous,
        ] {
            let wire = serde_json::to_value(k).unwrap();
            assert_eq!(wire, actor_kind_str(k));
            assert_eq!(parse_actor_kind(actor_kind_str(k)), Some(k));
        }
        assert_eq!(parse_actor_kind("robot"), None);
    }
}
