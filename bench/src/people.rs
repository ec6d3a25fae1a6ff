//! `idp bench people-seed` and `idp bench people`: users at scale.
//!
//! `people-seed` writes `--users` users spread over `--organizations` new
//! organizations into the configured store, as the server records them:
//! each user's creation (personal values sealed under the user's own key by
//! the store's encrypting log) and the claims on their username and email
//! address, plus one user with `--changes` profile changes for the `as_of`
//! read; it prints that user's id and one organization's id.
//!
//! `people` drives a running server over HTTP: user creations with unique
//! usernames and emails (no password) from `--concurrency` clients for
//! `--duration` seconds, then instant-search pages by a prefix, filtered
//! list pages, and `as_of` reads of the user with many changes, each
//! `--samples` times one after the other; it prints requests/s, p50 and
//! p99 of each.

use std::sync::Arc;
use std::time::Duration;

use domain::Metadata;
use domain::Pii;
use domain::organization::{OrganizationCreated, OrganizationEvent};
use domain::privacy::Pseudonyms;
use domain::reservation::{ReservationClaimed, ReservationEvent, ReservationKind};
use domain::user::{
    AttributeValue, Attributes, Profile, ProfileChanged, UserCreated, UserEvent,
    normalize_identifier,
};
use eventlog::{EventLog, ExpectedRevision, NewEvent};
use rand::Rng;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::BenchError;
use super::exchange::drive;
use privacy::Stores;

#[derive(Debug, Clone, clap::Args)]
pub struct PeopleSeedArgs {
    /// Users to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub users: u64,
    /// Organizations they are spread over (created here).
    #[arg(long, default_value_t = 100)]
    pub organizations: u64,
    /// Profile changes of the one user read with `as_of`.
    #[arg(long, default_value_t = 100)]
    pub changes: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    pub writers: u64,
}

const GIVEN: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
];
const FAMILY: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen",
];
const DEPARTMENTS: &[&str] = &["engineering", "sales", "support", "finance", "legal"];
const CITIES: &[&str] = &["Paris", "Lyon", "Berlin", "London", "Madrid", "Oslo"];

fn meta(organization: Uuid, at: OffsetDateTime) -> Metadata {
    let mut m = Metadata::system(Uuid::now_v7(), at);
    m.organization = Some(organization);
    m
}

/// The events of user `n`: the creation in the user's stream, and the two
/// claims in theirs.
fn user(
    ids: &dyn Pseudonyms,
    organization: Uuid,
    n: u64,
    at: OffsetDateTime,
) -> (Uuid, Vec<(String, NewEvent)>) {
    let id = Uuid::now_v7();
    let username = format!("user{n:07}");
    let email = format!("{username}@example.org");
    let username_claim = ids.claim(
        organization,
        ReservationKind::Username.as_str(),
        &normalize_identifier(&username),
    );
    let email_claim = ids.claim(
        organization,
        ReservationKind::Email.as_str(),
        &normalize_identifier(&email),
    );
    let mut attributes = Attributes::new();
    attributes.insert(
        "department".into(),
        AttributeValue::One(DEPARTMENTS[n as usize % DEPARTMENTS.len()].into()),
    );
    attributes.insert(
        "location".into(),
        AttributeValue::One(CITIES[n as usize % CITIES.len()].into()),
    );
    let created = UserEvent::Created(UserCreated {
        user_id: id,
        organization_id: organization,
        username: Pii::new(username),
        username_claim: username_claim.clone(),
        email: Some(Pii::new(email)),
        email_claim: Some(email_claim.clone()),
        email_verified: n.is_multiple_of(2),
        phone_number: Some(Pii::new(format!("+3361{:07}", n % 10_000_000))),
        phone_verified: false,
        profile: Pii::new(Profile {
            given_name: Some(GIVEN[n as usize % GIVEN.len()].into()),
            family_name: Some(FAMILY[n as usize % FAMILY.len()].into()),
            locale: Some("fr-FR".into()),
            ..Profile::default()
        }),
        attributes: Pii::new(attributes),
        created_by: "bench".into(),
        at,
    });
    let m = meta(organization, at);
    let claim = |kind| {
        ReservationEvent::Claimed(ReservationClaimed {
            owner: id,
            organization_id: organization,
            kind,
            at,
        })
    };
    (
        id,
        vec![
            (
                format!("reservation-{username_claim}"),
                eventlog::encode(&claim(ReservationKind::Username), &m),
            ),
            (
                format!("reservation-{email_claim}"),
                eventlog::encode(&claim(ReservationKind::Email), &m),
            ),
            (format!("user-{id}"), eventlog::encode(&created, &m)),
        ],
    )
}

async fn append(log: &Arc<dyn EventLog>, stream: &str, e: NewEvent) -> Result<(), BenchError> {
    log.append(stream, ExpectedRevision::NoStream, vec![e])
        .await?;
    Ok(())
}

/// Writes the users; prints the ids the HTTP benchmark needs.
pub async fn seed(stores: &Stores, args: PeopleSeedArgs) -> Result<(), BenchError> {
    let started = stores.clock.now();
    let ids: Arc<dyn Pseudonyms> = Arc::new(privacy::PersonIds::derive(&stores.master_key));
    let now = stores.clock.now();
    let since = now - time::Duration::days(365);
    let orgs: Vec<Uuid> = (0..args.organizations.max(1))
        .map(|_| Uuid::now_v7())
        .collect();
    for (i, org) in orgs.iter().enumerate() {
        let e = OrganizationEvent::Created(OrganizationCreated {
            id: *org,
            name: format!("People {i}"),
            created_at: since,
        });
        append(
            &stores.log,
            &format!("organization-{org}"),
            eventlog::encode(&e, &meta(*org, since)),
        )
        .await?;
    }
    let orgs = Arc::new(orgs);
    let per_writer = args.users.div_ceil(args.writers.max(1));
    let tasks: Vec<_> = (0..args.writers.max(1))
        .map(|w| {
            let (log, ids, orgs) = (Arc::clone(&stores.log), Arc::clone(&ids), Arc::clone(&orgs));
            let total = args.users;
            tokio::spawn(async move {
                let first = w * per_writer;
                for n in first..(first + per_writer).min(total) {
                    // Created over the past year, in order.
                    let at =
                        since + time::Duration::seconds((n * 31_536_000 / total.max(1)) as i64);
                    let org = orgs[n as usize % orgs.len()];
                    let (_, events) = user(ids.as_ref(), org, n, at);
                    for (stream, e) in events {
                        append(&log, &stream, e).await?;
                    }
                    if n > first && (n - first).is_multiple_of(100_000) {
                        println!("writer {w}: {} users", n - first);
                    }
                }
                Ok::<_, BenchError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| BenchError::Setup(e.to_string()))??;
    }
    // The user whose past is read.
    let org = orgs[0];
    let (history, events) = user(ids.as_ref(), org, args.users, since);
    for (stream, e) in events {
        append(&stores.log, &stream, e).await?;
    }
    let stream = format!("user-{history}");
    for c in 0..args.changes {
        let at = since + time::Duration::hours(c as i64 + 1);
        let e = UserEvent::ProfileChanged(ProfileChanged {
            user_id: history,
            profile: Pii::new(Profile {
                nickname: Some(format!("change {c}")),
                ..Profile::default()
            }),
            at,
        });
        stores
            .log
            .append(
                &stream,
                ExpectedRevision::Exact(c),
                vec![eventlog::encode(&e, &meta(org, at))],
            )
            .await?;
    }
    let secs = (stores.clock.now() - started).as_seconds_f64();
    println!(
        "seeded {} users over {} organizations ({} events) in {secs:.1} s, {:.0} users/s",
        args.users,
        orgs.len(),
        args.users * 3 + args.organizations + args.changes + 3,
        args.users as f64 / secs
    );
    println!(
        "history user: {history} (changes every hour from {})",
        since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    println!("organization: {org}");
    stores.close().await;
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct PeopleArgs {
    /// The server, and the organization users are created in and searched.
    #[command(flatten)]
    pub server: super::AdminServer,
    /// The user read with `as_of` (from `people-seed`).
    #[arg(long)]
    pub history_user: Option<Uuid>,
    /// When that user's changes began (RFC 3339, from `people-seed`).
    #[arg(long)]
    pub history_since: Option<String>,
    /// Requests in flight while creating.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// How long the creation phase runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Reads timed per read phase.
    #[arg(long, default_value_t = 500)]
    pub samples: usize,
    /// What to print in front of each result line (e.g. the store).
    #[arg(long, default_value = "")]
    pub label: String,
}

/// GETs `paths(i)` one after the other, `samples` times.
async fn reads(
    http: &reqwest::Client,
    token: &str,
    samples: usize,
    path: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Result<super::exchange::Phase, BenchError> {
    let (http, token) = (http.clone(), token.to_owned());
    drive(1, samples, None, move |i| {
        let request = http.get(path(i)).bearer_auth(&token);
        async move {
            match request.send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let ok = r.status().is_success() && r.bytes().await.is_ok();
                    (Some(s), ok)
                }
                Err(_) => (None, false),
            }
        }
    })
    .await
}

pub async fn run(args: PeopleArgs) -> Result<(), BenchError> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .map_err(|e| BenchError::Setup(format!("HTTP client: {e}")))?;
    let base = args.server.base();
    let token = args.server.token(&http, "idp:admin").await?;
    let org = Uuid::parse_str(&args.server.organization_id)
        .map_err(|e| BenchError::Setup(format!("--organization-id: {e}")))?;

    // Creations: unique usernames and emails, no password.
    let run = Uuid::now_v7().simple().to_string();
    let create = {
        let (http, token) = (http.clone(), token.clone());
        let url = format!("{base}/admin/users");
        let run = run.clone();
        drive(
            args.concurrency,
            usize::MAX,
            Some(Duration::from_secs(args.duration)),
            move |i| {
                let request = http.post(&url).bearer_auth(&token).json(&json!({
                    "organization_id": org,
                    "username": format!("b{}-{i}", &run[20..]),
                    "email": format!("b{}-{i}@bench.example", &run[20..]),
                    "profile": {"given_name": "Bench", "family_name": format!("User {i}")},
                    "attributes": {"department": "bench"},
                }));
                async move {
                    match request.send().await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            (Some(s), s == 201 && r.bytes().await.is_ok())
                        }
                        Err(_) => (None, false),
                    }
                }
            },
        )
        .await?
    };
    println!("{}", create.line(&args.label, "create"));

    let prefixes: Arc<Vec<String>> = Arc::new(
        (0..args.samples)
            .map(|_| format!("user{:03}", rand::rng().random_range(0..1000)))
            .collect(),
    );
    let search = {
        let (base, prefixes) = (base.clone(), Arc::clone(&prefixes));
        reads(&http, &token, args.samples, move |i| {
            format!(
                "{base}/admin/users?organization_id={org}&q={}&limit=20",
                prefixes[i]
            )
        })
        .await?
    };
    println!("{}", search.line(&args.label, "search"));
    let filtered = {
        let base = base.clone();
        reads(&http, &token, args.samples, move |i| {
            let city = CITIES[i % CITIES.len()];
            format!(
                "{base}/admin/users?organization_id={org}&status=active&attribute=location%3D{city}&sort=-created_at&limit=50"
            )
        })
        .await?
    };
    println!("{}", filtered.line(&args.label, "filtered"));
    if let (Some(user), Some(since)) = (args.history_user, &args.history_since) {
        let since = OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
            .map_err(|e| BenchError::Setup(format!("--history-since: {e}")))?;
        let base = base.clone();
        let asof = reads(&http, &token, args.samples, move |i| {
            // Spread over the user's changes, an hour apart.
            let at = since + time::Duration::minutes(30 + 60 * (i as i64 % 100));
            let at = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            format!("{base}/admin/users/{user}?as_of={}", urlencode(&at))
        })
        .await?;
        println!("{}", asof.line(&args.label, "as_of"));
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}
