//! Retention of decision records: the policy decision point's decisions go
//! to one stream per day (`decisions-{day}`); every node drops the days
//! older than `IDP_DECISION_RETENTION_DAYS`, each stream whole, through
//! `EventLog::drop_stream` (which keeps the tamper evidence whole), and
//! records each drop. Nodes racing drop nothing twice: a dropped stream is
//! not there for the next one.

use domain::retention::{RETENTION_STREAM, StreamDropped, days_to_drop};
use eventlog::{Filter, Position};
use time::Date;
use uuid::Uuid;

use crate::state::AppState;

/// How often a node looks for days to drop.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Drops the decision streams of every day from `next` (or, the first
/// time, from the day of the log's first event) that the rule no longer
/// keeps, and moves `next` past them. Answers how many events went.
pub async fn drop_old_decisions(
    state: &AppState,
    next: &mut Option<Date>,
) -> Result<u64, eventlog::Error> {
    let days = state.config.decision_retention_days;
    if days == 0 {
        return Ok(0);
    }
    let log = state.bus.log();
    let from = match *next {
        Some(day) => day,
        None => match log
            .read_all(Position::START, &Filter::all(), 1)
            .await?
            .first()
        {
            Some(first) => first.recorded_at.date(),
            None => return Ok(0),
        },
    };
    let now = state.clock.now();
    let mut dropped = 0;
    for day in days_to_drop(from, now, days) {
        let stream = domain::authz_policy::decision_stream(day.midnight().assume_utc());
        let events = log.drop_stream(&stream).await?;
        *next = day.next_day();
        if events == 0 {
            continue;
        }
        dropped += events;
        let event = StreamDropped {
            stream,
            events,
            retention_days: days,
            at: now,
        };
        let meta = domain::Metadata::system(Uuid::now_v7(), now);
        commands::journal::record(log, RETENTION_STREAM, &event, &meta).await?;
        metrics::counter!("idp_retention_events_dropped_total").increment(events);
    }
    if next.is_none() {
        *next = Some(from);
    }
    Ok(dropped)
}
