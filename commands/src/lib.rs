//! The write side: the load -> decide -> append loop every command goes
//! through, and the services command handlers need (the clock).
//!
//! Command handlers are the only writers of the event log and the only place
//! invariants are enforced. This crate never reads a read model and never
//! speaks HTTP.

#![forbid(unsafe_code)]
// Unit tests read the wall clock freely; server code takes it from a Clock.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod authz;
mod batch;
mod bus;
pub mod client;
pub mod client_auth;
pub mod credentials;
/// Secrets and sealing (the `crypto` crate), under the path the command side
/// has always used.
pub use ::crypto;
pub mod journal;
pub use jose::jwt;
pub mod grant;
pub mod group;
pub mod keys;
mod locks;
pub mod notification;
pub mod organization;
pub mod password;
pub mod registration;
pub mod rego;
pub mod role;
pub mod session;
pub mod sign_in;
pub mod tokens;
pub mod totp;
pub mod user;

pub use bus::{CommandBus, CommandError, Outcome};
pub use eventlog::clock::{Clock, ManualClock, SystemClock, monotonic};
