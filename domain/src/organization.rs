//! The organization: the tenant every other object belongs to.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::sign_in_policy::{PolicyInvalid, SignInPolicy};

pub const MAX_NAME_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganizationCommand {
    Create {
        id: Uuid,
        name: String,
    },
    Rename {
        name: String,
    },
    /// What signing in to the organization takes (see
    /// [`crate::sign_in_policy`]).
    SetSignInPolicy {
        policy: SignInPolicy,
    },
    /// What signing in through one client of the organization takes
    /// instead (`None`: the organization's policy again).
    SetClientSignInPolicy {
        client_id: Uuid,
        policy: Option<SignInPolicy>,
    },
    /// How the organization's sign-in and consent pages look.
    SetBranding {
        branding: Branding,
    },
}

/// How an organization's pages look: a logo and an accent colour (the
/// default theme for what is not set).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branding {
    /// An https URL of the logo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accent_color: Option<String>,
}

/// The longest logo URL accepted.
pub const MAX_LOGO_URL_LEN: usize = 2000;

impl Branding {
    /// Checks the values: the logo an absolute https URL, the colour
    /// `#rrggbb` (lowercased).
    pub fn validate(self) -> Result<Self, OrganizationError> {
        if let Some(url) = &self.logo_url {
            let plain = url.starts_with("https://")
                && url.len() <= MAX_LOGO_URL_LEN
                && !url
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"');
            if !plain {
                return Err(OrganizationError::InvalidBranding(
                    "logo_url must be an https URL of at most 2000 characters",
                ));
            }
        }
        let accent_color = match self.accent_color {
            Some(c) => {
                let hex = c.strip_prefix('#').unwrap_or("");
                if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(OrganizationError::InvalidBranding(
                        "accent_color must be #rrggbb",
                    ));
                }
                Some(c.to_ascii_lowercase())
            }
            None => None,
        };
        Ok(Self {
            logo_url: self.logo_url,
            accent_color,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationCreated {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationRenamed {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInPolicySet {
    pub policy: SignInPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSignInPolicySet {
    pub client_id: Uuid,
    /// `None`: the client follows the organization's policy again.
    #[serde(default)]
    pub policy: Option<SignInPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandingSet {
    pub branding: Branding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganizationEvent {
    Created(OrganizationCreated),
    Renamed(OrganizationRenamed),
    SignInPolicySet(SignInPolicySet),
    ClientSignInPolicySet(ClientSignInPolicySet),
    BrandingSet(BrandingSet),
}

pub const CREATED_V1: &str = "organization.created.v1";
pub const RENAMED_V1: &str = "organization.renamed.v1";
pub const SIGN_IN_POLICY_SET_V1: &str = "organization.sign_in_policy_set.v1";
pub const CLIENT_SIGN_IN_POLICY_SET_V1: &str = "organization.client_sign_in_policy_set.v1";
pub const BRANDING_SET_V1: &str = "organization.branding_set.v1";

impl DomainEvent for OrganizationEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => CREATED_V1,
            Self::Renamed(_) => RENAMED_V1,
            Self::SignInPolicySet(_) => SIGN_IN_POLICY_SET_V1,
            Self::ClientSignInPolicySet(_) => CLIENT_SIGN_IN_POLICY_SET_V1,
            Self::BrandingSet(_) => BRANDING_SET_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Serializing plain structs of strings cannot fail.
        match self {
            Self::Created(e) => serde_json::to_value(e),
            Self::Renamed(e) => serde_json::to_value(e),
            Self::SignInPolicySet(e) => serde_json::to_value(e),
            Self::ClientSignInPolicySet(e) => serde_json::to_value(e),
            Self::BrandingSet(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        let malformed = |e| DecodeError::malformed(event_type, e);
        match event_type {
            CREATED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::Created)
                .map_err(malformed),
            RENAMED_V1 => serde::Deserialize::deserialize(data)
                .map(Self::Renamed)
                .map_err(malformed),
            SIGN_IN_POLICY_SET_V1 => serde::Deserialize::deserialize(data)
                .map(Self::SignInPolicySet)
                .map_err(malformed),
            CLIENT_SIGN_IN_POLICY_SET_V1 => serde::Deserialize::deserialize(data)
                .map(Self::ClientSignInPolicySet)
                .map_err(malformed),
            BRANDING_SET_V1 => serde::Deserialize::deserialize(data)
                .map(Self::BrandingSet)
                .map_err(malformed),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrganizationError {
    #[error("the organization already exists")]
    AlreadyExists,
    #[error("the organization does not exist")]
    NotFound,
    #[error("the name must be 1 to {MAX_NAME_LEN} characters and not blank")]
    InvalidName,
    #[error("the sign-in policy is refused: {0}")]
    InvalidSignInPolicy(PolicyInvalid),
    #[error("{0}")]
    InvalidBranding(&'static str),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: Option<Uuid>,
    pub name: String,
    /// What signing in takes; the default policy until one is set.
    pub sign_in_policy: SignInPolicy,
    /// Clients whose sign-ins take another policy.
    pub client_policies: std::collections::BTreeMap<Uuid, SignInPolicy>,
    /// How its pages look.
    pub branding: Branding,
}

impl Organization {
    /// The policy a sign-in through `client` (if any) follows.
    pub fn policy_for(&self, client: Option<Uuid>) -> &SignInPolicy {
        client
            .and_then(|c| self.client_policies.get(&c))
            .unwrap_or(&self.sign_in_policy)
    }
}

fn valid_name(name: &str) -> Result<String, OrganizationError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_LEN {
        return Err(OrganizationError::InvalidName);
    }
    Ok(trimmed.to_owned())
}

impl Aggregate for Organization {
    type Event = OrganizationEvent;
    type Command = OrganizationCommand;
    type Error = OrganizationError;
    const CATEGORY: &'static str = "organization";

    fn evolve(mut self, event: &OrganizationEvent) -> Self {
        match event {
            OrganizationEvent::Created(e) => {
                self.id = Some(e.id);
                self.name = e.name.clone();
            }
            OrganizationEvent::Renamed(e) => self.name = e.name.clone(),
            OrganizationEvent::SignInPolicySet(e) => self.sign_in_policy = e.policy.clone(),
            OrganizationEvent::BrandingSet(e) => self.branding = e.branding.clone(),
            OrganizationEvent::ClientSignInPolicySet(e) => match &e.policy {
                Some(p) => {
                    self.client_policies.insert(e.client_id, p.clone());
                }
                None => {
                    self.client_policies.remove(&e.client_id);
                }
            },
        }
        self
    }

    fn decide(
        &self,
        command: OrganizationCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<OrganizationEvent>, OrganizationError> {
        match command {
            OrganizationCommand::Create { id, name } => {
                if self.id.is_some() {
                    return Err(OrganizationError::AlreadyExists);
                }
                Ok(vec![OrganizationEvent::Created(OrganizationCreated {
                    id,
                    name: valid_name(&name)?,
                    created_at: now,
                })])
            }
            OrganizationCommand::Rename { name } => {
                if self.id.is_none() {
                    return Err(OrganizationError::NotFound);
                }
                let name = valid_name(&name)?;
                if name == self.name {
                    return Ok(vec![]);
                }
                Ok(vec![OrganizationEvent::Renamed(OrganizationRenamed {
                    name,
                })])
            }
            OrganizationCommand::SetSignInPolicy { policy } => {
                if self.id.is_none() {
                    return Err(OrganizationError::NotFound);
                }
                let policy = policy
                    .validate()
                    .map_err(OrganizationError::InvalidSignInPolicy)?;
                if policy == self.sign_in_policy {
                    return Ok(vec![]);
                }
                Ok(vec![OrganizationEvent::SignInPolicySet(SignInPolicySet {
                    policy,
                })])
            }
            OrganizationCommand::SetBranding { branding } => {
                if self.id.is_none() {
                    return Err(OrganizationError::NotFound);
                }
                let branding = branding.validate()?;
                if branding == self.branding {
                    return Ok(vec![]);
                }
                Ok(vec![OrganizationEvent::BrandingSet(BrandingSet {
                    branding,
                })])
            }
            OrganizationCommand::SetClientSignInPolicy { client_id, policy } => {
                if self.id.is_none() {
                    return Err(OrganizationError::NotFound);
                }
                let policy = policy
                    .map(SignInPolicy::validate)
                    .transpose()
                    .map_err(OrganizationError::InvalidSignInPolicy)?;
                if self.client_policies.get(&client_id) == policy.as_ref() {
                    return Ok(vec![]);
                }
                Ok(vec![OrganizationEvent::ClientSignInPolicySet(
                    ClientSignInPolicySet { client_id, policy },
                )])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::given_when;

    fn created(name: &str) -> OrganizationEvent {
        OrganizationEvent::Created(OrganizationCreated {
            id: Uuid::nil(),
            name: name.into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn create_records_the_trimmed_name() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let events = given_when::<Organization>(
            &[],
            OrganizationCommand::Create {
                id: Uuid::nil(),
                name: "  Acme ".into(),
            },
            now,
        )
        .unwrap();
        assert_eq!(events, vec![created("Acme")]);
    }

    #[test]
    fn a_sign_in_policy_is_validated_and_set_only_when_it_changes() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let two = SignInPolicy {
            factors_required: 2,
            ..SignInPolicy::default()
        };
        let set = given_when::<Organization>(
            &[created("Acme")],
            OrganizationCommand::SetSignInPolicy {
                policy: two.clone(),
            },
            now,
        )
        .unwrap();
        assert_eq!(set.len(), 1);
        let mut all = vec![created("Acme")];
        all.extend(set);
        assert_eq!(Organization::fold(&all).sign_in_policy, two);
        assert_eq!(
            given_when::<Organization>(
                &all,
                OrganizationCommand::SetSignInPolicy { policy: two },
                now
            ),
            Ok(vec![])
        );
        let impossible = SignInPolicy {
            factors_required: 9,
            ..SignInPolicy::default()
        };
        assert!(matches!(
            given_when::<Organization>(
                &all,
                OrganizationCommand::SetSignInPolicy { policy: impossible },
                now
            ),
            Err(OrganizationError::InvalidSignInPolicy(_))
        ));
    }

    #[test]
    fn a_client_may_follow_its_own_policy_until_it_is_cleared() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let client = Uuid::from_u128(5);
        let strict = SignInPolicy {
            factors_required: 2,
            ..SignInPolicy::default()
        };
        let mut all = vec![created("Acme")];
        all.extend(
            given_when::<Organization>(
                &all,
                OrganizationCommand::SetClientSignInPolicy {
                    client_id: client,
                    policy: Some(strict.clone()),
                },
                now,
            )
            .unwrap(),
        );
        let org = Organization::fold(&all);
        assert_eq!(org.policy_for(Some(client)), &strict);
        assert_eq!(org.policy_for(None), &SignInPolicy::default());
        assert_eq!(org.policy_for(Some(Uuid::nil())), &SignInPolicy::default());
        all.extend(
            given_when::<Organization>(
                &all,
                OrganizationCommand::SetClientSignInPolicy {
                    client_id: client,
                    policy: None,
                },
                now,
            )
            .unwrap(),
        );
        assert_eq!(
            Organization::fold(&all).policy_for(Some(client)),
            &SignInPolicy::default()
        );
    }

    #[test]
    fn create_twice_is_refused() {
        let r = given_when::<Organization>(
            &[created("Acme")],
            OrganizationCommand::Create {
                id: Uuid::nil(),
                name: "Other".into(),
            },
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(r, Err(OrganizationError::AlreadyExists));
    }

    #[test]
    fn rename_to_the_same_name_records_nothing() {
        let r = given_when::<Organization>(
            &[created("Acme")],
            OrganizationCommand::Rename {
                name: "Acme".into(),
            },
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(r, Ok(vec![]));
    }

    #[test]
    fn blank_or_missing_is_refused() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            given_when::<Organization>(
                &[created("Acme")],
                OrganizationCommand::Rename { name: "  ".into() },
                now
            ),
            Err(OrganizationError::InvalidName)
        );
        assert_eq!(
            given_when::<Organization>(&[], OrganizationCommand::Rename { name: "x".into() }, now),
            Err(OrganizationError::NotFound)
        );
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let e = created("Acme");
        let back = OrganizationEvent::decode(e.event_type(), e.to_data()).unwrap();
        assert_eq!(back, e);
        assert!(matches!(
            OrganizationEvent::decode("organization.exploded.v1", &Value::Null),
            Err(DecodeError::UnknownType(_))
        ));
    }
}
