//! The first organization and its admin client, so that an operator can
//! call the admin API at all.

use std::sync::Arc;

use commands::CommandBus;
use domain::Metadata;
use domain::client::{AuthMethod, ClientSettings, GrantType, SecretPolicy};
use eventlog::{EventLog, Filter, Position};
use serde::Serialize;

use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::admin::ADMIN_SCOPE;
use crate::config::Config;

/// What an operator needs to call the admin API. Its `Debug` hides the secret.
#[derive(Clone, Serialize)]
pub struct Bootstrapped {
    pub organization_id: Uuid,
    pub client_id: Uuid,
    pub client_secret: String,
    pub client_secret_expires_at: Option<String>,
    pub token_endpoint: String,
    pub scope: String,
}

impl std::fmt::Debug for Bootstrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrapped")
            .field("organization_id", &self.organization_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the log already holds an organization: bootstrap runs only once")]
    AlreadyBootstrapped,
    #[error("{0}")]
    Failed(String),
}

/// Creates the organization "Default" and an admin client with one secret.
pub async fn bootstrap(
    log: &Arc<dyn EventLog>,
    bus: &CommandBus,
    config: &Config,
) -> Result<Bootstrapped, BootstrapError> {
    let any_org = log
        .read_all(Position::START, &Filter::categories(["organization"]), 1)
        .await
        .map_err(|e| BootstrapError::Failed(e.to_string()))?;
    if !any_org.is_empty() {
        return Err(BootstrapError::AlreadyBootstrapped);
    }
    let now = bus.clock().now();
    let meta = Metadata::system(Uuid::now_v7(), now);
    let org = Uuid::now_v7();
    commands::organization::create(bus, org, "Default", &meta)
        .await
        .map_err(|e| BootstrapError::Failed(e.to_string()))?;
    let client_id = Uuid::now_v7();
    let mut meta = meta;
    meta.organization = Some(org);
    commands::client::create_platform_admin(
        bus,
        client_id,
        org,
        ClientSettings {
            name: "Bootstrap admin".into(),
            description:
                "Created by idp bootstrap; rotate its secret and retire it once real admins exist."
                    .into(),
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec![ADMIN_SCOPE.to_owned()],
            auth_method: AuthMethod::ClientSecretBasic,
            jwks: None,
            access_token_lifetime_secs: 3600,
            resources: vec![],
            ..ClientSettings::default()
        },
        &meta,
    )
    .await
    .map_err(|e| BootstrapError::Failed(e.to_string()))?;
    let policy = SecretPolicy {
        max_lifetime_days: config.secret_max_lifetime_days,
        allow_never_expiring: config.secret_allow_never_expiring,
    };
    let expires = now + time::Duration::days(i64::from(policy.max_lifetime_days));
    let (_, secret) =
        commands::client::create_secret(bus, client_id, "bootstrap", Some(expires), policy, &meta)
            .await
            .map_err(|e| BootstrapError::Failed(e.to_string()))?;
    Ok(Bootstrapped {
        organization_id: org,
        client_id,
        client_secret: secret.value.clone(),
        client_secret_expires_at: secret.expires_at.and_then(|t| t.format(&Rfc3339).ok()),
        token_endpoint: format!("{}/oauth/token", config.issuer()),
        scope: ADMIN_SCOPE.to_owned(),
    })
}
