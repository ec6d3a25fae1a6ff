//! An organization's access policy in Rego (stream `authzpolicy-{organization
//! id}`): every uploaded version kept, one active, a rollback back to the
//! version active before, and whether every decision is recorded or only
//! denials.
//!
//! That a version compiles is checked by the command side before the upload
//! is decided (this crate knows no Rego); the stream decides the numbering,
//! what may be activated and what a rollback returns to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::registration::decode_as;

/// The largest policy source, in bytes.
pub const MAX_SOURCE_LEN: usize = 256 * 1024;
pub const MAX_DESCRIPTION_LEN: usize = 1000;

pub const UPLOADED_V1: &str = "authzpolicy.uploaded.v1";
pub const ACTIVATED_V1: &str = "authzpolicy.activated.v1";
pub const DECISION_LOGGING_SET_V1: &str = "authzpolicy.decision_logging_set.v1";
/// A decision of the policy decision point (a journal event, in
/// [`decision_stream`]).
pub const DECIDED_V1: &str = "authz.decided.v1";

/// Where the decisions of a day go: a category of their own, a stream per
/// day, so that a retention rule can take them by age.
pub fn decision_stream(at: OffsetDateTime) -> String {
    format!(
        "decisions-{:04}{:02}{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzPolicyCommand {
    /// A new version; the caller has checked that it compiles.
    Upload {
        organization_id: Uuid,
        source: String,
        description: String,
        /// SHA-256 of the source, hex.
        digest: String,
        uploaded_by: String,
        /// Activate it in the same append.
        activate: bool,
    },
    Activate {
        version: u32,
    },
    /// Back to the version active before the current one.
    Rollback,
    SetDecisionLogging {
        all: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyUploaded {
    pub organization_id: Uuid,
    pub version: u32,
    pub source: String,
    pub description: String,
    pub digest: String,
    pub uploaded_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyActivated {
    pub organization_id: Uuid,
    pub version: u32,
    /// The version it replaced, if one was active.
    pub previous: Option<u32>,
    /// Whether this was a rollback.
    pub rollback: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionLoggingSet {
    pub organization_id: Uuid,
    /// Every decision recorded (`true`) or only denials.
    pub all: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzPolicyEvent {
    Uploaded(PolicyUploaded),
    Activated(PolicyActivated),
    DecisionLoggingSet(DecisionLoggingSet),
}

impl DomainEvent for AuthzPolicyEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Uploaded(_) => UPLOADED_V1,
            Self::Activated(_) => ACTIVATED_V1,
            Self::DecisionLoggingSet(_) => DECISION_LOGGING_SET_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Plain structs of ids, numbers and strings: serializing cannot fail.
        match self {
            Self::Uploaded(e) => serde_json::to_value(e),
            Self::Activated(e) => serde_json::to_value(e),
            Self::DecisionLoggingSet(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            UPLOADED_V1 => decode_as(event_type, data).map(Self::Uploaded),
            ACTIVATED_V1 => decode_as(event_type, data).map(Self::Activated),
            DECISION_LOGGING_SET_V1 => decode_as(event_type, data).map(Self::DecisionLoggingSet),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

/// A decision the policy decision point made (a journal fact). A subject
/// that is a person makes the event theirs ([`DomainEvent::subject`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub organization_id: Uuid,
    /// The active version that decided; none when no policy is active.
    pub policy_version: Option<u32>,
    pub decision: bool,
    pub subject_type: String,
    pub subject_id: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub action: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

crate::single_event!(Decided, DECIDED_V1, |e: &Decided| {
    (e.subject_type == "user")
        .then(|| Uuid::try_parse(&e.subject_id).ok())
        .flatten()
        .map(crate::user::user_subject)
});

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthzPolicyError {
    #[error("the policy source must be 1 to {MAX_SOURCE_LEN} bytes")]
    InvalidSource,
    #[error("the description must be at most {MAX_DESCRIPTION_LEN} characters")]
    InvalidDescription,
    #[error("there is no version {0}")]
    NoSuchVersion(u32),
    #[error("no version was active before the current one")]
    NothingToRollBackTo,
}

/// One uploaded version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub version: u32,
    pub source: String,
    pub description: String,
    pub digest: String,
    pub uploaded_by: String,
    pub uploaded_at: OffsetDateTime,
}

/// The organization's policies as the stream folds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzPolicy {
    pub organization_id: Uuid,
    pub versions: BTreeMap<u32, PolicyVersion>,
    pub active: Option<u32>,
    /// The versions active before the current one, oldest first: what a
    /// rollback returns to.
    pub history: Vec<u32>,
    /// Every decision recorded, not only denials.
    pub log_all: bool,
}

impl AuthzPolicy {
    /// The active version, if any.
    pub fn active_version(&self) -> Option<&PolicyVersion> {
        self.active.and_then(|v| self.versions.get(&v))
    }
}

impl Aggregate for AuthzPolicy {
    type Event = AuthzPolicyEvent;
    type Command = AuthzPolicyCommand;
    type Error = AuthzPolicyError;
    const CATEGORY: &'static str = "authzpolicy";

    fn evolve(mut self, event: &AuthzPolicyEvent) -> Self {
        match event {
            AuthzPolicyEvent::Uploaded(e) => {
                self.organization_id = e.organization_id;
                self.versions.insert(
                    e.version,
                    PolicyVersion {
                        version: e.version,
                        source: e.source.clone(),
                        description: e.description.clone(),
                        digest: e.digest.clone(),
                        uploaded_by: e.uploaded_by.clone(),
                        uploaded_at: e.at,
                    },
                );
            }
            AuthzPolicyEvent::Activated(e) => {
                if e.rollback {
                    self.history.pop();
                } else if let Some(previous) = e.previous {
                    self.history.push(previous);
                }
                self.active = Some(e.version);
            }
            AuthzPolicyEvent::DecisionLoggingSet(e) => self.log_all = e.all,
        }
        self
    }

    fn decide(
        &self,
        command: AuthzPolicyCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<AuthzPolicyEvent>, AuthzPolicyError> {
        match command {
            AuthzPolicyCommand::Upload {
                organization_id,
                source,
                description,
                digest,
                uploaded_by,
                activate,
            } => {
                if source.trim().is_empty() || source.len() > MAX_SOURCE_LEN {
                    return Err(AuthzPolicyError::InvalidSource);
                }
                let description = description.trim().to_owned();
                if description.chars().count() > MAX_DESCRIPTION_LEN {
                    return Err(AuthzPolicyError::InvalidDescription);
                }
                let version = self.versions.keys().next_back().map_or(1, |v| v + 1);
                let mut events = vec![AuthzPolicyEvent::Uploaded(PolicyUploaded {
                    organization_id,
                    version,
                    source,
                    description,
                    digest,
                    uploaded_by,
                    at: now,
                })];
                if activate {
                    events.push(AuthzPolicyEvent::Activated(PolicyActivated {
                        organization_id,
                        version,
                        previous: self.active,
                        rollback: false,
                        at: now,
                    }));
                }
                Ok(events)
            }
            AuthzPolicyCommand::Activate { version } => {
                if !self.versions.contains_key(&version) {
                    return Err(AuthzPolicyError::NoSuchVersion(version));
                }
                if self.active == Some(version) {
                    return Ok(vec![]);
                }
                Ok(vec![AuthzPolicyEvent::Activated(PolicyActivated {
                    organization_id: self.organization_id,
                    version,
                    previous: self.active,
                    rollback: false,
                    at: now,
                })])
            }
            AuthzPolicyCommand::Rollback => {
                let Some(&version) = self.history.last() else {
                    return Err(AuthzPolicyError::NothingToRollBackTo);
                };
                Ok(vec![AuthzPolicyEvent::Activated(PolicyActivated {
                    organization_id: self.organization_id,
                    version,
                    previous: self.active,
                    rollback: true,
                    at: now,
                })])
            }
            AuthzPolicyCommand::SetDecisionLogging { all } => Ok(if all == self.log_all {
                vec![]
            } else {
                vec![AuthzPolicyEvent::DecisionLoggingSet(DecisionLoggingSet {
                    organization_id: self.organization_id,
                    all,
                    at: now,
                })]
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::given_when;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
    const ORG: Uuid = Uuid::from_u128(7);

    fn upload(source: &str) -> AuthzPolicyCommand {
        AuthzPolicyCommand::Upload {
            organization_id: ORG,
            source: source.into(),
            description: String::new(),
            digest: "d".into(),
            uploaded_by: "admin".into(),
            activate: false,
        }
    }

    fn run(commands: Vec<AuthzPolicyCommand>) -> (AuthzPolicy, Vec<AuthzPolicyEvent>) {
        let mut events: Vec<AuthzPolicyEvent> = Vec::new();
        for c in commands {
            let new = given_when::<AuthzPolicy>(&events, c, NOW).unwrap();
            events.extend(new);
        }
        (AuthzPolicy::fold(&events), events)
    }

    #[test]
    fn versions_are_numbered_in_order_and_activated_by_number() {
        let (p, _) = run(vec![
            upload("package idp.authz"),
            upload("package idp.authz\nallow := true"),
            AuthzPolicyCommand::Activate { version: 2 },
        ]);
        assert_eq!(p.versions.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(p.active, Some(2));
        let (p, _) = run(vec![upload("x")]);
        assert_eq!(
            given_when::<AuthzPolicy>(&[], AuthzPolicyCommand::Activate { version: 3 }, NOW),
            Err(AuthzPolicyError::NoSuchVersion(3))
        );
        assert_eq!(p.active, None);
    }

    #[test]
    fn a_rollback_returns_to_each_earlier_active_version_in_turn() {
        let (p, events) = run(vec![
            upload("a"),
            upload("b"),
            upload("c"),
            AuthzPolicyCommand::Activate { version: 1 },
            AuthzPolicyCommand::Activate { version: 3 },
            AuthzPolicyCommand::Activate { version: 2 },
            AuthzPolicyCommand::Rollback,
        ]);
        assert_eq!(p.active, Some(3));
        let (p, _) = run(vec![
            upload("a"),
            upload("b"),
            upload("c"),
            AuthzPolicyCommand::Activate { version: 1 },
            AuthzPolicyCommand::Activate { version: 3 },
            AuthzPolicyCommand::Activate { version: 2 },
            AuthzPolicyCommand::Rollback,
            AuthzPolicyCommand::Rollback,
        ]);
        assert_eq!(p.active, Some(1));
        assert_eq!(
            given_when::<AuthzPolicy>(
                &[events[0].clone(), events[3].clone()],
                AuthzPolicyCommand::Rollback,
                NOW
            ),
            Err(AuthzPolicyError::NothingToRollBackTo)
        );
    }

    #[test]
    fn an_empty_or_oversized_source_is_refused() {
        assert_eq!(
            given_when::<AuthzPolicy>(&[], upload("  "), NOW),
            Err(AuthzPolicyError::InvalidSource)
        );
        let big = "#".repeat(MAX_SOURCE_LEN + 1);
        assert_eq!(
            given_when::<AuthzPolicy>(&[], upload(&big), NOW),
            Err(AuthzPolicyError::InvalidSource)
        );
    }

    #[test]
    fn decisions_about_a_person_are_theirs_and_go_to_a_stream_of_their_day() {
        let d = Decided {
            organization_id: ORG,
            policy_version: Some(1),
            decision: false,
            subject_type: "user".into(),
            subject_id: Uuid::from_u128(5).to_string(),
            resource_type: "document".into(),
            resource_id: None,
            action: "read".into(),
            at: NOW,
        };
        assert_eq!(
            d.subject(),
            Some(crate::user::user_subject(Uuid::from_u128(5)))
        );
        assert_eq!(decision_stream(NOW), "decisions-20260301");
    }
}
