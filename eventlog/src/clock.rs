//! The one place the server reads the time. Everything else is handed a
//! [`Clock`] for the wall time it records and decides with (tests move a
//! [`ManualClock`] instead of sleeping), or reads [`monotonic`] for how long
//! something took and for deadlines. A clippy rule refuses
//! `OffsetDateTime::now_utc`, `SystemTime::now` and `Instant::now`
//! anywhere else.

#![allow(clippy::disallowed_methods)]

use std::sync::Mutex;

use time::OffsetDateTime;

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock tests move by hand instead of sleeping.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(at))
    }
    pub fn advance(&self, by: time::Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// The monotonic clock: for elapsed times, rates and deadlines, never for
/// a time that is recorded or decided with.
pub fn monotonic() -> std::time::Instant {
    std::time::Instant::now()
}
