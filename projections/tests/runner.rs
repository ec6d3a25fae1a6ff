//! The projection runner against real databases: exactly-once application
//! across crashes at random points, read-your-writes, version rebuilds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commands::{CommandBus, SystemClock, organization};
use domain::Metadata;
use eventlog::{EventLog, LogOptions, RecordedEvent};
use projections::organizations::{self, OrganizationsProjection};
use projections::{Dialect, Projection, ProjectionError, ReadDb, Runner};
use rand::Rng;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

struct Env {
    log: Arc<dyn EventLog>,
    read_urls: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite_env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let log_url = format!("sqlite:{}", dir.path().join("log.db").display());
    let log = eventlog::open(&log_url, &LogOptions::default())
        .await
        .unwrap();
    // The first read model shares the log's file (the default set-up).
    let read_urls = vec![
        log_url.clone(),
        format!("sqlite:{}", dir.path().join("read-b.db").display()),
    ];
    Env {
        log,
        read_urls,
        _dir: Some(dir),
    }
}

async fn postgres_env(name: &str) -> Option<Env> {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: projections on PostgreSQL: TEST_DATABASE_URL is not set"
        );
        return None;
    };
    let log_url = eventlog::postgres::create_scratch_database(&admin, name)
        .await
        .unwrap();
    let b = eventlog::postgres::create_scratch_database(&admin, &format!("{name}_b"))
        .await
        .unwrap();
    let log = eventlog::open(&log_url, &LogOptions::default())
        .await
        .unwrap();
    Some(Env {
        log,
        read_urls: vec![log_url, b],
        _dir: None,
    })
}

fn meta() -> Metadata {
    Metadata::system(Uuid::now_v7(), OffsetDateTime::now_utc())
}

/// 200 organizations and 2,000 renames among them, plus unrelated events.
async fn seed(log: &Arc<dyn EventLog>) -> u64 {
    let bus = Arc::new(CommandBus::new(Arc::clone(log), Arc::new(SystemClock)));
    let ids: Vec<Uuid> = (0..200).map(|_| Uuid::now_v7()).collect();
    for (i, id) in ids.iter().enumerate() {
        organization::create(&bus, *id, &format!("Org {i}"), &meta())
            .await
            .unwrap();
    }
    let mut handled = ids.len() as u64;
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let bus = Arc::clone(&bus);
        let ids = ids.clone();
        let log = Arc::clone(log);
        tasks.push(tokio::spawn(async move {
            for k in 0..250usize {
                let id = ids[(w * 31 + k * 7) % ids.len()];
                organization::rename(&bus, id, &format!("Org {w}-{k}"), &meta())
                    .await
                    .unwrap();
                if k % 10 == 0 {
                    let noise =
                        eventlog::NewEvent::new("noise.happened.v1", serde_json::json!({}), meta());
                    log.append(
                        &format!("noise-{w}"),
                        eventlog::ExpectedRevision::Any,
                        vec![noise],
                    )
                    .await
                    .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    handled += 8 * 250;
    handled
}

async fn dump(db: &ReadDb) -> (Vec<organizations::OrganizationRow>, i64) {
    let rows = organizations::list(db, None, 10_000).await.unwrap();
    let applied: i64 = sqlx::query(
        "SELECT events_applied FROM projection_checkpoints WHERE name = 'organizations'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    (rows, applied)
}

async fn run_to_head(log: &Arc<dyn EventLog>, db: &ReadDb, batch: usize) {
    let handle = Runner::new(Arc::clone(log), db.clone(), projections::all())
        .with_batch(batch)
        .start()
        .await
        .unwrap();
    let head = log.head().await.unwrap().unwrap();
    assert!(
        handle.wait_for(head, Duration::from_secs(60)).await,
        "the runner reaches the head"
    );
    assert!(handle.caught_up().await.unwrap());
    handle.stop().await;
}

async fn crash_and_resume(env: Env) {
    let handled = seed(&env.log).await;

    let single = ReadDb::connect(&env.read_urls[0], 4).await.unwrap();
    run_to_head(&env.log, &single, 500).await;
    let reference = dump(&single).await;
    assert_eq!(reference.0.len(), 200);
    assert_eq!(
        reference.1 as u64, handled,
        "each handled event applied exactly once"
    );

    // Each run gets its own connection pool, closed after a kill the way a
    // dying process's connections close (the database rolls back whatever
    // transaction was open).
    let mut crashed = ReadDb::connect(&env.read_urls[1], 4).await.unwrap();
    let head = env.log.head().await.unwrap().unwrap();
    let mut restarts = 0;
    loop {
        let handle = Runner::new(Arc::clone(&env.log), crashed.clone(), projections::all())
            .with_batch(37)
            .start()
            .await
            .unwrap();
        let pause = rand::rng().random_range(0..15u64);
        let reached = handle.wait_for(head, Duration::from_millis(pause)).await;
        if reached {
            handle.stop().await;
            break;
        }
        // Alternate hard kills (mid-transaction, wherever the task is) and
        // graceful stops.
        if restarts % 3 == 2 {
            handle.stop().await;
        } else {
            handle.abort().await;
            crashed.pool.close().await;
            crashed = ReadDb::connect(&env.read_urls[1], 4).await.unwrap();
        }
        restarts += 1;
        assert!(
            restarts < 2_000,
            "the runner makes progress between restarts"
        );
    }
    assert!(
        restarts > 3,
        "the test really interrupted the runner ({restarts} restarts)"
    );
    let resumed = dump(&crashed).await;
    assert_eq!(resumed.1, reference.1, "events applied");
    assert_eq!(resumed.0.len(), reference.0.len());
    for (a, b) in resumed.0.iter().zip(&reference.0) {
        assert_eq!(a, b, "resumed read model equals a single pass");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_at_random_points_resumes_exactly_on_sqlite() {
    crash_and_resume(sqlite_env().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_at_random_points_resumes_exactly_on_postgres() {
    let Some(env) = postgres_env("projections_resume").await else {
        return;
    };
    crash_and_resume(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_is_readable_once_its_position_is_reached() {
    let env = sqlite_env().await;
    let db = ReadDb::connect(&env.read_urls[0], 4).await.unwrap();
    let handle = Runner::new(Arc::clone(&env.log), db.clone(), projections::all())
        .start()
        .await
        .unwrap();
    let bus = CommandBus::new(Arc::clone(&env.log), Arc::new(SystemClock));
    for i in 0..20 {
        let id = Uuid::now_v7();
        let out = organization::create(&bus, id, &format!("Acme {i}"), &meta())
            .await
            .unwrap();
        assert!(
            handle
                .wait_for(out.position.unwrap(), Duration::from_secs(5))
                .await
        );
        let row = organizations::get(&db, &id.to_string())
            .await
            .unwrap()
            .expect("read your write");
        assert_eq!(row.name, format!("Acme {i}"));
    }
    handle.stop().await;
}

/// The organizations projection under another version number.
struct Bumped(u32);

#[async_trait]
impl Projection for Bumped {
    fn name(&self) -> &'static str {
        OrganizationsProjection.name()
    }
    fn version(&self) -> u32 {
        self.0
    }
    fn handles(&self, e: &RecordedEvent) -> bool {
        OrganizationsProjection.handles(e)
    }
    async fn apply(
        &self,
        c: &mut AnyConnection,
        d: Dialect,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        OrganizationsProjection.apply(c, d, e).await
    }
    async fn reset(&self, c: &mut AnyConnection) -> Result<(), ProjectionError> {
        OrganizationsProjection.reset(c).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_projection_version_rebuilds_from_the_start() {
    let env = sqlite_env().await;
    let db = ReadDb::connect(&env.read_urls[0], 4).await.unwrap();
    let bus = CommandBus::new(Arc::clone(&env.log), Arc::new(SystemClock));
    for i in 0..10 {
        organization::create(&bus, Uuid::now_v7(), &format!("Org {i}"), &meta())
            .await
            .unwrap();
    }
    run_to_head(&env.log, &db, 100).await;
    // A row no event explains: only a rebuild removes it.
    sqlx::query("INSERT INTO organizations (id, name, created_at, updated_at, revision) VALUES ('stray', 'x', '', '', 0)")
        .execute(&db.pool)
        .await
        .unwrap();

    let same = Runner::new(Arc::clone(&env.log), db.clone(), vec![Arc::new(Bumped(1))])
        .start()
        .await
        .unwrap();
    same.stop().await;
    assert!(
        organizations::get(&db, "stray").await.unwrap().is_some(),
        "same version: no rebuild"
    );

    let head = env.log.head().await.unwrap().unwrap();
    let bumped = Runner::new(Arc::clone(&env.log), db.clone(), vec![Arc::new(Bumped(2))])
        .start()
        .await
        .unwrap();
    assert!(bumped.wait_for(head, Duration::from_secs(10)).await);
    bumped.stop().await;
    assert!(
        organizations::get(&db, "stray").await.unwrap().is_none(),
        "new version: rebuilt"
    );
    assert_eq!(organizations::list(&db, None, 100).await.unwrap().len(), 10);
    let (_, applied) = dump(&db).await;
    assert_eq!(
        applied, 10,
        "the rebuilt checkpoint counts only the rebuild"
    );
}
