//! End-to-end tests: the real server on a free port with a fresh database,
//! spoken to over HTTP. One test binary; one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod audit;
mod hardening;
mod harness;
mod health;
mod oauth;
mod privacy;
mod registration;
