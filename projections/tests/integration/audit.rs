//! The audit trail's queries against real databases, checked entry for entry
//! against the events that were appended: time ranges (answered through
//! the per-minute position bounds), and filters that the partial indexes
//! over aggregate entries serve beside filters on journal entries.

use std::sync::Arc;
use std::time::Duration;

use domain::{Actor, Metadata};
use eventlog::{EventLog, ExpectedRevision, LogOptions, NewEvent, Position, category_of};
use projections::audit::{self, ActionFilter, AuditFilter, AuditProjection};
use projections::{ReadDb, Runner};
use time::OffsetDateTime;
use uuid::Uuid;

/// One appended event as the test knows it.
struct Appended {
    id: Uuid,
    at: Position,
    stream: String,
    action: &'static str,
    occurred_us: i64,
    user_agent: Option<&'static str>,
    source_ip: Option<&'static str>,
    organization: Option<Uuid>,
    correlation: Uuid,
    causation: Option<Uuid>,
}

/// The User-Agents requests carried (none for some, as for the platform's
/// own work), two of them sharing a prefix.
const AGENTS: &[Option<&str>] = &[
    Some("curl/8.5.0"),
    None,
    Some("curl/8.5.0 (x)"),
    Some("app/2.1"),
];

/// The addresses requests came from (none for the platform's own work).
const ADDRESSES: &[Option<&str>] = &[
    Some("203.0.113.7"),
    Some("2001:db8::1"),
    None,
    Some("198.51.100.20"),
    Some("203.0.113.70"),
];

const KINDS: &[(&str, &str)] = &[
    ("tokens-20261120-3", "token.issued.v1"),
    ("tokens-20261120-5", "token.issued.v1"),
    ("authfailures-20261120", "client.authentication_failed.v1"),
    ("revocations-20261120", "token.revoked.v1"),
    ("client-A", "client.created.v1"),
    ("client-A", "client.secret_created.v1"),
    ("client-B", "client.created.v1"),
    ("organization-O", "organization.created.v1"),
];

/// 600 events whose times are spread over twelve minutes out of log order
/// (as when writers' clocks and commits interleave), many on minute
/// boundaries.
async fn append_mix(log: &Arc<dyn EventLog>) -> Vec<Appended> {
    let base = OffsetDateTime::parse(
        "2026-11-20T10:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let orgs = [Some(Uuid::now_v7()), Some(Uuid::now_v7()), None];
    let correlations: Vec<Uuid> = (0..150).map(|_| Uuid::now_v7()).collect();
    let mut out: Vec<Appended> = Vec::new();
    for i in 0..600u64 {
        let (stream, action) = KINDS[(i * 5 % KINDS.len() as u64) as usize];
        let offset_us = if i % 10 == 0 {
            // Exactly on a minute boundary, or a microsecond before one.
            ((i * 7 % 12) * 60_000_000) as i64 - (i % 20 / 10) as i64
        } else {
            ((i * 7_919 % 720) * 1_000_000 + i * 37 % 1_000_000) as i64
        };
        let occurred = base + time::Duration::microseconds(offset_us);
        // Four events per request; the organization varies on its own.
        let correlation = correlations[(i / 4) as usize];
        let mut meta = Metadata::system(correlation, occurred);
        meta.actor = Actor::client(format!("client-{}", i % 3));
        meta.organization = meta_org(&orgs, i);
        meta.causation_id = out.last().filter(|_| i % 4 != 0).map(|e| e.id);
        let user_agent = AGENTS[(i % 7 % AGENTS.len() as u64) as usize];
        meta.user_agent = user_agent.map(str::to_owned);
        let source_ip = ADDRESSES[(i % 11 % ADDRESSES.len() as u64) as usize];
        meta.source_ip = source_ip.map(str::to_owned);
        let e = NewEvent::new(action, serde_json::json!({ "n": i }), meta);
        let id = e.id;
        let r = log
            .append(stream, ExpectedRevision::Any, vec![e])
            .await
            .unwrap();
        out.push(Appended {
            id,
            at: r.position,
            stream: stream.to_owned(),
            action,
            occurred_us: audit::micros(occurred),
            user_agent,
            source_ip,
            organization: meta_org(&orgs, i),
            correlation,
            causation: out.last().filter(|_| i % 4 != 0).map(|e| e.id),
        });
    }
    out
}

fn meta_org(orgs: &[Option<Uuid>; 3], i: u64) -> Option<Uuid> {
    orgs[(i % 4 % 3) as usize]
}

/// Projects the log up to `last`, the last event appended. (Not to the
/// readable head: on PostgreSQL a commit becomes readable once every older
/// transaction in the cluster has finished, and other tests' may not have.)
async fn project(log: &Arc<dyn EventLog>, db: &ReadDb, last: Position) {
    let handle = Runner::new(Arc::clone(log), db.clone(), vec![Arc::new(AuditProjection)])
        .with_batch(97)
        .start()
        .await
        .unwrap();
    assert!(handle.wait_for(last, Duration::from_secs(60)).await);
    handle.stop().await;
}

/// Every page of the query, walked with the cursor.
async fn walk(db: &ReadDb, filter: &AuditFilter) -> Vec<String> {
    let mut ids = Vec::new();
    let mut before = None;
    loop {
        let page = audit::query(db, filter, before, 40).await.unwrap();
        ids.extend(page.iter().map(|e| e.event_id.clone()));
        match page.last() {
            Some(last) if page.len() == 40 => before = Some(last.position),
            _ => return ids,
        }
    }
}

/// What the query must answer: the matching events, newest first.
fn expected(events: &[Appended], keep: impl Fn(&Appended) -> bool) -> Vec<String> {
    let mut ids: Vec<(Position, String)> = events
        .iter()
        .filter(|e| keep(e))
        .map(|e| (e.at, e.id.to_string()))
        .collect();
    ids.sort_by_key(|e| std::cmp::Reverse(e.0));
    ids.into_iter().map(|(_, id)| id).collect()
}

fn at_us(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap()
}

async fn queries_match_the_log(log: Arc<dyn EventLog>, db: ReadDb) {
    let events = append_mix(&log).await;
    project(&log, &db, events.last().unwrap().at).await;
    let first = events.iter().map(|e| e.occurred_us).min().unwrap();
    let last = events.iter().map(|e| e.occurred_us).max().unwrap();

    // Time ranges: on, just before and just after minute boundaries, open
    // at either end, empty, and around everything.
    let minute = 60_000_000;
    let mut ranges = vec![
        (None, None),
        (Some(first), None),
        (None, Some(last + 1)),
        (Some(last + 1), None),
        (None, Some(first)),
        (Some(first - 3 * minute), Some(first - minute)),
    ];
    for k in 0..12 {
        let edge = first - first.rem_euclid(minute) + k * minute;
        for (a, b) in [
            (0, minute),
            (-1, 1),
            (1, 2 * minute - 1),
            (-minute, 0),
            (0, 1),
        ] {
            ranges.push((Some(edge + a), Some(edge + b)));
        }
        ranges.push((Some(edge + 17), None));
        ranges.push((None, Some(edge - 17)));
    }
    for (from, to) in ranges {
        let filter = AuditFilter {
            from_time: from.map(at_us),
            to_time: to.map(at_us),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| {
            from.is_none_or(|f| e.occurred_us >= f) && to.is_none_or(|t| e.occurred_us < t)
        });
        assert_eq!(walk(&db, &filter).await, want, "from {from:?} to {to:?}");
    }

    // A time range with another filter.
    let (from, to) = (first + 2 * minute, first + 7 * minute + 5);
    let filter = AuditFilter {
        actor_id: Some("client-1".into()),
        from_time: Some(at_us(from)),
        to_time: Some(at_us(to)),
        ..AuditFilter::default()
    };
    let want = expected(&events, |e| {
        (e.occurred_us >= from && e.occurred_us < to)
            && events.iter().position(|x| x.id == e.id).unwrap() % 3 == 1
    });
    assert!(!want.is_empty());
    assert_eq!(walk(&db, &filter).await, want);

    // Action, stream and category of journal and of aggregate entries.
    for (stream, action) in KINDS {
        let category = category_of(stream).to_owned();
        let by_action = AuditFilter {
            action: Some(ActionFilter::Exact((*action).to_owned())),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| e.action == *action);
        assert!(!want.is_empty());
        assert_eq!(walk(&db, &by_action).await, want, "{action}");
        let by_stream = AuditFilter {
            target: Some((*stream).to_owned()),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| e.stream == *stream);
        assert_eq!(walk(&db, &by_stream).await, want, "{stream}");
        let by_category = AuditFilter {
            category: Some(category.clone()),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| category_of(&e.stream) == category);
        assert_eq!(walk(&db, &by_category).await, want, "{category}");
    }
    // The User-Agent, exactly; with a time range and another filter.
    for agent in AGENTS.iter().flatten() {
        let filter = AuditFilter {
            user_agent: Some((*agent).to_owned()),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| e.user_agent == Some(*agent));
        assert!(!want.is_empty());
        assert_eq!(walk(&db, &filter).await, want, "{agent}");
        let filter = AuditFilter {
            user_agent: Some((*agent).to_owned()),
            category: Some("client".into()),
            from_time: Some(at_us(from)),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| {
            e.user_agent == Some(*agent)
                && category_of(&e.stream) == "client"
                && e.occurred_us >= from
        });
        assert_eq!(walk(&db, &filter).await, want, "{agent} in clients");
    }
    // The source address (indexed), alone, with a time range, and one no
    // entry has.
    for address in ADDRESSES.iter().flatten().chain(&["192.0.2.254"]) {
        let filter = AuditFilter {
            source_ip: Some((*address).to_owned()),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| e.source_ip == Some(*address));
        assert_eq!(walk(&db, &filter).await, want, "{address}");
        let filter = AuditFilter {
            source_ip: Some((*address).to_owned()),
            from_time: Some(at_us(from)),
            to_time: Some(at_us(to)),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| {
            e.source_ip == Some(*address) && e.occurred_us >= from && e.occurred_us < to
        });
        assert_eq!(walk(&db, &filter).await, want, "{address} in a range");
    }
    if db.dialect == projections::Dialect::Sqlite {
        // An address no entry has is found out by its index, not by reading
        // the trail.
        let plan: Vec<String> = sqlx::query(
            "EXPLAIN QUERY PLAN SELECT * FROM audit_entries WHERE source_ip = $1
              ORDER BY commit_pos DESC, prepare_pos DESC LIMIT 50",
        )
        .bind("192.0.2.254")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 3))
        .collect();
        assert!(
            plan.iter()
                .any(|d| d.contains("USING INDEX audit_by_source_ip")),
            "{plan:?}"
        );
    }

    // Organization and correlation (stored as bytes, given and shown as
    // text), alone and with an aggregate-only filter.
    let mut orgs: Vec<Option<Uuid>> = events.iter().map(|e| e.organization).collect();
    orgs.sort();
    orgs.dedup();
    orgs.push(Some(Uuid::now_v7()));
    for org in orgs.into_iter().flatten() {
        let filter = AuditFilter {
            organization: Some(org),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| e.organization == Some(org));
        assert_eq!(walk(&db, &filter).await, want, "organization {org}");
        let filter = AuditFilter {
            organization: Some(org),
            category: Some("client".into()),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| {
            e.organization == Some(org) && category_of(&e.stream) == "client"
        });
        assert_eq!(
            walk(&db, &filter).await,
            want,
            "organization {org} in clients"
        );
    }
    for correlation in [
        events[0].correlation,
        events[301].correlation,
        events[599].correlation,
        Uuid::now_v7(),
    ] {
        let filter = AuditFilter {
            correlation_id: Some(correlation),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| e.correlation == correlation);
        assert_eq!(walk(&db, &filter).await, want, "correlation {correlation}");
    }
    // Each entry shows the UUIDs it was given.
    for entry in audit::query(&db, &AuditFilter::default(), None, 200)
        .await
        .unwrap()
    {
        let e = events.iter().find(|e| e.at == entry.position).unwrap();
        assert_eq!(entry.event_id, e.id.to_string());
        assert_eq!(entry.correlation_id, e.correlation.to_string());
        assert_eq!(entry.organization_id, e.organization.map(|o| o.to_string()));
        assert_eq!(entry.causation_id, e.causation.map(|c| c.to_string()));
    }
    for prefix in ["client.", "token.", "organization.", "nothing."] {
        let filter = AuditFilter {
            action: Some(ActionFilter::Prefix(prefix.to_owned())),
            ..AuditFilter::default()
        };
        let want = expected(&events, |e| e.action.starts_with(prefix));
        assert_eq!(walk(&db, &filter).await, want, "{prefix}*");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_queries_match_the_log_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("idp.db").display());
    let log = eventlog::open(&url, &LogOptions::default()).await.unwrap();
    let db = ReadDb::connect(&url, 4).await.unwrap();
    queries_match_the_log(log, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_queries_match_the_log_on_postgres() {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: audit queries on PostgreSQL: TEST_DATABASE_URL is not set"
        );
        return;
    };
    let url = eventlog::postgres::create_scratch_database(&admin, "audit_queries")
        .await
        .unwrap();
    let log = eventlog::open(&url, &LogOptions::default()).await.unwrap();
    let db = ReadDb::connect(&url, 4).await.unwrap();
    queries_match_the_log(log, db).await;
}
