//! Tamper evidence: a sealed log verifies; each kind of edit made behind
//! the adapter's back (straight SQL, as someone with access to the database
//! would) is named by `verify`. Each case on a fresh log, SQLite always,
//! PostgreSQL when `TEST_DATABASE_URL` is set.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain::{Actor, Metadata};
use eventlog::chain::{self, ChainInput};
use eventlog::{EventLog, ExpectedRevision, NewEvent, Position, ProblemKind, VerifyReport};
use serde_json::json;
use sqlx::Connection as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::harness::{Harness, open_postgres};

/// Events per anchor in these tests: the seeded log gets several anchors.
const OPTIONS: &str = "?seal_every=50";
const SEEDED: u64 = 280;

macro_rules! tamper_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(crate::harness::Harness::sqlite_with(super::OPTIONS).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = concat!("tamper_", stringify!($case));
                    let Some(h) = crate::harness::Harness::postgres_with(db, super::OPTIONS).await else {
                        return;
                    };
                    super::$case(h).await;
                }
            )*
        }
    };
}

tamper_suite!(
    a_sealed_log_verifies_and_every_backend_chains_as_documented,
    a_changed_event_is_named,
    a_removed_event_is_named,
    a_removed_last_event_is_caught_by_the_anchors,
    a_removed_stream_is_caught_by_the_anchors,
    a_forged_event_is_reported_inserted,
    a_changed_and_rechained_event_is_caught_by_the_anchors,
    a_log_from_before_chains_is_backfilled_by_seal,
    a_dropped_stream_leaves_a_log_that_verifies,
);

fn meta() -> Metadata {
    Metadata {
        actor: Actor::client("tamper-test"),
        correlation_id: Uuid::now_v7(),
        request_id: None,
        causation_id: None,
        source_ip: None,
        user_agent: None,
        organization: None,
        occurred_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    }
}

/// 280 events in streams `acct-0` to `acct-6`, some appended three at a
/// time, some with a subject. Returns the last position.
async fn seed(log: &Arc<dyn EventLog>) -> Position {
    let mut last = Position::START;
    for i in 0..200u64 {
        let n = if i % 5 == 0 { 3 } else { 1 };
        let events = (0..n)
            .map(|k| {
                let e = NewEvent::new(
                    "acct.changed.v1",
                    json!({ "i": i, "k": k, "note": "ünïcödé ✓" }),
                    meta(),
                );
                if k == 0 && i % 3 == 0 {
                    e.with_subject(format!("user-{}", i % 11))
                } else {
                    e
                }
            })
            .collect();
        last = log
            .append(&format!("acct-{}", i % 7), ExpectedRevision::Any, events)
            .await
            .unwrap()
            .position;
    }
    last
}

/// Seals once everything up to `last` is readable (on PostgreSQL, other
/// transactions in the cluster can hold that back for a moment).
async fn seal_through(log: &Arc<dyn EventLog>, last: Position) {
    for _ in 0..500 {
        if log.head().await.unwrap() >= Some(last) {
            log.seal().await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{last} never became readable");
}

async fn seeded_and_sealed(h: &Harness) -> Db {
    let last = seed(&h.log).await;
    seal_through(&h.log, last).await;
    let report = verify(&h.log).await;
    assert!(report.is_intact(), "{report:?}");
    Db::of(h)
}

async fn verify(log: &Arc<dyn EventLog>) -> VerifyReport {
    log.verify(&|_| {}).await.unwrap()
}

fn first(r: &VerifyReport) -> (ProblemKind, Option<&str>, Option<u64>) {
    let p = r
        .first_problem
        .as_ref()
        .unwrap_or_else(|| panic!("no problem found: {r:?}"));
    (p.kind, p.stream.as_deref(), p.revision)
}

pub async fn a_sealed_log_verifies_and_every_backend_chains_as_documented(h: Harness) {
    let last = seed(&h.log).await;
    seal_through(&h.log, last).await;
    assert_eq!(h.log.seal().await.unwrap(), None, "nothing new to seal");
    let seen = AtomicU64::new(0);
    let r = h
        .log
        .verify(&|n| seen.store(n, Ordering::Relaxed))
        .await
        .unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.events_checked, SEEDED);
    assert_eq!(seen.load(Ordering::Relaxed), SEEDED);
    assert!(r.anchors_checked >= SEEDED / 50, "{r:?}");
    assert_eq!(
        (r.events_unanchored, r.events_unchained, r.problems),
        (0, 0, 0)
    );

    // What the backend stored is exactly `chain::link` over the stored
    // fields (on PostgreSQL: computed by `idp_append`, in SQL).
    let db = Db::of(&h);
    for stream in ["acct-0", "acct-1"] {
        let mut prev = chain::GENESIS;
        for revision in 0..=db.last_revision(stream).await {
            let raw = db.raw(stream, revision).await;
            let want = chain::link(&prev, &raw.input());
            assert_eq!(
                raw.chain.as_deref(),
                Some(chain::to_hex(&want).as_str()),
                "{stream} revision {revision}"
            );
            prev = want;
        }
    }
}

pub async fn a_changed_event_is_named(h: Harness) {
    let db = seeded_and_sealed(&h).await;
    let n = db
        .exec(
            "UPDATE events SET data = '{\"i\":0}' WHERE stream = ?1 AND revision = ?2",
            "UPDATE events SET data = '{\"i\":0}' WHERE stream = $1 AND revision = $2",
            "acct-3",
            5,
        )
        .await;
    assert_eq!(n, 1);
    let r = verify(&h.log).await;
    assert_eq!(first(&r), (ProblemKind::Changed, Some("acct-3"), Some(5)));
    assert_eq!(r.problems, 1, "{r:?}");
}

pub async fn a_removed_event_is_named(h: Harness) {
    seeded_and_sealed(&h).await;
    a_deleted_event_is_named(&h, "acct-2", 4).await;
}

/// Deletes one event behind the adapter's back: `verify` names it.
async fn a_deleted_event_is_named(h: &Harness, stream: &str, revision: i64) {
    Db::of(h)
        .exec(
            "DELETE FROM events WHERE stream = ?1 AND revision = ?2",
            "DELETE FROM events WHERE stream = $1 AND revision = $2",
            stream,
            revision,
        )
        .await;
    let r = verify(&h.log).await;
    assert_eq!(
        first(&r),
        (ProblemKind::Removed, Some(stream), Some(revision as u64))
    );
}

pub async fn a_removed_last_event_is_caught_by_the_anchors(h: Harness) {
    let db = seeded_and_sealed(&h).await;
    let last = db.last_revision("acct-5").await;
    db.exec(
        "DELETE FROM events WHERE stream = ?1 AND revision = ?2",
        "DELETE FROM events WHERE stream = $1 AND revision = $2",
        "acct-5",
        last,
    )
    .await;
    let r = verify(&h.log).await;
    assert_eq!(first(&r), (ProblemKind::Removed, None, None));
    assert_eq!(r.problems, 1, "{r:?}");
    assert!(
        r.first_problem
            .unwrap()
            .detail
            .contains("1 fewer than sealed"),
        "names the block and the count"
    );
}

pub async fn a_removed_stream_is_caught_by_the_anchors(h: Harness) {
    let db = seeded_and_sealed(&h).await;
    let n = db
        .exec(
            "DELETE FROM events WHERE stream = ?1 AND revision >= ?2",
            "DELETE FROM events WHERE stream = $1 AND revision >= $2",
            "acct-6",
            0,
        )
        .await;
    assert!(n > 20);
    let r = verify(&h.log).await;
    assert_eq!(first(&r).0, ProblemKind::Removed);
    assert_eq!(r.events_checked, SEEDED - n);
}

pub async fn a_dropped_stream_leaves_a_log_that_verifies(h: Harness) {
    let last = seed(&h.log).await;
    for _ in 0..500 {
        if h.log.head().await.unwrap() >= Some(last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing sealed yet: dropping seals first.
    let held = h
        .log
        .read_stream("acct-3", eventlog::Direction::Forwards, None, 1000)
        .await
        .unwrap()
        .len() as u64;
    assert!(held > 20);
    assert_eq!(h.log.drop_stream("acct-3").await.unwrap(), held);
    assert_eq!(h.log.drop_stream("acct-3").await.unwrap(), 0, "gone");
    assert_eq!(h.log.drop_stream("no-such").await.unwrap(), 0);
    let gone = h
        .log
        .read_stream("acct-3", eventlog::Direction::Forwards, None, 1000)
        .await
        .unwrap();
    assert!(gone.is_empty());
    let r = verify(&h.log).await;
    assert!(r.is_intact(), "{r:?}");
    assert_eq!((r.events_checked, r.events_dropped), (SEEDED - held, held));
    assert_eq!(r.events_unanchored, 0);

    // The name can be appended to again: a new stream from revision 0.
    let again = h
        .log
        .append(
            "acct-3",
            ExpectedRevision::NoStream,
            vec![NewEvent::new(
                "acct.changed.v1",
                json!({"again": true}),
                meta(),
            )],
        )
        .await
        .unwrap();
    seal_through(&h.log, again.position).await;
    let r = verify(&h.log).await;
    assert!(r.is_intact(), "{r:?}");

    // Deleting behind the adapter's back is still caught.
    a_deleted_event_is_named(&h, "acct-2", 4).await;
}

pub async fn a_forged_event_is_reported_inserted(h: Harness) {
    let db = seeded_and_sealed(&h).await;
    // The attacker knows the algorithm: the forged event continues the
    // stream's head with a correct link, but it cannot go after the last
    // anchor without being sealed as genuine; it goes below the first one.
    let head_revision = db.last_revision("acct-4").await;
    let head = db.raw("acct-4", head_revision).await;
    let forged = Raw {
        revision: head_revision + 1,
        id: Uuid::now_v7(),
        data: "{\"grant\":\"admin\"}".into(),
        chain: None,
        ..head.clone()
    };
    let link = chain::link(
        &chain::from_hex(head.chain.as_deref().unwrap()).unwrap(),
        &forged.input(),
    );
    db.forge_first(&Raw {
        chain: Some(chain::to_hex(&link)),
        ..forged
    })
    .await;
    let r = verify(&h.log).await;
    assert_eq!(
        first(&r),
        (
            ProblemKind::Inserted,
            Some("acct-4"),
            Some(head_revision as u64 + 1)
        )
    );
}

pub async fn a_changed_and_rechained_event_is_caught_by_the_anchors(h: Harness) {
    let db = seeded_and_sealed(&h).await;
    let last = db.last_revision("acct-0").await;
    let before = db.raw("acct-0", last - 1).await;
    let mut raw = db.raw("acct-0", last).await;
    raw.data = "{\"i\":-1}".into();
    let link = chain::link(
        &chain::from_hex(before.chain.as_deref().unwrap()).unwrap(),
        &raw.input(),
    );
    db.rewrite("acct-0", last, &raw.data, &chain::to_hex(&link))
        .await;
    let r = verify(&h.log).await;
    assert_eq!(first(&r), (ProblemKind::Changed, None, None));
    assert_eq!(r.problems, 1, "{r:?}");
}

pub async fn a_log_from_before_chains_is_backfilled_by_seal(h: Harness) {
    let last = seed(&h.log).await;
    seal_through(&h.log, last).await;
    let db = Db::of(&h);
    let chained = db.all_chains().await;
    let Harness { log, url, _dir } = h;
    drop(log);
    db.batch(
        "ALTER TABLE events DROP COLUMN chain; DROP TABLE chain_anchors;",
        "ALTER TABLE events DROP COLUMN chain; DROP TABLE chain_anchors;",
    )
    .await;

    // Reopened: the column is back, empty, and nothing is wrong yet.
    let log = match &db {
        Db::Sqlite(_) => eventlog::open(&format!("{url}{OPTIONS}"), &Default::default())
            .await
            .unwrap(),
        Db::Postgres(_) => open_postgres(&format!("{url}{OPTIONS}")).await,
    };
    let r = verify(&log).await;
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.events_unchained, SEEDED);
    // Appends to an old stream wait for their links; a new stream has them.
    let ev = || NewEvent::new("acct.changed.v1", json!({ "late": true }), meta());
    log.append("acct-1", ExpectedRevision::Any, vec![ev(), ev()])
        .await
        .unwrap();
    let last = log
        .append("acct-new", ExpectedRevision::NoStream, vec![ev()])
        .await
        .unwrap()
        .position;
    seal_through(&log, last).await;
    let r = verify(&log).await;
    assert!(r.is_intact(), "{r:?}");
    assert_eq!((r.events_checked, r.events_unchained), (SEEDED + 3, 0));
    // The backfilled links are the ones the appends had written.
    let now: Vec<_> = db
        .all_chains()
        .await
        .into_iter()
        .filter(|(s, r, _)| chained.iter().any(|(s2, r2, _)| s == s2 && r == r2))
        .collect();
    assert_eq!(now, chained);
}

/// An event as stored.
#[derive(Clone, Debug)]
struct Raw {
    stream: String,
    category: String,
    revision: i64,
    id: Uuid,
    event_type: String,
    subject: Option<String>,
    data: String,
    metadata: String,
    micros: i64,
    chain: Option<String>,
}

impl Raw {
    fn input(&self) -> ChainInput<'_> {
        ChainInput {
            stream: &self.stream,
            revision: self.revision as u64,
            id: self.id,
            event_type: &self.event_type,
            subject: self.subject.as_deref(),
            data: &self.data,
            metadata: &self.metadata,
            recorded_at: self.micros,
        }
    }
}

/// The database behind a log, reached around the adapter.
enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Db {
    fn of(h: &Harness) -> Self {
        match h.url.strip_prefix("sqlite:") {
            Some(path) => Db::Sqlite(path.into()),
            None => Db::Postgres(h.url.clone()),
        }
    }

    fn sqlite(path: &PathBuf) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(path).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    async fn pg(url: &str) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(url).await.unwrap()
    }

    /// One statement with the stream and a revision as parameters 1 and 2;
    /// returns the rows it touched.
    async fn exec(&self, sqlite: &str, postgres: &'static str, stream: &str, rev: i64) -> u64 {
        match self {
            Db::Sqlite(p) => Self::sqlite(p)
                .execute(sqlite, rusqlite::params![stream, rev])
                .unwrap() as u64,
            Db::Postgres(u) => sqlx::query(postgres)
                .bind(stream)
                .bind(rev)
                .execute(&mut Self::pg(u).await)
                .await
                .unwrap()
                .rows_affected(),
        }
    }

    async fn batch(&self, sqlite: &str, postgres: &'static str) {
        match self {
            Db::Sqlite(p) => Self::sqlite(p).execute_batch(sqlite).unwrap(),
            Db::Postgres(u) => {
                sqlx::raw_sql(postgres)
                    .execute(&mut Self::pg(u).await)
                    .await
                    .unwrap();
            }
        }
    }

    async fn last_revision(&self, stream: &str) -> i64 {
        match self {
            Db::Sqlite(p) => Self::sqlite(p)
                .query_row(
                    "SELECT max(revision) FROM events WHERE stream = ?1",
                    [stream],
                    |r| r.get(0),
                )
                .unwrap(),
            Db::Postgres(u) => {
                sqlx::query_scalar("SELECT max(revision) FROM events WHERE stream = $1")
                    .bind(stream)
                    .fetch_one(&mut Self::pg(u).await)
                    .await
                    .unwrap()
            }
        }
    }

    async fn raw(&self, stream: &str, revision: i64) -> Raw {
        match self {
            Db::Sqlite(p) => Self::sqlite(p)
                .query_row(
                    "SELECT event_id, category, event_type, subject, data, metadata, recorded_at, chain
                       FROM events WHERE stream = ?1 AND revision = ?2",
                    rusqlite::params![stream, revision],
                    |r| {
                        Ok(Raw {
                            stream: stream.into(),
                            revision,
                            id: Uuid::from_slice(&r.get::<_, Vec<u8>>(0)?).unwrap(),
                            category: r.get(1)?,
                            event_type: r.get(2)?,
                            subject: r.get(3)?,
                            data: r.get(4)?,
                            metadata: r.get(5)?,
                            micros: r.get(6)?,
                            chain: r.get(7)?,
                        })
                    },
                )
                .unwrap(),
            Db::Postgres(u) => {
                use sqlx::Row;
                let r = sqlx::query(
                    "SELECT event_id, category, event_type, subject, data, metadata,
                            (extract(epoch FROM recorded_at) * 1000000)::bigint AS micros, chain
                       FROM events WHERE stream = $1 AND revision = $2",
                )
                .bind(stream)
                .bind(revision)
                .fetch_one(&mut Self::pg(u).await)
                .await
                .unwrap();
                Raw {
                    stream: stream.into(),
                    revision,
                    id: r.get("event_id"),
                    category: r.get("category"),
                    event_type: r.get("event_type"),
                    subject: r.get("subject"),
                    data: r.get("data"),
                    metadata: r.get("metadata"),
                    micros: r.get("micros"),
                    chain: r.get("chain"),
                }
            }
        }
    }

    /// Stores `raw` before every other event in the log order.
    async fn forge_first(&self, raw: &Raw) {
        match self {
            Db::Sqlite(p) => {
                Self::sqlite(p)
                    .execute(
                        "INSERT INTO events (position, event_id, stream, revision, category, event_type,
                                             subject, data, metadata, recorded_at, chain)
                         VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                        rusqlite::params![
                            raw.id.as_bytes().as_slice(),
                            raw.stream,
                            raw.revision,
                            raw.category,
                            raw.event_type,
                            raw.subject,
                            raw.data,
                            raw.metadata,
                            raw.micros,
                            raw.chain
                        ],
                    )
                    .unwrap();
            }
            Db::Postgres(u) => {
                sqlx::query(
                    "INSERT INTO events (tx_id, seq, event_id, stream, revision, category, event_type,
                                         subject, data, metadata, recorded_at, chain)
                     OVERRIDING SYSTEM VALUE
                     VALUES ((SELECT tx_id FROM events ORDER BY tx_id LIMIT 1), 0,
                             $1, $2, $3, $4, $5, $6, $7, $8,
                             'epoch'::timestamptz + $9::bigint * interval '1 microsecond', $10)",
                )
                .bind(raw.id)
                .bind(&raw.stream)
                .bind(raw.revision)
                .bind(&raw.category)
                .bind(&raw.event_type)
                .bind(&raw.subject)
                .bind(&raw.data)
                .bind(&raw.metadata)
                .bind(raw.micros)
                .bind(&raw.chain)
                .execute(&mut Self::pg(u).await)
                .await
                .unwrap();
            }
        }
    }

    async fn rewrite(&self, stream: &str, revision: i64, data: &str, chain: &str) {
        match self {
            Db::Sqlite(p) => {
                Self::sqlite(p)
                    .execute(
                        "UPDATE events SET data = ?3, chain = ?4 WHERE stream = ?1 AND revision = ?2",
                        rusqlite::params![stream, revision, data, chain],
                    )
                    .unwrap();
            }
            Db::Postgres(u) => {
                sqlx::query(
                    "UPDATE events SET data = $3, chain = $4 WHERE stream = $1 AND revision = $2",
                )
                .bind(stream)
                .bind(revision)
                .bind(data)
                .bind(chain)
                .execute(&mut Self::pg(u).await)
                .await
                .unwrap();
            }
        }
    }

    /// (stream, revision, chain) of every event, by stream and revision.
    async fn all_chains(&self) -> Vec<(String, i64, Option<String>)> {
        match self {
            Db::Sqlite(p) => {
                let c = Self::sqlite(p);
                let mut stmt = c
                    .prepare("SELECT stream, revision, chain FROM events ORDER BY stream, revision")
                    .unwrap();
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Db::Postgres(u) => sqlx::query_as(
                "SELECT stream, revision, chain FROM events ORDER BY stream COLLATE \"C\", revision",
            )
            .fetch_all(&mut Self::pg(u).await)
            .await
            .unwrap(),
        }
    }
}
