//! Sign-ins left half-way: once their time is up, each is recorded as
//! expired (`signin.expired.v1`), so the audit trail ends every attempt
//! even when nobody comes back to it. Every node sweeps; the sign-in's
//! stream decides, so one that completed or was recorded meanwhile gets
//! nothing more.

use domain::Metadata;
use uuid::Uuid;

use crate::state::AppState;

/// The most sign-ins one sweep records.
pub const SWEEP: i64 = 500;

/// Records as expired the open sign-ins whose time was up (at most
/// [`SWEEP`]; the next sweep takes the rest once the read model has seen
/// these end). Answers how many it looked at.
pub async fn expire_abandoned(state: &AppState) -> Result<usize, projections::ProjectionError> {
    let now = state.clock.now();
    let due = projections::sign_ins::due(&state.read_db, now, SWEEP).await?;
    for (id, organization) in &due {
        let (Ok(id), Ok(organization)) = (Uuid::parse_str(id), Uuid::parse_str(organization))
        else {
            continue;
        };
        let meta = Metadata {
            organization: Some(organization),
            ..Metadata::system(Uuid::now_v7(), now)
        };
        commands::sign_in::expire(&state.bus, id, &meta).await;
    }
    Ok(due.len())
}
