//! Sending messages to people: email over SMTP (`smtp.rs`, lettre), SMS
//! and WhatsApp through an HTTP gateway (`webhook.rs`: a JSON POST with a
//! shared-secret header, so any gateway can be attached). A channel with
//! no provider configured keeps its messages in this node's outbox, a
//! development mailbox the admin API lists: nothing is dropped silently.
//!
//! Every message is a `notification` aggregate: queued before the provider
//! is asked, then sent or failed with the provider's reason. Its text (a
//! code) is never recorded; delivery runs beside the request, so the
//! answer and its time do not say whether anyone was there to send to.

mod smtp;
mod webhook;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use commands::CommandBus;
use commands::notification::NewNotification;
use domain::Metadata;
use domain::notification::{Channel, Purpose};
use uuid::Uuid;

use crate::config::Config;

/// Messages the outbox keeps at most (the oldest go first).
const OUTBOX_SIZE: usize = 1000;
/// How long a provider may take to accept a message.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A message to deliver.
#[derive(Clone, Debug)]
pub struct Message {
    pub id: Uuid,
    pub channel: Channel,
    pub purpose: Purpose,
    /// An email address or an E.164 number.
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Something that delivers messages of a channel.
#[async_trait]
pub trait Provider: Send + Sync {
    /// As recorded with each delivery: `smtp`, `webhook`, `outbox`.
    fn name(&self) -> &'static str;
    /// Hands the message over; `Err` is the provider's reason.
    async fn send(&self, message: &Message) -> Result<(), String>;
}

/// A message kept in the outbox.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OutboxEntry {
    pub id: Uuid,
    pub channel: &'static str,
    pub purpose: &'static str,
    pub to: String,
    pub subject: String,
    pub text: String,
    /// RFC 3339.
    pub at: String,
}

/// The development mailbox: the last messages of channels without a
/// provider, in this node's memory only.
pub struct Outbox {
    messages: Mutex<VecDeque<OutboxEntry>>,
    clock: Arc<dyn commands::Clock>,
}

impl Outbox {
    pub fn new(clock: Arc<dyn commands::Clock>) -> Self {
        Self {
            messages: Mutex::new(VecDeque::new()),
            clock,
        }
    }

    /// The messages kept, newest first.
    pub fn list(&self) -> Vec<OutboxEntry> {
        self.messages
            .lock()
            .map(|m| m.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Provider for Outbox {
    fn name(&self) -> &'static str {
        "outbox"
    }

    async fn send(&self, m: &Message) -> Result<(), String> {
        let entry = OutboxEntry {
            id: m.id,
            channel: m.channel.as_str(),
            purpose: m.purpose.as_str(),
            to: m.to.clone(),
            subject: m.subject.clone(),
            text: m.text.clone(),
            at: self
                .clock
                .now()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        };
        let mut messages = self.messages.lock().map_err(|_| "the outbox is poisoned")?;
        if messages.len() >= OUTBOX_SIZE {
            messages.pop_front();
        }
        messages.push_back(entry);
        Ok(())
    }
}

/// Why the providers could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotifyError(pub String);

/// The provider of each channel, and the outbox.
pub struct Notifier {
    email: Arc<dyn Provider>,
    sms: Arc<dyn Provider>,
    whatsapp: Arc<dyn Provider>,
    pub outbox: Arc<Outbox>,
}

impl Notifier {
    /// The providers the configuration names; the outbox for the others.
    pub fn from_config(
        config: &Config,
        clock: Arc<dyn commands::Clock>,
    ) -> Result<Self, NotifyError> {
        let outbox = Arc::new(Outbox::new(clock));
        let email: Arc<dyn Provider> = match &config.smtp_url {
            Some(url) => Arc::new(smtp::Smtp::new(url, &config.smtp_from)?),
            None => outbox.clone(),
        };
        let hook = |url: &Option<String>, channel| -> Result<Arc<dyn Provider>, NotifyError> {
            Ok(match url {
                Some(url) => Arc::new(webhook::Webhook::new(
                    url,
                    config.webhook_secret.clone(),
                    channel,
                )?),
                None => outbox.clone(),
            })
        };
        Ok(Self {
            sms: hook(&config.sms_webhook_url, Channel::Sms)?,
            whatsapp: hook(&config.whatsapp_webhook_url, Channel::Whatsapp)?,
            email,
            outbox,
        })
    }

    fn provider(&self, channel: Channel) -> Arc<dyn Provider> {
        match channel {
            Channel::Email => self.email.clone(),
            Channel::Sms => self.sms.clone(),
            Channel::Whatsapp => self.whatsapp.clone(),
        }
    }

    /// Queues `message` for `user_id` (recorded before this returns), then
    /// delivers it beside the caller and records how that went.
    pub async fn deliver(
        &self,
        bus: &Arc<CommandBus>,
        user_id: Uuid,
        organization_id: Uuid,
        message: Message,
        meta: &Metadata,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let queued = NewNotification {
            id: message.id,
            user_id,
            organization_id,
            channel: message.channel,
            purpose: message.purpose,
            recipient: message.to.clone(),
        };
        commands::notification::queue(bus, queued, meta).await?;
        let provider = self.provider(message.channel);
        let bus = Arc::clone(bus);
        let meta = meta.clone();
        tokio::spawn(async move {
            let result = match tokio::time::timeout(SEND_TIMEOUT, provider.send(&message)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} s", SEND_TIMEOUT.as_secs())),
            };
            if let Err(reason) = &result {
                tracing::warn!(notification = %message.id, provider = provider.name(), %reason, "a message could not be delivered");
            }
            if let Err(e) =
                commands::notification::settle(&bus, message.id, provider.name(), result, &meta)
                    .await
            {
                tracing::error!(error = %e, notification = %message.id, "a delivery could not be recorded");
            }
        });
        Ok(())
    }
}

/// The text of a sign-in code message.
pub fn code_message(channel: Channel, to: String, code: &str, organization: &str) -> Message {
    let subject = format!("Your sign-in code for {organization}");
    let text = match channel {
        Channel::Email => format!(
            "Your sign-in code for {organization} is {code}.\n\nIt works once, for 10 minutes. \
             If you did not try to sign in, ignore this message: nobody can sign in without the code."
        ),
        Channel::Sms | Channel::Whatsapp => {
            format!("{code} is your {organization} sign-in code. It works once, for 10 minutes.")
        }
    };
    Message {
        id: Uuid::now_v7(),
        channel,
        purpose: Purpose::SignInCode,
        to,
        subject,
        text,
    }
}
