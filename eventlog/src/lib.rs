//! The event log: the port every writer and reader of events goes through,
//! and its adapters (SQLite, the embedded default; PostgreSQL; KurrentDB
//! behind the `kurrentdb` feature).
//!
//! Semantics follow EventStoreDB: streams named `{category}-{id}` with
//! revisions from 0, optimistic concurrency through [`ExpectedRevision`],
//! atomic multi-event appends, idempotent re-appends of stored event ids, and
//! one global [`Position`] order that every reader agrees on: a reader that
//! has seen position P never later finds a committed event below P.
//!
//! Nothing outside this crate knows which database holds the log. This crate
//! never interprets an event's data beyond the typed codec helpers.
//!
//! The SQL adapters keep the log tamper-evident ([`chain`]): every stored
//! event carries a hash link to its stream's previous event, `seal` anchors
//! the global order, and `verify` names the first event changed, removed or
//! inserted behind the adapter's back.

#![forbid(unsafe_code)]
// Unit tests read the wall clock freely; server code takes it from a Clock.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod chain;
pub mod clock;
mod codec;
mod data;
mod error;
mod open;
mod port;
pub mod postgres;
mod reader;
pub mod redact;
pub mod sqlite;
mod subscription;
mod tail;
mod types;
mod verify;

#[cfg(feature = "kurrentdb")]
pub mod kurrent;

pub use chain::Anchor;
pub use codec::{decode, encode};
pub use data::{EventData, Stored, holds_key};
pub use error::Error;
pub use open::{LogOptions, open};
pub use port::{Direction, EventLog};
pub use reader::LogReader;
pub use subscription::Subscription;
pub use tail::SharedTail;
pub use types::{
    AppendResult, ExpectedRevision, Filter, NewEvent, Position, RecordedEvent, category_of,
    validate_stream_name,
};
pub use verify::{Problem, ProblemKind, VerifyReport};
