//! Tamper evidence: a hash chain over each stream's stored events, and
//! anchors over the global order. Pure: both SQL adapters compute exactly
//! these bytes (SQLite here in Rust, PostgreSQL in `idp_chain_link`, see
//! `migrations/eventlog/postgres.sql`), and the verifier recomputes them.
//!
//! # The chain link of an event (column `events.chain`)
//!
//! ```text
//! link(e) = SHA-256( prev                         32 bytes: link of the previous revision of
//!                                                 the same stream; 32 zero bytes for revision 0
//!                  || u64be(len) || stream         UTF-8
//!                  || u64be(revision)
//!                  || event id                     16 bytes, RFC 4122 byte order
//!                  || u64be(len) || event type     UTF-8
//!                  || 0x00                         no subject, or
//!                     0x01 || u64be(len) || subject
//!                  || u64be(len) || data           the stored JSON text, byte for byte
//!                  || u64be(len) || metadata       the stored JSON text, byte for byte
//!                  || i64be(recorded_at)           microseconds since the Unix epoch )
//! chain = lowercase hex of link(e)
//! ```
//!
//! Every variable-length field carries its length, so bytes cannot move from
//! one field to the next; a missing subject and an empty one differ. The
//! category and the position are not covered: the category is checked
//! against the stream name, and the position is covered by the anchors.
//!
//! # Anchors (table `chain_anchors`)
//!
//! `seal` cuts the readable log, in position order, into blocks of at most
//! N events and records one anchor per block: its sequence number (1, 2, …),
//! the position of the block's last event, the count of events up to it,
//! and `hash_k = SHA-256(hash_{k-1} || link_1 || … || link_m)` over the raw
//! links of the block's events in position order (`hash_0` = 32 zero bytes).
//!
//! # What is detected
//!
//! - An event changed in place (any covered field): its link no longer
//!   matches its contents ("changed"), anchored or not.
//! - An event deleted from the middle of a stream: a revision gap ("removed").
//! - The last event of a stream, or a whole stream, deleted: only once
//!   anchored, by the block's count and hash ("removed").
//! - An event inserted below the last anchor: the block's count and hash,
//!   and usually a revision out of log order ("inserted").
//! - A changed event whose link was recomputed too: the next revision's link
//!   breaks; if it was the stream's last, the anchor's hash ("changed").
//!
//! Limits: nothing here is keyed, so whoever can rewrite the database can
//! rewrite events, links and anchors consistently; what was appended after
//! the last anchor can be deleted or forged unnoticed. An anchor hash kept
//! outside the database (each is logged when written) closes the first gap.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::types::Position;

/// A raw chain link or anchor hash.
pub type Link = [u8; 32];

/// The link before revision 0, and the hash before anchor 1.
pub const GENESIS: Link = [0; 32];

/// The fields of a stored event its link covers, exactly as stored.
#[derive(Clone, Copy, Debug)]
pub struct ChainInput<'a> {
    pub stream: &'a str,
    pub revision: u64,
    pub id: Uuid,
    pub event_type: &'a str,
    pub subject: Option<&'a str>,
    /// The stored data text, not a re-serialization of it.
    pub data: &'a str,
    /// The stored metadata text.
    pub metadata: &'a str,
    /// Microseconds since the Unix epoch.
    pub recorded_at: i64,
}

/// The link of an event whose predecessor in its stream has link `prev`.
pub fn link(prev: &Link, e: &ChainInput<'_>) -> Link {
    let mut h = Sha256::new();
    encode(prev, e, &mut |b| h.update(b));
    h.finalize().into()
}

/// The bytes [`link`] hashes (for tests and for checking another
/// implementation).
pub fn canonical_bytes(prev: &Link, e: &ChainInput<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(prev, e, &mut |b| out.extend_from_slice(b));
    out
}

fn field(put: &mut dyn FnMut(&[u8]), bytes: &[u8]) {
    put(&(bytes.len() as u64).to_be_bytes());
    put(bytes);
}

fn encode(prev: &Link, e: &ChainInput<'_>, put: &mut dyn FnMut(&[u8])) {
    put(prev);
    field(put, e.stream.as_bytes());
    put(&e.revision.to_be_bytes());
    put(e.id.as_bytes());
    field(put, e.event_type.as_bytes());
    match e.subject {
        None => put(&[0]),
        Some(s) => {
            put(&[1]);
            field(put, s.as_bytes());
        }
    }
    field(put, e.data.as_bytes());
    field(put, e.metadata.as_bytes());
    put(&e.recorded_at.to_be_bytes());
}

/// Lowercase hex, as stored.
pub fn to_hex(link: &Link) -> String {
    hex::encode(link)
}

/// A stored link or anchor hash, if it is 64 hex digits.
pub fn from_hex(s: &str) -> Option<Link> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Computes one anchor's hash from the previous one and its block's links.
pub struct AnchorHasher(Sha256);

impl AnchorHasher {
    pub fn new(prev: &Link) -> Self {
        let mut h = Sha256::new();
        h.update(prev);
        Self(h)
    }

    pub fn push(&mut self, link: &Link) {
        self.0.update(link);
    }

    pub fn finish(self) -> Link {
        self.0.finalize().into()
    }
}

/// One anchor: everything in the log up to `position` as sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// 1 for the first anchor, then one more for each.
    pub seq: u64,
    /// The position of the last event the anchor covers.
    pub position: Position,
    /// How many events the log held up to and including `position`.
    pub events: u64,
    /// `hash_k`, lowercase hex.
    pub hash: String,
}

/// How many events one anchor covers at most, unless configured (the
/// `seal_every` URL option).
pub const DEFAULT_SEAL_EVERY: u64 = 1000;

/// An appended event is anchored at the latest this long after its append
/// (or after [`DEFAULT_SEAL_EVERY`] more events, whichever comes first).
pub const SEAL_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ChainInput<'static> {
        ChainInput {
            stream: "client-1",
            revision: 2,
            id: Uuid::from_bytes([0xab; 16]),
            event_type: "client.created.v1",
            subject: Some("u"),
            data: r#"{"a":1}"#,
            metadata: "{}",
            recorded_at: 1_700_000_000_000_001,
        }
    }

    #[test]
    fn the_canonical_encoding_is_exactly_as_documented() {
        let prev = [7u8; 32];
        let mut want = vec![7u8; 32];
        want.extend_from_slice(&8u64.to_be_bytes());
        want.extend_from_slice(b"client-1");
        want.extend_from_slice(&2u64.to_be_bytes());
        want.extend_from_slice(&[0xab; 16]);
        want.extend_from_slice(&17u64.to_be_bytes());
        want.extend_from_slice(b"client.created.v1");
        want.push(1);
        want.extend_from_slice(&1u64.to_be_bytes());
        want.extend_from_slice(b"u");
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(br#"{"a":1}"#);
        want.extend_from_slice(&2u64.to_be_bytes());
        want.extend_from_slice(b"{}");
        want.extend_from_slice(&1_700_000_000_000_001i64.to_be_bytes());
        assert_eq!(canonical_bytes(&prev, &input()), want);
        let digest: Link = Sha256::digest(&want).into();
        assert_eq!(link(&prev, &input()), digest);
    }

    #[test]
    fn a_pinned_vector_computed_by_postgresql() {
        // `SELECT encode(sha256(idp_chain_bytes(decode(repeat('00', 32), 'hex'),
        // 'client-1', 2, 'abababab-abab-abab-abab-abababababab', 'client.created.v1', 'u',
        // '{"a":1}', '{}', 1700000000000001)), 'hex')` on PostgreSQL 15.
        assert_eq!(
            to_hex(&link(&GENESIS, &input())),
            "8a82d45bd3b8854d33c1fc7629f0fb37b2c72dcae896debce4a416a769b62afa"
        );
    }

    #[test]
    fn fields_cannot_slide_and_no_subject_is_not_an_empty_one() {
        let a = input();
        let b = ChainInput {
            stream: "client-",
            event_type: "1client.created.v1",
            ..a
        };
        assert_ne!(link(&GENESIS, &a), link(&GENESIS, &b));
        let none = ChainInput { subject: None, ..a };
        let empty = ChainInput {
            subject: Some(""),
            ..a
        };
        assert_ne!(link(&GENESIS, &none), link(&GENESIS, &empty));
        assert_ne!(link(&GENESIS, &a), link(&[1; 32], &a));
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let l = link(&GENESIS, &input());
        assert_eq!(from_hex(&to_hex(&l)), Some(l));
        assert_eq!(to_hex(&l).len(), 64);
        assert_eq!(from_hex("xyz"), None);
        assert_eq!(from_hex(&"0".repeat(62)), None);
    }

    #[test]
    fn anchors_chain_over_links() {
        let (l1, l2) = ([1u8; 32], [2u8; 32]);
        let mut h = AnchorHasher::new(&GENESIS);
        h.push(&l1);
        h.push(&l2);
        let mut bytes = GENESIS.to_vec();
        bytes.extend_from_slice(&l1);
        bytes.extend_from_slice(&l2);
        let want: Link = Sha256::digest(&bytes).into();
        assert_eq!(h.finish(), want);
    }
}
