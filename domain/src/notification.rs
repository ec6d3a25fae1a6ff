//! A message sent to a person (a sign-in code, a notice that their account
//! is under attack): queued, then sent by a provider or failed with the
//! provider's reason. One stream per message (`notification-{id}`), under
//! the person's subject; the recipient is a [`Pii`]. The text is never
//! recorded: a code in it is a secret.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::pii::Pii;
use crate::registration::decode_as;
use crate::user::user_subject;

pub const QUEUED_V1: &str = "notification.queued.v1";
pub const SENT_V1: &str = "notification.sent.v1";
pub const FAILED_V1: &str = "notification.failed.v1";

/// The longest provider reason kept.
pub const MAX_REASON_LEN: usize = 500;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Whatsapp,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
        }
    }
}

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    SignInCode,
    LockoutNotice,
    /// A code proving a new address or number is the person's.
    AddressVerification,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignInCode => "sign_in_code",
            Self::LockoutNotice => "lockout_notice",
            Self::AddressVerification => "address_verification",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationQueued {
    pub notification_id: Uuid,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub channel: Channel,
    pub purpose: Purpose,
    pub recipient: Pii<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationSent {
    pub notification_id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationFailed {
    pub notification_id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationEvent {
    Queued(NotificationQueued),
    Sent(NotificationSent),
    Failed(NotificationFailed),
}

impl NotificationEvent {
    pub fn user_id(&self) -> Uuid {
        match self {
            Self::Queued(e) => e.user_id,
            Self::Sent(e) => e.user_id,
            Self::Failed(e) => e.user_id,
        }
    }
}

impl DomainEvent for NotificationEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Queued(_) => QUEUED_V1,
            Self::Sent(_) => SENT_V1,
            Self::Failed(_) => FAILED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Structs of ids, strings and times: serializing cannot fail.
        match self {
            Self::Queued(e) => serde_json::to_value(e),
            Self::Sent(e) => serde_json::to_value(e),
            Self::Failed(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            QUEUED_V1 => decode_as(event_type, data).map(Self::Queued),
            SENT_V1 => decode_as(event_type, data).map(Self::Sent),
            FAILED_V1 => decode_as(event_type, data).map(Self::Failed),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }

    fn subject(&self) -> Option<String> {
        Some(user_subject(self.user_id()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationCommand {
    Queue {
        id: Uuid,
        user_id: Uuid,
        organization_id: Uuid,
        channel: Channel,
        purpose: Purpose,
        recipient: String,
    },
    MarkSent {
        provider: String,
    },
    MarkFailed {
        provider: String,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NotificationError {
    #[error("the message was already queued")]
    AlreadyQueued,
    #[error("no such message")]
    NotFound,
    #[error("the message's delivery is already settled")]
    Settled,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    Sent,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub queued: bool,
    pub id: Uuid,
    pub user_id: Uuid,
    pub delivery: Delivery,
}

impl Default for Notification {
    fn default() -> Self {
        Self {
            queued: false,
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            delivery: Delivery::Queued,
        }
    }
}

impl Aggregate for Notification {
    type Event = NotificationEvent;
    type Command = NotificationCommand;
    type Error = NotificationError;
    const CATEGORY: &'static str = "notification";

    fn evolve(mut self, event: &NotificationEvent) -> Self {
        match event {
            NotificationEvent::Queued(e) => {
                self.queued = true;
                self.id = e.notification_id;
                self.user_id = e.user_id;
            }
            NotificationEvent::Sent(_) => self.delivery = Delivery::Sent,
            NotificationEvent::Failed(_) => self.delivery = Delivery::Failed,
        }
        self
    }

    fn decide(
        &self,
        command: NotificationCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<NotificationEvent>, NotificationError> {
        match command {
            NotificationCommand::Queue {
                id,
                user_id,
                organization_id,
                channel,
                purpose,
                recipient,
            } => {
                if self.queued {
                    return Err(NotificationError::AlreadyQueued);
                }
                Ok(vec![NotificationEvent::Queued(NotificationQueued {
                    notification_id: id,
                    user_id,
                    organization_id,
                    channel,
                    purpose,
                    recipient: Pii::new(recipient),
                    at: now,
                })])
            }
            _ if !self.queued => Err(NotificationError::NotFound),
            _ if self.delivery != Delivery::Queued => Err(NotificationError::Settled),
            NotificationCommand::MarkSent { provider } => {
                Ok(vec![NotificationEvent::Sent(NotificationSent {
                    notification_id: self.id,
                    user_id: self.user_id,
                    provider,
                    at: now,
                })])
            }
            NotificationCommand::MarkFailed { provider, reason } => {
                Ok(vec![NotificationEvent::Failed(NotificationFailed {
                    notification_id: self.id,
                    user_id: self.user_id,
                    provider,
                    reason: reason.chars().take(MAX_REASON_LEN).collect(),
                    at: now,
                })])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::given_when;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn queued() -> Vec<NotificationEvent> {
        given_when::<Notification>(
            &[],
            NotificationCommand::Queue {
                id: Uuid::from_u128(1),
                user_id: Uuid::from_u128(2),
                organization_id: Uuid::from_u128(3),
                channel: Channel::Sms,
                purpose: Purpose::SignInCode,
                recipient: "+442071234567".into(),
            },
            now(),
        )
        .unwrap()
    }

    #[test]
    fn a_message_is_queued_then_settled_once() {
        let mut events = queued();
        assert_eq!(events[0].subject(), Some(user_subject(Uuid::from_u128(2))));
        assert!(events[0].to_data().to_string().contains("\"$pii\""));
        let sent = given_when::<Notification>(
            &events,
            NotificationCommand::MarkSent {
                provider: "webhook".into(),
            },
            now(),
        )
        .unwrap();
        events.extend(sent);
        assert_eq!(
            given_when::<Notification>(
                &events,
                NotificationCommand::MarkFailed {
                    provider: "webhook".into(),
                    reason: "late".into()
                },
                now()
            ),
            Err(NotificationError::Settled)
        );
    }

    #[test]
    fn a_failure_keeps_a_bounded_reason() {
        let events = queued();
        let failed = given_when::<Notification>(
            &events,
            NotificationCommand::MarkFailed {
                provider: "smtp".into(),
                reason: "x".repeat(2000),
            },
            now(),
        )
        .unwrap();
        let NotificationEvent::Failed(f) = &failed[0] else {
            panic!("{failed:?}")
        };
        assert_eq!(f.reason.len(), MAX_REASON_LEN);
    }
}
