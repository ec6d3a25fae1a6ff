//! The facts of client authentication that the command side records: a
//! client assertion spent (each usable once, across every node), and
//! failures counted by the throttle (`domain::throttle`).

use domain::Metadata;
use domain::throttle::Report;
use domain::token::{ClientAssertionUsed, ClientAuthFailed, TokenEvent, auth_failure_stream};
use eventlog::ExpectedRevision;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::bus::CommandBus;
use crate::journal;

/// Why a client assertion was not accepted for use.
#[derive(Debug, thiserror::Error)]
pub enum AssertionRefused {
    #[error("the client assertion was already used")]
    Replayed,
    #[error(transparent)]
    Log(#[from] eventlog::Error),
}

/// The stream that records one assertion (`clientassertion-…`): named by a
/// digest of the client and the assertion's `jti`, so it can be created once.
pub fn assertion_stream(client_id: &str, jti: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{client_id}\n{jti}").as_bytes()));
    format!("clientassertion-{}", &digest[..40])
}

/// Spends an assertion: appended with `NoStream`, so a second use of the
/// same assertion, on any node, finds the stream taken.
pub async fn spend_assertion(
    bus: &CommandBus,
    client_id: Uuid,
    presented_id: &str,
    jti: &str,
    expires_at: OffsetDateTime,
    metadata: &Metadata,
) -> Result<(), AssertionRefused> {
    let event = TokenEvent::AssertionUsed(ClientAssertionUsed {
        client_id,
        expires_at,
    });
    match bus
        .log()
        .append(
            &assertion_stream(presented_id, jti),
            ExpectedRevision::NoStream,
            vec![eventlog::encode(&event, metadata)],
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(eventlog::Error::WrongExpectedRevision { .. }) => Err(AssertionRefused::Replayed),
        Err(e) => Err(e.into()),
    }
}

/// Records counted failures of one source (its address is in `metadata`)
/// against one client id, as one event.
pub async fn record_failures(
    bus: &CommandBus,
    client_id: &str,
    auth_method: &str,
    reason: &str,
    report: &Report,
    metadata: &Metadata,
) -> Result<(), eventlog::Error> {
    let event = TokenEvent::ClientAuthFailed(ClientAuthFailed {
        client_id: client_id.to_owned(),
        auth_method: auth_method.to_owned(),
        reason: reason.to_owned(),
        count: report.count,
        failures: Some(report.failures),
        window_start: Some(report.window_start),
        window_end: Some(report.window_end),
        blocked_until: report.blocked_until,
    });
    let mut meta = metadata.clone();
    meta.occurred_at = report.window_end;
    journal::record(
        bus.log(),
        &auth_failure_stream(report.window_end),
        &event,
        &meta,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assertion_names_one_stream_per_client_and_jti() {
        let a = assertion_stream("client-1", "jti-1");
        assert_eq!(a, assertion_stream("client-1", "jti-1"));
        assert_ne!(a, assertion_stream("client-2", "jti-1"));
        assert_ne!(a, assertion_stream("client-1", "jti-2"));
        assert_eq!(a.len(), "clientassertion-".len() + 40);
        assert_eq!(eventlog::category_of(&a), "clientassertion");
    }
}
