//! The HTTP face of the platform and the `idp` binary: configuration, the
//! server (health, readiness, metrics; OAuth and admin endpoints as they
//! arrive), and the operator subcommands.
//!
//! Handlers are thin: they authenticate, turn a request into a command or a
//! query, and map the result to the wire. Business rules live in `domain`,
//! SQL in `eventlog` and `projections`.

#![forbid(unsafe_code)]
// Unit tests read the wall clock freely; server code takes it from a Clock.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod access;
pub mod admin;
pub mod authentication;
pub mod authorization;
pub mod authz;
pub mod bootstrap;
pub mod config;
pub mod context;
pub mod errors;
pub mod extract;
pub mod master_key;
pub mod notify;
pub mod oauth;
pub mod oidc;
pub mod openapi;
pub mod passkeys;
pub mod problem;
pub mod registration;
pub mod retention;
pub mod scim;
pub mod self_service;
pub mod serve;
pub mod server;
pub mod state;
pub mod telemetry;

pub use config::Config;
pub use server::{Server, StartError};
