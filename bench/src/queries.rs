//! `idp bench queries`: latency of the reads privacy officers and admins
//! make on a large log: one subject's export (replayed through the subject
//! index) and pages of the audit trail by each kind of filter. Run it on a data
//! directory filled by `idp bench seed` whose projections are built.

use std::time::Duration;

use projections::audit::{self, ActionFilter, AuditFilter};

use privacy::Stores;

#[derive(Debug, Clone, clap::Args)]
pub struct QueryBenchArgs {
    /// The subject to export (default: the newest subject in the audit trail).
    #[arg(long)]
    pub subject: Option<String>,
    /// The actor to query by (default: the actor with the most entries).
    #[arg(long)]
    pub actor: Option<String>,
    /// Timed runs of each query (after one untimed warm-up).
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
}

fn failed(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn summary(label: &str, mut times: Vec<Duration>, note: &str) {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times[i.min(times.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "| {label} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {note} |",
        times.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

pub async fn run(stores: &Stores, args: QueryBenchArgs) -> Result<(), String> {
    let Stores { log, read_db, .. } = stores;
    let head = log.head().await.map_err(failed)?;
    let events = match head {
        Some(_) => log
            .count_after(eventlog::Position::START)
            .await
            .map_err(failed)?,
        None => 0,
    };
    let subject = match args.subject {
        Some(s) => s,
        None => audit::newest_subject(read_db)
            .await
            .map_err(failed)?
            .ok_or("no subject in the audit trail: seed the log and build the projections first")?,
    };
    let actor = match args.actor {
        Some(a) => a,
        None => audit::busiest_actor(read_db)
            .await
            .map_err(failed)?
            .ok_or("no actor in the audit trail")?,
    };
    let n = args.iterations.max(1);
    println!(
        "log: {events} events ({}); subject {subject}; actor {actor}",
        log.backend()
    );
    println!("| query | runs | p50 | p99 | max | result |");
    println!("|---|---|---|---|---|---|");

    let mut times = Vec::with_capacity(n);
    let mut held = 0;
    for i in 0..=n {
        let t = eventlog::clock::monotonic();
        let doc = privacy::export(log, &subject, stores.clock.now())
            .await
            .map_err(failed)?;
        if i > 0 {
            times.push(t.elapsed());
        }
        held = doc.events.len();
    }
    summary(
        "subject export",
        times,
        &format!("{held} events about the subject"),
    );

    // Audit pages, newest 50, for each kind of filter: one served by a
    // full index, by a partial index over aggregate entries, by walking
    // dense journal entries, by the per-minute bounds of a time range.
    let newest = audit::query(read_db, &AuditFilter::default(), None, 1)
        .await
        .map_err(failed)?;
    let newest = newest.first().ok_or("the audit trail is empty")?;
    // The hour around the time of the entry in the middle of the trail.
    let half = newest.position.commit / 2;
    let middle = audit::query(
        read_db,
        &AuditFilter::default(),
        Some(eventlog::Position::new(half, half)),
        1,
    )
    .await
    .map_err(failed)?;
    let middle = middle.first().ok_or("the audit trail is empty")?;
    let hour_from = time::OffsetDateTime::parse(
        &middle.occurred_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(failed)?
        - time::Duration::minutes(30);
    let hour_to = hour_from + time::Duration::hours(1);
    let filters = [
        (
            "audit by actor, newest 50",
            AuditFilter {
                actor_id: Some(actor.clone()),
                ..AuditFilter::default()
            },
        ),
        (
            "audit by correlation id",
            AuditFilter {
                correlation_id: Some(
                    uuid::Uuid::parse_str(&newest.correlation_id).map_err(failed)?,
                ),
                ..AuditFilter::default()
            },
        ),
        (
            "audit by aggregate action (client.created.v1)",
            AuditFilter {
                action: Some(ActionFilter::Exact("client.created.v1".into())),
                ..AuditFilter::default()
            },
        ),
        (
            "audit by journal action (token.issued.v1)",
            AuditFilter {
                action: Some(ActionFilter::Exact(domain::token::ISSUED_V1.into())),
                ..AuditFilter::default()
            },
        ),
        (
            "audit failures",
            AuditFilter {
                outcome: Some(audit::AuditOutcome::Failure),
                ..AuditFilter::default()
            },
        ),
        (
            "audit in an hour mid-log",
            AuditFilter {
                from_time: Some(hour_from),
                to_time: Some(hour_to),
                ..AuditFilter::default()
            },
        ),
        (
            "audit by actor in that hour",
            AuditFilter {
                actor_id: Some(actor.clone()),
                from_time: Some(hour_from),
                to_time: Some(hour_to),
                ..AuditFilter::default()
            },
        ),
        (
            "audit by the newest entry's source IP",
            AuditFilter {
                source_ip: newest.source_ip.clone(),
                ..AuditFilter::default()
            },
        ),
        (
            "audit by a source IP no entry has",
            AuditFilter {
                source_ip: Some("192.0.2.254".into()),
                ..AuditFilter::default()
            },
        ),
        (
            "audit by a user agent no entry has (no index: the whole trail)",
            AuditFilter {
                user_agent: Some("no-such-agent/0".into()),
                ..AuditFilter::default()
            },
        ),
    ];
    for (label, filter) in filters {
        let mut times = Vec::with_capacity(n);
        let mut rows = 0;
        for i in 0..=n {
            let t = eventlog::clock::monotonic();
            let page = audit::query(read_db, &filter, None, 50)
                .await
                .map_err(failed)?;
            if i > 0 {
                times.push(t.elapsed());
            }
            rows = page.len();
        }
        summary(label, times, &format!("{rows} entries"));
    }
    stores.close().await;
    Ok(())
}
