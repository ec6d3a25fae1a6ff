//! Command handlers of messages sent to people (`domain::notification`):
//! queued before a provider is asked, then settled as sent or failed.

use domain::Metadata;
use domain::notification::{
    Channel, Notification, NotificationCommand, NotificationError, Purpose,
};
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};

/// A message to queue.
#[derive(Clone, Debug)]
pub struct NewNotification {
    pub id: Uuid,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub channel: Channel,
    pub purpose: Purpose,
    pub recipient: String,
}

pub async fn queue(
    bus: &CommandBus,
    n: NewNotification,
    meta: &Metadata,
) -> Result<Outcome, CommandError<NotificationError>> {
    let command = NotificationCommand::Queue {
        id: n.id,
        user_id: n.user_id,
        organization_id: n.organization_id,
        channel: n.channel,
        purpose: n.purpose,
        recipient: n.recipient,
    };
    bus.execute_new::<Notification>(&n.id.to_string(), command, meta)
        .await
}

/// Records how the delivery of message `id` went: `Ok` sent, `Err` the
/// provider's reason.
pub async fn settle(
    bus: &CommandBus,
    id: Uuid,
    provider: &str,
    result: Result<(), String>,
    meta: &Metadata,
) -> Result<Outcome, CommandError<NotificationError>> {
    let provider = provider.to_owned();
    let command = match result {
        Ok(()) => NotificationCommand::MarkSent { provider },
        Err(reason) => NotificationCommand::MarkFailed { provider, reason },
    };
    bus.execute::<Notification>(&id.to_string(), command, meta)
        .await
}
