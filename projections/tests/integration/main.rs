//! The projections against real databases: one test binary, a module per
//! area (each extra binary costs link time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod runner;
