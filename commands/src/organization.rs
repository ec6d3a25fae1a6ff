//! Command handlers of the organization aggregate.

use domain::Metadata;
use domain::organization::{Organization, OrganizationCommand, OrganizationError};
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};

pub async fn create(
    bus: &CommandBus,
    id: Uuid,
    name: &str,
    metadata: &Metadata,
) -> Result<Outcome, CommandError<OrganizationError>> {
    bus.execute::<Organization>(
        &id.to_string(),
        OrganizationCommand::Create {
            id,
            name: name.to_owned(),
        },
        metadata,
    )
    .await
}

pub async fn rename(
    bus: &CommandBus,
    id: Uuid,
    name: &str,
    metadata: &Metadata,
) -> Result<Outcome, CommandError<OrganizationError>> {
    bus.execute::<Organization>(
        &id.to_string(),
        OrganizationCommand::Rename {
            name: name.to_owned(),
        },
        metadata,
    )
    .await
}
