//! The WebAuthn relying party (webauthn-rs): which origins and relying
//! party id passkeys are bound to, and the conversions between its types
//! and what the log keeps (a passkey's record as JSON, a ceremony's state
//! as JSON, credential ids as base64url).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use webauthn_rs::prelude::{Url, Webauthn, WebauthnBuilder};

use crate::config::Config;

/// The relying party, when the configuration names a usable one.
pub struct RelyingParty {
    pub webauthn: Webauthn,
    pub rp_id: String,
}

impl RelyingParty {
    /// `None` (with a warning) when no origin with a domain can be had: an
    /// issuer on a non-loopback IP address and no `IDP_WEBAUTHN_ORIGINS`.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        let origins: Vec<Url> = match &config.webauthn_origins {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| Url::parse(o).map_err(|e| format!("IDP_WEBAUTHN_ORIGINS {o}: {e}")))
                .collect::<Result<_, _>>()?,
            None => match default_origin(&config.issuer()) {
                Some(o) => vec![o],
                None => {
                    tracing::warn!(
                        "passkeys are not offered: the issuer is an IP address; set IDP_WEBAUTHN_ORIGINS"
                    );
                    return Ok(None);
                }
            },
        };
        let Some(first) = origins.first() else {
            return Ok(None);
        };
        let rp_id = match &config.webauthn_rp_id {
            Some(id) => id.clone(),
            None => first
                .domain()
                .ok_or("IDP_WEBAUTHN_ORIGINS: the first origin has no domain")?
                .to_owned(),
        };
        let mut builder = WebauthnBuilder::new(&rp_id, first)
            .map_err(|e| format!("WebAuthn relying party {rp_id} for {first}: {e}"))?
            .rp_name(&config.webauthn_rp_name);
        for o in &origins[1..] {
            builder = builder.append_allowed_origin(o);
        }
        let webauthn = builder.build().map_err(|e| e.to_string())?;
        Ok(Some(Self { webauthn, rp_id }))
    }
}

/// The issuer's origin, or `http://localhost:PORT` for an issuer on a
/// loopback address (WebAuthn needs a domain); none for another address.
fn default_origin(issuer: &str) -> Option<Url> {
    let url = Url::parse(issuer).ok()?;
    match url.host()? {
        url::Host::Domain(_) => Url::parse(url.origin().ascii_serialization().as_str()).ok(),
        url::Host::Ipv4(ip) if ip.is_loopback() => local(&url),
        url::Host::Ipv6(ip) if ip.is_loopback() => local(&url),
        _ => None,
    }
}

fn local(url: &Url) -> Option<Url> {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Url::parse(&format!("{}://localhost{port}", url.scheme())).ok()
}

/// A credential id as stored and shown: base64url without padding.
pub fn credential_id(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The credential id a passkey request lists for an identifier that names
/// nobody with a passkey (WebAuthn Level 2 §14.6.2): derived from the
/// identifier under the master key, so that asking twice lists the same
/// one, and a stranger cannot tell it from a real person's passkey.
pub fn decoy_credential_id(
    master: &commands::crypto::MasterKey,
    organization_id: uuid::Uuid,
    normalized_identifier: &str,
) -> String {
    let digest = commands::crypto::keyed_digest(
        master,
        "passkey decoy",
        &format!("{}:{normalized_identifier}", organization_id.simple()),
    );
    credential_id(&hex::decode(digest).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_issuer_gets_localhost_and_a_domain_keeps_its_origin() {
        assert_eq!(
            default_origin("http://127.0.0.1:8080").unwrap().as_str(),
            "http://localhost:8080/"
        );
        assert_eq!(
            default_origin("https://id.example.com/tenant")
                .unwrap()
                .as_str(),
            "https://id.example.com/"
        );
        assert!(default_origin("http://10.0.0.5:8080").is_none());
    }
}
