//! The HTTP face of the platform and the `idp` binary: configuration, the
//! server (health, readiness, metrics; OAuth and admin endpoints as they
//! arrive), and the operator subcommands.
//!
//! Handlers are thin: they authenticate, turn a request into a command or a
//! query, and map the result to the wire. Business rules live in `domain`,
//! SQL in `eventlog` and `projections`.

#![forbid(unsafe_code)]

pub mod bench;
pub mod config;
pub mod master_key;
pub mod server;
pub mod telemetry;

pub use config::Config;
pub use server::{Server, StartError};
