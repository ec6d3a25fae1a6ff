//! Command handlers of the OAuth client aggregate.
//!
//! A client secret's value is drawn here, handed back once in
//! [`CreatedSecret`], and only its SHA-256 hash enters the command and the
//! event: the log never holds a usable secret.

use domain::Metadata;
use domain::client::{
    Client, ClientCommand, ClientError, ClientSettings, ClientType, SecretPolicy,
};
use domain::organization::Organization;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};
use crate::crypto;

type Result<T> = std::result::Result<T, CommandError<ClientError>>;

async fn execute(
    bus: &CommandBus,
    client_id: Uuid,
    command: ClientCommand,
    metadata: &Metadata,
) -> Result<Outcome> {
    bus.execute::<Client>(&client_id.to_string(), command, metadata)
        .await
}

pub async fn create(
    bus: &CommandBus,
    client_id: Uuid,
    organization_id: Uuid,
    client_type: ClientType,
    settings: ClientSettings,
    metadata: &Metadata,
) -> Result<Outcome> {
    create_client(
        bus,
        client_id,
        organization_id,
        client_type,
        settings,
        false,
        metadata,
    )
    .await
}

/// Creates the platform's own admin client, whose admin tokens reach every
/// organization: only the bootstrap calls this.
pub async fn create_platform_admin(
    bus: &CommandBus,
    client_id: Uuid,
    organization_id: Uuid,
    settings: ClientSettings,
    metadata: &Metadata,
) -> Result<Outcome> {
    create_client(
        bus,
        client_id,
        organization_id,
        ClientType::Confidential,
        settings,
        true,
        metadata,
    )
    .await
}

async fn create_client(
    bus: &CommandBus,
    client_id: Uuid,
    organization_id: Uuid,
    client_type: ClientType,
    settings: ClientSettings,
    platform_admin: bool,
    metadata: &Metadata,
) -> Result<Outcome> {
    // Every client belongs to an organization that exists: checked against
    // the organization's stream, not a read model.
    let (_, revision) = bus
        .load::<Organization>(&organization_id.to_string())
        .await
        .map_err(CommandError::Log)?;
    if revision.is_none() {
        return Err(CommandError::Domain(ClientError::UnknownOrganization));
    }
    let command = ClientCommand::Create {
        client_id,
        organization_id,
        client_type,
        settings,
        platform_admin,
    };
    execute(bus, client_id, command, metadata).await
}

pub async fn update(
    bus: &CommandBus,
    client_id: Uuid,
    settings: ClientSettings,
    metadata: &Metadata,
) -> Result<Outcome> {
    execute(bus, client_id, ClientCommand::Update { settings }, metadata).await
}

/// Changes some of a client's settings, merged into its current ones under
/// the stream's serialization.
pub async fn change(
    bus: &CommandBus,
    client_id: Uuid,
    changes: domain::client::SettingsChanges,
    metadata: &Metadata,
) -> Result<Outcome> {
    execute(bus, client_id, ClientCommand::Change { changes }, metadata).await
}

pub async fn enable(bus: &CommandBus, client_id: Uuid, metadata: &Metadata) -> Result<Outcome> {
    execute(bus, client_id, ClientCommand::Enable, metadata).await
}

pub async fn disable(bus: &CommandBus, client_id: Uuid, metadata: &Metadata) -> Result<Outcome> {
    execute(bus, client_id, ClientCommand::Disable, metadata).await
}

pub async fn delete(bus: &CommandBus, client_id: Uuid, metadata: &Metadata) -> Result<Outcome> {
    execute(bus, client_id, ClientCommand::Delete, metadata).await
}

/// A secret just created: the only time its value exists outside the
/// client's hands. `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedSecret {
    pub secret_id: Uuid,
    /// The plaintext, to show once; only its hash is stored.
    pub value: String,
    pub expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for CreatedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedSecret")
            .field("secret_id", &self.secret_id)
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Creates a secret for a confidential client: a fresh 256-bit value whose
/// hash is recorded.
pub async fn create_secret(
    bus: &CommandBus,
    client_id: Uuid,
    description: &str,
    expires_at: Option<OffsetDateTime>,
    policy: SecretPolicy,
    metadata: &Metadata,
) -> Result<(Outcome, CreatedSecret)> {
    let secret_id = Uuid::now_v7();
    let value = crypto::new_secret();
    let command = ClientCommand::CreateSecret {
        secret_id,
        description: description.to_owned(),
        hash: crypto::hash_secret(&value),
        expires_at,
        policy,
    };
    let outcome = execute(bus, client_id, command, metadata).await?;
    Ok((
        outcome,
        CreatedSecret {
            secret_id,
            value,
            expires_at,
        },
    ))
}

pub async fn delete_secret(
    bus: &CommandBus,
    client_id: Uuid,
    secret_id: Uuid,
    metadata: &Metadata,
) -> Result<Outcome> {
    execute(
        bus,
        client_id,
        ClientCommand::DeleteSecret { secret_id },
        metadata,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_secret_never_prints_its_value() {
        let s = CreatedSecret {
            secret_id: Uuid::nil(),
            value: "very-secret-value".into(),
            expires_at: None,
        };
        let printed = format!("{s:?}");
        assert!(!printed.contains("very-secret-value"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }
}
