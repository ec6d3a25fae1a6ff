//! The command loop against real event logs: serialization inside one
//! process, conflict retries across processes, refusals that write nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use commands::{CommandBus, CommandError, SystemClock, organization};
use domain::Metadata;
use domain::organization::OrganizationError;
use eventlog::{Direction, EventLog, LogOptions};
use time::OffsetDateTime;
use uuid::Uuid;

fn meta() -> Metadata {
    Metadata::system(Uuid::now_v7(), OffsetDateTime::now_utc())
}

async fn sqlite() -> (Arc<dyn EventLog>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("log.db").display());
    (
        eventlog::open(&url, &LogOptions::default()).await.unwrap(),
        dir,
    )
}

async fn postgres_pair(name: &str) -> Option<(Arc<dyn EventLog>, Arc<dyn EventLog>)> {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: commands on PostgreSQL: TEST_DATABASE_URL is not set"
        );
        return None;
    };
    let url = eventlog::postgres::create_scratch_database(&admin, name)
        .await
        .unwrap();
    let a = eventlog::open(&url, &LogOptions::default()).await.unwrap();
    let b = eventlog::open(&url, &LogOptions::default()).await.unwrap();
    Some((a, b))
}

async fn stream_len(log: &Arc<dyn EventLog>, stream: &str) -> usize {
    log.read_stream(stream, Direction::Forwards, None, 10_000)
        .await
        .unwrap()
        .len()
}

/// `writers` concurrent renames through each bus; all must land.
async fn renames_all_land(buses: Vec<Arc<CommandBus>>, per_bus: usize) {
    let id = Uuid::now_v7();
    organization::create(&buses[0], id, "Start", &meta())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (b, bus) in buses.iter().enumerate() {
        for i in 0..per_bus {
            let bus = Arc::clone(bus);
            tasks.push(tokio::spawn(async move {
                organization::rename(&bus, id, &format!("Name {b}-{i}"), &meta()).await
            }));
        }
    }
    let mut positions = Vec::new();
    for t in tasks {
        let out = t.await.unwrap().expect("every rename lands");
        assert_eq!(out.events, 1);
        positions.push(out.position.unwrap());
    }
    positions.sort();
    positions.dedup();
    assert_eq!(
        positions.len(),
        buses.len() * per_bus,
        "each command has its own position"
    );
    let stream = CommandBus::stream_name::<domain::organization::Organization>(&id.to_string());
    assert_eq!(
        stream_len(buses[0].log(), &stream).await,
        1 + buses.len() * per_bus
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_on_one_stream_in_one_process_are_serialized() {
    let (log, _dir) = sqlite().await;
    let bus = Arc::new(CommandBus::new(log, Arc::new(SystemClock)));
    renames_all_land(vec![bus], 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_conflict_and_retry_on_sqlite() {
    let (log, _dir) = sqlite().await;
    let a = Arc::new(CommandBus::new(Arc::clone(&log), Arc::new(SystemClock)));
    let b = Arc::new(CommandBus::new(log, Arc::new(SystemClock)));
    renames_all_land(vec![a, b], 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_conflict_and_retry_on_postgres() {
    let Some((la, lb)) = postgres_pair("commands_two_processes").await else {
        return;
    };
    let a = Arc::new(CommandBus::new(la, Arc::new(SystemClock)));
    let b = Arc::new(CommandBus::new(lb, Arc::new(SystemClock)));
    renames_all_land(vec![a, b], 20).await;
}

#[tokio::test]
async fn a_refused_command_appends_nothing_and_a_no_op_has_no_position() {
    let (log, _dir) = sqlite().await;
    let bus = CommandBus::new(log, Arc::new(SystemClock));
    let id = Uuid::now_v7();
    let created = organization::create(&bus, id, "Acme", &meta())
        .await
        .unwrap();
    assert_eq!(created.revision, Some(0));
    assert!(created.position.is_some());

    let again = organization::create(&bus, id, "Acme", &meta()).await;
    assert!(matches!(
        again,
        Err(CommandError::Domain(OrganizationError::AlreadyExists))
    ));
    let same = organization::rename(&bus, id, "Acme", &meta())
        .await
        .unwrap();
    assert_eq!(
        (same.events, same.position, same.revision),
        (0, None, Some(0))
    );

    let stream = format!("organization-{id}");
    assert_eq!(stream_len(bus.log(), &stream).await, 1);
    let (state, rev) = bus
        .load::<domain::organization::Organization>(&id.to_string())
        .await
        .unwrap();
    assert_eq!((state.name.as_str(), rev), ("Acme", Some(0)));
}
