//! The read side: the projection runner (a checkpointed catch-up
//! subscription per projection) and the SQL read models with their queries.
//!
//! A projection's checkpoint is committed in the same transaction as its
//! read-model rows, so a crash never applies an event twice or skips one.
//! A rebuild fills a next generation of a projection's tables beside the
//! live one and switches them in one transaction (`generation`, `rebuild`).
//! This crate never calls the write side (`commands`) and never writes to
//! the event log.

#![forbid(unsafe_code)]
// Unit tests read the wall clock freely; server code takes it from a Clock.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod audit;
pub mod clients;
mod db;
mod fields;
mod generation;
pub mod notifications;
pub mod organizations;
pub mod rebuild;
pub mod registration;
pub mod roles;
mod runner;
pub mod sessions;
pub mod sign_ins;
pub mod throttle;
pub mod tokens;
mod user_queries;
pub mod users;
pub mod views;

pub use db::{Dialect, ReadDb};
pub use generation::Tables;
pub use rebuild::{Progress, REBUILD_BATCH, RebuildSummary, Step, rebuild};
pub use runner::{
    Projection, ProjectionError, ProjectionStatus, REBUILD_WHEN_BEHIND, Runner, RunnerHandle,
};

/// A number a runner moves whenever a read model that decides what someone
/// holds (`Projection::changes_access`: users and groups, roles) may have
/// changed: after it commits a batch of theirs, when it finds that another
/// process applied one, when a rebuilt one is switched in. What is cached
/// from them, read after taking the number, is good while it stays the same.
#[derive(Debug, Default)]
pub struct AccessGeneration(std::sync::atomic::AtomicU64);

impl AccessGeneration {
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn changed(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The projections this platform runs, in the order they are started.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(organizations::OrganizationsProjection),
        std::sync::Arc::new(clients::ClientsProjection),
        std::sync::Arc::new(registration::RegistrationProjection),
        std::sync::Arc::new(audit::AuditProjection),
        std::sync::Arc::new(users::UsersProjection),
        std::sync::Arc::new(sessions::SessionsProjection),
        std::sync::Arc::new(notifications::NotificationsProjection),
        std::sync::Arc::new(roles::RolesProjection),
    ]
}
