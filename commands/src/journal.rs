//! Facts that belong to no aggregate (tokens issued, failed client
//! authentications): recorded with `ExpectedRevision::Any` into the stream
//! the caller names, without a decide step.

use std::sync::Arc;

use domain::{DomainEvent, Metadata};
use eventlog::{AppendResult, EventLog, ExpectedRevision};

pub async fn record<E: DomainEvent>(
    log: &Arc<dyn EventLog>,
    stream: &str,
    event: &E,
    metadata: &Metadata,
) -> Result<AppendResult, eventlog::Error> {
    log.append(
        stream,
        ExpectedRevision::Any,
        vec![eventlog::encode(event, metadata)],
    )
    .await
}
