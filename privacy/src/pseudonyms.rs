//! Keyed pseudonyms for people ([`PersonIds`]), the implementation of
//! `domain::privacy::Pseudonyms` the command side is handed.

use commands::crypto::MasterKey;
use domain::privacy::Pseudonyms;
use sha2::Sha256;

/// Keyed pseudonyms for people: the subject id under which a person's
/// events are indexed and their personal values encrypted. An HMAC-SHA256
/// keyed from the master key, so the id reveals nothing about the name to
/// whoever reads the log without the key, and the same name in the same
/// organization always gives the same subject (one person, many instances).
pub struct PersonIds([u8; 32]);

impl std::fmt::Debug for PersonIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonIds(<redacted>)")
    }
}

type HmacSha256 = hmac::Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for p in parts {
        hmac::Mac::update(&mut mac, p);
    }
    hmac::Mac::finalize(mac).into_bytes().into()
}

impl PersonIds {
    /// The pseudonym key, derived from (never equal to) the master key.
    pub fn derive(master: &MasterKey) -> Self {
        Self(hmac(master.bytes(), &[b"idp person subject ids v1"]))
    }

    /// `person:` and 32 hex digits for a user name within an organization;
    /// None for a blank name (no person is named).
    pub fn subject(&self, organization: uuid::Uuid, user_name: &str) -> Option<String> {
        let name = user_name.trim();
        if name.is_empty() {
            return None;
        }
        let mac = hmac(&self.0, &[organization.as_bytes(), b"\0", name.as_bytes()]);
        Some(format!("person:{}", hex::encode(&mac[..16])))
    }
}

impl PersonIds {
    /// `person:` and 32 hex digits for an installation named by its device
    /// alone (no user name): the device name is still someone's, and needs
    /// a key that erasure can destroy. Never equal to a user name's subject
    /// (a different label goes into the MAC).
    pub fn installation_subject(&self, organization: uuid::Uuid, instance_id: &str) -> String {
        let mac = hmac(
            &self.0,
            &[
                b"installation\0",
                organization.as_bytes(),
                b"\0",
                instance_id.as_bytes(),
            ],
        );
        format!("person:{}", hex::encode(&mac[..16]))
    }
}

impl PersonIds {
    /// The claim of a unique value: 64 hex digits of a MAC under a label
    /// of its own, so a claim never equals a subject's digits.
    pub fn claim(&self, organization: uuid::Uuid, kind: &str, normalized: &str) -> String {
        let mac = hmac(
            &self.0,
            &[
                b"reservation\0",
                organization.as_bytes(),
                b"\0",
                kind.as_bytes(),
                b"\0",
                normalized.as_bytes(),
            ],
        );
        hex::encode(mac)
    }
}

impl Pseudonyms for PersonIds {
    fn claim(&self, organization: uuid::Uuid, kind: &str, normalized: &str) -> String {
        PersonIds::claim(self, organization, kind, normalized)
    }

    fn subject(&self, organization: uuid::Uuid, user_name: &str) -> Option<String> {
        PersonIds::subject(self, organization, user_name)
    }

    fn installation_subject(&self, organization: uuid::Uuid, instance_id: &str) -> String {
        PersonIds::installation_subject(self, organization, instance_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_ids_are_stable_keyed_and_scoped() {
        let org = uuid::Uuid::from_u128(7);
        let ids = PersonIds::derive(&MasterKey::from_bytes([1; 32]));
        let a = ids.subject(org, "Ada Lovelace").unwrap();
        assert!(a.starts_with("person:") && a.len() == 7 + 32, "{a}");
        assert_eq!(
            ids.subject(org, " Ada Lovelace ").as_deref(),
            Some(a.as_str())
        );
        assert_ne!(
            ids.subject(uuid::Uuid::from_u128(8), "Ada Lovelace")
                .unwrap(),
            a
        );
        let other_key = PersonIds::derive(&MasterKey::from_bytes([2; 32]));
        assert_ne!(other_key.subject(org, "Ada Lovelace").unwrap(), a);
        assert_eq!(ids.subject(org, "  "), None);
    }

    #[test]
    fn an_installation_is_never_a_user_names_subject() {
        let org = uuid::Uuid::from_u128(7);
        let ids = PersonIds::derive(&MasterKey::from_bytes([1; 32]));
        let device = ids.installation_subject(org, "kiosk-1");
        assert!(device.starts_with("person:"));
        assert_eq!(device, ids.installation_subject(org, "kiosk-1"));
        assert_ne!(Some(device), ids.subject(org, "kiosk-1"));
    }
}
