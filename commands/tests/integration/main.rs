//! The command side against a real event log: one test binary, a module
//! per area (each extra binary costs link time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Tests read the wall clock freely; the server takes it from a Clock.
#![allow(clippy::disallowed_methods)]

mod bus;
mod jwt;
mod keys;
