//! `idp bench queries`: latency of the reads privacy officers and admins
//! make on a large log: one subject's export (replayed through the subject
//! index) and one page of the audit trail by actor. Run it on a data
//! directory filled by `idp bench seed` whose projections are built.

use std::time::{Duration, Instant};

use projections::audit::{self, AuditFilter};

use crate::config::Config;
use crate::server::{Stores, open_stores};

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

pub async fn run(config: &Config, args: QueryBenchArgs) -> Result<(), String> {
    let Stores { log, read_db, .. } = open_stores(config).await.map_err(failed)?;
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
        None => audit::newest_subject(&read_db)
            .await
            .map_err(failed)?
            .ok_or("no subject in the audit trail: seed the log and build the projections first")?,
    };
    let actor = match args.actor {
        Some(a) => a,
        None => audit::busiest_actor(&read_db)
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
        let t = Instant::now();
        let doc = crate::privacy::export(&log, &subject)
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

    let filter = AuditFilter {
        actor_id: Some(actor.clone()),
        ..AuditFilter::default()
    };
    let mut times = Vec::with_capacity(n);
    let mut rows = 0;
    for i in 0..=n {
        let t = Instant::now();
        let page = audit::query(&read_db, &filter, None, 50)
            .await
            .map_err(failed)?;
        if i > 0 {
            times.push(t.elapsed());
        }
        rows = page.len();
    }
    summary(
        "audit by actor, newest 50",
        times,
        &format!("{rows} entries"),
    );
    Ok(())
}
