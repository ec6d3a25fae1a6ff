//! Log inspection: printing events ([`dump`]) and checking the log's tamper
//! evidence ([`verify`]). Rebuilds are `projections::rebuild` (the runner
//! rebuilds at start too); data subject requests are the privacy code's.
//!
//! This crate only reads the log; it never appends events.

#![forbid(unsafe_code)]
// Unit tests read the wall clock freely; server code takes it from a Clock.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

use std::io::Write;
use std::sync::Arc;

use eventlog::{Direction, EventLog, Filter, Position, RecordedEvent, VerifyReport};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
}

/// Which events to print.
#[derive(Clone, Debug)]
pub enum Selection {
    /// One stream, from its first event.
    Stream(String),
    /// Every event about one subject.
    Subject(String),
    /// The whole log after a position, optionally filtered.
    All {
        after: Position,
        filter: Filter,
        limit: Option<u64>,
    },
}

/// One event as a JSON object: the envelope and its data.
pub fn to_json(e: &RecordedEvent) -> serde_json::Value {
    json!({
        "position": e.position,
        "stream": e.stream,
        "revision": e.revision,
        "id": e.id,
        "type": e.event_type,
        "subject": e.subject,
        "recorded_at": e.recorded_at.unix_timestamp_nanos() / 1_000,
        "metadata": e.metadata,
        "data": e.data,
    })
}

/// Writes the selected events as JSON lines, page by page; returns how many.
pub async fn dump(
    log: &Arc<dyn EventLog>,
    selection: Selection,
    out: &mut dyn Write,
) -> Result<u64, ReplayError> {
    const PAGE: usize = 1000;
    let mut n = 0u64;
    match selection {
        Selection::Stream(stream) => {
            let mut from = 0;
            loop {
                let page = log
                    .read_stream(&stream, Direction::Forwards, Some(from), PAGE)
                    .await?;
                for e in &page {
                    writeln!(out, "{}", to_json(e))?;
                    n += 1;
                }
                match page.last() {
                    Some(last) if page.len() == PAGE => from = last.revision + 1,
                    _ => break,
                }
            }
        }
        Selection::Subject(subject) => {
            for e in log.read_subject(&subject).await? {
                writeln!(out, "{}", to_json(&e))?;
                n += 1;
            }
        }
        Selection::All {
            mut after,
            filter,
            limit,
        } => loop {
            let want = limit.map_or(PAGE as u64, |l| (l - n).min(PAGE as u64)) as usize;
            if want == 0 {
                break;
            }
            let page = log.read_all(after, &filter, want).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            for e in &page {
                writeln!(out, "{}", to_json(e))?;
                n += 1;
            }
        },
    }
    out.flush()?;
    Ok(n)
}

/// Checks every event against its hash-chain link and the anchors (see
/// `eventlog::chain`), and writes a report for a person to `out`; progress
/// goes to stderr every 100 000 events. Never writes to the log. The log
/// is intact when the returned report's `first_problem` is `None`.
pub async fn verify(
    log: &Arc<dyn EventLog>,
    out: &mut dyn Write,
) -> Result<VerifyReport, ReplayError> {
    let report = log
        .verify(&|n| {
            if n > 0 && n.is_multiple_of(100_000) {
                eprintln!("verify: {n} events checked");
            }
        })
        .await?;
    write_report(&report, out)?;
    Ok(report)
}

fn write_report(r: &VerifyReport, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "events checked:    {}", r.events_checked)?;
    writeln!(out, "anchors checked:   {}", r.anchors_checked)?;
    if r.events_unanchored > 0 {
        writeln!(
            out,
            "events unanchored: {} (after the last seal: one deleted or forged at the end of its stream would go unnoticed)",
            r.events_unanchored
        )?;
    }
    if r.events_dropped > 0 {
        writeln!(
            out,
            "events dropped:    {} (by retention: their links still count in the anchors)",
            r.events_dropped
        )?;
    }
    if r.events_unchained > 0 {
        writeln!(
            out,
            "events unchained:  {} (stored before the hash chain existed; the next seal links them)",
            r.events_unchained
        )?;
    }
    match &r.first_problem {
        None => writeln!(out, "result: intact")?,
        Some(p) => {
            writeln!(
                out,
                "result: TAMPERED, {} finding(s); the first in log order:",
                r.problems
            )?;
            writeln!(out, "  {p}")?;
            if r.problems > 1 {
                writeln!(out, "  (later findings may follow from this one)")?;
            }
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Metadata;
    use eventlog::{ExpectedRevision, LogOptions, NewEvent};

    #[tokio::test]
    async fn dumps_streams_subjects_and_pages_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("log.db").display());
        let log = eventlog::open(&url, &LogOptions::default()).await.unwrap();
        let meta = Metadata::system(
            uuid::Uuid::now_v7(),
            time::macros::datetime!(2026-12-01 12:00 UTC),
        );
        for i in 0..2500u64 {
            let mut e = NewEvent::new("t.happened.v1", json!({"i": i}), meta.clone());
            if i % 100 == 0 {
                e = e.with_subject("someone");
            }
            log.append(&format!("t-{}", i % 2), ExpectedRevision::Any, vec![e])
                .await
                .unwrap();
        }
        let mut out = Vec::new();
        let n = dump(&log, Selection::Stream("t-0".into()), &mut out)
            .await
            .unwrap();
        assert_eq!(n, 1250);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1250);
        assert_eq!(lines[1249]["revision"], 1249);
        assert_eq!(lines[3]["data"]["i"], 6);

        let mut out = Vec::new();
        assert_eq!(
            dump(&log, Selection::Subject("someone".into()), &mut out)
                .await
                .unwrap(),
            25
        );

        let mut out = Vec::new();
        let all = Selection::All {
            after: Position::START,
            filter: Filter::all(),
            limit: Some(1500),
        };
        assert_eq!(dump(&log, all, &mut out).await.unwrap(), 1500);
    }

    #[tokio::test]
    async fn verify_reports_an_intact_log_and_then_the_changed_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let log = eventlog::open(
            &format!("sqlite:{}", path.display()),
            &LogOptions::default(),
        )
        .await
        .unwrap();
        let meta = Metadata::system(
            uuid::Uuid::now_v7(),
            time::macros::datetime!(2026-12-01 12:00 UTC),
        );
        for i in 0..20u64 {
            let e = NewEvent::new("t.happened.v1", json!({ "i": i }), meta.clone());
            log.append(&format!("t-{}", i % 3), ExpectedRevision::Any, vec![e])
                .await
                .unwrap();
        }
        log.seal().await.unwrap();
        let mut out = Vec::new();
        let report = verify(&log, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(report.is_intact(), "{text}");
        assert!(text.contains("events checked:    20"), "{text}");
        assert!(text.contains("result: intact"), "{text}");

        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE events SET data = '{\"i\":99}' WHERE stream = 't-1' AND revision = 2",
                [],
            )
            .unwrap();
        let mut out = Vec::new();
        let report = verify(&log, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!report.is_intact());
        assert!(
            text.contains("result: TAMPERED, 1 finding(s)")
                && text.contains("changed: stream t-1 revision 2 at position "),
            "{text}"
        );
    }
}
