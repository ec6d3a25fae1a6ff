//! The command loop against real event logs: serialization inside one
//! process, conflict retries across processes, refusals that write nothing.

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

/// A fresh organization: every client belongs to one that exists.
async fn new_org(bus: &CommandBus) -> Uuid {
    let id = Uuid::now_v7();
    organization::create(bus, id, "Tenant", &meta())
        .await
        .unwrap();
    id
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

/// A load folds only what came after the state this bus keeps, and still
/// sees what another process appended since.
#[tokio::test]
async fn a_load_reads_past_the_kept_fold_and_sees_another_process() {
    use domain::organization::Organization;
    let (inner, _dir) = sqlite().await;
    let log = Arc::new(SlowLog::over(Arc::clone(&inner)));
    let bus = CommandBus::new(log.clone(), Arc::new(SystemClock));
    let other = CommandBus::new(inner, Arc::new(SystemClock));
    let id = new_org(&other).await;
    for name in ["B", "C", "D"] {
        organization::rename(&other, id, name, &meta())
            .await
            .unwrap();
    }
    let name = |(o, r): (Organization, Option<u64>)| (o.name, r);
    let key = id.to_string();
    let load = || bus.load::<Organization>(&key);
    assert_eq!(name(load().await.unwrap()), ("D".into(), Some(3)));
    assert_eq!(name(load().await.unwrap()), ("D".into(), Some(3)));
    organization::rename(&other, id, "E", &meta())
        .await
        .unwrap();
    assert_eq!(name(load().await.unwrap()), ("E".into(), Some(4)));
    assert_eq!(
        *log.reads_from.lock().unwrap(),
        [Some(0), Some(4), Some(4)],
        "the first load reads the stream, the others only past what they hold"
    );

    bus.forget_states();
    assert_eq!(name(load().await.unwrap()), ("E".into(), Some(4)));
    assert_eq!(log.reads_from.lock().unwrap().last(), Some(&Some(0)));
}

// --- batched commands -----------------------------------------------------------

/// A log whose appends take a few milliseconds, so that commands pile up
/// behind each one; it counts the appends and notes where each read of a
/// stream starts.
struct SlowLog {
    inner: Arc<dyn EventLog>,
    appends: std::sync::atomic::AtomicUsize,
    reads_from: std::sync::Mutex<Vec<Option<u64>>>,
}

impl SlowLog {
    fn over(inner: Arc<dyn EventLog>) -> Self {
        Self {
            inner,
            appends: std::sync::atomic::AtomicUsize::new(0),
            reads_from: std::sync::Mutex::new(Vec::new()),
        }
    }
}

#[async_trait::async_trait]
impl EventLog for SlowLog {
    async fn append(
        &self,
        stream: &str,
        expected: eventlog::ExpectedRevision,
        events: Vec<eventlog::NewEvent>,
    ) -> Result<eventlog::AppendResult, eventlog::Error> {
        self.appends
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        self.inner.append(stream, expected, events).await
    }
    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Vec<eventlog::RecordedEvent>, eventlog::Error> {
        self.reads_from.lock().unwrap().push(from);
        self.inner.read_stream(stream, direction, from, limit).await
    }
    async fn read_all(
        &self,
        after: eventlog::Position,
        filter: &eventlog::Filter,
        limit: usize,
    ) -> Result<Vec<eventlog::RecordedEvent>, eventlog::Error> {
        self.inner.read_all(after, filter, limit).await
    }
    async fn read_subject(
        &self,
        subject: &str,
    ) -> Result<Vec<eventlog::RecordedEvent>, eventlog::Error> {
        self.inner.read_subject(subject).await
    }
    async fn head(&self) -> Result<Option<eventlog::Position>, eventlog::Error> {
        self.inner.head().await
    }
    async fn count_after(&self, after: eventlog::Position) -> Result<u64, eventlog::Error> {
        self.inner.count_after(after).await
    }
    fn wakeups(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.wakeups()
    }
    async fn seal(&self) -> Result<Option<eventlog::Anchor>, eventlog::Error> {
        self.inner.seal().await
    }
    async fn verify(
        &self,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<eventlog::VerifyReport, eventlog::Error> {
        self.inner.verify(progress).await
    }
    async fn drop_stream(&self, stream: &str) -> Result<u64, eventlog::Error> {
        self.inner.drop_stream(stream).await
    }
    fn counts_cheaply(&self) -> bool {
        self.inner.counts_cheaply()
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// Batched renames, some of them invalid, with plain renames in between:
/// each is decided in its turn, each refusal reaches only its own caller,
/// every accepted one lands at the revision its outcome names, and the
/// batched ones share appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_commands_are_decided_one_by_one_and_appended_together() {
    use domain::organization::{Organization, OrganizationCommand};
    let (inner, _dir) = sqlite().await;
    let log = Arc::new(SlowLog::over(inner));
    let bus = Arc::new(CommandBus::new(log.clone(), Arc::new(SystemClock)));
    let id = Uuid::now_v7();
    organization::create(&bus, id, "Start", &meta())
        .await
        .unwrap();
    let appends_before = log.appends.load(std::sync::atomic::Ordering::SeqCst);

    let mut tasks = Vec::new();
    for i in 0..120 {
        let bus = Arc::clone(&bus);
        tasks.push(tokio::spawn(async move {
            // Every tenth name is blank, which the aggregate refuses; every
            // fifteenth command takes the plain path.
            let name = if i % 10 == 0 {
                "  ".to_owned()
            } else {
                format!("Name {i}")
            };
            let command = OrganizationCommand::Rename { name: name.clone() };
            let out = if i % 15 == 0 {
                bus.execute::<Organization>(&id.to_string(), command, &meta())
                    .await
            } else {
                bus.execute_batched::<Organization>(&id.to_string(), command, &meta())
                    .await
            };
            (name, out)
        }));
    }
    let mut landed = std::collections::BTreeMap::new();
    for t in tasks {
        match t.await.unwrap() {
            (name, Ok(out)) => {
                assert_eq!(out.events, 1, "{name}");
                assert!(out.position.is_some());
                assert!(landed.insert(out.revision.unwrap(), name).is_none());
            }
            (name, Err(CommandError::Domain(OrganizationError::InvalidName))) => {
                assert_eq!(name.trim(), "");
            }
            (name, Err(other)) => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(landed.len(), 108);
    assert_eq!(
        landed.keys().copied().collect::<Vec<_>>(),
        (1..=108).collect::<Vec<u64>>()
    );
    let stream = CommandBus::stream_name::<Organization>(&id.to_string());
    let stored = bus
        .log()
        .read_stream(&stream, Direction::Forwards, Some(1), 1000)
        .await
        .unwrap();
    for e in &stored {
        assert_eq!(
            e.data.value().unwrap()["name"],
            landed[&e.revision].as_str()
        );
    }
    let appends = log.appends.load(std::sync::atomic::Ordering::SeqCst) - appends_before;
    assert!(appends < 60, "108 renames took {appends} appends");
    let (state, revision) = bus.load::<Organization>(&id.to_string()).await.unwrap();
    assert_eq!(
        (state.name.as_str(), revision),
        (
            stored.last().unwrap().data.value().unwrap()["name"]
                .as_str()
                .unwrap(),
            Some(108)
        )
    );
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
            resources: vec![],
            name: "Billing service".into(),
            description: String::new(),
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec!["ledger:read".into()],
            auth_method: AuthMethod::ClientSecretBasic,
            jwks: None,
            access_token_lifetime_secs: 3600,
            ..ClientSettings::default()
        }
    }

    const POLICY: SecretPolicy = SecretPolicy {
        max_lifetime_days: 365,
        allow_never_expiring: false,
    };

    async fn confidential_client(bus: &CommandBus) -> Uuid {
        let id = Uuid::now_v7();
        let org = new_org(bus).await;
        client::create(bus, id, org, ClientType::Confidential, settings(), &meta())
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
            .map(|e| e.data.into_value().unwrap())
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
        let org = new_org(&buses[0]).await;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let bus = Arc::clone(&buses[i % buses.len()]);
            tasks.push(tokio::spawn(async move {
                let mut s = settings();
                s.name = format!("Contender {i}");
                client::create(&bus, id, org, ClientType::Confidential, s, &meta()).await
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
        let org = new_org(&bus).await;
        client::create(&bus, public, org, ClientType::Public, s, &meta())
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

// --- registration tokens and auth tokens -----------------------------------------

mod registration {
    use super::*;
    use commands::registration::{
        self, AuthTokenGrant, CreatedRegistrationToken, NewRegistrationToken, RefreshOutcome,
        RegistrationFailure,
    };
    use commands::{Clock, ManualClock, client};
    use domain::Pii;
    use domain::client::{AuthMethod, ClientSettings, ClientType, GrantType};
    use domain::registration::{
        AuthToken, AuthTokenError, InstanceInfo, RegistrationToken, RegistrationTokenError,
    };
    use time::Duration;

    fn instance(n: usize) -> InstanceInfo {
        InstanceInfo {
            instance_id: format!("install-{n}"),
            device_name: format!("Desk {n}"),
            user_name: Pii::new(format!("User {n}")),
            app_version: "1.0.0".into(),
            subject: None,
        }
    }

    /// An application of a fresh organization: (organization_id, client_id).
    async fn application(bus: &CommandBus) -> (Uuid, Uuid) {
        let (organization_id, client_id) = (super::new_org(bus).await, Uuid::now_v7());
        let settings = ClientSettings {
            resources: vec![],
            name: "Desk app".into(),
            description: String::new(),
            redirect_uris: vec![],
            grant_types: vec![GrantType::RefreshToken],
            scopes: vec![],
            auth_method: AuthMethod::None,
            jwks: None,
            access_token_lifetime_secs: 600,
            ..ClientSettings::default()
        };
        client::create(
            bus,
            client_id,
            organization_id,
            ClientType::Public,
            settings,
            &meta(),
        )
        .await
        .unwrap();
        (organization_id, client_id)
    }

    async fn new_token(
        bus: &CommandBus,
        count: u64,
        expires_at: OffsetDateTime,
    ) -> CreatedRegistrationToken {
        let (organization_id, client_id) = application(bus).await;
        let (outcome, created) = registration::create(
            bus,
            NewRegistrationToken {
                organization_id,
                client_id,
                description: "Reception desks".into(),
                count,
                expires_at,
                created_by: "user-admin".into(),
            },
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!((outcome.events, outcome.revision), (1, Some(0)));
        created
    }

    fn in_a_week() -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::days(7)
    }

    /// Consumes through each bus `per_bus` times at once; exactly `count`
    /// auth tokens come out, every other consumer is told `Exhausted`.
    async fn consumers_get_exactly_the_count(buses: &[Arc<CommandBus>], per_bus: usize) {
        let count = 50;
        let token = new_token(&buses[0], count, in_a_week()).await;
        let mut tasks = Vec::new();
        for (b, bus) in buses.iter().enumerate() {
            for i in 0..per_bus {
                let bus = Arc::clone(bus);
                let value = token.value.clone();
                tasks.push(tokio::spawn(async move {
                    registration::consume(&bus, &value, instance(b * per_bus + i), &meta()).await
                }));
            }
        }
        let (mut issued, mut exhausted) = (Vec::new(), 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok((_, auth)) => issued.push(auth),
                Err(RegistrationFailure::RegistrationToken(RegistrationTokenError::Exhausted)) => {
                    exhausted += 1;
                }
                Err(other) => panic!("unexpected outcome {other:?}"),
            }
        }
        let total = buses.len() * per_bus;
        assert_eq!(
            (issued.len(), exhausted),
            (count as usize, total - count as usize)
        );

        let log = buses[0].log();
        let (state, rev) = buses[0]
            .load::<RegistrationToken>(&token.id.to_string())
            .await
            .unwrap();
        assert_eq!(
            (state.used, state.remaining(), rev),
            (count, 0, Some(count))
        );
        // Each consumption has its own ordinal and names an issued auth token.
        let stream = CommandBus::stream_name::<RegistrationToken>(&token.id.to_string());
        let events = log
            .read_stream(&stream, Direction::Forwards, None, 1000)
            .await
            .unwrap();
        let mut ordinals: Vec<u64> = events
            .iter()
            .filter(|e| e.event_type == "registration_token.consumed.v1")
            .map(|e| e.data.value().unwrap()["used_after"].as_u64().unwrap())
            .collect();
        ordinals.sort_unstable();
        assert_eq!(ordinals, (1..=count).collect::<Vec<_>>());
        for auth in &issued {
            assert_eq!(auth.registration_token_id, token.id);
            assert_eq!(auth.client_id, token.client_id);
            let (at, _) = buses[0]
                .load::<AuthToken>(&auth.id.to_string())
                .await
                .unwrap();
            assert!(at.exists && !at.exchanged);
            assert_eq!(
                at.hash,
                commands::crypto::hash_secret(
                    &registration::parse_auth_token(&auth.value).unwrap().1
                )
            );
            assert!(
                events
                    .iter()
                    .any(|e| e.data.value().unwrap()["auth_token_id"] == auth.id.to_string())
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_hundred_consumers_of_a_count_of_fifty_get_fifty_auth_tokens() {
        let (log, _dir) = sqlite().await;
        let bus = Arc::new(CommandBus::new(log, Arc::new(SystemClock)));
        for _ in 0..3 {
            consumers_get_exactly_the_count(std::slice::from_ref(&bus), 200).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_processes_on_postgres_get_exactly_the_count_between_them() {
        let Some((la, lb)) = postgres_pair("commands_registration_count").await else {
            return;
        };
        let a = Arc::new(CommandBus::new(la, Arc::new(SystemClock)));
        let b = Arc::new(CommandBus::new(lb, Arc::new(SystemClock)));
        for _ in 0..3 {
            consumers_get_exactly_the_count(&[Arc::clone(&a), Arc::clone(&b)], 100).await;
        }
    }

    fn refused(r: Result<impl std::fmt::Debug, RegistrationFailure>) -> RegistrationTokenError {
        match r {
            Err(RegistrationFailure::RegistrationToken(e)) => e,
            other => panic!("expected a registration token refusal, got {other:?}"),
        }
    }

    fn grant_refused(r: Result<impl std::fmt::Debug, RegistrationFailure>) -> AuthTokenError {
        match r {
            Err(RegistrationFailure::AuthToken(e)) => e,
            other => panic!("expected an auth token refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn expired_revoked_and_forged_registration_tokens_are_refused() {
        let (log, _dir) = sqlite().await;
        let start = OffsetDateTime::now_utc();
        let clock = Arc::new(ManualClock::new(start));
        let bus = CommandBus::new(log, Arc::clone(&clock) as Arc<dyn Clock>);

        // Expired, with counts left.
        let token = new_token(&bus, 10, start + Duration::hours(1)).await;
        registration::consume(&bus, &token.value, instance(1), &meta())
            .await
            .unwrap();
        clock.advance(Duration::hours(1));
        let e = refused(registration::consume(&bus, &token.value, instance(2), &meta()).await);
        assert_eq!(e, RegistrationTokenError::Expired);

        // Revoked; revoking twice records once.
        let token = new_token(&bus, 10, clock.now() + Duration::days(1)).await;
        let revoked = registration::revoke(&bus, token.id, &meta()).await.unwrap();
        assert_eq!(revoked.events, 1);
        let again = registration::revoke(&bus, token.id, &meta()).await.unwrap();
        assert_eq!((again.events, again.position), (0, None));
        let e = refused(registration::consume(&bus, &token.value, instance(1), &meta()).await);
        assert_eq!(e, RegistrationTokenError::Revoked);

        // A wrong secret, an unknown id, a malformed value: all "invalid".
        let token = new_token(&bus, 10, clock.now() + Duration::days(1)).await;
        let (id, _) = registration::parse_registration_token(&token.value).unwrap();
        let forged = format!("rt_{}_{}", id.simple(), commands::crypto::new_secret());
        let unknown = format!(
            "rt_{}_{}",
            Uuid::now_v7().simple(),
            commands::crypto::new_secret()
        );
        for bad in [forged.as_str(), unknown.as_str(), "rt_nope", ""] {
            let e = refused(registration::consume(&bus, bad, instance(1), &meta()).await);
            assert_eq!(e, RegistrationTokenError::NotFound, "{bad}");
        }
        let stream = CommandBus::stream_name::<RegistrationToken>(&token.id.to_string());
        assert_eq!(
            stream_len(bus.log(), &stream).await,
            1,
            "refusals write nothing"
        );

        // The application must exist in the organization.
        let (organization_id, client_id) = application(&bus).await;
        let elsewhere = registration::create(
            &bus,
            NewRegistrationToken {
                organization_id: Uuid::now_v7(),
                client_id,
                description: String::new(),
                count: 1,
                expires_at: clock.now() + Duration::days(1),
                created_by: "user-admin".into(),
            },
            &meta(),
        )
        .await;
        assert!(matches!(
            elsewhere,
            Err(CommandError::Domain(RegistrationTokenError::UnknownClient))
        ));
        client::delete(&bus, client_id, &meta()).await.unwrap();
        let deleted = registration::create(
            &bus,
            NewRegistrationToken {
                organization_id,
                client_id,
                description: String::new(),
                count: 1,
                expires_at: clock.now() + Duration::days(1),
                created_by: "user-admin".into(),
            },
            &meta(),
        )
        .await;
        assert!(matches!(
            deleted,
            Err(CommandError::Domain(RegistrationTokenError::UnknownClient))
        ));
    }

    /// A fresh instance: an auth token exchanged for its first refresh token.
    async fn exchanged_instance(bus: &CommandBus) -> (String, AuthTokenGrant) {
        let token = new_token(bus, 5, in_a_week()).await;
        let (_, auth) = registration::consume(bus, &token.value, instance(1), &meta())
            .await
            .unwrap();
        let (outcome, grant) = registration::exchange(bus, &auth.value, "read", &meta())
            .await
            .unwrap();
        assert_eq!(outcome.events, 1);
        assert_eq!(
            (grant.auth_token_id, grant.client_id, grant.organization_id),
            (auth.id, auth.client_id, auth.organization_id)
        );
        (auth.value, grant)
    }

    #[tokio::test]
    async fn an_auth_token_is_exchanged_once() {
        let (log, _dir) = sqlite().await;
        let bus = CommandBus::new(log, Arc::new(SystemClock));
        let (auth_value, grant) = exchanged_instance(&bus).await;
        assert!(grant.refresh_token_value.starts_with("rf_"));

        let e = grant_refused(registration::exchange(&bus, &auth_value, "read", &meta()).await);
        assert_eq!(e, AuthTokenError::AlreadyExchanged);

        let (id, _) = registration::parse_auth_token(&auth_value).unwrap();
        let forged = format!("at_{}_{}", id.simple(), commands::crypto::new_secret());
        let e = grant_refused(registration::exchange(&bus, &forged, "read", &meta()).await);
        assert_eq!(e, AuthTokenError::InvalidCredential);
        let e = grant_refused(registration::exchange(&bus, "at_garbage", "read", &meta()).await);
        assert_eq!(e, AuthTokenError::InvalidCredential);
        let unknown = format!(
            "at_{}_{}",
            Uuid::now_v7().simple(),
            commands::crypto::new_secret()
        );
        let e = grant_refused(registration::exchange(&bus, &unknown, "read", &meta()).await);
        assert_eq!(e, AuthTokenError::NotFound);
    }

    async fn refreshed(bus: &CommandBus, value: &str) -> AuthTokenGrant {
        match registration::refresh(bus, value, None, &meta())
            .await
            .unwrap()
        {
            RefreshOutcome::Refreshed { outcome, grant } => {
                assert_eq!(outcome.events, 1);
                grant
            }
            other => panic!("expected a refresh, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_chain() {
        let (log, _dir) = sqlite().await;
        let bus = CommandBus::new(log, Arc::new(SystemClock));
        let (_, first) = exchanged_instance(&bus).await;
        let second = refreshed(&bus, &first.refresh_token_value).await;
        let third = refreshed(&bus, &second.refresh_token_value).await;
        assert_ne!(second.refresh_token_value, third.refresh_token_value);
        assert_eq!(third.auth_token_id, first.auth_token_id);

        // A forged secret on a used id is not proof of a copy: refused,
        // nothing recorded, the chain lives on.
        let (at, used, _) = registration::parse_refresh_token(&first.refresh_token_value).unwrap();
        let forged = format!(
            "rf_{}_{}_{}",
            at.simple(),
            used.simple(),
            commands::crypto::new_secret()
        );
        let e = grant_refused(registration::refresh(&bus, &forged, None, &meta()).await);
        assert_eq!(e, AuthTokenError::InvalidCredential);

        // The first token again: someone else holds a copy.
        match registration::refresh(&bus, &first.refresh_token_value, None, &meta())
            .await
            .unwrap()
        {
            RefreshOutcome::ReuseDetected {
                outcome,
                auth_token_id,
                client_id,
                ..
            } => {
                assert_eq!(outcome.events, 1);
                assert!(outcome.position.is_some());
                assert_eq!(
                    (auth_token_id, client_id),
                    (first.auth_token_id, first.client_id)
                );
            }
            other => panic!("expected reuse detection, got {other:?}"),
        }
        // Nothing works afterwards, not even the current token.
        for value in [&third.refresh_token_value, &second.refresh_token_value] {
            let e = grant_refused(registration::refresh(&bus, value, None, &meta()).await);
            assert_eq!(e, AuthTokenError::ChainRevoked);
        }
        let (state, _) = bus
            .load::<AuthToken>(&first.auth_token_id.to_string())
            .await
            .unwrap();
        assert!(state.chain_revoked && !state.is_usable());

        // The log holds hashes, never a token value.
        let stream = CommandBus::stream_name::<AuthToken>(&first.auth_token_id.to_string());
        let all = bus
            .log()
            .read_stream(&stream, Direction::Forwards, None, 100)
            .await
            .unwrap();
        let types: Vec<_> = all.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "auth_token.issued.v1",
                "auth_token.exchanged.v1",
                "auth_token.refreshed.v1",
                "auth_token.refreshed.v1",
                "auth_token.reuse_detected.v1",
            ]
        );
        let stored =
            serde_json::to_string(&all.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
        for grant in [&first, &second, &third] {
            let (_, _, secret) =
                registration::parse_refresh_token(&grant.refresh_token_value).unwrap();
            assert!(!stored.contains(&secret));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_refreshes_with_one_token_rotate_once_then_detect_reuse() {
        let (log, _dir) = sqlite().await;
        let bus = Arc::new(CommandBus::new(log, Arc::new(SystemClock)));
        for _ in 0..5 {
            let (_, grant) = exchanged_instance(&bus).await;
            let tasks: Vec<_> = (0..10)
                .map(|_| {
                    let bus = Arc::clone(&bus);
                    let value = grant.refresh_token_value.clone();
                    tokio::spawn(
                        async move { registration::refresh(&bus, &value, None, &meta()).await },
                    )
                })
                .collect();
            let (mut rotated, mut reused, mut revoked) = (0, 0, 0);
            for t in tasks {
                match t.await.unwrap() {
                    Ok(RefreshOutcome::Refreshed { .. }) => rotated += 1,
                    Ok(RefreshOutcome::ReuseDetected { .. }) => reused += 1,
                    Err(RegistrationFailure::AuthToken(AuthTokenError::ChainRevoked)) => {
                        revoked += 1;
                    }
                    Err(other) => panic!("unexpected outcome {other:?}"),
                }
            }
            assert_eq!((rotated, reused, revoked), (1, 1, 8));
        }
    }

    #[tokio::test]
    async fn a_deleted_auth_token_stops_refreshing() {
        let (log, _dir) = sqlite().await;
        let bus = CommandBus::new(log, Arc::new(SystemClock));
        let (_, first) = exchanged_instance(&bus).await;
        let second = refreshed(&bus, &first.refresh_token_value).await;

        let deleted = registration::delete_auth_token(&bus, first.auth_token_id, &meta())
            .await
            .unwrap();
        assert_eq!(deleted.events, 1);
        let again = registration::delete_auth_token(&bus, first.auth_token_id, &meta())
            .await
            .unwrap();
        assert_eq!(again.events, 0);
        let e = grant_refused(
            registration::refresh(&bus, &second.refresh_token_value, None, &meta()).await,
        );
        assert_eq!(e, AuthTokenError::Deleted);
        assert!(matches!(
            registration::delete_auth_token(&bus, Uuid::now_v7(), &meta()).await,
            Err(CommandError::Domain(AuthTokenError::NotFound))
        ));
        let (state, _) = bus
            .load::<AuthToken>(&first.auth_token_id.to_string())
            .await
            .unwrap();
        assert!(state.deleted && !state.is_usable());
    }
}
