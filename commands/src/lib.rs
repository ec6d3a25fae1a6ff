//! The write side: the load -> decide -> append loop every command goes
//! through, and the services command handlers need (the clock).
//!
//! Command handlers are the only writers of the event log and the only place
//! invariants are enforced. This crate never reads a read model and never
//! speaks HTTP.

#![forbid(unsafe_code)]

mod batch;
mod bus;
pub mod client;
mod clock;
pub mod crypto;
pub mod journal;
pub mod jwt;
pub mod keys;
mod locks;
pub mod organization;
pub mod registration;
pub mod throttle;

pub use bus::{CommandBus, CommandError, Outcome};
pub use clock::{Clock, ManualClock, SystemClock};
