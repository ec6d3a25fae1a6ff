//! Checking a stored log against its chain links and anchors (see
//! [`crate::chain`] for what they cover). Pure: an adapter feeds the
//! [`Verifier`] its stored rows twice, once in stream order (links and
//! revisions) and once in position order (anchors), from one snapshot.

use std::fmt;

use uuid::Uuid;

use crate::chain::{self, Anchor, AnchorHasher, ChainInput, GENESIS, Link};
use crate::types::{Position, category_of};

/// What happened to the log at a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A stored event (or anchor) differs from what was sealed or chained.
    Changed,
    /// Events are missing: a revision gap, or fewer events than an anchor
    /// counted.
    Removed,
    /// Events are there that were not appended: a revision out of log
    /// order, a revision stored twice, or more events than an anchor counted.
    Inserted,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Changed => "changed",
            Self::Removed => "removed",
            Self::Inserted => "inserted",
        })
    }
}

/// One finding of [`crate::EventLog::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The event named; for a removed revision, the event that now follows
    /// it in its stream; for an anchor's finding, the anchor's position.
    pub position: Position,
    /// The stream and revision named (the missing one for a removal), when
    /// the finding names one event; `None` for an anchor's finding, which
    /// only knows the block (see `detail`).
    pub stream: Option<String>,
    pub revision: Option<u64>,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(s) = &self.stream {
            write!(f, ": stream {s}")?;
        }
        if let Some(r) = self.revision {
            write!(f, " revision {r}")?;
        }
        write!(f, " at position {}: {}", self.position, self.detail)
    }
}

/// The outcome of [`crate::EventLog::verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub events_checked: u64,
    pub anchors_checked: u64,
    /// Events after the last anchor: their links are checked, but one
    /// deleted or forged at a stream's end would go unnoticed until sealed.
    pub events_unanchored: u64,
    /// Events stored before chains existed and not yet given one by `seal`.
    pub events_unchained: u64,
    /// Events a retention rule dropped: only their links are left, and
    /// they count in the anchors like the others.
    pub events_dropped: u64,
    /// How many findings; later ones may be consequences of the first.
    pub problems: u64,
    /// The earliest finding in log order.
    pub first_problem: Option<Problem>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_problem.is_none()
    }
}

/// One stored event, as the adapter read it.
pub(crate) struct StoredEvent {
    pub position: Position,
    /// `None` when the stored id is not a UUID.
    pub id: Option<Uuid>,
    pub stream: String,
    pub revision: i64,
    pub category: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub data: String,
    pub metadata: String,
    pub recorded_at: i64,
    pub chain: Option<String>,
}

impl StoredEvent {
    pub(crate) fn input(&self, revision: u64) -> Option<ChainInput<'_>> {
        Some(ChainInput {
            stream: &self.stream,
            revision,
            id: self.id?,
            event_type: &self.event_type,
            subject: self.subject.as_deref(),
            data: &self.data,
            metadata: &self.metadata,
            recorded_at: self.recorded_at,
        })
    }
}

/// Where the stream pass is in the current stream.
struct StreamState {
    stream: String,
    revision: u64,
    position: Position,
    /// This revision's stored link, if usable.
    link: Option<Link>,
    /// The previous revision's link (zeros before revision 0), if known.
    link_before: Option<Link>,
    /// How many forged revisions were found in this stream so far: later
    /// revisions were chained that many numbers lower.
    shift: u64,
}

/// Orders findings: by position, then an event's own finding before a gap
/// seen after it, before an anchor's finding at the same position.
type Key = (Position, u8);

pub(crate) struct Verifier {
    anchors: Vec<Anchor>,
    sealed_to: Option<Position>,
    report: VerifyReport,
    first_key: Option<Key>,
    stream: Option<StreamState>,
    // The anchor pass.
    next_anchor: usize,
    hasher: AnchorHasher,
    block_events: u64,
    prev_seq: u64,
    prev_events: u64,
    prev_position: Position,
}

impl Verifier {
    /// `anchors` as stored, in sequence order, read in the same snapshot as
    /// the events.
    pub(crate) fn new(anchors: Vec<Anchor>) -> Self {
        let sealed_to = anchors.last().map(|a| a.position);
        Self {
            anchors,
            sealed_to,
            report: VerifyReport::default(),
            first_key: None,
            stream: None,
            next_anchor: 0,
            hasher: AnchorHasher::new(&GENESIS),
            block_events: 0,
            prev_seq: 0,
            prev_events: 0,
            prev_position: Position::START,
        }
    }

    pub(crate) fn events_checked(&self) -> u64 {
        self.report.events_checked
    }

    fn found(&mut self, key: Key, problem: Problem) {
        self.report.problems += 1;
        if self.first_key.is_none_or(|k| key < k) {
            self.first_key = Some(key);
            self.report.first_problem = Some(problem);
        }
    }

    fn found_at(
        &mut self,
        kind: ProblemKind,
        e: &StoredEvent,
        revision: Option<u64>,
        detail: String,
    ) {
        self.found(
            (e.position, 0),
            Problem {
                kind,
                position: e.position,
                stream: Some(e.stream.clone()),
                revision,
                detail,
            },
        );
    }

    /// The stream pass: every event, ordered by stream, then revision.
    pub(crate) fn event(&mut self, e: &StoredEvent) {
        self.report.events_checked += 1;
        let prev = self.stream.take().filter(|s| s.stream == e.stream);
        let Ok(revision) = u64::try_from(e.revision) else {
            self.found_at(
                ProblemKind::Changed,
                e,
                None,
                format!("revision {} is negative", e.revision),
            );
            return;
        };
        let mut contiguous = revision == 0;
        match &prev {
            Some(p) if revision == p.revision => {
                let (first, second) = if p.position < e.position {
                    (p.position, e.position)
                } else {
                    (e.position, p.position)
                };
                self.found(
                    (second, 0),
                    Problem {
                        kind: ProblemKind::Inserted,
                        position: second,
                        stream: Some(e.stream.clone()),
                        revision: Some(revision),
                        detail: format!("this revision is also stored at position {first}"),
                    },
                );
                self.stream = prev;
                return;
            }
            Some(p) => {
                if revision > p.revision + 1 {
                    let missing = p.revision + 1;
                    self.found(
                        (p.position, 1),
                        Problem {
                            kind: ProblemKind::Removed,
                            position: e.position,
                            stream: Some(e.stream.clone()),
                            revision: Some(missing),
                            detail: gap(missing, revision, p.position),
                        },
                    );
                } else {
                    contiguous = true;
                }
            }
            None if revision > 0 => {
                self.found(
                    (e.position, 0),
                    Problem {
                        kind: ProblemKind::Removed,
                        position: e.position,
                        stream: Some(e.stream.clone()),
                        revision: Some(0),
                        detail: format!(
                            "{}; the stream now starts at revision {revision}",
                            if revision == 1 {
                                "revision 0 is missing".to_owned()
                            } else {
                                format!("revisions 0 to {} are missing", revision - 1)
                            }
                        ),
                    },
                );
            }
            None => {}
        }

        let pred_link = if revision == 0 {
            Some(GENESIS)
        } else if contiguous {
            prev.as_ref().and_then(|p| p.link)
        } else {
            None
        };
        let shift = prev.as_ref().map_or(0, |p| p.shift);
        let (link, pred_forged) = self.check_link(e, revision, shift, pred_link, prev.as_ref());
        if let Some(p) = &prev
            && e.position < p.position
            && !pred_forged
        {
            self.found_at(
                ProblemKind::Inserted,
                e,
                Some(revision),
                format!(
                    "stored before revision {} (position {}) in the log order",
                    p.revision, p.position
                ),
            );
        }
        if e.category != category_of(&e.stream) {
            self.found_at(
                ProblemKind::Changed,
                e,
                Some(revision),
                format!("category {:?} does not match the stream name", e.category),
            );
        }
        let stream = match prev {
            Some(p) => p.stream,
            None => e.stream.clone(),
        };
        self.stream = Some(StreamState {
            stream,
            revision,
            position: e.position,
            link,
            link_before: pred_link,
            shift: shift + u64::from(pred_forged),
        });
    }

    /// Checks `e`'s stored link against its contents (as revision
    /// `revision - shift`). Returns the stored link for its successor to
    /// continue from, and whether the predecessor turned out to be forged.
    fn check_link(
        &mut self,
        e: &StoredEvent,
        revision: u64,
        shift: u64,
        pred_link: Option<Link>,
        prev: Option<&StreamState>,
    ) -> (Option<Link>, bool) {
        let Some(text) = e.chain.as_deref() else {
            if self.sealed_to.is_some_and(|s| e.position <= s) {
                self.found_at(
                    ProblemKind::Changed,
                    e,
                    Some(revision),
                    "no chain link, though an anchor covers it".into(),
                );
            } else {
                self.report.events_unchained += 1;
            }
            return (None, false);
        };
        let Some(stored) = chain::from_hex(text) else {
            self.found_at(
                ProblemKind::Changed,
                e,
                Some(revision),
                "the stored chain link is not 64 hex digits".into(),
            );
            return (None, false);
        };
        let Some(input) = e.input(revision.saturating_sub(shift)) else {
            self.found_at(
                ProblemKind::Changed,
                e,
                Some(revision),
                "the stored event id is not a UUID".into(),
            );
            return (Some(stored), false);
        };
        let Some(pred_link) = pred_link else {
            return (Some(stored), false);
        };
        if chain::link(&pred_link, &input) == stored {
            return (Some(stored), false);
        }
        // A forged event slipped into the stream and the later ones were
        // renumbered: this one still continues the revision before it.
        if let Some(p) = prev
            && let Some(before) = p.link_before
            && input.revision > 0
            && chain::link(
                &before,
                &ChainInput {
                    revision: input.revision - 1,
                    ..input
                },
            ) == stored
        {
            self.found(
                (p.position, 0),
                Problem {
                    kind: ProblemKind::Inserted,
                    position: p.position,
                    stream: Some(e.stream.clone()),
                    revision: Some(p.revision),
                    detail: format!(
                        "revision {} was not appended here: revision {revision} is chained to the one before it",
                        p.revision
                    ),
                },
            );
            return (Some(stored), true);
        }
        self.found_at(
            ProblemKind::Changed,
            e,
            Some(revision),
            "the stored chain link does not match the event's contents and its predecessor's link"
                .into(),
        );
        (Some(stored), false)
    }

    /// The anchor pass: every event's position and stored link, in position
    /// order.
    /// The anchor pass, for an event a retention rule dropped: its kept
    /// link stands for it.
    pub(crate) fn dropped_link_in_order(&mut self, position: Position, chain: Option<&str>) {
        self.report.events_dropped += 1;
        self.link_in_order(position, chain);
    }

    pub(crate) fn link_in_order(&mut self, position: Position, chain: Option<&str>) {
        while self
            .anchors
            .get(self.next_anchor)
            .is_some_and(|a| position > a.position)
        {
            self.close_block();
        }
        if self.next_anchor < self.anchors.len() {
            // A missing or unreadable link was named by the stream pass;
            // here it only has to fail the anchor's hash.
            let link = chain.and_then(chain::from_hex).unwrap_or(GENESIS);
            self.hasher.push(&link);
            self.block_events += 1;
        } else {
            self.report.events_unanchored += 1;
        }
    }

    fn close_block(&mut self) {
        let Some(a) = self.anchors.get(self.next_anchor).cloned() else {
            return;
        };
        self.next_anchor += 1;
        self.report.anchors_checked += 1;
        let hasher = std::mem::replace(&mut self.hasher, AnchorHasher::new(&GENESIS));
        let computed = hasher.finish();
        let stored = chain::from_hex(&a.hash);
        let block = format!(
            "the block of anchor {} (positions after {} up to {})",
            a.seq, self.prev_position, a.position
        );
        let finding = if a.seq != self.prev_seq + 1 {
            Some((
                ProblemKind::Removed,
                format!(
                    "anchors {} to {} are missing before anchor {}",
                    self.prev_seq + 1,
                    a.seq.saturating_sub(1),
                    a.seq
                ),
            ))
        } else if a.events < self.prev_events || a.position < self.prev_position || stored.is_none()
        {
            Some((
                ProblemKind::Changed,
                format!("anchor {} is malformed", a.seq),
            ))
        } else {
            let want = a.events - self.prev_events;
            let hash_ok = stored == Some(computed);
            match self.block_events.cmp(&want) {
                _ if hash_ok && self.block_events != want => Some((
                    ProblemKind::Changed,
                    format!("anchor {}'s event count was altered", a.seq),
                )),
                std::cmp::Ordering::Less => Some((
                    ProblemKind::Removed,
                    format!(
                        "{block} holds {} events, {} fewer than sealed",
                        self.block_events,
                        want - self.block_events
                    ),
                )),
                std::cmp::Ordering::Greater => Some((
                    ProblemKind::Inserted,
                    format!(
                        "{block} holds {} events, {} more than sealed",
                        self.block_events,
                        self.block_events - want
                    ),
                )),
                std::cmp::Ordering::Equal if !hash_ok => Some((
                    ProblemKind::Changed,
                    format!(
                        "the chain links in {block} differ from those sealed (an event changed and re-chained, or moved)"
                    ),
                )),
                std::cmp::Ordering::Equal => None,
            }
        };
        if let Some((kind, detail)) = finding {
            self.found(
                (a.position, 2),
                Problem {
                    kind,
                    position: a.position,
                    stream: None,
                    revision: None,
                    detail,
                },
            );
        }
        // Each block is judged on its own: continue from the stored hash.
        self.hasher = AnchorHasher::new(&stored.unwrap_or(computed));
        self.block_events = 0;
        self.prev_seq = a.seq;
        self.prev_events = a.events;
        self.prev_position = a.position;
    }

    pub(crate) fn finish(mut self) -> VerifyReport {
        while self.next_anchor < self.anchors.len() {
            self.close_block();
        }
        self.report
    }
}

fn gap(missing: u64, now: u64, after: Position) -> String {
    if now == missing + 1 {
        format!("revision {missing} is missing (after position {after})")
    } else {
        format!(
            "revisions {missing} to {} are missing (after position {after})",
            now - 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(stream: &str, revision: u64, position: u64, prev: &Link) -> (StoredEvent, Link) {
        let mut e = StoredEvent {
            position: Position::new(position, position),
            id: Some(Uuid::from_u128(position as u128)),
            stream: stream.into(),
            revision: revision as i64,
            category: category_of(stream).into(),
            event_type: "t.v1".into(),
            subject: None,
            data: format!("{{\"n\":{position}}}"),
            metadata: "{}".into(),
            recorded_at: 1,
            chain: None,
        };
        let l = chain::link(prev, &e.input(revision).unwrap());
        e.chain = Some(chain::to_hex(&l));
        (e, l)
    }

    /// Streams `a` and `b` interleaved, `n` events each, at positions 1.. .
    fn log(n: u64) -> Vec<StoredEvent> {
        let (mut la, mut lb) = (GENESIS, GENESIS);
        let mut out = Vec::new();
        for i in 0..n {
            let (e, l) = stored("a-1", i, 2 * i + 1, &la);
            la = l;
            out.push(e);
            let (e, l) = stored("b-1", i, 2 * i + 2, &lb);
            lb = l;
            out.push(e);
        }
        out
    }

    fn seal(events: &[StoredEvent], every: usize) -> Vec<Anchor> {
        let mut by_pos: Vec<&StoredEvent> = events.iter().collect();
        by_pos.sort_by_key(|e| e.position);
        let mut prev = GENESIS;
        let mut anchors = Vec::new();
        for (k, block) in by_pos.chunks(every).enumerate() {
            let mut h = AnchorHasher::new(&prev);
            for e in block {
                h.push(&chain::from_hex(e.chain.as_deref().unwrap()).unwrap());
            }
            prev = h.finish();
            anchors.push(Anchor {
                seq: k as u64 + 1,
                position: block.last().unwrap().position,
                events: (k * every + block.len()) as u64,
                hash: chain::to_hex(&prev),
            });
        }
        anchors
    }

    fn verify(events: &[StoredEvent], anchors: Vec<Anchor>) -> VerifyReport {
        let mut v = Verifier::new(anchors);
        let mut by_stream: Vec<&StoredEvent> = events.iter().collect();
        by_stream.sort_by(|x, y| (&x.stream, x.revision).cmp(&(&y.stream, y.revision)));
        for e in by_stream {
            v.event(e);
        }
        let mut by_pos: Vec<&StoredEvent> = events.iter().collect();
        by_pos.sort_by_key(|e| e.position);
        for e in by_pos {
            v.link_in_order(e.position, e.chain.as_deref());
        }
        v.finish()
    }

    fn first(r: &VerifyReport) -> (ProblemKind, Option<&str>, Option<u64>) {
        let p = r.first_problem.as_ref().expect("a problem");
        (p.kind, p.stream.as_deref(), p.revision)
    }

    #[test]
    fn an_intact_log_passes() {
        let events = log(10);
        let anchors = seal(&events, 6);
        let r = verify(&events, anchors);
        assert!(r.is_intact(), "{r:?}");
        assert_eq!(
            (r.events_checked, r.anchors_checked, r.events_unanchored),
            (20, 4, 0)
        );
    }

    #[test]
    fn a_changed_event_is_named() {
        let mut events = log(10);
        let anchors = seal(&events, 6);
        events[7].data = "{\"n\":0}".into();
        let r = verify(&events, anchors);
        assert_eq!(first(&r), (ProblemKind::Changed, Some("b-1"), Some(3)));
    }

    #[test]
    fn a_gap_names_the_missing_revision() {
        let mut events = log(10);
        let anchors = seal(&events, 6);
        events.remove(8); // a-1 revision 4, position 9
        let r = verify(&events, anchors);
        assert_eq!(first(&r), (ProblemKind::Removed, Some("a-1"), Some(4)));
        events.remove(0); // a-1 revision 0
        let r = verify(&events, seal(&events, 6));
        assert_eq!(first(&r), (ProblemKind::Removed, Some("a-1"), Some(0)));
    }

    #[test]
    fn a_removed_last_event_needs_an_anchor() {
        let mut events = log(10);
        let anchors = seal(&events, 6);
        events.pop(); // b-1 revision 9
        assert!(verify(&events, vec![]).is_intact());
        let r = verify(&events, anchors);
        assert_eq!(first(&r), (ProblemKind::Removed, None, None));
        assert_eq!(r.problems, 1);
    }

    #[test]
    fn a_rechained_change_is_caught_by_the_next_link_or_the_anchor() {
        let mut events = log(10);
        let anchors = seal(&events, 6);
        // a-1 revision 2 (position 5) rewritten with a correct link.
        let before = chain::from_hex(events[2].chain.as_deref().unwrap()).unwrap();
        events[4].data = "{\"forged\":true}".into();
        events[4].chain = Some(chain::to_hex(&chain::link(
            &before,
            &events[4].input(2).unwrap(),
        )));
        // The next revision's link breaks (position 7), but the block of
        // the first anchor (positions 1 to 6), which holds the culprit,
        // comes first.
        let r = verify(&events, anchors);
        assert_eq!(first(&r), (ProblemKind::Changed, None, None));
        assert_eq!(
            r.first_problem.as_ref().unwrap().position,
            Position::new(6, 6)
        );
        let r = verify(&events, vec![]);
        assert_eq!(first(&r), (ProblemKind::Changed, Some("a-1"), Some(3)));
        let r = verify(&events, seal(&events, 6));
        assert_eq!(r.problems, 1);
    }

    #[test]
    fn a_forged_event_below_an_anchor_is_inserted() {
        let mut events = log(10);
        let anchors = seal(&events, 6);
        // Continues a-1 correctly, but sits at position 0.
        let head = chain::from_hex(events[18].chain.as_deref().unwrap()).unwrap();
        let (mut forged, _) = stored("a-1", 10, 0, &head);
        forged.position = Position::START;
        events.push(forged);
        let r = verify(&events, anchors);
        assert_eq!(first(&r), (ProblemKind::Inserted, Some("a-1"), Some(10)));
    }

    #[test]
    fn a_forged_event_renumbering_the_rest_is_inserted() {
        let mut events = log(4);
        // A forged a-1 revision 2 at a fresh position; the old revisions 2
        // and 3 renumbered to 3 and 4, their links untouched.
        let l1 = chain::from_hex(events[2].chain.as_deref().unwrap()).unwrap();
        for e in events
            .iter_mut()
            .filter(|e| e.stream == "a-1" && e.revision >= 2)
        {
            e.revision += 1;
        }
        let (forged, _) = stored("a-1", 2, 100, &l1);
        events.push(forged);
        let r = verify(&events, vec![]);
        assert_eq!(first(&r), (ProblemKind::Inserted, Some("a-1"), Some(2)));
        assert_eq!(r.problems, 1, "{r:?}");
    }

    #[test]
    fn unchained_events_are_counted_until_sealed_and_named_after() {
        let mut events = log(3);
        for e in &mut events {
            e.chain = None;
        }
        let r = verify(&events, vec![]);
        assert!(r.is_intact());
        assert_eq!(r.events_unchained, 6);
        let anchors = vec![Anchor {
            seq: 1,
            position: Position::new(6, 6),
            events: 6,
            hash: chain::to_hex(&GENESIS),
        }];
        let r = verify(&events, anchors);
        assert_eq!(first(&r), (ProblemKind::Changed, Some("a-1"), Some(0)));
    }

    #[test]
    fn a_missing_anchor_is_removed() {
        let events = log(10);
        let mut anchors = seal(&events, 6);
        anchors.remove(1);
        let r = verify(&events, anchors);
        assert_eq!(first(&r), (ProblemKind::Removed, None, None));
        assert!(r.first_problem.unwrap().detail.contains("anchors 2 to 2"));
    }
}
