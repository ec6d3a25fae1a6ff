//! The pure model of the identity platform: aggregates in the decider shape
//! (`decide` / `evolve`), their commands and events, value objects, and the
//! metadata every event carries.
//!
//! This crate must never do I/O, read the clock, draw random numbers or know
//! which database holds anything: time, ids and secrets are inputs, so every
//! rule here is testable with plain values and replay is deterministic.

#![forbid(unsafe_code)]
// Unit tests read the wall clock freely; server code takes it from a Clock.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod auth_token;
pub mod authz_policy;
pub mod client;
pub mod consent;
pub mod credentials;
pub mod decider;
pub mod grant;
pub mod group;
pub mod jwk;
pub mod metadata;
pub mod notification;
pub mod organization;
pub mod password;
pub mod pii;
pub mod privacy;
pub mod refresh_chain;
pub mod registration;
pub mod reservation;
pub mod retention;
pub mod role;
pub mod role_tree;
pub mod session;
pub mod sign_in;
pub mod sign_in_policy;
pub mod signing_key;
pub mod throttle;
pub mod token;
pub mod user;

mod group_tree;
mod user_command;
mod user_contacts;
mod user_event;
mod user_profile;

pub use decider::{Aggregate, DecodeError, DomainEvent};
pub use metadata::{Actor, ActorKind, Metadata};
pub use pii::Pii;
