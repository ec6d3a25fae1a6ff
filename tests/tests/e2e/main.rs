//! End-to-end tests: the real server on a free port with a fresh database,
//! spoken to over HTTP. One test binary; one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Tests read the wall clock freely; the server takes it from a Clock.
#![allow(clippy::disallowed_methods)]

mod admin;
mod audit;
mod authz;
mod browser;
mod hardening;
mod harness;
mod health;
mod messages;
mod oauth;
mod oidc;
mod passkeys;
mod privacy;
mod registration;
mod roles;
mod scim;
mod self_service;
mod sign_in;
mod sign_in_codes;
mod user_privacy;
mod users;
