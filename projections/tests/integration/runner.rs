//! The projection runner against real databases: exactly-once application
//! across crashes at random points, read-your-writes, rebuilds beside the
//! live tables (under writes, interrupted, on a version change).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commands::{CommandBus, SystemClock, organization};
use domain::Metadata;
use eventlog::{EventLog, LogOptions, RecordedEvent};
use projections::organizations::{self, OrganizationsProjection};
use projections::{Projection, ProjectionError, ReadDb, Runner, Tables};
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
    // The first read model shares the log's file (as data directories
    // from before read.db do), the second has its own (the default now).
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

/// Every projection, running on the env's read database number `url`.
async fn run_all(env: &Env, url: usize) -> (ReadDb, projections::RunnerHandle) {
    let db = ReadDb::connect(&env.read_urls[url], 4).await.unwrap();
    let handle = Runner::new(Arc::clone(&env.log), db.clone(), projections::all())
        .start()
        .await
        .unwrap();
    (db, handle)
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
    // On PostgreSQL a commit becomes readable once every older transaction
    // in the cluster has finished (other tests run beside this one): wait
    // until the head stops moving.
    let mut seen = None;
    loop {
        let head = log.head().await.unwrap();
        if head.is_some() && head == seen {
            break;
        }
        if let Some(at) = head {
            assert!(
                handle.wait_for(at, Duration::from_secs(60)).await,
                "the runner reaches the head"
            );
        }
        seen = head;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(handle.caught_up().await.unwrap());
    handle.stop().await;
}

/// Starts and stops a runner on the read database at `url` while the log is
/// empty: its projections get checkpoints, so a later runner follows the
/// log live, batch by batch (over a log with events, a database without
/// checkpoints is built as a rebuild is).
async fn checkpoint_while_empty(log: &Arc<dyn EventLog>, url: &str) {
    assert!(log.head().await.unwrap().is_none());
    let db = ReadDb::connect(url, 4).await.unwrap();
    let handle = Runner::new(Arc::clone(log), db.clone(), projections::all())
        .start()
        .await
        .unwrap();
    handle.stop().await;
    db.close().await;
}

async fn crash_and_resume(env: Env) {
    // The crashing runner follows the log live.
    checkpoint_while_empty(&env.log, &env.read_urls[1]).await;
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
        // A few milliseconds at first; longer as restarts add up, so that
        // a slow start of every projection on a busy machine still ends.
        let pause = rand::rng().random_range(0..15u64) + restarts / 20;
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
            crashed.close().await;
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
    let (db, handle) = run_all(&env, 0).await;
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
    fn tables(&self) -> &'static [&'static str] {
        OrganizationsProjection.tables()
    }
    fn handles(&self, e: &RecordedEvent) -> bool {
        OrganizationsProjection.handles(e)
    }
    async fn apply(
        &self,
        c: &mut AnyConnection,
        t: Tables,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        OrganizationsProjection.apply(c, t, e).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_projection_version_rebuilds_beside_on_sqlite() {
    version_change(sqlite_env().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_projection_version_rebuilds_beside_on_postgres() {
    let Some(env) = postgres_env("rebuild_version").await else {
        return;
    };
    version_change(env).await;
}

async fn version_change(env: Env) {
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
    assert_eq!(leftovers(&db).await, Vec::<String>::new());
}

/// Appends a marker event and waits until readers can see it: on
/// PostgreSQL a commit becomes readable once every older transaction in the
/// cluster has finished, and other tests share the cluster.
async fn settle(log: &Arc<dyn EventLog>) -> eventlog::Position {
    let marker = eventlog::NewEvent::new("noise.happened.v1", serde_json::json!({}), meta());
    let at = log
        .append(
            "noise-marker",
            eventlog::ExpectedRevision::Any,
            vec![marker],
        )
        .await
        .unwrap()
        .position;
    let started = std::time::Instant::now();
    while log.head().await.unwrap() < Some(at) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the marker becomes readable"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    at
}

/// Names of next or old generations and next checkpoints left behind.
async fn leftovers(db: &ReadDb) -> Vec<String> {
    let tables = match db.dialect {
        projections::Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        projections::Dialect::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
              WHERE table_schema = current_schema()"
        }
    };
    let mut names: Vec<String> = sqlx::query_scalar(tables)
        .fetch_all(&db.pool)
        .await
        .unwrap();
    names.retain(|n| n.ends_with("__next") || n.ends_with("__old"));
    let next: Vec<String> =
        sqlx::query_scalar("SELECT name FROM projection_checkpoints WHERE name LIKE '%#next'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    names.extend(next);
    names
}

/// Every row of every projection's tables, as text (bytes as a list), in
/// key order.
async fn snapshot(db: &ReadDb) -> Vec<(String, Vec<Vec<String>>)> {
    let mut out = Vec::new();
    for p in projections::all() {
        for t in p.tables() {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT * FROM {t} ORDER BY 1, 2, 3"
            )))
            .fetch_all(&db.pool)
            .await
            .unwrap();
            let rows = rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            if let Ok(v) = r.try_get::<Option<String>, _>(i) {
                                format!("{v:?}")
                            } else if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
                                format!("{v:?}")
                            } else if let Ok(v) = r.try_get::<Option<Vec<u8>>, _>(i) {
                                format!("{v:?}")
                            } else {
                                format!("{:?}", r.try_get::<Option<i32>, _>(i).unwrap())
                            }
                        })
                        .collect()
                })
                .collect();
            out.push(((*t).to_owned(), rows));
        }
    }
    out
}

/// Every read-model table of `a` and `b` holds rows, the same ones.
async fn assert_same_read_models(a: &ReadDb, b: &ReadDb, what: &str) {
    let (a, b) = (snapshot(a).await, snapshot(b).await);
    for ((t, a), (_, b)) in a.iter().zip(&b) {
        assert!(!b.is_empty(), "{t} has rows");
        assert_eq!(a.len(), b.len(), "{t}: row count ({what})");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x, y, "{t}: {what}");
        }
    }
}

/// One round of what a busy platform writes: an organization, a client with
/// a secret, token grants with that secret, a registration token consumed by
/// three instances, their later lives (a refresh; an exchange and a
/// correction; a detected reuse and a deletion), a failed client
/// authentication, and every fifth round the erasure of the first person.
async fn write_mix(log: &Arc<dyn EventLog>, round: u64) {
    use domain::auth_token::{
        AuthTokenDeleted, AuthTokenExchanged, AuthTokenInstanceCorrected, AuthTokenReuseDetected,
    };
    use domain::client::{ClientCreated, ClientEvent, ClientSecretCreated, ClientSettings};
    use domain::organization::{OrganizationCreated, OrganizationEvent};
    use domain::privacy::{PrivacyEvent, SubjectErased};
    use domain::registration::{
        AuthTokenEvent, AuthTokenIssued, AuthTokenRefreshed, InstanceInfo,
        RegistrationTokenConsumed, RegistrationTokenCreated, RegistrationTokenEvent,
    };
    use domain::token::{ClientAuthFailed, TokenEvent, TokenIssued};
    use eventlog::{ExpectedRevision, encode};
    let now = OffsetDateTime::now_utc();
    let (org, client, secret, rt) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let append = |stream: String, events: Vec<eventlog::NewEvent>| {
        let log = Arc::clone(log);
        async move {
            log.append(&stream, ExpectedRevision::Any, events)
                .await
                .unwrap();
        }
    };
    append(
        format!("organization-{org}"),
        vec![encode(
            &OrganizationEvent::Created(OrganizationCreated {
                id: org,
                name: format!("Org {round}"),
                created_at: now,
            }),
            &meta(),
        )],
    )
    .await;
    append(
        format!("client-{client}"),
        vec![
            encode(
                &ClientEvent::Created(ClientCreated {
                    client_id: client,
                    organization_id: org,
                    client_type: domain::client::ClientType::Confidential,
                    settings: ClientSettings {
                        name: format!("app {round}"),
                        access_token_lifetime_secs: 300,
                        ..Default::default()
                    },
                    platform_admin: false,
                    created_at: now,
                }),
                &meta(),
            ),
            encode(
                &ClientEvent::SecretCreated(ClientSecretCreated {
                    secret_id: secret,
                    description: "ci".into(),
                    hash: "00".repeat(32),
                    created_at: now,
                    expires_at: None,
                }),
                &meta(),
            ),
        ],
    )
    .await;
    let grants = (0..20)
        .map(|i| {
            encode(
                &TokenEvent::Issued(TokenIssued {
                    jti: Uuid::now_v7(),
                    client_id: client,
                    organization_id: org,
                    grant_type: "client_credentials".into(),
                    scope: String::new(),
                    audience: "api".into(),
                    secret_id: Some(secret),
                    auth_token_id: None,
                    grant_id: None,
                    auth_method: "client_secret_basic".into(),
                    issued_at: now + time::Duration::milliseconds(i),
                    expires_at: now + time::Duration::minutes(5),
                }),
                &meta(),
            )
        })
        .collect();
    append(format!("tokens-bench-{}", round % 4), grants).await;
    append(
        format!("regtoken-{rt}"),
        vec![encode(
            &RegistrationTokenEvent::Created(RegistrationTokenCreated {
                id: rt,
                organization_id: org,
                client_id: client,
                description: "fleet".into(),
                count: 10,
                expires_at: now + time::Duration::days(1),
                hash: "11".repeat(32),
                created_at: now,
                created_by: "admin".into(),
            }),
            &meta(),
        )],
    )
    .await;
    for n in 1..=3u64 {
        let at = Uuid::now_v7();
        let instance = InstanceInfo {
            instance_id: format!("i-{round}-{n}"),
            device_name: "laptop".into(),
            user_name: domain::Pii::new(format!("user {n}")),
            app_version: "1.0".into(),
            subject: Some(format!("person:{n}")),
        };
        append(
            format!("regtoken-{rt}"),
            vec![encode(
                &RegistrationTokenEvent::Consumed(RegistrationTokenConsumed {
                    auth_token_id: at,
                    instance: instance.clone(),
                    consumed_at: now,
                    used_after: n,
                }),
                &meta(),
            )],
        )
        .await;
        let mut events = vec![encode(
            &AuthTokenEvent::Issued(AuthTokenIssued {
                id: at,
                registration_token_id: rt,
                organization_id: org,
                client_id: client,
                hash: "22".repeat(32),
                instance,
                issued_at: now,
            }),
            &meta(),
        )];
        let later: Vec<AuthTokenEvent> = match n {
            1 => vec![AuthTokenEvent::Refreshed(AuthTokenRefreshed {
                previous_token_id: Uuid::now_v7(),
                refresh_token_id: Uuid::now_v7(),
                refresh_hash: "33".repeat(32),
                refreshed_at: now + time::Duration::seconds(1),
            })],
            2 => vec![
                AuthTokenEvent::Exchanged(AuthTokenExchanged {
                    refresh_token_id: Uuid::now_v7(),
                    refresh_hash: "44".repeat(32),
                    scope: None,
                    exchanged_at: now + time::Duration::seconds(2),
                }),
                AuthTokenEvent::InstanceCorrected(AuthTokenInstanceCorrected {
                    user_name: Some(domain::Pii::new(format!("user {n} corrected"))),
                    device_name: Some("desk".into()),
                    subject: None,
                    corrected_at: now + time::Duration::seconds(3),
                }),
            ],
            _ => vec![
                AuthTokenEvent::ReuseDetected(AuthTokenReuseDetected {
                    token_id: Uuid::now_v7(),
                    detected_at: now + time::Duration::seconds(4),
                }),
                AuthTokenEvent::Deleted(AuthTokenDeleted {
                    deleted_at: now + time::Duration::seconds(5),
                }),
            ],
        };
        events.extend(later.iter().map(|e| encode(e, &meta())));
        append(format!("authtoken-{at}"), events).await;
    }
    if round.is_multiple_of(5) {
        let subject = "person:1".to_owned();
        let mut erased = encode(
            &PrivacyEvent::Erased(SubjectErased {
                subject: subject.clone(),
                erased_at: now,
            }),
            &meta(),
        );
        erased.subject = Some(subject.clone());
        append(domain::privacy::privacy_stream(&subject), vec![erased]).await;
    }
    write_people(log, org, round, now).await;
    write_sessions(log, org, round, now).await;
    append(
        "authfailures-bench".into(),
        vec![encode(
            &TokenEvent::ClientAuthFailed(ClientAuthFailed::single(
                client.to_string(),
                "client_secret_basic".into(),
                "wrong secret".into(),
            )),
            &meta(),
        )],
    )
    .await;
}

/// Applying events in batches (many rows per statement, later events folded
/// into rows written once) leaves the same read models as applying them one
/// at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_and_single_events_leave_the_same_read_models() {
    let env = sqlite_env().await;
    for url in &env.read_urls {
        checkpoint_while_empty(&env.log, url).await;
    }
    for r in 0..12 {
        write_mix(&env.log, r).await;
    }
    let one = ReadDb::connect(&env.read_urls[1], 4).await.unwrap();
    run_to_head(&env.log, &one, 1).await;
    let many = ReadDb::connect(&env.read_urls[0], 4).await.unwrap();
    run_to_head(&env.log, &many, 500).await;
    assert_same_read_models(&many, &one, "batches of 500 and of one").await;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(user_name, '-') || '/' || device_name FROM auth_tokens ORDER BY instance_id",
    )
    .fetch_all(&many.pool)
    .await
    .unwrap();
    assert!(
        names.contains(&"user 2 corrected/desk".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"-/".to_owned()),
        "an erased name and device: {names:?}"
    );
    assert!(
        names.contains(&"user 1/laptop".to_owned()),
        "named after the erasure: {names:?}"
    );
}

/// A read database without checkpoints over a log with events is built in
/// one pass as a rebuild builds (its SQLite indexes carry the rebuilt
/// generation's names), then follows the log live, and ends equal to one
/// that followed the log from its first event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_read_database_is_built_as_a_rebuild_then_follows_the_log() {
    let env = sqlite_env().await;
    checkpoint_while_empty(&env.log, &env.read_urls[0]).await;
    for r in 0..10 {
        write_mix(&env.log, r).await;
    }
    let fresh = ReadDb::connect(&env.read_urls[1], 4).await.unwrap();
    let handle = Runner::new(Arc::clone(&env.log), fresh.clone(), projections::all())
        .start()
        .await
        .unwrap();
    let head = settle(&env.log).await;
    assert!(handle.wait_for(head, Duration::from_secs(60)).await);
    let renamed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'audit_by_actor__next' AND tbl_name = 'audit_entries'",
    )
    .fetch_one(&fresh.pool)
    .await
    .unwrap();
    assert_eq!(renamed, 1, "built as a rebuild builds");
    for r in 10..15 {
        write_mix(&env.log, r).await;
    }
    let end = settle(&env.log).await;
    assert!(
        handle.wait_for(end, Duration::from_secs(60)).await,
        "and then live"
    );
    handle.stop().await;
    let followed = ReadDb::connect(&env.read_urls[0], 4).await.unwrap();
    run_to_head(&env.log, &followed, 50).await;
    assert_same_read_models(
        &fresh,
        &followed,
        "built at start and followed from the first event",
    )
    .await;
}

/// The name the live audit trail's actor index has now: each rebuild
/// gives the live tables' indexes the other of two names.
async fn actor_index_name(db: &ReadDb) -> String {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_entries'
            AND name LIKE 'audit_by_actor%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// Starts a runner with the given threshold, waits until it has caught up
/// with the log, stops it.
async fn start_behind(log: &Arc<dyn EventLog>, db: &ReadDb, rebuild_when_behind: u64) {
    let handle = Runner::new(Arc::clone(log), db.clone(), projections::all())
        .with_rebuild_when_behind(rebuild_when_behind)
        .start()
        .await
        .unwrap();
    let head = settle(log).await;
    assert!(handle.wait_for(head, Duration::from_secs(60)).await);
    handle.stop().await;
}

/// A start far behind the log (at least the threshold, and a third of the
/// log) rebuilds the read models beside their tables instead of applying
/// batch after batch to tables with all their indexes; a start a little
/// behind catches up as before. Either way the read models end as those a
/// runner that followed every event built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_far_behind_rebuilds_and_a_start_a_little_behind_catches_up() {
    let env = sqlite_env().await;
    for r in 0..4 {
        write_mix(&env.log, r).await;
    }
    let db = ReadDb::connect(&env.read_urls[1], 4).await.unwrap();
    start_behind(&env.log, &db, u64::MAX).await;
    let before = actor_index_name(&db).await;

    // A little behind: past the threshold, but not a third of the log.
    write_mix(&env.log, 4).await;
    start_behind(&env.log, &db, 1).await;
    assert_eq!(
        actor_index_name(&db).await,
        before,
        "caught up, not rebuilt"
    );

    // Far behind: more events since the checkpoint than before it.
    for r in 5..15 {
        write_mix(&env.log, r).await;
    }
    start_behind(&env.log, &db, 1).await;
    assert_ne!(actor_index_name(&db).await, before, "rebuilt beside");

    // Below the threshold nothing is rebuilt, however far behind.
    let rebuilt = actor_index_name(&db).await;
    for r in 15..40 {
        write_mix(&env.log, r).await;
    }
    start_behind(&env.log, &db, 1_000_000).await;
    assert_eq!(actor_index_name(&db).await, rebuilt, "caught up");

    let followed = ReadDb::connect(&env.read_urls[0], 4).await.unwrap();
    run_to_head(&env.log, &followed, 50).await;
    assert_same_read_models(&db, &followed, "started behind, rebuilt or caught up").await;
}

async fn rebuild_under_writes(env: Env) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    seed(&env.log).await;
    for r in 0..30 {
        write_mix(&env.log, r).await;
    }
    let live = ReadDb::connect(&env.read_urls[0], 4).await.unwrap();
    // A server's runner keeps feeding the live tables throughout.
    let handle = Runner::new(Arc::clone(&env.log), live.clone(), projections::all())
        .with_batch(50)
        .start()
        .await
        .unwrap();
    let head = env.log.head().await.unwrap().unwrap();
    assert!(handle.wait_for(head, Duration::from_secs(60)).await);

    let rebuilding = Arc::new(AtomicBool::new(true));
    let during = Arc::new(AtomicU64::new(0));
    let writer = {
        let (log, rebuilding, during) = (
            Arc::clone(&env.log),
            Arc::clone(&rebuilding),
            Arc::clone(&during),
        );
        tokio::spawn(async move {
            let mut round = 1000;
            while rebuilding.load(Ordering::SeqCst) {
                write_mix(&log, round).await;
                during.fetch_add(1, Ordering::SeqCst);
                round += 1;
            }
            // And after the switch.
            for r in 0..20 {
                write_mix(&log, round + r).await;
            }
        })
    };
    let steps = std::sync::Mutex::new(Vec::new());
    let record = |p: &projections::Progress| {
        if let projections::Step::Indexing {
            projection,
            index,
            built,
            of,
        } = &p.step
        {
            steps
                .lock()
                .unwrap()
                .push((*projection, index.clone(), *built, *of));
        }
    };
    let summary = projections::rebuild(&env.log, &live, &projections::all(), 97, &record)
        .await
        .unwrap();
    let steps = steps.into_inner().unwrap();
    if live.dialect == projections::Dialect::Sqlite {
        // The operator sees each index build of the audit trail, in order.
        let audit: Vec<_> = steps.iter().filter(|s| s.0 == "audit").collect();
        // (and of the open sign-ins it keeps).
        assert_eq!(audit.len(), 10, "{steps:?}");
        for (k, (_, index, built, of)) in audit.iter().enumerate() {
            assert_eq!((*built, *of), (k, 10), "{index}");
            // (Named `…__next` or not: each generation takes the other name.)
            assert!(
                index.starts_with("audit_") || index.starts_with("open_sign_ins_"),
                "{index}"
            );
        }
    } else {
        assert!(steps.is_empty(), "PostgreSQL copies indexes with the table");
    }
    rebuilding.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    let end = settle(&env.log).await;
    assert!(
        during.load(Ordering::SeqCst) > 0,
        "writes arrived while rebuilding"
    );
    assert_eq!(summary.switched_at.len(), 8);

    assert!(
        handle.wait_for(end, Duration::from_secs(60)).await,
        "the live runner continues from the rebuilt checkpoint"
    );
    handle.stop().await;
    assert_eq!(leftovers(&live).await, Vec::<String>::new());

    let single = ReadDb::connect(&env.read_urls[1], 4).await.unwrap();
    run_to_head(&env.log, &single, 500).await;
    assert_same_read_models(&live, &single, "rebuilt under writes and a single pass").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_under_writes_misses_no_event_on_sqlite() {
    rebuild_under_writes(sqlite_env().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_under_writes_misses_no_event_on_postgres() {
    let Some(env) = postgres_env("rebuild_under_writes").await else {
        return;
    };
    rebuild_under_writes(env).await;
}

async fn interrupted_rebuild(env: Env) {
    use std::sync::atomic::{AtomicU64, Ordering};
    seed(&env.log).await;
    for r in 0..60 {
        write_mix(&env.log, r).await;
    }
    settle(&env.log).await;
    let url = env.read_urls[0].clone();
    let db = ReadDb::connect(&url, 4).await.unwrap();
    run_to_head(&env.log, &db, 500).await;
    let total = env
        .log
        .count_after(eventlog::Position::START)
        .await
        .unwrap();

    let seen = Arc::new(AtomicU64::new(0));
    let task = {
        let (log, db, seen) = (Arc::clone(&env.log), db.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            let progress = move |p: &projections::Progress| seen.store(p.read, Ordering::SeqCst);
            projections::rebuild(&log, &db, &projections::all(), 50, &progress).await
        })
    };
    let started = std::time::Instant::now();
    while seen.load(Ordering::SeqCst) < total / 3 {
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task.abort();
    assert!(task.await.is_err(), "aborted mid-way");
    db.close().await;

    let db = ReadDb::connect(&url, 4).await.unwrap();
    let next: Vec<(String, i64)> = sqlx::query_as(
        "SELECT name, commit_pos FROM projection_checkpoints WHERE name LIKE '%#next' ORDER BY name",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(next.len(), 8, "{next:?}");
    let resume: Vec<eventlog::Position> = sqlx::query(
        "SELECT commit_pos, prepare_pos FROM projection_checkpoints WHERE name LIKE '%#next'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| eventlog::Position::new(r.get::<i64, _>(0) as u64, r.get::<i64, _>(1) as u64))
    .collect();
    let from = resume.into_iter().min().unwrap();
    assert!(
        from > eventlog::Position::START,
        "the next generation kept its progress"
    );
    let remaining = env.log.count_after(from).await.unwrap();

    let summary = projections::rebuild(&env.log, &db, &projections::all(), 50, &|_| {})
        .await
        .unwrap();
    assert_eq!(
        summary.events, remaining,
        "it continued from its checkpoint"
    );
    assert!(summary.events < total, "it did not start over");
    assert_eq!(leftovers(&db).await, Vec::<String>::new());

    let single = ReadDb::connect(&env.read_urls[1], 4).await.unwrap();
    run_to_head(&env.log, &single, 500).await;
    assert_eq!(snapshot(&db).await, snapshot(&single).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_rebuild_resumes_on_sqlite() {
    interrupted_rebuild(sqlite_env().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_rebuild_resumes_on_postgres() {
    let Some(env) = postgres_env("rebuild_resume").await else {
        return;
    };
    interrupted_rebuild(env).await;
}

/// Users (changed, deactivated, one of every two deleted), groups with
/// members, and a nesting, for `write_mix`.
/// A user created in `org` with no email, phone or profile; the username's
/// claim is the same for every user (the projections do not check it).
fn user_created(
    id: Uuid,
    org: Uuid,
    name: String,
    attributes: domain::user::Attributes,
    now: OffsetDateTime,
) -> domain::user::UserEvent {
    use domain::Pii;
    use domain::user::{Profile, UserCreated, UserEvent};
    UserEvent::Created(UserCreated {
        user_id: id,
        organization_id: org,
        username: Pii::new(name),
        username_claim: "ab".repeat(16),
        email: None,
        email_claim: None,
        email_verified: false,
        phone_number: None,
        phone_verified: false,
        profile: Pii::new(Profile::default()),
        attributes: Pii::new(attributes),
        created_by: "admin".into(),
        at: now,
    })
}

async fn write_people(log: &Arc<dyn EventLog>, org: Uuid, round: u64, now: OffsetDateTime) {
    use domain::Pii;
    use domain::group::{GroupCreated, GroupEvent, GroupMembership, GroupNested, GroupTreeEvent};
    use domain::user::{
        AttributeValue, Attributes, EmailChanged, Profile, ProfileChanged, UserDeleted, UserEvent,
        UserFact,
    };
    use eventlog::{ExpectedRevision, encode};
    let (user, gone, parent, child) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let mut attributes = Attributes::new();
    attributes.insert(
        "city".into(),
        AttributeValue::Many(vec!["Paris".into(), "Lyon".into()]),
    );
    let created = |id: Uuid, name: String| user_created(id, org, name, attributes.clone(), now);
    let fact = |id: Uuid| UserFact {
        user_id: id,
        at: now,
    };
    let user_events = [
        created(user, format!("user-{round}")),
        UserEvent::EmailChanged(EmailChanged {
            user_id: user,
            email: Some(Pii::new(format!("u{round}@example.org"))),
            claim: Some("cd".repeat(16)),
            released_claim: None,
            verified: true,
            at: now,
        }),
        UserEvent::ProfileChanged(ProfileChanged {
            user_id: user,
            profile: Pii::new(Profile {
                given_name: Some("Ada".into()),
                ..Profile::default()
            }),
            at: now,
        }),
        UserEvent::Deactivated(fact(user)),
        UserEvent::SignedIn(fact(user)),
    ];
    let append = |stream: String, events: Vec<eventlog::NewEvent>| {
        let log = Arc::clone(log);
        async move {
            log.append(&stream, ExpectedRevision::Any, events)
                .await
                .unwrap();
        }
    };
    append(
        format!("user-{user}"),
        user_events.iter().map(|e| encode(e, &meta())).collect(),
    )
    .await;
    let mut gone_events = vec![encode(&created(gone, format!("gone-{round}")), &meta())];
    if round.is_multiple_of(2) {
        gone_events.push(encode(
            &UserEvent::Deleted(UserDeleted {
                user_id: gone,
                released_claims: vec!["ab".repeat(16)],
                at: now,
            }),
            &meta(),
        ));
    }
    append(format!("user-{gone}"), gone_events).await;
    for (g, name) in [(parent, "parent"), (child, "child")] {
        let group = GroupEvent::Created(GroupCreated {
            external_id: None,
            group_id: g,
            organization_id: org,
            name: format!("{name} {round}"),
            description: String::new(),
            created_by: "admin".into(),
            at: now,
        });
        let member = GroupEvent::UserAdded(GroupMembership {
            group_id: g,
            user_id: user,
            at: now,
        });
        append(
            format!("group-{g}"),
            vec![encode(&group, &meta()), encode(&member, &meta())],
        )
        .await;
    }
    append(
        format!("grouptree-{org}"),
        vec![encode(
            &GroupTreeEvent::Nested(GroupNested {
                parent,
                child,
                at: now,
            }),
            &meta(),
        )],
    )
    .await;
}

/// Sessions of a person: one used then revoked, one found expired, one of a
/// person deleted in even rounds.
async fn write_sessions(log: &Arc<dyn EventLog>, org: Uuid, round: u64, now: OffsetDateTime) {
    use domain::Pii;
    use domain::session::{
        RevokeReason, SessionCreated, SessionEvent, SessionFact, SessionRevoked,
    };
    use domain::sign_in_policy::Method;
    use domain::user::{UserDeleted, UserEvent};
    use eventlog::{ExpectedRevision, encode};
    let (user, gone) = (Uuid::now_v7(), Uuid::now_v7());
    let created = |session: Uuid, user: Uuid| {
        SessionEvent::Created(SessionCreated {
            session_id: session,
            user_id: user,
            organization_id: org,
            sign_in_id: Uuid::now_v7(),
            secret_hash: "ab".repeat(32),
            methods: vec![Method::Password, Method::Totp],
            factors: Some(2),
            auth_time: now,
            expires_at: now + time::Duration::hours(12),
            idle_timeout_seconds: 1800,
            source_ip: Some(Pii::new(format!("192.0.2.{}", round % 250))),
            user_agent: Some(Pii::new("test-agent/1.0".into())),
            at: now,
        })
    };
    let fact = |session: Uuid, user: Uuid, secs: i64| SessionFact {
        session_id: session,
        user_id: user,
        at: now + time::Duration::seconds(secs),
    };
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let streams = [
        (
            a,
            vec![
                created(a, user),
                SessionEvent::Used(fact(a, user, 90)),
                SessionEvent::Revoked(SessionRevoked {
                    session_id: a,
                    user_id: user,
                    reason: RevokeReason::ByUser,
                    at: now + time::Duration::seconds(100),
                }),
            ],
        ),
        (
            b,
            vec![created(b, user), SessionEvent::Expired(fact(b, user, 3600))],
        ),
        (c, vec![created(c, gone)]),
    ];
    for (id, events) in streams {
        log.append(
            &format!("session-{id}"),
            ExpectedRevision::Any,
            events.iter().map(|e| encode(e, &meta())).collect(),
        )
        .await
        .unwrap();
    }
    write_sign_ins(log, org, user, a, now).await;
    write_notifications(log, org, user, gone, now).await;
    write_roles(log, org, user, gone, now).await;
    if round.is_multiple_of(2) {
        let deleted = UserEvent::Deleted(UserDeleted {
            user_id: gone,
            released_claims: vec![],
            at: now,
        });
        log.append(
            &format!("user-{gone}"),
            ExpectedRevision::Any,
            vec![encode(&deleted, &meta())],
        )
        .await
        .unwrap();
    }
}

/// Roles: one held by a person, one deleted in even rounds, the
/// organization and a client; one changed and given up; one deleted.
async fn write_roles(
    log: &Arc<dyn EventLog>,
    org: Uuid,
    user: Uuid,
    gone: Uuid,
    now: OffsetDateTime,
) {
    use domain::role::{
        Holder, Permission, RoleAssignment, RoleChanged, RoleCreated, RoleDeleted, RoleEvent,
    };
    use eventlog::{ExpectedRevision, encode};
    let created = |id: Uuid, name: &str| {
        RoleEvent::Created(RoleCreated {
            role_id: id,
            organization_id: org,
            name: name.into(),
            description: String::new(),
            permissions: [Permission::parse("users:read").unwrap()].into(),
            created_by: "admin".into(),
            at: now,
        })
    };
    let assignment = |id: Uuid, holder: Holder| RoleAssignment {
        role_id: id,
        organization_id: org,
        holder,
        at: now,
    };
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let streams = [
        (
            a,
            vec![
                created(a, "support"),
                RoleEvent::Assigned(assignment(a, Holder::User(user))),
                RoleEvent::Assigned(assignment(a, Holder::User(gone))),
                RoleEvent::Assigned(assignment(a, Holder::Organization(org))),
                RoleEvent::Assigned(assignment(a, Holder::Client(Uuid::now_v7()))),
            ],
        ),
        (
            b,
            vec![
                created(b, "auditor"),
                RoleEvent::Changed(RoleChanged {
                    role_id: b,
                    name: Some("auditors".into()),
                    description: None,
                    permissions: Some([Permission::parse("audit:*").unwrap()].into()),
                    at: now,
                }),
                RoleEvent::Assigned(assignment(b, Holder::User(user))),
                RoleEvent::Unassigned(assignment(b, Holder::User(user))),
            ],
        ),
        (
            c,
            vec![
                created(c, "gone"),
                RoleEvent::Assigned(assignment(c, Holder::User(user))),
                RoleEvent::Deleted(RoleDeleted {
                    role_id: c,
                    organization_id: org,
                    holders: vec![Holder::User(user)],
                    at: now,
                }),
            ],
        ),
    ];
    for (id, events) in streams {
        log.append(
            &format!("role-{id}"),
            ExpectedRevision::Any,
            events.iter().map(|e| encode(e, &meta())).collect(),
        )
        .await
        .unwrap();
    }
    use domain::group::GroupNested;
    use domain::role_tree::RoleTreeEvent;
    let included = RoleTreeEvent::Included(GroupNested {
        parent: b,
        child: a,
        at: now,
    });
    log.append(
        &format!("roletree-{org}"),
        ExpectedRevision::Any,
        vec![encode(&included, &meta())],
    )
    .await
    .unwrap();
}

/// Messages: one sent, one failed, one of a person deleted in even rounds.
/// Sign-ins: one left open, one completed (opening `session`), one
/// recorded as expired.
async fn write_sign_ins(
    log: &Arc<dyn EventLog>,
    org: Uuid,
    user: Uuid,
    session: Uuid,
    now: OffsetDateTime,
) {
    use domain::sign_in::{SignInCompleted, SignInEvent, SignInExpired, SignInStarted};
    use domain::sign_in_policy::{Method, SignInPolicy};
    use eventlog::{ExpectedRevision, encode};
    let started = |id: Uuid| {
        SignInEvent::Started(SignInStarted {
            sign_in_id: id,
            organization_id: org,
            client_id: None,
            continue_to: None,
            browser_hash: "cd".repeat(32),
            policy: SignInPolicy::default(),
            expires_at: now + time::Duration::minutes(10),
            at: now,
        })
    };
    let (open, completed, expired) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let streams = [
        (open, vec![started(open)]),
        (
            completed,
            vec![
                started(completed),
                SignInEvent::Completed(SignInCompleted {
                    sign_in_id: completed,
                    user_id: user,
                    session_id: session,
                    methods: vec![Method::Password],
                    at: now,
                }),
            ],
        ),
        (
            expired,
            vec![
                started(expired),
                SignInEvent::Expired(SignInExpired {
                    sign_in_id: expired,
                    at: now + time::Duration::minutes(10),
                }),
            ],
        ),
    ];
    for (id, events) in streams {
        log.append(
            &format!("signin-{id}"),
            ExpectedRevision::Any,
            events.iter().map(|e| encode(e, &meta())).collect(),
        )
        .await
        .unwrap();
    }
}

async fn write_notifications(
    log: &Arc<dyn EventLog>,
    org: Uuid,
    user: Uuid,
    gone: Uuid,
    now: OffsetDateTime,
) {
    use domain::Pii;
    use domain::notification::{
        Channel, NotificationEvent, NotificationFailed, NotificationQueued, NotificationSent,
        Purpose,
    };
    use eventlog::{ExpectedRevision, encode};
    let queued = |id: Uuid, user: Uuid, channel: Channel| {
        NotificationEvent::Queued(NotificationQueued {
            notification_id: id,
            user_id: user,
            organization_id: org,
            channel,
            purpose: Purpose::SignInCode,
            recipient: Pii::new("+442071234567".into()),
            at: now,
        })
    };
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let streams = [
        (
            a,
            vec![
                queued(a, user, Channel::Sms),
                NotificationEvent::Sent(NotificationSent {
                    notification_id: a,
                    user_id: user,
                    provider: "webhook".into(),
                    at: now,
                }),
            ],
        ),
        (
            b,
            vec![
                queued(b, user, Channel::Email),
                NotificationEvent::Failed(NotificationFailed {
                    notification_id: b,
                    user_id: user,
                    provider: "smtp".into(),
                    reason: "connection refused".into(),
                    at: now,
                }),
            ],
        ),
        (c, vec![queued(c, gone, Channel::Whatsapp)]),
    ];
    for (id, events) in streams {
        log.append(
            &format!("notification-{id}"),
            ExpectedRevision::Any,
            events.iter().map(|e| encode(e, &meta())).collect(),
        )
        .await
        .unwrap();
    }
}

/// A recorded sign-in changes nothing a decision or a token's roles read, so
/// it leaves what is cached of everyone valid; a changed attribute does not.
#[tokio::test]
async fn a_recorded_sign_in_keeps_the_access_generation_and_an_attribute_moves_it() {
    use domain::Pii;
    use domain::user::{AttributeValue, Attributes, AttributesChanged, UserEvent, UserFact};
    use eventlog::{ExpectedRevision, encode};
    let env = sqlite_env().await;
    let (_db, handle) = run_all(&env, 1).await;
    use commands::Clock;
    let (org, user, now) = (Uuid::now_v7(), Uuid::now_v7(), SystemClock.now());
    write_people(&env.log, org, 1, now).await;
    let append = |event: UserEvent| {
        let log = Arc::clone(&env.log);
        async move {
            log.append(
                &format!("user-{user}"),
                ExpectedRevision::Any,
                vec![encode(&event, &meta())],
            )
            .await
            .unwrap()
            .position
        }
    };

    let created = append(user_created(
        user,
        org,
        "ada".into(),
        Attributes::new(),
        now,
    ))
    .await;
    assert!(handle.wait_for(created, Duration::from_secs(10)).await);

    let before = handle.access_generation();
    let signed_in = append(UserEvent::SignedIn(UserFact {
        user_id: user,
        at: now,
    }))
    .await;
    assert!(handle.wait_for(signed_in, Duration::from_secs(10)).await);
    assert_eq!(handle.access_generation(), before, "a sign-in moved it");

    let mut attributes = Attributes::new();
    attributes.insert("department".into(), AttributeValue::One("audit".into()));
    let changed = append(UserEvent::AttributesChanged(AttributesChanged {
        user_id: user,
        attributes: Pii::new(attributes),
        at: now,
    }))
    .await;
    assert!(handle.wait_for(changed, Duration::from_secs(10)).await);
    assert!(handle.access_generation() > before, "an attribute left it");
    handle.stop().await;
}
