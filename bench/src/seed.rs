//! `idp bench seed`: writes a realistic log into the configured store, for
//! benchmarks of whatever reads it (rebuilds, replays, verification).
//!
//! The real domain events go through `eventlog::encode` (so each carries
//! the subject its event type declares) and `EventLog::append`, in batches
//! of up to `--batch` events per append from `--writers` concurrent writers.
//! The mix, of `--events` events in total:
//!
//! - set-up: `--organizations` organizations; `--clients` confidential
//!   clients, each with one or two secrets; as many public applications,
//!   each with a registration token;
//! - `--instance-permille` ‰ instance lifecycles: a registration token
//!   consumption, then the auth token issued (instance metadata with a user
//!   name), exchanged and refreshed `--refreshes` times, in its own stream;
//! - `--failure-permille` ‰ failed client authentications;
//! - the rest (the bulk, as in production): `token.issued` journal events of
//!   client credentials grants authenticated by a secret, spread over
//!   `--days` past days in the day-bucketed token streams.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use domain::client::{
    AuthMethod, ClientCreated, ClientEvent, ClientSecretCreated, ClientSettings, ClientType,
    GrantType,
};
use domain::organization::{OrganizationCreated, OrganizationEvent};
use domain::registration::{
    AuthTokenEvent, AuthTokenExchanged, AuthTokenIssued, AuthTokenRefreshed, InstanceInfo,
    RegistrationTokenConsumed, RegistrationTokenCreated, RegistrationTokenEvent,
};
use domain::token::{
    ClientAuthFailed, TOKEN_SHARDS, TokenEvent, TokenIssued, auth_failure_stream, token_stream,
};
use domain::{Actor, Metadata, Pii};
use eventlog::{EventLog, ExpectedRevision, NewEvent};
use rand::Rng;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::BenchError;
use privacy::Stores;

#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// Events to write in total.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    #[arg(long, default_value_t = 10)]
    pub organizations: u64,
    /// Confidential clients with secrets; as many public applications with
    /// a registration token each.
    #[arg(long, default_value_t = 50)]
    pub clients: u64,
    /// Share of events (per mille) that are instance lifecycles.
    #[arg(long, default_value_t = 100)]
    pub instance_permille: u64,
    /// Share of events (per mille) that are failed client authentications.
    #[arg(long, default_value_t = 10)]
    pub failure_permille: u64,
    /// Refreshes per instance.
    #[arg(long, default_value_t = 2)]
    pub refreshes: u64,
    /// Past days the grants are spread over.
    #[arg(long, default_value_t = 30)]
    pub days: u64,
    /// Events per append (at most).
    #[arg(long, default_value_t = 500)]
    pub batch: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
}

struct Client {
    id: Uuid,
    organization: Uuid,
    secrets: Vec<Uuid>,
}

struct App {
    id: Uuid,
    organization: Uuid,
    registration_token: Uuid,
}

/// One append's worth of work.
enum Job {
    Grants {
        day: u64,
        shard: u32,
        count: u64,
    },
    Failures {
        day: u64,
        count: u64,
    },
    /// `count` instances consume app `app`'s token, ordinals from `first`.
    Instances {
        app: usize,
        first: u64,
        count: u64,
    },
}

struct World {
    clients: Vec<Client>,
    apps: Vec<App>,
    today: OffsetDateTime,
    refreshes: u64,
    /// Names each user name's person, as consumptions through the server do.
    persons: Option<privacy::PersonIds>,
}

const USER_NAMES: &[&str] = &[
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Frances Allen",
    "Ken Thompson",
];

fn meta(actor: Actor, organization: Uuid, at: OffsetDateTime, n: u64) -> Metadata {
    Metadata {
        actor,
        correlation_id: Uuid::now_v7(),
        request_id: None,
        causation_id: None,
        source_ip: Some(format!("10.{}.{}.{}", n % 200, (n / 200) % 250, n % 250)),
        user_agent: Some("seed-client/1.0".into()),
        organization: Some(organization),
        occurred_at: at,
    }
}

fn hash() -> String {
    commands::crypto::hash_secret(&Uuid::new_v4().to_string())
}

/// Writes the log; prints one summary line.
pub async fn run(stores: &Stores, args: SeedArgs) -> Result<(), BenchError> {
    let Stores {
        log, master_key, ..
    } = stores;
    let started = eventlog::clock::monotonic();
    let today = stores.clock.now();
    let (mut world, setup) = set_up(log, &args, today).await?;
    world.persons = Some(privacy::PersonIds::derive(master_key));
    let remaining = args.events.saturating_sub(setup);
    let unit = 3 + args.refreshes;
    let instances = remaining * args.instance_permille / 1000 / unit;
    let failures = remaining * args.failure_permille / 1000;
    let grants = remaining - instances * unit - failures;
    let jobs = plan(&args, &world, grants, failures, instances);
    let queue = Arc::new(Mutex::new(jobs));
    let world = Arc::new(world);
    let tasks: Vec<_> = (0..args.writers.max(1))
        .map(|_| {
            let (log, queue, world) = (Arc::clone(log), Arc::clone(&queue), Arc::clone(&world));
            tokio::spawn(async move {
                loop {
                    let job = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some(job) = job else { break };
                    write(&log, &world, job).await?;
                }
                Ok::<_, eventlog::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| BenchError::Setup(e.to_string()))??;
    }
    let secs = started.elapsed().as_secs_f64();
    let total = setup + grants + failures + instances * unit;
    println!(
        "seeded {total} events ({setup} set-up, {grants} token.issued, {} in {instances} instance lifecycles, {failures} failed client authentications) in {secs:.2} s, {:.0} events/s",
        instances * unit,
        total as f64 / secs
    );
    stores.close().await;
    Ok(())
}

/// Organizations, clients with secrets, applications with registration
/// tokens; returns them and how many events that was.
async fn set_up(
    log: &Arc<dyn EventLog>,
    args: &SeedArgs,
    today: OffsetDateTime,
) -> Result<(World, u64), BenchError> {
    let since = today - Duration::days(args.days as i64 + 1);
    let mut written = 0u64;
    let orgs: Vec<Uuid> = (0..args.organizations.max(1))
        .map(|_| Uuid::now_v7())
        .collect();
    for (i, id) in orgs.iter().enumerate() {
        let e = OrganizationEvent::Created(OrganizationCreated {
            id: *id,
            name: format!("Organization {i}"),
            created_at: since,
        });
        let m = meta(Actor::system(), *id, since, i as u64);
        log.append(
            &format!("organization-{id}"),
            ExpectedRevision::NoStream,
            vec![eventlog::encode(&e, &m)],
        )
        .await?;
        written += 1;
    }
    let mut clients = Vec::new();
    let mut apps = Vec::new();
    for i in 0..args.clients.max(1) {
        let organization = orgs[i as usize % orgs.len()];
        let m = meta(Actor::user("admin"), organization, since, i);
        let id = Uuid::now_v7();
        let settings = ClientSettings {
            name: format!("service {i}"),
            description: "seeded".into(),
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec!["api:read".into(), "api:write".into()],
            auth_method: AuthMethod::ClientSecretBasic,
            access_token_lifetime_secs: 300,
            ..Default::default()
        };
        let mut events = vec![ClientEvent::Created(ClientCreated {
            client_id: id,
            organization_id: organization,
            client_type: ClientType::Confidential,
            settings,
            platform_admin: false,
            created_at: since,
        })];
        let secrets: Vec<Uuid> = (0..1 + i % 2).map(|_| Uuid::now_v7()).collect();
        for s in &secrets {
            events.push(ClientEvent::SecretCreated(ClientSecretCreated {
                secret_id: *s,
                description: "deploy".into(),
                hash: hash(),
                created_at: since,
                expires_at: Some(today + Duration::days(300)),
            }));
        }
        written += events.len() as u64;
        log.append(
            &format!("client-{id}"),
            ExpectedRevision::NoStream,
            events.iter().map(|e| eventlog::encode(e, &m)).collect(),
        )
        .await?;
        clients.push(Client {
            id,
            organization,
            secrets,
        });

        let app = Uuid::now_v7();
        let settings = ClientSettings {
            name: format!("desktop app {i}"),
            grant_types: vec![GrantType::TokenExchange, GrantType::RefreshToken],
            auth_method: AuthMethod::None,
            access_token_lifetime_secs: 300,
            ..Default::default()
        };
        let created = ClientEvent::Created(ClientCreated {
            client_id: app,
            organization_id: organization,
            client_type: ClientType::Public,
            settings,
            platform_admin: false,
            created_at: since,
        });
        log.append(
            &format!("client-{app}"),
            ExpectedRevision::NoStream,
            vec![eventlog::encode(&created, &m)],
        )
        .await?;
        let rt = Uuid::now_v7();
        let token = RegistrationTokenEvent::Created(RegistrationTokenCreated {
            id: rt,
            organization_id: organization,
            client_id: app,
            description: format!("fleet {i}"),
            count: domain::registration::MAX_COUNT,
            expires_at: today + Duration::days(365),
            hash: hash(),
            created_at: since,
            created_by: "admin".into(),
        });
        log.append(
            &format!("regtoken-{rt}"),
            ExpectedRevision::NoStream,
            vec![eventlog::encode(&token, &m)],
        )
        .await?;
        written += 2;
        apps.push(App {
            id: app,
            organization,
            registration_token: rt,
        });
    }
    let world = World {
        clients,
        apps,
        today,
        refreshes: args.refreshes,
        persons: None,
    };
    Ok((world, written))
}

/// Splits the work into appends, shuffled so the log interleaves them.
fn plan(
    args: &SeedArgs,
    world: &World,
    grants: u64,
    failures: u64,
    instances: u64,
) -> VecDeque<Job> {
    let batch = args.batch.max(1);
    let days = args.days.max(1);
    let mut jobs = Vec::new();
    let mut rng = rand::rng();
    let mut left = grants;
    while left > 0 {
        let count = left.min(batch);
        jobs.push(Job::Grants {
            day: rng.random_range(1..=days),
            shard: rng.random_range(0..TOKEN_SHARDS),
            count,
        });
        left -= count;
    }
    let mut left = failures;
    while left > 0 {
        let count = left.min(batch.min(50));
        jobs.push(Job::Failures {
            day: rng.random_range(1..=days),
            count,
        });
        left -= count;
    }
    // Each application's consumptions go to its one registration token
    // stream, in order: a job per application and block of 50.
    let apps = world.apps.len() as u64;
    for app in 0..apps {
        let mut first = 1;
        let mut left = instances / apps + u64::from(app < instances % apps);
        while left > 0 {
            let count = left.min(50);
            jobs.push(Job::Instances {
                app: app as usize,
                first,
                count,
            });
            first += count;
            left -= count;
        }
    }
    // Shuffle, but keep each application's blocks in order.
    let mut keyed: Vec<(u64, Job)> = jobs
        .into_iter()
        .map(|j| {
            let key = match &j {
                Job::Instances { first, .. } => first * 1_000_000 + rng.random_range(0..1_000_000),
                _ => rng.random_range(0..u64::MAX / 2),
            };
            (key, j)
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, j)| j).collect()
}

fn moment(world: &World, day: u64) -> OffsetDateTime {
    let secs = rand::rng().random_range(0..86_400);
    world.today - Duration::days(day as i64) + Duration::seconds(secs)
}

async fn write(log: &Arc<dyn EventLog>, world: &World, job: Job) -> Result<(), eventlog::Error> {
    match job {
        Job::Grants { day, shard, count } => {
            let at = moment(world, day);
            let mut stream = None;
            let mut events: Vec<NewEvent> = Vec::with_capacity(count as usize);
            for n in 0..count {
                let c = &world.clients[rand::rng().random_range(0..world.clients.len())];
                let secret = c.secrets[n as usize % c.secrets.len()];
                // A v7 id whose low bits put it in this shard's stream.
                let bits = Uuid::now_v7().as_u128();
                let jti =
                    Uuid::from_u128(bits - bits % u128::from(TOKEN_SHARDS) + u128::from(shard));
                let issued_at = at + Duration::milliseconds(n as i64);
                stream.get_or_insert_with(|| token_stream(jti, issued_at));
                let e = TokenEvent::Issued(TokenIssued {
                    jti,
                    client_id: c.id,
                    organization_id: c.organization,
                    grant_type: "client_credentials".into(),
                    scope: "api:read".into(),
                    audience: "https://api.example.com".into(),
                    secret_id: Some(secret),
                    auth_token_id: None,
                    grant_id: None,
                    auth_method: "client_secret_basic".into(),
                    issued_at,
                    expires_at: issued_at + Duration::minutes(5),
                });
                let m = meta(
                    Actor::client(c.id.to_string()),
                    c.organization,
                    issued_at,
                    n,
                );
                events.push(eventlog::encode(&e, &m));
            }
            if let Some(stream) = stream {
                log.append(&stream, ExpectedRevision::Any, events).await?;
            }
        }
        Job::Failures { day, count } => {
            let at = moment(world, day);
            let events = (0..count)
                .map(|n| {
                    let c = &world.clients[rand::rng().random_range(0..world.clients.len())];
                    let e = TokenEvent::ClientAuthFailed(ClientAuthFailed::single(
                        c.id.to_string(),
                        "client_secret_basic".into(),
                        "the secret does not match".into(),
                    ));
                    let m = meta(Actor::client(c.id.to_string()), c.organization, at, n);
                    eventlog::encode(&e, &m)
                })
                .collect();
            log.append(&auth_failure_stream(at), ExpectedRevision::Any, events)
                .await?;
        }
        Job::Instances { app, first, count } => {
            let a = &world.apps[app];
            let at = moment(world, rand::rng().random_range(1..=3));
            let anonymous = Actor {
                kind: domain::ActorKind::Anonymous,
                id: None,
            };
            let mut consumed = Vec::with_capacity(count as usize);
            let mut lifecycles = Vec::with_capacity(count as usize);
            for k in 0..count {
                let n = first + k;
                let id = Uuid::now_v7();
                // 4,000 people, each with a handful of installations.
                let person = n as usize % 4_000;
                let name = format!(
                    "{} {}",
                    USER_NAMES[person % USER_NAMES.len()],
                    person / USER_NAMES.len()
                );
                let instance = InstanceInfo {
                    instance_id: format!("host-{app}-{n}"),
                    device_name: format!("laptop-{n}"),
                    user_name: Pii::new(name.clone()),
                    app_version: "2.3.1".into(),
                    subject: world
                        .persons
                        .as_ref()
                        .and_then(|p| p.subject(a.organization, &name)),
                };
                let m = meta(anonymous.clone(), a.organization, at, n);
                consumed.push(eventlog::encode(
                    &RegistrationTokenEvent::Consumed(RegistrationTokenConsumed {
                        auth_token_id: id,
                        instance: instance.clone(),
                        consumed_at: at,
                        used_after: n,
                    }),
                    &m,
                ));
                let mut events = vec![AuthTokenEvent::Issued(AuthTokenIssued {
                    id,
                    registration_token_id: a.registration_token,
                    organization_id: a.organization,
                    client_id: a.id,
                    hash: hash(),
                    instance,
                    issued_at: at,
                })];
                let mut refresh = Uuid::now_v7();
                events.push(AuthTokenEvent::Exchanged(AuthTokenExchanged {
                    refresh_token_id: refresh,
                    refresh_hash: hash(),
                    scope: Some(String::new()),
                    exchanged_at: at + Duration::seconds(1),
                }));
                for r in 0..world.refreshes {
                    let next = Uuid::now_v7();
                    events.push(AuthTokenEvent::Refreshed(AuthTokenRefreshed {
                        previous_token_id: refresh,
                        refresh_token_id: next,
                        refresh_hash: hash(),
                        refreshed_at: at + Duration::hours(r as i64 + 1),
                    }));
                    refresh = next;
                }
                // `encode` sets each event's subject from the event type.
                let events: Vec<NewEvent> =
                    events.iter().map(|e| eventlog::encode(e, &m)).collect();
                lifecycles.push((format!("authtoken-{id}"), events));
            }
            log.append(
                &format!("regtoken-{}", a.registration_token),
                ExpectedRevision::Any,
                consumed,
            )
            .await?;
            for (stream, events) in lifecycles {
                log.append(&stream, ExpectedRevision::NoStream, events)
                    .await?;
            }
        }
    }
    Ok(())
}
