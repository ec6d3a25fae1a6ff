//! What every handler can reach: the state the router hands each request.
//! Its own file, so that handlers need not import the server's wiring.

use std::sync::Arc;

use commands::{Clock, CommandBus};
use eventlog::EventLog;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::{ReadDb, RunnerHandle};

use crate::config::Config;
use crate::master_key::MasterKey;
use crate::tokens::TokenService;
use privacy::SubjectKeys;

/// The most a request body may hold; larger bodies are answered 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// The one source of "now" for the server.
    pub clock: Arc<dyn Clock>,
    pub log: Arc<dyn EventLog>,
    pub read_db: ReadDb,
    pub bus: Arc<CommandBus>,
    pub projections: Arc<RunnerHandle>,
    pub master_key: MasterKey,
    pub metrics: PrometheusHandle,
    pub tokens: Arc<TokenService>,
    pub subject_keys: Arc<SubjectKeys>,
}
