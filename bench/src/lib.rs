//! `idp bench`: measurements of the event log on a fresh store, printed as
//! Markdown rows for docs/PERFORMANCE.md; `idp bench seed` writes a
//! realistic log into the configured store (see [`seed`]); `idp bench
//! exchange` drives the token exchange of a running server over HTTP
//! (exchange.rs); `idp bench queries` times reads on a seeded log
//! (queries.rs). Its own crate, so the server crate only serves; it never
//! runs inside the server.

#![forbid(unsafe_code)]

pub mod seed;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::organization::{
    Organization, OrganizationCreated, OrganizationEvent, OrganizationRenamed,
};
use domain::{Aggregate, Metadata};
use eventlog::clock::{Clock, SystemClock};
use eventlog::{EventLog, ExpectedRevision, Filter, LogOptions, Position, Subscription};
use uuid::Uuid;

pub mod access;
mod exchange;
pub mod oidc;
pub mod people;
pub mod queries;
pub mod sign_in;

pub use exchange::ExchangeArgs;

#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: Option<BenchCommand>,
    /// PostgreSQL server URL (a scratch database `idp_bench` is created on
    /// it); without it the benchmark uses a fresh SQLite file.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Directory for the SQLite file (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Events appended per append scenario.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Events read and replayed (the log is topped up to this size).
    #[arg(long, default_value_t = 1_000_000)]
    pub replay_events: u64,
    /// Live events timed for subscriber latency.
    #[arg(long, default_value_t = 2_000)]
    pub latency_samples: usize,
    /// SQLite `synchronous=full` instead of `normal`.
    #[arg(long)]
    pub sync_full: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Write a realistic log (organizations, clients, grants, instances,
    /// failures) into the configured store, for benchmarks that read it.
    Seed(seed::SeedArgs),
    /// Time one subject's export and one page of the audit trail by actor
    /// on the configured store (seed it and build the projections first).
    Queries(queries::QueryBenchArgs),
    /// Token exchanges over HTTP against a running server: consumes auth
    /// tokens from a registration token, then trades each once.
    Exchange(ExchangeArgs),
    /// Write many users (and one with a long history) into the configured
    /// store.
    PeopleSeed(people::PeopleSeedArgs),
    /// User creations, searches, filtered lists and `as_of` reads over HTTP
    /// against a running server.
    People(people::PeopleArgs),
    /// Password sign-ins over HTTP against the raw argon2id rate, a step
    /// that hashes nothing at 64 in flight, code checks in process.
    SignIn(sign_in::SignInArgs),
    /// A role given to a large group, decisions of the Rego policy decision
    /// point over HTTP and in process, SCIM filtered lists and `as_of`
    /// access reads, against a running server.
    Access(access::AccessArgs),
    /// OpenID Connect for people: `/authorize` to the code with a session
    /// and a consent, code redemptions, refreshes with rotation and
    /// UserInfo, against a running server.
    Oidc(oidc::OidcArgs),
}

/// The running server a benchmark drives, and the admin client it sets
/// up with.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminServer {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub url: String,
    /// An admin client (`idp:admin`): its id and secret.
    #[arg(long)]
    pub client_id: String,
    #[arg(long, env = "BENCH_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// The organization the benchmark creates what it needs in.
    #[arg(long)]
    pub organization_id: String,
}

impl AdminServer {
    /// The base URL, without a trailing `/`.
    pub fn base(&self) -> String {
        self.url.trim_end_matches('/').to_owned()
    }

    /// An access token of the admin client for `scope`.
    pub async fn token(&self, http: &reqwest::Client, scope: &str) -> Result<String, BenchError> {
        client_token(
            http,
            &self.base(),
            &self.client_id,
            &self.client_secret,
            scope,
        )
        .await
    }
}

/// An access token for `scope` by the client credentials grant.
pub async fn client_token(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    secret: &str,
    scope: &str,
) -> Result<String, BenchError> {
    let failed = |e: reqwest::Error| BenchError::Setup(format!("token for {scope}: {e}"));
    let body: serde_json::Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .map_err(failed)?
        .json()
        .await
        .map_err(failed)?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Setup(format!("no token for {scope}: {body}")))
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("{0}")]
    Setup(String),
}

fn meta() -> Metadata {
    Metadata::system(Uuid::now_v7(), SystemClock.now())
}

fn created(id: Uuid) -> OrganizationEvent {
    OrganizationEvent::Created(OrganizationCreated {
        id,
        name: "Bench Org".into(),
        created_at: SystemClock.now(),
    })
}

fn renamed(n: u64) -> OrganizationEvent {
    OrganizationEvent::Renamed(OrganizationRenamed {
        name: format!("Bench Org {n}"),
    })
}

/// Runs the benchmark `args` names; `open` opens the configured stores
/// (for the commands that read or write them) as the server would.
pub async fn run<F, Fut>(args: BenchArgs, open: F) -> Result<(), BenchError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<privacy::Stores, String>>,
{
    match args.what {
        Some(BenchCommand::Seed(seed)) => {
            let stores = open().await.map_err(BenchError::Setup)?;
            return seed::run(&stores, seed).await;
        }
        Some(BenchCommand::Queries(q)) => {
            let stores = open().await.map_err(BenchError::Setup)?;
            return queries::run(&stores, q).await.map_err(BenchError::Setup);
        }
        Some(BenchCommand::Exchange(x)) => return exchange::run(x).await,
        Some(BenchCommand::PeopleSeed(p)) => {
            let stores = open().await.map_err(BenchError::Setup)?;
            return people::seed(&stores, p).await;
        }
        Some(BenchCommand::People(p)) => return people::run(p).await,
        Some(BenchCommand::SignIn(s)) => return sign_in::run(s).await,
        Some(BenchCommand::Access(a)) => return access::run(a).await,
        Some(BenchCommand::Oidc(o)) => return oidc::run(o).await,
        None => {}
    }
    let _tmp;
    let (url, label) = match &args.postgres {
        Some(admin) => (
            eventlog::postgres::create_scratch_database(admin, "idp_bench").await?,
            "PostgreSQL".to_owned(),
        ),
        None => {
            let dir = match &args.dir {
                Some(d) => d.clone(),
                None => {
                    let t = tempfile::tempdir().map_err(|e| BenchError::Setup(e.to_string()))?;
                    let p = t.path().to_path_buf();
                    _tmp = t;
                    p
                }
            };
            let path = dir.join(format!("bench-{}.db", Uuid::now_v7()));
            let sync = if args.sync_full {
                "?synchronous=full"
            } else {
                ""
            };
            (
                format!("sqlite:{}{sync}", path.display()),
                format!(
                    "SQLite ({})",
                    if args.sync_full {
                        "synchronous=FULL"
                    } else {
                        "synchronous=NORMAL"
                    }
                ),
            )
        }
    };
    let log = eventlog::open(
        &url,
        &LogOptions {
            max_connections: 40,
            ..LogOptions::default()
        },
    )
    .await?;
    println!("### Event log on {label}\n");
    println!("| scenario | events | seconds | events/s | appends/s |");
    println!("|---|---:|---:|---:|---:|");
    for (writers, batch) in [(1u64, 1u64), (16, 1), (1, 10), (16, 10)] {
        let (secs, appends) = appends(&log, writers, batch, args.events).await?;
        println!(
            "| append: {writers} writer(s), batch {batch} | {} | {secs:.2} | {:.0} | {:.0} |",
            args.events,
            args.events as f64 / secs,
            appends as f64 / secs
        );
    }
    top_up(&log, args.replay_events).await?;
    let (n, secs) = full_read(&log).await?;
    println!(
        "| full-log read (pages of 1000) | {n} | {secs:.2} | {:.0} | |",
        n as f64 / secs
    );
    let (n, secs) = replay(&log).await?;
    println!(
        "| replay: subscription + decode + fold | {n} | {secs:.2} | {:.0} | |",
        n as f64 / secs
    );
    let lat = latency(&log, args.latency_samples).await?;
    println!(
        "\n| subscriber latency ({} live events, one every 2 ms) | p50 | p99 | max |",
        args.latency_samples
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| commit acknowledged -> delivered | {} | {} | {} |",
        ms(lat.from_ack.0),
        ms(lat.from_ack.1),
        ms(lat.from_ack.2)
    );
    println!(
        "| append called -> delivered | {} | {} | {} |",
        ms(lat.from_call.0),
        ms(lat.from_call.1),
        ms(lat.from_call.2)
    );
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// `writers` tasks append `total` events in batches of `batch`, each writer
/// to its own 100 streams. Returns seconds and the number of appends.
async fn appends(
    log: &Arc<dyn EventLog>,
    writers: u64,
    batch: u64,
    total: u64,
) -> Result<(f64, u64), BenchError> {
    let per_writer = total / writers / batch;
    let run = Uuid::now_v7().simple().to_string();
    let started = eventlog::clock::monotonic();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = Arc::clone(log);
            let run = run.clone();
            tokio::spawn(async move {
                for k in 0..per_writer {
                    let id = format!("{run}w{w}s{}", k % 100);
                    let events = (0..batch)
                        .map(|i| eventlog::encode(&renamed(k * batch + i), &meta()))
                        .collect();
                    log.append(&format!("benchappend-{id}"), ExpectedRevision::Any, events)
                        .await?;
                }
                Ok::<_, eventlog::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| BenchError::Setup(e.to_string()))??;
    }
    Ok((started.elapsed().as_secs_f64(), per_writer * writers))
}

/// Appends organization histories (a creation, then renames in batches of
/// 50) until the log holds `target` events.
async fn top_up(log: &Arc<dyn EventLog>, target: u64) -> Result<(), BenchError> {
    let have = log.count_after(Position::START).await?;
    if have >= target {
        return Ok(());
    }
    let missing = target - have;
    let writers = 8u64;
    let per_writer = missing / writers + 1;
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let log = Arc::clone(log);
            tokio::spawn(async move {
                let mut written = 0u64;
                while written < per_writer {
                    let id = Uuid::now_v7();
                    let stream = format!("organization-{id}");
                    let mut events = vec![eventlog::encode(&created(id), &meta())];
                    events.extend((1..50).map(|n| eventlog::encode(&renamed(n), &meta())));
                    written += events.len() as u64;
                    log.append(&stream, ExpectedRevision::NoStream, events)
                        .await?;
                }
                Ok::<_, eventlog::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| BenchError::Setup(e.to_string()))??;
    }
    Ok(())
}

async fn full_read(log: &Arc<dyn EventLog>) -> Result<(u64, f64), BenchError> {
    let started = eventlog::clock::monotonic();
    let mut after = Position::START;
    let mut n = 0u64;
    loop {
        let page = log.read_all(after, &Filter::all(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        n += page.len() as u64;
    }
    Ok((n, started.elapsed().as_secs_f64()))
}

/// What a rebuild does: a catch-up subscription over the whole log, each
/// organization event decoded and folded into its aggregate.
async fn replay(log: &Arc<dyn EventLog>) -> Result<(u64, f64), BenchError> {
    let head = log.head().await?.unwrap_or(Position::START);
    let started = eventlog::clock::monotonic();
    let mut sub = Subscription::new(Arc::clone(log), Position::START, Filter::all(), 1000);
    let mut states: HashMap<String, Organization> = HashMap::new();
    let mut n = 0u64;
    while sub.position() < head {
        for e in sub.next_batch().await? {
            n += 1;
            if e.category() == "organization" {
                let event: OrganizationEvent = eventlog::decode(&e)?;
                let state = states.remove(&e.stream).unwrap_or_default();
                states.insert(e.stream, state.evolve(&event));
            }
        }
    }
    Ok((n, started.elapsed().as_secs_f64()))
}

struct Latency {
    from_ack: (Duration, Duration, Duration),
    from_call: (Duration, Duration, Duration),
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    }
    (at(0.5), at(0.99), at(1.0))
}

async fn latency(log: &Arc<dyn EventLog>, samples: usize) -> Result<Latency, BenchError> {
    let head = log.head().await?.unwrap_or(Position::START);
    let mut sub = Subscription::new(
        Arc::clone(log),
        head,
        Filter::categories(["benchlatency"]),
        100,
    );
    let receiver = tokio::spawn(async move {
        let mut got: HashMap<Uuid, Instant> = HashMap::with_capacity(samples);
        while got.len() < samples {
            for e in sub.next_batch().await? {
                got.insert(e.id, eventlog::clock::monotonic());
            }
        }
        Ok::<_, eventlog::Error>(got)
    });
    let mut sent: HashMap<Uuid, (Instant, Instant)> = HashMap::with_capacity(samples);
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    for k in 0..samples {
        tick.tick().await;
        let e = eventlog::encode(&renamed(k as u64), &meta());
        let id = e.id;
        let called = eventlog::clock::monotonic();
        log.append(
            &format!("benchlatency-{}", k % 10),
            ExpectedRevision::Any,
            vec![e],
        )
        .await?;
        sent.insert(id, (called, eventlog::clock::monotonic()));
    }
    let got = receiver
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))??;
    let mut from_ack = Vec::with_capacity(samples);
    let mut from_call = Vec::with_capacity(samples);
    for (id, (called, acked)) in sent {
        if let Some(at) = got.get(&id) {
            from_ack.push(at.saturating_duration_since(acked));
            from_call.push(at.saturating_duration_since(called));
        }
    }
    Ok(Latency {
        from_ack: percentiles(from_ack),
        from_call: percentiles(from_call),
    })
}
