//! A signing key: one key pair the platform signs tokens with, from its
//! generation through activation to retirement.
//!
//! The key material is made outside (randomness is an input): the command
//! carries the public key as a JWK and the private key already sealed under
//! the master key. This aggregate only guards the life cycle
//! `Generated -> Active -> Retired` and that nothing private is published.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::decider::{Aggregate, DecodeError, DomainEvent};

/// The JWS algorithms the platform signs with.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 2] = [KeyAlgorithm::ES256, KeyAlgorithm::RS256];

    /// The JWA name (`alg` of a JWS header and of a JWK).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Members of a JWK that belong to a private key (RFC 7518 §6.2.2, §6.3.2).
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

pub const MAX_KID_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub enum SigningKeyCommand {
    /// Records a new key pair. `sealed_private_key` is the base64 of
    /// nonce || ciphertext of the PKCS#8 DER private key, sealed under the
    /// master key with the kid as associated data.
    Generate {
        kid: String,
        alg: KeyAlgorithm,
        public_jwk: Value,
        sealed_private_key: String,
    },
    /// Starts signing with the key.
    Activate,
    /// Stops signing with the key; verifiers may still accept what it signed.
    Retire,
    /// Withdraws the key outright (it leaked): it verifies nothing from now
    /// on, not even what it signed before. An active key must be rotated
    /// away first, so that something can still sign.
    Revoke,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyGenerated {
    pub kid: String,
    pub alg: KeyAlgorithm,
    pub public_jwk: Value,
    pub sealed_private_key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyActivated {
    #[serde(with = "time::serde::rfc3339")]
    pub activated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRetired {
    #[serde(with = "time::serde::rfc3339")]
    pub retired_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRevoked {
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SigningKeyEvent {
    Generated(SigningKeyGenerated),
    Activated(SigningKeyActivated),
    Retired(SigningKeyRetired),
    Revoked(SigningKeyRevoked),
}

pub const GENERATED_V1: &str = "signing_key.generated.v1";
pub const ACTIVATED_V1: &str = "signing_key.activated.v1";
pub const RETIRED_V1: &str = "signing_key.retired.v1";
pub const REVOKED_V1: &str = "signing_key.revoked.v1";

impl DomainEvent for SigningKeyEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Generated(_) => GENERATED_V1,
            Self::Activated(_) => ACTIVATED_V1,
            Self::Retired(_) => RETIRED_V1,
            Self::Revoked(_) => REVOKED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Serializing plain structs of strings and JSON values cannot fail.
        match self {
            Self::Generated(e) => serde_json::to_value(e),
            Self::Activated(e) => serde_json::to_value(e),
            Self::Retired(e) => serde_json::to_value(e),
            Self::Revoked(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        let malformed = |e| DecodeError::malformed(event_type, e);
        match event_type {
            GENERATED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::Generated)
                .map_err(malformed),
            ACTIVATED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::Activated)
                .map_err(malformed),
            RETIRED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::Retired)
                .map_err(malformed),
            REVOKED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::Revoked)
                .map_err(malformed),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Generated,
    Active,
    Retired,
    /// Withdrawn: verifies nothing.
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generated => "generated",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningKeyError {
    #[error("the signing key already exists")]
    AlreadyExists,
    #[error("the signing key does not exist")]
    NotFound,
    #[error(
        "a signing key can be activated only once, right after it is generated; it is {status}"
    )]
    NotActivatable { status: KeyStatus },
    #[error("the kid must be 1 to {MAX_KID_LEN} characters without whitespace")]
    InvalidKid,
    #[error(
        "the public key must be a JWK object with a kty, the same kid and alg, and no private members: {reason}"
    )]
    InvalidPublicJwk { reason: &'static str },
    #[error("the sealed private key is missing")]
    MissingPrivateKey,
    #[error("the active signing key cannot be revoked: rotate first, then revoke it")]
    RevokeActive,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct SigningKey {
    pub kid: Option<String>,
    pub alg: Option<KeyAlgorithm>,
    pub status: Option<KeyStatus>,
}

fn valid_kid(kid: &str) -> Result<(), SigningKeyError> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN || kid.chars().any(char::is_whitespace) {
        return Err(SigningKeyError::InvalidKid);
    }
    Ok(())
}

fn valid_public_jwk(jwk: &Value, kid: &str, alg: KeyAlgorithm) -> Result<(), SigningKeyError> {
    let invalid = |reason| SigningKeyError::InvalidPublicJwk { reason };
    let Some(members) = jwk.as_object() else {
        return Err(invalid("not a JSON object"));
    };
    if !members.get("kty").is_some_and(Value::is_string) {
        return Err(invalid("no kty"));
    }
    if PRIVATE_JWK_MEMBERS.iter().any(|m| members.contains_key(*m)) {
        return Err(invalid("it holds private key material"));
    }
    if members.get("kid").is_some_and(|k| k.as_str() != Some(kid)) {
        return Err(invalid("its kid differs from the key's"));
    }
    if members
        .get("alg")
        .is_some_and(|a| a.as_str() != Some(alg.as_str()))
    {
        return Err(invalid("its alg differs from the key's"));
    }
    Ok(())
}

impl Aggregate for SigningKey {
    type Event = SigningKeyEvent;
    type Command = SigningKeyCommand;
    type Error = SigningKeyError;
    const CATEGORY: &'static str = "signingkey";

    fn evolve(mut self, event: &SigningKeyEvent) -> Self {
        match event {
            SigningKeyEvent::Generated(e) => {
                self.kid = Some(e.kid.clone());
                self.alg = Some(e.alg);
                self.status = Some(KeyStatus::Generated);
            }
            SigningKeyEvent::Activated(_) => self.status = Some(KeyStatus::Active),
            SigningKeyEvent::Retired(_) => self.status = Some(KeyStatus::Retired),
            SigningKeyEvent::Revoked(_) => self.status = Some(KeyStatus::Revoked),
        }
        self
    }

    fn decide(
        &self,
        command: SigningKeyCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<SigningKeyEvent>, SigningKeyError> {
        match command {
            SigningKeyCommand::Generate {
                kid,
                alg,
                public_jwk,
                sealed_private_key,
            } => {
                if self.status.is_some() {
                    return Err(SigningKeyError::AlreadyExists);
                }
                valid_kid(&kid)?;
                valid_public_jwk(&public_jwk, &kid, alg)?;
                if sealed_private_key.trim().is_empty() {
                    return Err(SigningKeyError::MissingPrivateKey);
                }
                Ok(vec![SigningKeyEvent::Generated(SigningKeyGenerated {
                    kid,
                    alg,
                    public_jwk,
                    sealed_private_key,
                    created_at: now,
                })])
            }
            SigningKeyCommand::Activate => match self.status {
                None => Err(SigningKeyError::NotFound),
                Some(KeyStatus::Generated) => {
                    Ok(vec![SigningKeyEvent::Activated(SigningKeyActivated {
                        activated_at: now,
                    })])
                }
                Some(status) => Err(SigningKeyError::NotActivatable { status }),
            },
            SigningKeyCommand::Revoke => match self.status {
                None => Err(SigningKeyError::NotFound),
                Some(KeyStatus::Revoked) => Ok(vec![]),
                Some(KeyStatus::Active) => Err(SigningKeyError::RevokeActive),
                Some(KeyStatus::Generated | KeyStatus::Retired) => {
                    Ok(vec![SigningKeyEvent::Revoked(SigningKeyRevoked {
                        revoked_at: now,
                    })])
                }
            },
            SigningKeyCommand::Retire => match self.status {
                None => Err(SigningKeyError::NotFound),
                Some(KeyStatus::Retired | KeyStatus::Revoked) => Ok(vec![]),
                Some(KeyStatus::Generated | KeyStatus::Active) => {
                    Ok(vec![SigningKeyEvent::Retired(SigningKeyRetired {
                        retired_at: now,
                    })])
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::given_when;
    use serde_json::json;

    const KID: &str = "0197a000-0000-7000-8000-000000000001";

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(secs)
    }

    fn jwk() -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB",
               "kid": KID, "alg": "ES256", "use": "sig"})
    }

    fn generate_with(public_jwk: Value) -> SigningKeyCommand {
        SigningKeyCommand::Generate {
            kid: KID.into(),
            alg: KeyAlgorithm::ES256,
            public_jwk,
            sealed_private_key: "bm9uY2V8fGNpcGhlcnRleHQ=".into(),
        }
    }

    fn generated() -> SigningKeyEvent {
        SigningKeyEvent::Generated(SigningKeyGenerated {
            kid: KID.into(),
            alg: KeyAlgorithm::ES256,
            public_jwk: jwk(),
            sealed_private_key: "bm9uY2V8fGNpcGhlcnRleHQ=".into(),
            created_at: at(0),
        })
    }

    fn activated() -> SigningKeyEvent {
        SigningKeyEvent::Activated(SigningKeyActivated {
            activated_at: at(1),
        })
    }

    #[test]
    fn a_key_is_revoked_once_and_never_while_active() {
        let revoked = SigningKeyEvent::Revoked(SigningKeyRevoked { revoked_at: at(3) });
        given_when::<SigningKey>(
            &[generated(), activated(), retired()],
            SigningKeyCommand::Revoke,
            at(3),
        )
        .unwrap()
        .iter()
        .for_each(|e| assert_eq!(e, &revoked));
        assert_eq!(
            given_when::<SigningKey>(
                &[generated(), activated()],
                SigningKeyCommand::Revoke,
                at(3)
            ),
            Err(SigningKeyError::RevokeActive)
        );
        assert_eq!(
            given_when::<SigningKey>(
                &[generated(), activated(), retired(), revoked.clone()],
                SigningKeyCommand::Revoke,
                at(4)
            ),
            Ok(vec![])
        );
        assert_eq!(
            given_when::<SigningKey>(
                &[generated(), activated(), retired(), revoked],
                SigningKeyCommand::Activate,
                at(4)
            ),
            Err(SigningKeyError::NotActivatable {
                status: KeyStatus::Revoked
            })
        );
    }

    fn retired() -> SigningKeyEvent {
        SigningKeyEvent::Retired(SigningKeyRetired { retired_at: at(2) })
    }

    #[test]
    fn generate_records_the_public_key_and_the_sealed_private_key() {
        let r = given_when::<SigningKey>(&[], generate_with(jwk()), at(0));
        assert_eq!(r, Ok(vec![generated()]));
    }

    #[test]
    fn generate_twice_is_refused() {
        let r = given_when::<SigningKey>(&[generated()], generate_with(jwk()), at(5));
        assert_eq!(r, Err(SigningKeyError::AlreadyExists));
    }

    #[test]
    fn a_public_jwk_with_private_members_is_refused() {
        let mut leaky = jwk();
        leaky["d"] = json!("secret");
        let r = given_when::<SigningKey>(&[], generate_with(leaky), at(0));
        assert!(matches!(r, Err(SigningKeyError::InvalidPublicJwk { .. })));

        let mut other_kid = jwk();
        other_kid["kid"] = json!("other");
        let r = given_when::<SigningKey>(&[], generate_with(other_kid), at(0));
        assert!(matches!(r, Err(SigningKeyError::InvalidPublicJwk { .. })));

        let mut other_alg = jwk();
        other_alg["alg"] = json!("RS256");
        let r = given_when::<SigningKey>(&[], generate_with(other_alg), at(0));
        assert!(matches!(r, Err(SigningKeyError::InvalidPublicJwk { .. })));

        let r = given_when::<SigningKey>(&[], generate_with(json!("EC")), at(0));
        assert!(matches!(r, Err(SigningKeyError::InvalidPublicJwk { .. })));
    }

    #[test]
    fn a_bad_kid_or_no_private_key_is_refused() {
        let r = given_when::<SigningKey>(
            &[],
            SigningKeyCommand::Generate {
                kid: "has space".into(),
                alg: KeyAlgorithm::ES256,
                public_jwk: json!({"kty": "EC"}),
                sealed_private_key: "x".into(),
            },
            at(0),
        );
        assert_eq!(r, Err(SigningKeyError::InvalidKid));
        let r = given_when::<SigningKey>(
            &[],
            SigningKeyCommand::Generate {
                kid: KID.into(),
                alg: KeyAlgorithm::ES256,
                public_jwk: jwk(),
                sealed_private_key: " ".into(),
            },
            at(0),
        );
        assert_eq!(r, Err(SigningKeyError::MissingPrivateKey));
    }

    #[test]
    fn activate_only_a_freshly_generated_key() {
        assert_eq!(
            given_when::<SigningKey>(&[generated()], SigningKeyCommand::Activate, at(1)),
            Ok(vec![activated()])
        );
        assert_eq!(
            given_when::<SigningKey>(
                &[generated(), activated()],
                SigningKeyCommand::Activate,
                at(3)
            ),
            Err(SigningKeyError::NotActivatable {
                status: KeyStatus::Active
            })
        );
        assert_eq!(
            given_when::<SigningKey>(
                &[generated(), activated(), retired()],
                SigningKeyCommand::Activate,
                at(3)
            ),
            Err(SigningKeyError::NotActivatable {
                status: KeyStatus::Retired
            })
        );
        assert_eq!(
            given_when::<SigningKey>(&[], SigningKeyCommand::Activate, at(1)),
            Err(SigningKeyError::NotFound)
        );
    }

    #[test]
    fn retire_from_generated_or_active_and_once_only() {
        assert_eq!(
            given_when::<SigningKey>(
                &[generated(), activated()],
                SigningKeyCommand::Retire,
                at(2)
            ),
            Ok(vec![retired()])
        );
        assert_eq!(
            given_when::<SigningKey>(&[generated()], SigningKeyCommand::Retire, at(2)),
            Ok(vec![retired()])
        );
        assert_eq!(
            given_when::<SigningKey>(
                &[generated(), activated(), retired()],
                SigningKeyCommand::Retire,
                at(9)
            ),
            Ok(vec![])
        );
        assert_eq!(
            given_when::<SigningKey>(&[], SigningKeyCommand::Retire, at(2)),
            Err(SigningKeyError::NotFound)
        );
    }

    #[test]
    fn the_state_follows_the_life_cycle() {
        let s = SigningKey::fold(&[generated(), activated()]);
        assert_eq!(s.kid.as_deref(), Some(KID));
        assert_eq!(s.alg, Some(KeyAlgorithm::ES256));
        assert_eq!(s.status, Some(KeyStatus::Active));
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        for e in [generated(), activated(), retired()] {
            let back = SigningKeyEvent::decode(e.event_type(), e.to_data()).unwrap();
            assert_eq!(back, e);
        }
        assert_eq!(generated().to_data()["alg"], json!("ES256"));
        assert_eq!(
            serde_json::to_value(KeyAlgorithm::RS256).unwrap(),
            json!(KeyAlgorithm::RS256.as_str())
        );
        assert!(matches!(
            SigningKeyEvent::decode("signing_key.melted.v1", &Value::Null),
            Err(DecodeError::UnknownType(_))
        ));
    }
}
