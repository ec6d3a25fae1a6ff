//! Retention: what is dropped from the log by age. Only whole streams shaped
//! for it (one per day) are dropped, and each drop is itself recorded.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

/// The stream where drops are recorded.
pub const RETENTION_STREAM: &str = "retention";
pub const STREAM_DROPPED_V1: &str = "retention.stream_dropped.v1";

/// A stream was dropped for its age: its events are gone, their chain links
/// kept for the tamper evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDropped {
    pub stream: String,
    pub events: u64,
    /// The rule that dropped it: streams of days more than this many days ago.
    pub retention_days: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

crate::single_event!(StreamDropped, STREAM_DROPPED_V1);

/// The days whose streams a rule keeping `days` days drops at `now`, from
/// `from` on: every day before the first one kept (today counts as one).
/// Empty when `days` is 0 (keep everything).
pub fn days_to_drop(from: Date, now: OffsetDateTime, days: u32) -> Vec<Date> {
    if days == 0 {
        return Vec::new();
    }
    let first_kept = now.date() - time::Duration::days(i64::from(days) - 1);
    let mut out = Vec::new();
    let mut day = from;
    while day < first_kept {
        out.push(day);
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn days_before_the_kept_ones_are_dropped() {
        let now = datetime!(2026-12-07 10:00 UTC);
        assert_eq!(
            days_to_drop(date!(2026 - 12 - 01), now, 5),
            vec![date!(2026 - 12 - 01), date!(2026 - 12 - 02)],
            "kept: the 3rd to the 7th"
        );
        assert_eq!(days_to_drop(date!(2026 - 12 - 03), now, 5), vec![]);
        assert_eq!(days_to_drop(date!(2026 - 12 - 07), now, 1), vec![]);
        assert_eq!(
            days_to_drop(date!(2026 - 12 - 06), now, 1),
            vec![date!(2026 - 12 - 06)]
        );
        assert_eq!(days_to_drop(date!(2020 - 01 - 01), now, 0), vec![]);
    }
}
