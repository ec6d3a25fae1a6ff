//! What every handler can reach: the state the router hands each request.
//! Its own file, so that handlers need not import the server's wiring.

use std::sync::Arc;

use commands::{Clock, CommandBus};
use eventlog::LogReader;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::{ReadDb, RunnerHandle};

use crate::config::Config;
use crate::master_key::MasterKey;
use privacy::SubjectKeys;
use projections::tokens::TokenViews;

/// The most a request body may hold; larger bodies are answered 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What every handler can reach: one shared [`Services`], so that handing
/// it to a request (axum clones the state for every extractor that takes
/// it) is one reference count, not one per service.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    pub config: Arc<Config>,
    /// The one source of "now" for the server.
    pub clock: Arc<dyn Clock>,
    /// The log, for reading: appends go through the command bus.
    pub log: LogReader,
    pub read_db: ReadDb,
    pub bus: Arc<CommandBus>,
    pub projections: Arc<RunnerHandle>,
    pub master_key: MasterKey,
    pub metrics: PrometheusHandle,
    /// What token validation and signing read, kept current from the log.
    pub tokens: Arc<TokenViews>,
    pub subject_keys: Arc<SubjectKeys>,
    /// The password policy and the bounded hashing pool.
    pub passwords: Arc<commands::password::Passwords>,
    /// Email, SMS and WhatsApp providers, and the outbox.
    pub notifier: Arc<crate::notify::Notifier>,
    /// The WebAuthn relying party; none when no origin has a domain.
    pub passkeys: Option<Arc<crate::passkeys::RelyingParty>>,
    /// The organizations' active Rego policies, compiled once per version.
    pub compiled_policies: Arc<crate::authz::CompiledPolicies>,
    /// What the decision point knows of subjects lately asked about.
    pub subject_facts: Arc<crate::authz::SubjectFacts>,
    /// Records the decision point's decisions, a group per append.
    pub decisions: commands::authz::DecisionRecorder,
    /// Subjects' role claims for tokens, per access generation.
    pub token_claims: Arc<crate::access::ClaimsCache>,
    /// Turns for attempts on accounts under attack.
    pub tarpit: crate::authentication::Tarpit,
}

impl AppState {
    /// Issues the access token `grant` earns (a command: signed with the
    /// views' key ring, recorded before it is returned).
    pub async fn issue_token(
        &self,
        grant: commands::tokens::Grant<'_>,
        meta: &domain::Metadata,
    ) -> Result<(String, jose::AccessTokenClaims), commands::tokens::IssueError> {
        commands::tokens::issue(
            &self.bus,
            &self.tokens.issuer,
            &grant,
            |claims| self.tokens.sign(claims),
            meta,
        )
        .await
    }

    /// Revokes a valid access token (a command), then applies the
    /// revocation here at once; other nodes apply it from the log.
    pub async fn revoke_token(
        &self,
        token: &projections::tokens::ValidToken,
        meta: &domain::Metadata,
    ) -> Result<(), RevokeError> {
        let jti = uuid::Uuid::parse_str(&token.jti).map_err(|_| RevokeError::Claims)?;
        let expires_at = time::OffsetDateTime::from_unix_timestamp(token.claims.exp)
            .map_err(|_| RevokeError::Claims)?;
        commands::tokens::revoke(&self.bus, jti, token.client_id, expires_at, meta).await?;
        self.tokens.revoked_here(token);
        Ok(())
    }
}

/// Why a token could not be revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("the token's jti or exp is malformed")]
    Claims,
    #[error(transparent)]
    Log(#[from] eventlog::Error),
}
