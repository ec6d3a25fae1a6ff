//! Command handlers of an organization's Rego policy (see
//! `domain::authz_policy`): a version is compiled before its upload is
//! decided, so a policy that does not compile is never recorded; and the
//! records of decisions, appended in groups.

use domain::Metadata;
use domain::authz_policy::{AuthzPolicy, AuthzPolicyCommand, AuthzPolicyError, Decided};
use domain::organization::Organization;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};
use crate::rego::{self, CompileError};

/// Why a policy command did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFailure {
    #[error(transparent)]
    Policy(AuthzPolicyError),
    #[error("the policy does not compile: {0}")]
    Compile(CompileError),
    #[error("the organization does not exist")]
    UnknownOrganization,
    #[error("the stream kept changing under the command ({attempts} attempts)")]
    Contention { attempts: usize },
    #[error("the policies changed since revision {expected}")]
    Stale { expected: u64, actual: Option<u64> },
    #[error(transparent)]
    Log(#[from] eventlog::Error),
}

impl From<CommandError<AuthzPolicyError>> for PolicyFailure {
    fn from(e: CommandError<AuthzPolicyError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::Policy(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { expected, actual } => Self::Stale { expected, actual },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

type Result<T> = std::result::Result<T, PolicyFailure>;

async fn execute(
    bus: &CommandBus,
    organization_id: Uuid,
    command: AuthzPolicyCommand,
    meta: &Metadata,
) -> Result<Outcome> {
    let (org, _) = bus
        .load::<Organization>(&organization_id.to_string())
        .await?;
    if org.id.is_none() {
        return Err(PolicyFailure::UnknownOrganization);
    }
    Ok(bus
        .execute::<AuthzPolicy>(&organization_id.to_string(), command, meta)
        .await?)
}

/// A version to upload.
#[derive(Debug, Clone)]
pub struct Upload {
    pub organization_id: Uuid,
    pub source: String,
    pub description: String,
    /// Activate it in the same append.
    pub activate: bool,
}

/// Uploads a new version of the organization's policy once it compiles
/// (and activates it, when asked, in the same append).
pub async fn upload(bus: &CommandBus, upload: Upload, meta: &Metadata) -> Result<Outcome> {
    if upload.source.len() > domain::authz_policy::MAX_SOURCE_LEN {
        return Err(PolicyFailure::Policy(AuthzPolicyError::InvalidSource));
    }
    rego::compile(&upload.source).map_err(PolicyFailure::Compile)?;
    let command = AuthzPolicyCommand::Upload {
        organization_id: upload.organization_id,
        digest: crate::crypto::hash_secret(&upload.source),
        source: upload.source,
        description: upload.description,
        uploaded_by: meta.actor.id.clone().unwrap_or_default(),
        activate: upload.activate,
    };
    execute(bus, upload.organization_id, command, meta).await
}

pub async fn activate(
    bus: &CommandBus,
    organization_id: Uuid,
    version: u32,
    meta: &Metadata,
) -> Result<Outcome> {
    execute(
        bus,
        organization_id,
        AuthzPolicyCommand::Activate { version },
        meta,
    )
    .await
}

pub async fn rollback(bus: &CommandBus, organization_id: Uuid, meta: &Metadata) -> Result<Outcome> {
    execute(bus, organization_id, AuthzPolicyCommand::Rollback, meta).await
}

pub async fn set_decision_logging(
    bus: &CommandBus,
    organization_id: Uuid,
    all: bool,
    meta: &Metadata,
) -> Result<Outcome> {
    execute(
        bus,
        organization_id,
        AuthzPolicyCommand::SetDecisionLogging { all },
        meta,
    )
    .await
}

/// A decision waiting to be recorded, and who waits for it.
type Waiting = (
    Decided,
    Metadata,
    tokio::sync::oneshot::Sender<std::result::Result<(), String>>,
);

/// The most decisions one append records.
const RECORD_BATCH: usize = 512;

/// Records decisions in groups: every decision waiting while an append is
/// in flight goes into the next one, so a busy decision point appends a
/// few times per flush instead of once per denial. A caller's answer waits
/// until its decision is in the log.
#[derive(Clone)]
pub struct DecisionRecorder {
    tx: tokio::sync::mpsc::Sender<Waiting>,
}

impl DecisionRecorder {
    /// Starts the recorder's task on the current runtime.
    pub fn start(log: std::sync::Arc<dyn eventlog::EventLog>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Waiting>(RECORD_BATCH * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(RECORD_BATCH);
            while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
                // One append per day the waiting decisions fall on.
                let mut by_stream: std::collections::BTreeMap<String, Vec<Waiting>> =
                    std::collections::BTreeMap::new();
                for w in batch.drain(..) {
                    by_stream
                        .entry(domain::authz_policy::decision_stream(w.0.at))
                        .or_default()
                        .push(w);
                }
                for (stream, waiting) in by_stream {
                    let events = waiting
                        .iter()
                        .map(|(d, m, _)| eventlog::encode(d, m))
                        .collect();
                    let outcome = log
                        .append(&stream, eventlog::ExpectedRevision::Any, events)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    for (_, _, reply) in waiting {
                        let _ = reply.send(outcome.clone());
                    }
                }
            }
        });
        Self { tx }
    }

    /// Records `decided`; returns once it is in the log.
    pub async fn record(
        &self,
        decided: Decided,
        meta: Metadata,
    ) -> std::result::Result<(), String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send((decided, meta, reply))
            .await
            .map_err(|_| "the decision recorder stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the decision recorder stopped".to_owned())?
    }
}
