//! Tamper evidence on SQLite: `seal` runs on the writer thread (so nothing
//! is appended while it reads), `verify` on a reader connection inside one
//! read transaction (one snapshot for both passes).

use std::time::Instant;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use uuid::Uuid;

use super::unix_micros;
use crate::chain::{self, Anchor, AnchorHasher, GENESIS, Link, SEAL_WITHIN};
use crate::error::Error;
use crate::types::Position;
use crate::verify::{StoredEvent, Verifier, VerifyReport};

/// Events appended since the last seal, and since when.
#[derive(Default)]
pub(super) struct Unsealed {
    pub(super) events: u64,
    since: Option<Instant>,
}

impl Unsealed {
    pub(super) fn add(&mut self, n: u64) {
        self.events += n;
        self.since.get_or_insert_with(crate::clock::monotonic);
    }
    pub(super) fn due(&self, every: u64) -> bool {
        every > 0
            && (self.events >= every || self.since.is_some_and(|t| t.elapsed() >= SEAL_WITHIN))
    }
    pub(super) fn deadline(&self, every: u64) -> Option<Instant> {
        self.since.filter(|_| every > 0).map(|t| t + SEAL_WITHIN)
    }
}

/// How often `verify` reports progress, in events.
const PROGRESS_EVERY: u64 = 10_000;

const STORED_COLUMNS: &str = "position, event_id, stream, revision, category, event_type, subject, \
     data, metadata, recorded_at, chain";

fn position(p: i64) -> Position {
    // Only a forged row can sit below 1; keep it before everything.
    let p = p.max(0) as u64;
    Position::new(p, p)
}

/// A text column as stored; whatever else an edit left there reads as
/// text that will not match its link.
fn text(row: &Row<'_>, i: usize) -> rusqlite::Result<String> {
    Ok(match row.get_ref(i)? {
        ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => String::new(),
    })
}

fn opt_text(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    match row.get_ref(i)? {
        ValueRef::Null => Ok(None),
        _ => text(row, i).map(Some),
    }
}

fn int(row: &Row<'_>, i: usize) -> rusqlite::Result<i64> {
    Ok(match row.get_ref(i)? {
        ValueRef::Integer(n) => n,
        _ => i64::MIN,
    })
}

fn stored_event(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let id = match row.get_ref(1)? {
        ValueRef::Blob(b) => Uuid::from_slice(b).ok(),
        _ => None,
    };
    Ok(StoredEvent {
        position: position(row.get(0)?),
        id,
        stream: text(row, 2)?,
        revision: int(row, 3)?,
        category: text(row, 4)?,
        event_type: text(row, 5)?,
        subject: opt_text(row, 6)?,
        data: text(row, 7)?,
        metadata: text(row, 8)?,
        recorded_at: int(row, 9)?,
        chain: opt_text(row, 10)?,
    })
}

fn last_anchor(conn: &Connection) -> Result<Option<Anchor>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT seq, position, events, hash FROM chain_anchors ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([], anchor_row)
        .optional()?)
}

fn anchor_row(r: &Row<'_>) -> rusqlite::Result<Anchor> {
    Ok(Anchor {
        seq: r.get::<_, i64>(0)? as u64,
        position: position(r.get(1)?),
        events: r.get::<_, i64>(2)? as u64,
        hash: text(r, 3)?,
    })
}

/// Anchors the log in blocks of at most `block` events, at most
/// `max_blocks` of them; one transaction per block. Returns the last anchor
/// written and whether every event is now anchored.
pub(super) fn seal(
    conn: &mut Connection,
    block: u64,
    max_blocks: Option<usize>,
    clock: &dyn crate::clock::Clock,
) -> Result<(Option<Anchor>, bool), Error> {
    let mut written = None;
    let mut blocks = 0;
    loop {
        if max_blocks.is_some_and(|m| blocks >= m) {
            return Ok((written, false));
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last = last_anchor(&tx)?;
        let (after, prev_hash) = match &last {
            Some(a) => (
                a.position.commit as i64,
                chain::from_hex(&a.hash).ok_or_else(|| {
                    Error::Corrupt(format!("anchor {} has a malformed hash", a.seq))
                })?,
            ),
            None => (i64::MIN, GENESIS),
        };
        // The limit is part of the statement: a bound one would have SQLite
        // compile the statement again on every run.
        let rows: Vec<(i64, String, i64, Option<String>)> = tx
            .prepare_cached(&format!(
                "SELECT position, stream, revision, chain FROM events WHERE position > ?1 ORDER BY position LIMIT {}",
                block.min(i64::MAX as u64)
            ))?
            .query_map(params![after], |r| {
                Ok((r.get(0)?, text(r, 1)?, int(r, 2)?, opt_text(r, 3)?))
            })?
            .collect::<Result<_, _>>()?;
        let Some(&(end, ..)) = rows.last() else {
            return Ok((written, true));
        };
        let mut hasher = AnchorHasher::new(&prev_hash);
        for (pos, stream, revision, stored) in &rows {
            let link = match stored {
                Some(text) => chain::from_hex(text),
                None => backfill(&tx, *pos, stream, *revision)?,
            };
            // An unusable link is anchored as zeros; `verify` names the event.
            hasher.push(&link.unwrap_or_else(|| {
                tracing::warn!(
                    position = pos,
                    stream,
                    revision,
                    "sealing an event without a usable chain link"
                );
                GENESIS
            }));
        }
        let anchor = Anchor {
            seq: last.as_ref().map_or(0, |a| a.seq) + 1,
            position: position(end),
            events: last.as_ref().map_or(0, |a| a.events) + rows.len() as u64,
            hash: chain::to_hex(&hasher.finish()),
        };
        tx.prepare_cached(
            "INSERT INTO chain_anchors (seq, position, events, hash, sealed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            anchor.seq as i64,
            end,
            anchor.events as i64,
            anchor.hash,
            unix_micros(clock.now())
        ])?;
        tx.commit()?;
        tracing::info!(seq = anchor.seq, position = %anchor.position, events = anchor.events, hash = %anchor.hash, "event log sealed");
        written = Some(anchor);
        blocks += 1;
        if (rows.len() as u64) < block {
            return Ok((written, true));
        }
    }
}

/// Gives a link to an event stored before links existed. Its predecessor
/// comes earlier in position order, so it already has one, unless the log
/// was tampered with: then the event stays without.
fn backfill(
    conn: &Connection,
    pos: i64,
    stream: &str,
    revision: i64,
) -> Result<Option<Link>, Error> {
    let Ok(rev) = u64::try_from(revision) else {
        return Ok(None);
    };
    let prev = if rev == 0 {
        Some(GENESIS)
    } else {
        conn.prepare_cached("SELECT chain FROM events WHERE stream = ?1 AND revision = ?2")?
            .query_row(params![stream, revision - 1], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()?
            .flatten()
            .and_then(|c| chain::from_hex(&c))
    };
    let Some(prev) = prev else {
        return Ok(None);
    };
    let e = conn
        .prepare_cached(&format!(
            "SELECT {STORED_COLUMNS} FROM events WHERE position = ?1"
        ))?
        .query_row([pos], stored_event)?;
    let Some(input) = e.input(rev) else {
        return Ok(None);
    };
    let link = chain::link(&prev, &input);
    conn.prepare_cached("UPDATE events SET chain = ?1 WHERE position = ?2")?
        .execute(params![chain::to_hex(&link), pos])?;
    Ok(Some(link))
}

/// Drops `stream` once everything is sealed: its links move to
/// `dropped_links`, its events go, in one transaction.
pub(super) fn drop_stream(
    conn: &mut Connection,
    stream: &str,
    block: u64,
    clock: &dyn crate::clock::Clock,
) -> Result<u64, Error> {
    let present = conn
        .prepare_cached("SELECT 1 FROM events WHERE stream = ?1 LIMIT 1")?
        .exists([stream])?;
    if !present {
        return Ok(0);
    }
    seal(conn, block, None, clock)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let sealed_to = last_anchor(&tx)?.map_or(i64::MIN, |a| a.position.commit as i64);
    let unsealed = tx
        .prepare_cached("SELECT 1 FROM events WHERE stream = ?1 AND position > ?2 LIMIT 1")?
        .exists(params![stream, sealed_to])?;
    if unsealed {
        return Err(Error::NotSealed(stream.to_owned()));
    }
    tx.prepare_cached(
        "INSERT INTO dropped_links (position, stream, revision, chain, dropped_at)
         SELECT position, stream, revision, chain, ?2 FROM events WHERE stream = ?1",
    )?
    .execute(params![stream, unix_micros(clock.now())])?;
    let dropped = tx
        .prepare_cached("DELETE FROM events WHERE stream = ?1")?
        .execute([stream])?;
    tx.commit()?;
    tracing::info!(stream, events = dropped, "stream dropped");
    Ok(dropped as u64)
}

pub(super) fn verify(conn: &Connection, progress: &dyn Fn(u64)) -> Result<VerifyReport, Error> {
    let tx = conn.unchecked_transaction()?;
    let anchors: Vec<Anchor> = tx
        .prepare("SELECT seq, position, events, hash FROM chain_anchors ORDER BY seq")?
        .query_map([], anchor_row)?
        .collect::<Result<_, _>>()?;
    let mut v = Verifier::new(anchors);
    {
        let mut stmt = tx.prepare(&format!(
            "SELECT {STORED_COLUMNS} FROM events ORDER BY stream, revision"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            v.event(&stored_event(row)?);
            if v.events_checked().is_multiple_of(PROGRESS_EVERY) {
                progress(v.events_checked());
            }
        }
    }
    {
        let mut stmt = tx.prepare(
            "SELECT position, chain, 0 FROM events
             UNION ALL SELECT position, chain, 1 FROM dropped_links
             ORDER BY 1",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (at, chain) = (position(row.get(0)?), opt_text(row, 1)?);
            if int(row, 2)? == 1 {
                v.dropped_link_in_order(at, chain.as_deref());
            } else {
                v.link_in_order(at, chain.as_deref());
            }
        }
    }
    progress(v.events_checked());
    tx.commit()?;
    Ok(v.finish())
}
