//! Throttling failed authentication, per account and source address: a few
//! failures are free, then every failure makes that source wait before its
//! next attempt, the wait doubling up to a cap. Only the failing source
//! waits, and only between attempts: nobody can lock an account out for
//! everyone else, and the right credential from a waiting source is checked
//! as soon as its wait is over (slowed down, never refused for good).
//!
//! Failures are counted, not recorded one by one: what is recorded is a
//! [`Report`] per source and window, and one whenever a wait begins (so
//! every node, and a restarted one, imposes it too).

use time::{Duration, OffsetDateTime};

/// How failures turn into waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures in a row that cost nothing.
    pub free_failures: u32,
    /// The wait after the first failure past the free ones; it doubles with
    /// each further failure.
    pub first_wait: Duration,
    pub max_wait: Duration,
    /// A source that has not failed for this long starts afresh.
    pub forget_after: Duration,
    /// Failures that began no wait are reported once per window.
    pub report_window: Duration,
}

impl ThrottlePolicy {
    /// Failures on one account from every address together: fifty an
    /// hour are not remarked on; past them every attempt on the account is
    /// slowed down by [`ACCOUNT_TARPIT`] (never refused: a stranger must
    /// not lock a person out), and the person and the admins are told.
    pub fn account_wide() -> Self {
        Self {
            free_failures: ACCOUNT_FREE_FAILURES,
            first_wait: ACCOUNT_TARPIT,
            max_wait: ACCOUNT_TARPIT,
            forget_after: Duration::hours(1),
            report_window: Duration::minutes(1),
        }
    }
}

impl ThrottlePolicy {
    /// Failures from one address against every account together (password
    /// spraying): thirty are free, then each waits longer, up to a minute.
    /// A success does not clear them (an attacker's own account would), only
    /// a quarter of an hour without a failure. Only the address is slowed:
    /// a stranger elsewhere cannot use it against anyone.
    pub fn per_address() -> Self {
        Self {
            free_failures: ADDRESS_FREE_FAILURES,
            first_wait: Duration::seconds(1),
            max_wait: Duration::minutes(1),
            forget_after: Duration::minutes(15),
            report_window: Duration::minutes(1),
        }
    }
}

impl ThrottlePolicy {
    /// Failed sign-in steps on one account from one address: after five,
    /// the address waits for that account (one second, doubling to five
    /// minutes), so the sixth attempt is refused until then.
    pub fn sign_in() -> Self {
        Self {
            free_failures: SIGN_IN_FAILURES_BEFORE_WAIT - 1,
            ..Self::default()
        }
    }

    /// Codes sent, per account and per source address: five are free, then
    /// each waits longer, up to a minute. The account's wait is short on
    /// purpose: anyone who knows an identifier can ask for codes to it, and
    /// must not keep its owner from getting one for long.
    pub fn code_sends() -> Self {
        Self {
            max_wait: Duration::minutes(1),
            ..Self::default()
        }
    }
}

/// Failed steps on an account from one address after which it waits.
pub const SIGN_IN_FAILURES_BEFORE_WAIT: u32 = 5;

/// Failures one address may make against any accounts before it waits.
pub const ADDRESS_FREE_FAILURES: u32 = 30;

/// Failures an account takes from every address in an hour before its
/// attempts are slowed down.
pub const ACCOUNT_FREE_FAILURES: u32 = 50;
/// How much each attempt on an account under attack is slowed down.
pub const ACCOUNT_TARPIT: Duration = Duration::seconds(1);

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            first_wait: Duration::seconds(1),
            max_wait: Duration::minutes(5),
            forget_after: Duration::minutes(15),
            report_window: Duration::minutes(1),
        }
    }
}

/// What one source has done against one account lately.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Failures in a row (since the last success, or since forgotten).
    pub failures: u32,
    pub last_failure: Option<OffsetDateTime>,
    /// No attempt is checked before this.
    pub blocked_until: Option<OffsetDateTime>,
    /// Failures not yet reported, and when the first of them happened.
    pub unreported: u32,
    pub window_start: Option<OffsetDateTime>,
}

/// Failures to record: `count` of them between `window_start` and
/// `window_end`, `failures` in a row so far, and the wait they began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub count: u32,
    pub failures: u32,
    pub window_start: OffsetDateTime,
    pub window_end: OffsetDateTime,
    pub blocked_until: Option<OffsetDateTime>,
}

impl Attempts {
    /// How long the source must still wait before an attempt is checked.
    pub fn wait(&self, now: OffsetDateTime) -> Option<Duration> {
        self.blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    fn forgotten(&self, policy: &ThrottlePolicy, now: OffsetDateTime) -> bool {
        self.last_failure
            .is_some_and(|at| now - at >= policy.forget_after)
    }

    /// Counts a failure. Answers a report to record now when the failure
    /// opens a window (so that the trail shows an attempt at once) or begins
    /// a wait (which every node must learn at once); the failures in between
    /// wait for [`Attempts::due`].
    pub fn fail(&mut self, policy: &ThrottlePolicy, now: OffsetDateTime) -> Option<Report> {
        if self.forgotten(policy, now) {
            self.failures = 0;
            self.blocked_until = None;
        }
        self.failures = self.failures.saturating_add(1);
        self.last_failure = Some(now);
        let carried = self.unreported;
        self.unreported = self.unreported.saturating_add(1);
        let past_free = self.failures.saturating_sub(policy.free_failures);
        if past_free > 0 {
            let doublings = (past_free - 1).min(30);
            let wait = (policy.first_wait * 2i32.pow(doublings)).min(policy.max_wait);
            self.blocked_until = Some(now + wait);
        }
        let window_open = self
            .window_start
            .is_some_and(|start| now - start < policy.report_window);
        if window_open && past_free == 0 {
            return None;
        }
        // What an earlier window left unreported goes with this report.
        let start = match self.window_start {
            Some(start) if window_open || carried > 0 => start,
            _ => now,
        };
        let report = self.take(start, now);
        if !window_open {
            self.window_start = Some(now);
        }
        Some(report)
    }

    fn take(&mut self, window_start: OffsetDateTime, now: OffsetDateTime) -> Report {
        let report = Report {
            count: self.unreported,
            failures: self.failures,
            window_start,
            window_end: now,
            blocked_until: self.blocked_until,
        };
        self.unreported = 0;
        report
    }

    /// The report of failures whose window has closed (or of every
    /// unreported failure, with `all`, when the process stops).
    pub fn due(
        &mut self,
        policy: &ThrottlePolicy,
        now: OffsetDateTime,
        all: bool,
    ) -> Option<Report> {
        let start = self.window_start?;
        if !all && now - start < policy.report_window {
            return None;
        }
        self.window_start = None;
        (self.unreported > 0).then(|| self.take(start, now))
    }

    /// A success: the source starts afresh (what is unreported stays).
    pub fn succeed(&mut self) {
        self.failures = 0;
        self.blocked_until = None;
        self.last_failure = None;
    }

    /// Failures in a row that still count at `now`.
    pub fn current_failures(&self, policy: &ThrottlePolicy, now: OffsetDateTime) -> u32 {
        if self.forgotten(policy, now) {
            0
        } else {
            self.failures
        }
    }

    /// A failure recorded elsewhere at `at`, with the count it made there.
    pub fn observe_at(
        &mut self,
        failures: u32,
        blocked_until: Option<OffsetDateTime>,
        at: OffsetDateTime,
    ) {
        self.failures = self.failures.max(failures);
        self.blocked_until = self.blocked_until.max(blocked_until);
        self.last_failure = self.last_failure.max(Some(at));
    }

    /// A report recorded elsewhere (another node, or before a restart).
    pub fn observe(&mut self, failures: u32, blocked_until: Option<OffsetDateTime>) {
        self.failures = self.failures.max(failures);
        self.blocked_until = self.blocked_until.max(blocked_until);
        if self.last_failure.is_none() {
            self.last_failure = blocked_until;
        }
    }

    /// Whether the entry can be dropped: nothing unreported, no wait, and
    /// nothing that would still count.
    pub fn is_idle(&self, policy: &ThrottlePolicy, now: OffsetDateTime) -> bool {
        self.unreported == 0
            && self
                .window_start
                .is_none_or(|start| now - start >= policy.report_window)
            && self.wait(now).is_none()
            && self
                .last_failure
                .is_none_or(|_| self.forgotten(policy, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: OffsetDateTime = time::macros::datetime!(2026-12-01 12:00 UTC);

    fn secs(n: i64) -> Duration {
        Duration::seconds(n)
    }

    #[test]
    fn free_failures_then_doubling_waits_up_to_the_cap() {
        let policy = ThrottlePolicy::default();
        let mut a = Attempts::default();
        let mut now = T0;
        for _ in 0..5 {
            assert_eq!(a.wait(now), None);
            a.fail(&policy, now);
        }
        let mut expected = 1;
        for _ in 0..12 {
            let report = a.fail(&policy, now).unwrap();
            assert_eq!(a.wait(now), Some(secs(expected.min(300))));
            assert_eq!(report.blocked_until, Some(now + secs(expected.min(300))));
            now += secs(expected.min(300));
            assert_eq!(a.wait(now), None, "the wait ends");
            expected *= 2;
        }
        assert_eq!(a.failures, 17);
    }

    #[test]
    fn a_stranger_keeps_codes_from_an_account_a_minute_at_most_and_spraying_waits() {
        // Codes: however many are asked for, the account waits a minute at most.
        let codes = ThrottlePolicy::code_sends();
        let mut a = Attempts::default();
        for _ in 0..40 {
            a.fail(&codes, T0);
        }
        assert_eq!(a.wait(T0), Some(Duration::minutes(1)));
        // Spraying: thirty free, then waits up to a minute.
        let address = ThrottlePolicy::per_address();
        let mut a = Attempts::default();
        for _ in 0..ADDRESS_FREE_FAILURES {
            a.fail(&address, T0);
        }
        assert_eq!(a.wait(T0), None);
        a.fail(&address, T0);
        assert_eq!(a.wait(T0), Some(secs(1)));
        for _ in 0..20 {
            a.fail(&address, T0);
        }
        assert_eq!(a.wait(T0), Some(Duration::minutes(1)));
    }

    #[test]
    fn failures_are_reported_as_counts_per_window_and_when_a_wait_begins() {
        let policy = ThrottlePolicy::default();
        let mut a = Attempts::default();
        let first = a.fail(&policy, T0).unwrap();
        assert_eq!(
            (first.count, first.failures),
            (1, 1),
            "a window opens at once"
        );
        assert_eq!(a.fail(&policy, T0 + secs(1)), None);
        assert_eq!(a.fail(&policy, T0 + secs(2)), None);
        assert_eq!(
            a.due(&policy, T0 + secs(30), false),
            None,
            "the window is open"
        );
        let report = a.due(&policy, T0 + secs(60), false).unwrap();
        assert_eq!((report.count, report.failures), (2, 3));
        assert_eq!(
            (report.window_start, report.window_end),
            (T0, T0 + secs(60))
        );
        assert_eq!(a.due(&policy, T0 + secs(120), true), None, "nothing left");
        let opened = a.fail(&policy, T0 + secs(61)).unwrap();
        assert_eq!(opened.count, 1);
        assert_eq!(a.fail(&policy, T0 + secs(62)), None);
        let begun = a.fail(&policy, T0 + secs(63)).unwrap();
        assert_eq!((begun.count, begun.failures), (2, 6));
        assert_eq!(begun.blocked_until, Some(T0 + secs(64)));
        let again = a.fail(&policy, T0 + secs(70)).unwrap();
        assert_eq!((again.count, again.failures), (1, 7));
        a.succeed();
        assert_eq!(a.wait(T0 + secs(70)), None);
        assert_eq!(
            a.due(&policy, T0 + secs(200), true),
            None,
            "all was reported"
        );
        // Sixty failures in a minute, none past the free ones: two events.
        let mut quiet = Attempts::default();
        let policy = ThrottlePolicy {
            free_failures: 1000,
            ..policy
        };
        let mut reports = 0;
        for i in 0..60 {
            reports += usize::from(quiet.fail(&policy, T0 + secs(i)).is_some());
        }
        let last = quiet.due(&policy, T0 + secs(60), false).unwrap();
        assert_eq!((reports, last.count), (1, 59));
    }

    #[test]
    fn a_quiet_source_is_forgotten_and_reports_from_elsewhere_are_honoured() {
        let policy = ThrottlePolicy::default();
        let mut a = Attempts::default();
        for i in 0..6 {
            a.fail(&policy, T0 + secs(i));
        }
        assert!(a.wait(T0 + secs(5)).is_some());
        let later = T0 + Duration::minutes(20);
        let fresh = a.fail(&policy, later).unwrap();
        assert_eq!(
            (fresh.count, fresh.failures),
            (1, 1),
            "forgotten: free again"
        );
        assert_eq!((fresh.window_start, fresh.blocked_until), (later, None));

        let mut b = Attempts::default();
        b.observe(9, Some(T0 + secs(30)));
        assert_eq!(b.wait(T0), Some(secs(30)));
        assert!(!b.is_idle(&policy, T0));
        let next = b.fail(&policy, T0 + secs(30)).unwrap();
        assert_eq!(next.failures, 10, "the count goes on from the report");
        assert!(b.is_idle(&policy, T0 + Duration::hours(1)));
    }
}
