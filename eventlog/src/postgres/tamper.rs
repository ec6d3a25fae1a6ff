//! Tamper evidence on PostgreSQL. `seal` reads only the readable log (below
//! the snapshot's xmin, so no later commit can land inside an anchored
//! block) and writes each anchor in one short statement keyed by its
//! sequence number: sealers in one process or several race harmlessly, the
//! loser of an anchor goes on from the winner's. `verify` reads in one
//! repeatable-read, read-only transaction, which takes no transaction id and
//! so never holds readers back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::TryStreamExt;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Notify;

use super::{VISIBLE, clamp, parse_u64};
use crate::chain::{self, Anchor, AnchorHasher, GENESIS, SEAL_WITHIN};
use crate::error::Error;
use crate::types::Position;
use crate::verify::{StoredEvent, Verifier, VerifyReport};

/// How often `verify` reports progress, in events.
const PROGRESS_EVERY: u64 = 10_000;

fn position(row: &PgRow, tx: &str, seq: &str) -> Result<Position, Error> {
    let t: String = row.try_get(tx)?;
    let s: i64 = row.try_get(seq)?;
    Ok(Position::new(parse_u64(&t)?, s.max(0) as u64))
}

fn anchor_row(row: &PgRow) -> Result<Anchor, Error> {
    Ok(Anchor {
        seq: row.try_get::<i64, _>("seq")? as u64,
        position: position(row, "tx", "ev_seq")?,
        events: row.try_get::<i64, _>("events")? as u64,
        hash: row.try_get("hash")?,
    })
}

const ANCHOR_COLUMNS: &str = "seq, tx_id::text AS tx, ev_seq, events, hash";

/// Waits for appends, then seals once `every` events were appended here or
/// [`SEAL_WITHIN`] after the first of them, whichever comes first.
pub(super) async fn sealer_loop(
    pool: PgPool,
    unsealed: Arc<AtomicU64>,
    kick: Arc<Notify>,
    every: u64,
) {
    loop {
        kick.notified().await;
        let since = crate::clock::monotonic();
        while unsealed.load(Ordering::Relaxed) < every {
            let left = SEAL_WITHIN.saturating_sub(since.elapsed());
            if left.is_zero() || tokio::time::timeout(left, kick.notified()).await.is_err() {
                break;
            }
        }
        unsealed.store(0, Ordering::Relaxed);
        match seal_readable(&pool, every).await {
            // Committed events not yet readable: look again later.
            Ok((_, true)) => {
                unsealed.fetch_add(1, Ordering::Relaxed);
                kick.notify_one();
            }
            Ok((_, false)) => {}
            Err(e) => tracing::warn!(error = %e, "sealing the event log failed; retrying later"),
        }
    }
}

pub(super) async fn seal(pool: &PgPool, block: u64) -> Result<Option<Anchor>, Error> {
    Ok(seal_readable(pool, block).await?.0)
}

/// Anchors the readable log in blocks of at most `block` events. Returns
/// the last anchor written and whether committed events remain past it
/// that were not readable yet.
async fn seal_readable(pool: &PgPool, block: u64) -> Result<(Option<Anchor>, bool), Error> {
    let mut written = None;
    loop {
        let last = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ANCHOR_COLUMNS} FROM chain_anchors ORDER BY seq DESC LIMIT 1"
        )))
        .fetch_optional(pool)
        .await?
        .map(|r| anchor_row(&r))
        .transpose()?;
        let (after_tx, after_seq, prev_hash) = match &last {
            Some(a) => (
                a.position.commit.to_string(),
                clamp(a.position.prepare),
                chain::from_hex(&a.hash).ok_or_else(|| {
                    Error::Corrupt(format!("anchor {} has a malformed hash", a.seq))
                })?,
            ),
            None => ("0".to_owned(), i64::MIN, GENESIS),
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT tx_id::text AS tx, seq, stream, revision, chain FROM events
              WHERE (tx_id, seq) > ($1::text::xid8, $2) AND {VISIBLE}
              ORDER BY tx_id, seq LIMIT $3"
        )))
        .bind(&after_tx)
        .bind(after_seq)
        .bind(clamp(block))
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            // The order makes the planner walk the key from the anchor on;
            // as an EXISTS it expects a third of the table to match and
            // scans the table from its start.
            let more = sqlx::query(
                "SELECT 1 FROM events WHERE (tx_id, seq) > ($1::text::xid8, $2)
                  ORDER BY tx_id, seq LIMIT 1",
            )
            .bind(&after_tx)
            .bind(after_seq)
            .fetch_optional(pool)
            .await?
            .is_some();
            return Ok((written, more));
        }
        let mut links: Vec<Option<String>> = rows
            .iter()
            .map(|r| r.try_get("chain"))
            .collect::<Result<_, _>>()?;
        backfill(pool, &rows, &mut links).await?;
        let mut hasher = AnchorHasher::new(&prev_hash);
        for (row, link) in rows.iter().zip(&links) {
            // An unusable link is anchored as zeros; `verify` names the event.
            let link = link
                .as_deref()
                .and_then(chain::from_hex)
                .unwrap_or_else(|| {
                    let stream: Option<String> = row.try_get("stream").ok();
                    tracing::warn!(?stream, "sealing an event without a usable chain link");
                    GENESIS
                });
            hasher.push(&link);
        }
        let Some(end) = rows.last() else {
            return Ok((written, false));
        };
        let end = position(end, "tx", "seq")?;
        let anchor = Anchor {
            seq: last.as_ref().map_or(0, |a| a.seq) + 1,
            position: end,
            events: last.as_ref().map_or(0, |a| a.events) + rows.len() as u64,
            hash: chain::to_hex(&hasher.finish()),
        };
        let inserted = sqlx::query(
            "INSERT INTO chain_anchors (seq, tx_id, ev_seq, events, hash)
             VALUES ($1, $2::text::xid8, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(clamp(anchor.seq))
        .bind(end.commit.to_string())
        .bind(clamp(end.prepare))
        .bind(clamp(anchor.events))
        .bind(&anchor.hash)
        .execute(pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Another sealer wrote this anchor first: go on from its.
            continue;
        }
        tracing::info!(seq = anchor.seq, position = %anchor.position, events = anchor.events, hash = %anchor.hash, "event log sealed");
        written = Some(anchor);
    }
}

/// Gives links, in order, to the events of `rows` stored before links
/// existed (`idp_chain_backfill`).
async fn backfill(
    pool: &PgPool,
    rows: &[PgRow],
    links: &mut [Option<String>],
) -> Result<(), Error> {
    let missing: Vec<usize> = (0..links.len()).filter(|&i| links[i].is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut txs = Vec::with_capacity(missing.len());
    let mut seqs = Vec::with_capacity(missing.len());
    for &i in &missing {
        txs.push(rows[i].try_get::<String, _>("tx")?);
        seqs.push(rows[i].try_get::<i64, _>("seq")?);
    }
    let filled: Vec<Option<String>> =
        sqlx::query_scalar("SELECT idp_chain_backfill($1::text[]::xid8[], $2)")
            .bind(&txs)
            .bind(&seqs)
            .fetch_one(pool)
            .await?;
    for (&i, link) in missing.iter().zip(filled) {
        links[i] = link;
    }
    Ok(())
}

fn stored_event(row: &PgRow) -> Result<StoredEvent, Error> {
    Ok(StoredEvent {
        position: position(row, "tx", "seq")?,
        id: Some(row.try_get("event_id")?),
        stream: row.try_get("stream")?,
        revision: row.try_get("revision")?,
        category: row.try_get("category")?,
        event_type: row.try_get("event_type")?,
        subject: row.try_get("subject")?,
        data: row.try_get("data")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("micros")?,
        chain: row.try_get("chain")?,
    })
}

/// Drops `stream` once everything readable is sealed: under the stream's
/// append lock, its links move to `dropped_links` and its events go, in one
/// transaction.
pub(super) async fn drop_stream(pool: &PgPool, stream: &str, block: u64) -> Result<u64, Error> {
    let present: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE stream = $1)")
            .bind(stream)
            .fetch_one(pool)
            .await?;
    if !present {
        return Ok(0);
    }
    seal(pool, block).await?;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
        .bind(stream)
        .execute(&mut *tx)
        .await?;
    let last = sqlx::query(AssertSqlSafe(format!(
        "SELECT {ANCHOR_COLUMNS} FROM chain_anchors ORDER BY seq DESC LIMIT 1"
    )))
    .fetch_optional(&mut *tx)
    .await?
    .map(|r| anchor_row(&r))
    .transpose()?;
    let (after_tx, after_seq) = last.map_or(("0".to_owned(), i64::MIN), |a| {
        (a.position.commit.to_string(), clamp(a.position.prepare))
    });
    let unsealed: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events
                         WHERE stream = $1 AND (tx_id, seq) > ($2::text::xid8, $3))",
    )
    .bind(stream)
    .bind(&after_tx)
    .bind(after_seq)
    .fetch_one(&mut *tx)
    .await?;
    if unsealed {
        tx.rollback().await?;
        return Err(Error::NotSealed(stream.to_owned()));
    }
    sqlx::query(
        "INSERT INTO dropped_links (tx_id, seq, stream, revision, chain)
         SELECT tx_id, seq, stream, revision, chain FROM events WHERE stream = $1",
    )
    .bind(stream)
    .execute(&mut *tx)
    .await?;
    let dropped = sqlx::query("DELETE FROM events WHERE stream = $1")
        .bind(stream)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    tracing::info!(stream, events = dropped, "stream dropped");
    Ok(dropped)
}

pub(super) async fn verify(
    pool: &PgPool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // One snapshot from here on: what a reader can see in it.
    let bound: String = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(&mut *tx)
        .await?;
    let anchors = sqlx::query(AssertSqlSafe(format!(
        "SELECT {ANCHOR_COLUMNS} FROM chain_anchors ORDER BY seq"
    )))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(anchor_row)
    .collect::<Result<Vec<_>, _>>()?;
    let mut v = Verifier::new(anchors);
    {
        let mut rows = sqlx::query(
            "SELECT tx_id::text AS tx, seq, event_id, stream, revision, category, event_type,
                    subject, data, metadata,
                    (extract(epoch FROM recorded_at) * 1000000)::bigint AS micros, chain
               FROM events WHERE tx_id < $1::text::xid8 ORDER BY stream, revision",
        )
        .bind(&bound)
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            v.event(&stored_event(&row)?);
            if v.events_checked().is_multiple_of(PROGRESS_EVERY) {
                progress(v.events_checked());
            }
        }
    }
    {
        let mut rows = sqlx::query(
            "SELECT tx_id::text AS tx, seq, chain, dropped FROM (
                SELECT tx_id, seq, chain, false AS dropped FROM events
                 WHERE tx_id < $1::text::xid8
                UNION ALL
                SELECT tx_id, seq, chain, true FROM dropped_links
             ) links ORDER BY tx_id, seq",
        )
        .bind(&bound)
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let chain: Option<String> = row.try_get("chain")?;
            let at = position(&row, "tx", "seq")?;
            if row.try_get::<bool, _>("dropped")? {
                v.dropped_link_in_order(at, chain.as_deref());
            } else {
                v.link_in_order(at, chain.as_deref());
            }
        }
    }
    progress(v.events_checked());
    tx.rollback().await?;
    Ok(v.finish())
}
