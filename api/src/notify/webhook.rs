//! SMS and WhatsApp through an HTTP gateway: each message is a JSON POST
//! (`{"id", "channel", "to", "text", "purpose"}`) to the configured URL,
//! with the shared secret (`IDP_WEBHOOK_SECRET`) in the
//! `X-Webhook-Secret` header; any 2xx answer is a delivery.

use async_trait::async_trait;
use domain::notification::Channel;
use serde_json::json;

use super::{Message, NotifyError, Provider};
use crate::config::redact_url;

pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: Option<String>,
    channel: Channel,
}

impl Webhook {
    pub fn new(url: &str, secret: Option<String>, channel: Channel) -> Result<Self, NotifyError> {
        let parsed = url::Url::parse(url).map_err(|e| {
            NotifyError(format!(
                "{} webhook {}: {e}",
                channel.as_str(),
                redact_url(url)
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(NotifyError(format!(
                "{} webhook: an http or https URL is needed",
                channel.as_str()
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError(e.to_string()))?;
        Ok(Self {
            client,
            url: url.to_owned(),
            secret,
            channel,
        })
    }
}

#[async_trait]
impl Provider for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, m: &Message) -> Result<(), String> {
        let mut req = self.client.post(&self.url).json(&json!({
            "id": m.id,
            "channel": self.channel.as_str(),
            "to": m.to,
            "text": m.text,
            "purpose": m.purpose.as_str(),
        }));
        if let Some(secret) = &self.secret {
            req = req.header("x-webhook-secret", secret);
        }
        // The error's text names the URL, never the secret.
        let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the gateway answered {status}"))
        }
    }
}
