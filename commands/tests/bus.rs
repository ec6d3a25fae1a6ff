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

// --- the OAuth client aggregate ------------------------------------------------

mod clients {
    use super::*;
    use commands::client::{self, CreatedSecret};
    use domain::client::{
        AuthMethod, Client, ClientError, ClientSettings, ClientType, GrantType, SecretPolicy,
    };

    fn settings() -> ClientSettings {
        ClientSettings {
            name: "Billing service".into(),
            description: String::new(),
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec!["ledger:read".into()],
            auth_method: AuthMethod::ClientSecretBasic,
            jwks: None,
            access_token_lifetime_secs: 3600,
        }
    }

    const POLICY: SecretPolicy = SecretPolicy {
        max_lifetime_days: 365,
        allow_never_expiring: false,
    };

    async fn confidential_client(bus: &CommandBus) -> Uuid {
        let id = Uuid::now_v7();
        client::create(
            bus,
            id,
            Uuid::now_v7(),
            ClientType::Confidential,
            settings(),
            &meta(),
        )
        .await
        .unwrap();
        id
    }

    async fn new_secret(
        bus: &CommandBus,
        id: Uuid,
    ) -> Result<CreatedSecret, CommandError<ClientError>> {
        let expires = OffsetDateTime::now_utc() + time::Duration::days(30);
        client::create_secret(bus, id, "rotation", Some(expires), POLICY, &meta())
            .await
            .map(|(_, created)| created)
    }

    async fn secret_events(log: &Arc<dyn EventLog>, id: Uuid) -> Vec<serde_json::Value> {
        let stream = CommandBus::stream_name::<Client>(&id.to_string());
        log.read_stream(&stream, Direction::Forwards, None, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == "client.secret_created.v1")
            .map(|e| e.data)
            .collect()
    }

    /// `per_bus` concurrent secret creations through each bus on one client:
    /// exactly ten land, every other one is refused by the limit.
    async fn secret_creates_leave_exactly_ten(buses: &[Arc<CommandBus>], per_bus: usize) {
        let id = confidential_client(&buses[0]).await;
        let mut tasks = Vec::new();
        for bus in buses {
            for _ in 0..per_bus {
                let bus = Arc::clone(bus);
                tasks.push(tokio::spawn(async move { new_secret(&bus, id).await }));
            }
        }
        let (mut created, mut refused) = (Vec::new(), 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(secret) => created.push(secret),
                Err(CommandError::Domain(ClientError::SecretLimitReached { limit: 10 })) => {
                    refused += 1;
                }
                Err(other) => panic!("unexpected outcome {other:?}"),
            }
        }
        let total = buses.len() * per_bus;
        assert_eq!((created.len(), refused), (10, total - 10));

        let stored = secret_events(buses[0].log(), id).await;
        assert_eq!(stored.len(), 10);
        let (state, _) = buses[0].load::<Client>(&id.to_string()).await.unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(state.live_secrets(now).count(), 10);
        for secret in &created {
            let s = state
                .secrets
                .iter()
                .find(|s| s.id == secret.secret_id)
                .expect("every accepted secret is in the stream");
            assert_eq!(s.hash, commands::crypto::hash_secret(&secret.value));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_parallel_secret_creates_leave_exactly_ten() {
        let (log, _dir) = sqlite().await;
        let bus = Arc::new(CommandBus::new(Arc::clone(&log), Arc::new(SystemClock)));
        for _ in 0..5 {
            secret_creates_leave_exactly_ten(std::slice::from_ref(&bus), 50).await;
        }
        // Two processes on one file: conflicts are retried, the limit holds.
        let other = Arc::new(CommandBus::new(log, Arc::new(SystemClock)));
        for _ in 0..3 {
            secret_creates_leave_exactly_ten(&[Arc::clone(&bus), Arc::clone(&other)], 25).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_parallel_secret_creates_leave_exactly_ten_across_processes_on_postgres() {
        let Some((la, lb)) = postgres_pair("commands_client_secret_limit").await else {
            return;
        };
        let a = Arc::new(CommandBus::new(la, Arc::new(SystemClock)));
        let b = Arc::new(CommandBus::new(lb, Arc::new(SystemClock)));
        for _ in 0..3 {
            secret_creates_leave_exactly_ten(&[Arc::clone(&a), Arc::clone(&b)], 25).await;
        }
    }

    /// Ten creations of one client id spread over `buses`: one wins.
    async fn one_winner(buses: &[Arc<CommandBus>]) {
        let id = Uuid::now_v7();
        let mut tasks = Vec::new();
        for i in 0..10 {
            let bus = Arc::clone(&buses[i % buses.len()]);
            tasks.push(tokio::spawn(async move {
                let mut s = settings();
                s.name = format!("Contender {i}");
                client::create(
                    &bus,
                    id,
                    Uuid::now_v7(),
                    ClientType::Confidential,
                    s,
                    &meta(),
                )
                .await
            }));
        }
        let (mut won, mut lost) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(outcome) => {
                    assert_eq!((outcome.events, outcome.revision), (1, Some(0)));
                    won += 1;
                }
                Err(CommandError::Domain(ClientError::AlreadyExists)) => lost += 1,
                Err(other) => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((won, lost), (1, 9));
        let stream = CommandBus::stream_name::<Client>(&id.to_string());
        assert_eq!(stream_len(buses[0].log(), &stream).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creation_of_one_client_id_has_one_winner() {
        let (log, _dir) = sqlite().await;
        let a = Arc::new(CommandBus::new(Arc::clone(&log), Arc::new(SystemClock)));
        let b = Arc::new(CommandBus::new(log, Arc::new(SystemClock)));
        for _ in 0..5 {
            one_winner(std::slice::from_ref(&a)).await;
            one_winner(&[Arc::clone(&a), Arc::clone(&b)]).await;
        }
        if let Some((la, lb)) = postgres_pair("commands_client_one_winner").await {
            let a = Arc::new(CommandBus::new(la, Arc::new(SystemClock)));
            let b = Arc::new(CommandBus::new(lb, Arc::new(SystemClock)));
            for _ in 0..5 {
                one_winner(&[Arc::clone(&a), Arc::clone(&b)]).await;
            }
        }
    }

    #[tokio::test]
    async fn rotation_leaves_only_the_new_secret_and_no_plaintext_in_the_log() {
        let (log, _dir) = sqlite().await;
        let bus = CommandBus::new(log, Arc::new(SystemClock));
        let id = confidential_client(&bus).await;
        let a = new_secret(&bus, id).await.unwrap();
        let b = new_secret(&bus, id).await.unwrap();
        assert_ne!(a.value, b.value);
        assert!(!format!("{a:?}").contains(&a.value));

        let deleted = client::delete_secret(&bus, id, a.secret_id, &meta())
            .await
            .unwrap();
        assert_eq!(deleted.events, 1);
        let again = client::delete_secret(&bus, id, a.secret_id, &meta()).await;
        assert!(matches!(
            again,
            Err(CommandError::Domain(ClientError::SecretNotFound))
        ));

        let (state, _) = bus.load::<Client>(&id.to_string()).await.unwrap();
        let live: Vec<_> = state
            .live_secrets(OffsetDateTime::now_utc())
            .map(|s| s.id)
            .collect();
        assert_eq!(live, vec![b.secret_id]);

        // The log holds hashes, never the values shown to the caller.
        let stream = CommandBus::stream_name::<Client>(&id.to_string());
        let all = bus
            .log()
            .read_stream(&stream, Direction::Forwards, None, 100)
            .await
            .unwrap();
        let stored =
            serde_json::to_string(&all.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
        for secret in [&a, &b] {
            assert!(!stored.contains(&secret.value));
            assert!(stored.contains(&commands::crypto::hash_secret(&secret.value)));
        }
    }

    #[tokio::test]
    async fn client_lifecycle_through_the_bus() {
        let (log, _dir) = sqlite().await;
        let bus = CommandBus::new(log, Arc::new(SystemClock));
        let id = confidential_client(&bus).await;

        let mut changed = settings();
        changed.scopes.push("ledger:write".into());
        let updated = client::update(&bus, id, changed.clone(), &meta())
            .await
            .unwrap();
        assert_eq!(updated.events, 1);
        let same = client::update(&bus, id, changed.clone(), &meta())
            .await
            .unwrap();
        assert_eq!((same.events, same.position), (0, None));

        assert_eq!(client::disable(&bus, id, &meta()).await.unwrap().events, 1);
        assert_eq!(client::disable(&bus, id, &meta()).await.unwrap().events, 0);
        let (state, _) = bus.load::<Client>(&id.to_string()).await.unwrap();
        assert!(!state.is_active());
        assert_eq!(client::enable(&bus, id, &meta()).await.unwrap().events, 1);

        assert_eq!(client::delete(&bus, id, &meta()).await.unwrap().events, 1);
        assert!(matches!(
            client::delete(&bus, id, &meta()).await,
            Err(CommandError::Domain(ClientError::Deleted))
        ));
        assert!(matches!(
            new_secret(&bus, id).await,
            Err(CommandError::Domain(ClientError::Deleted))
        ));
        let (state, rev) = bus.load::<Client>(&id.to_string()).await.unwrap();
        assert_eq!(state.settings, changed);
        assert!(state.deleted && !state.is_active());
        assert_eq!(rev, Some(4));

        // Public clients get no secrets; nothing is written for the refusal.
        let public = Uuid::now_v7();
        let mut s = settings();
        s.grant_types = vec![GrantType::AuthorizationCode];
        s.redirect_uris = vec!["http://127.0.0.1:8765/cb".into()];
        s.auth_method = AuthMethod::None;
        client::create(&bus, public, Uuid::now_v7(), ClientType::Public, s, &meta())
            .await
            .unwrap();
        assert!(matches!(
            new_secret(&bus, public).await,
            Err(CommandError::Domain(
                ClientError::PublicClientCannotHaveSecrets
            ))
        ));
        let stream = CommandBus::stream_name::<Client>(&public.to_string());
        assert_eq!(stream_len(bus.log(), &stream).await, 1);
    }
}
