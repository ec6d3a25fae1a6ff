//! The throttle of failed authentications, shared by every request of a
//! node: [`domain::throttle::Attempts`] per account and source address,
//! kept in memory and fed with what other nodes recorded. What to record,
//! and where, is the caller's: this holds the counts and the waits.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

use domain::throttle::{Attempts, Report, ThrottlePolicy};
use time::{Duration, OffsetDateTime};

/// Entries kept at most; past that, idle ones are dropped first.
const MAX_ENTRIES: usize = 100_000;

/// Failed attempts by key (an account and a source), each with the note
/// `N` of its last failure (what a report records besides the counts).
pub struct Throttle<K, N> {
    policy: ThrottlePolicy,
    /// Read on every attempt, written only when one fails (or succeeds
    /// after failing): the read path takes no exclusive lock.
    entries: RwLock<HashMap<K, (Attempts, Option<N>)>>,
}

impl<K: Eq + Hash + Clone, N: Clone> Throttle<K, N> {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// How long `key` must still wait before an attempt of its is checked.
    pub fn wait(&self, key: &K, now: OffsetDateTime) -> Option<Duration> {
        let map = self.entries.read().ok()?;
        map.get(key).and_then(|(a, _)| a.wait(now))
    }

    /// Makes room for `key` when the table is full.
    fn make_room(&self, map: &mut HashMap<K, (Attempts, Option<N>)>, key: &K, now: OffsetDateTime) {
        if map.len() >= MAX_ENTRIES && !map.contains_key(key) {
            map.retain(|_, (a, _)| !a.is_idle(&self.policy, now));
            if map.len() >= MAX_ENTRIES {
                // Still full of live entries: forget those not waiting (their
                // unreported counts are lost, never a wait).
                map.retain(|_, (a, _)| a.wait(now).is_some());
            }
        }
    }

    /// Counts a failure that is recorded on its own (not in windowed
    /// reports): answers the failures in a row and the end of the wait it
    /// began, as the record of it says.
    pub fn count(&self, key: K, now: OffsetDateTime) -> (u32, Option<OffsetDateTime>) {
        let Ok(mut map) = self.entries.write() else {
            return (0, None);
        };
        self.make_room(&mut map, &key, now);
        let (attempts, _) = map.entry(key).or_default();
        attempts.fail(&self.policy, now);
        attempts.unreported = 0;
        attempts.window_start = None;
        (attempts.failures, attempts.blocked_until)
    }

    /// Failures in a row `key` has that still count at `now`.
    pub fn failures(&self, key: &K, now: OffsetDateTime) -> u32 {
        self.entries
            .read()
            .ok()
            .and_then(|map| {
                map.get(key)
                    .map(|(a, _)| a.current_failures(&self.policy, now))
            })
            .unwrap_or(0)
    }

    /// A failure another node recorded at `at`, with its count there.
    pub fn observe_at(
        &self,
        key: K,
        failures: u32,
        blocked_until: Option<OffsetDateTime>,
        at: OffsetDateTime,
    ) {
        if let Ok(mut map) = self.entries.write() {
            self.make_room(&mut map, &key, at);
            map.entry(key)
                .or_default()
                .0
                .observe_at(failures, blocked_until, at);
        }
    }

    /// Forgets every entry whose key `matches` (an unlock).
    pub fn forget(&self, matches: impl Fn(&K) -> bool) {
        if let Ok(mut map) = self.entries.write() {
            map.retain(|k, _| !matches(k));
        }
    }

    /// Counts a failure; answers the report to record at once when the
    /// failure begins a wait.
    pub fn failed(&self, key: K, note: N, now: OffsetDateTime) -> Option<(Report, N)> {
        let mut map = self.entries.write().ok()?;
        self.make_room(&mut map, &key, now);
        let (attempts, last) = map.entry(key).or_default();
        let report = attempts.fail(&self.policy, now);
        *last = Some(note.clone());
        report.map(|r| (r, note))
    }

    pub fn succeeded(&self, key: &K) {
        // Most successes follow no failure: nothing to write.
        let known = self.entries.read().is_ok_and(|map| {
            map.get(key)
                .is_some_and(|(a, _)| a.failures > 0 || a.blocked_until.is_some())
        });
        if known
            && let Ok(mut map) = self.entries.write()
            && let Some((a, _)) = map.get_mut(key)
        {
            a.succeed();
        }
    }

    /// A report recorded by another node (or before a restart).
    pub fn observe(&self, key: K, failures: u32, blocked_until: Option<OffsetDateTime>) {
        if let Ok(mut map) = self.entries.write() {
            map.entry(key)
                .or_default()
                .0
                .observe(failures, blocked_until);
        }
    }

    /// The reports whose window has closed (every unreported one with
    /// `all`), and drops idle entries.
    pub fn due(&self, now: OffsetDateTime, all: bool) -> Vec<(K, Report, N)> {
        let Ok(mut map) = self.entries.write() else {
            return Vec::new();
        };
        let mut reports = Vec::new();
        for (key, (attempts, note)) in map.iter_mut() {
            if let Some(report) = attempts.due(&self.policy, now, all)
                && let Some(note) = note.clone()
            {
                reports.push((key.clone(), report, note));
            }
        }
        map.retain(|_, (a, _)| !a.is_idle(&self.policy, now));
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: OffsetDateTime = time::macros::datetime!(2026-12-01 12:00 UTC);

    #[test]
    fn sources_wait_alone() {
        let t: Throttle<(&str, &str), &str> = Throttle::new(ThrottlePolicy::default());
        let attacker = ("client-1", "203.0.113.9");
        let owner = ("client-1", "198.51.100.7");
        let mut begun = None;
        for _ in 0..6 {
            begun = t.failed(attacker, "wrong secret", T0);
        }
        let (report, note) = begun.unwrap();
        // The first failure was reported when it opened the window.
        assert_eq!(
            (report.count, report.failures, note),
            (5, 6, "wrong secret")
        );
        assert!(t.wait(&attacker, T0).is_some());
        assert_eq!(t.wait(&owner, T0), None, "another source is not slowed");
        assert!(t.due(T0 + Duration::hours(1), true).is_empty());
    }

    #[test]
    fn failures_counted_one_by_one_begin_waits_and_an_unlock_forgets_them() {
        let t: Throttle<(&str, &str), ()> = Throttle::new(ThrottlePolicy::default());
        let key = ("user:1", "203.0.113.9");
        for n in 1..=5 {
            assert_eq!(t.count(key, T0), (n, None), "five are free");
        }
        let (failures, until) = t.count(key, T0);
        assert_eq!((failures, until), (6, Some(T0 + Duration::seconds(1))));
        assert!(t.wait(&key, T0).is_some());
        assert!(
            t.due(T0 + Duration::minutes(1), true).is_empty(),
            "nothing to report"
        );
        t.forget(|k| k.0 == "user:1");
        assert_eq!(t.wait(&key, T0), None);
    }

    #[test]
    fn counts_are_reported_per_window_and_idle_entries_go() {
        let t: Throttle<&str, u8> = Throttle::new(ThrottlePolicy::default());
        assert!(t.failed("a", 1, T0).is_some(), "the first opens a window");
        assert!(t.failed("a", 2, T0).is_none());
        assert!(t.failed("a", 3, T0).is_none());
        assert!(t.failed("b", 4, T0).is_some());
        assert!(t.due(T0 + Duration::seconds(10), false).is_empty());
        let due = t.due(T0 + Duration::minutes(1), false);
        assert_eq!(due.len(), 1, "b has nothing left to report");
        assert_eq!((due[0].0, due[0].1.count, due[0].2), ("a", 2, 3));
        t.observe("c", 8, Some(T0 + Duration::seconds(30)));
        assert_eq!(t.wait(&"c", T0), Some(Duration::seconds(30)));
        assert!(t.due(T0 + Duration::hours(1), true).is_empty());
        assert_eq!(t.wait(&"c", T0), None, "forgotten once idle");
    }
}
