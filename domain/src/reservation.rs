//! Uniqueness reservations: who holds a username or an email address within
//! an organization.
//!
//! A value is unique when its claim stream, `reservation-{claim}`, is held by
//! at most one owner, and a stream decides that on its own. The claim is a
//! keyed hash (lowercase hex) of the organization, the kind and the
//! [`normalize_identifier`](crate::user::normalize_identifier) form of the
//! value, computed by the command side, so the stream name reveals nothing;
//! this aggregate only knows who holds it. Its events carry no personal
//! value and so no subject.
//!
//! The command side claims before it records a value on the user and
//! releases the claims a user's change or deletion names.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};
use crate::registration::decode_as;

/// The shortest and longest claim, in hex digits.
pub const MIN_CLAIM_LEN: usize = 16;
pub const MAX_CLAIM_LEN: usize = 128;

pub const CLAIMED_V1: &str = "reservation.claimed.v1";
pub const RELEASED_V1: &str = "reservation.released.v1";

/// Whether `claim` can name a reservation stream: [`MIN_CLAIM_LEN`] to
/// [`MAX_CLAIM_LEN`] lowercase hex digits.
pub fn is_valid_claim(claim: &str) -> bool {
    (MIN_CLAIM_LEN..=MAX_CLAIM_LEN).contains(&claim.len())
        && claim
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationKind {
    Username,
    Email,
}

impl ReservationKind {
    /// The stable name, for the command side's keyed hash.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email => "email",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationCommand {
    /// Free: claimed. Held by `owner`: nothing. Held by another: refused.
    Claim {
        owner: Uuid,
        organization_id: Uuid,
        kind: ReservationKind,
    },
    /// Held by `owner`: released. Otherwise nothing.
    Release { owner: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationClaimed {
    pub owner: Uuid,
    pub organization_id: Uuid,
    pub kind: ReservationKind,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationReleased {
    pub owner: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationEvent {
    Claimed(ReservationClaimed),
    Released(ReservationReleased),
}

impl DomainEvent for ReservationEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Claimed(_) => CLAIMED_V1,
            Self::Released(_) => RELEASED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Plain structs of ids and strings: serializing cannot fail.
        match self {
            Self::Claimed(e) => serde_json::to_value(e),
            Self::Released(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            CLAIMED_V1 => decode_as(event_type, data).map(Self::Claimed),
            RELEASED_V1 => decode_as(event_type, data).map(Self::Released),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReservationError {
    #[error("the value is already taken")]
    Taken { holder: Uuid },
    /// The claim was made before for another organization or kind: the
    /// command side hashed two different things to one claim.
    #[error("the claim belongs to another organization or kind")]
    Mismatch,
}

/// The reservation as its stream folds. `kind` and `organization_id` are
/// those of the last claim, kept once released.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub holder: Option<Uuid>,
    pub kind: Option<ReservationKind>,
    pub organization_id: Option<Uuid>,
}

impl Reservation {
    pub fn is_free(&self) -> bool {
        self.holder.is_none()
    }
}

impl Aggregate for Reservation {
    type Event = ReservationEvent;
    type Command = ReservationCommand;
    type Error = ReservationError;
    const CATEGORY: &'static str = "reservation";

    fn evolve(mut self, event: &ReservationEvent) -> Self {
        match event {
            ReservationEvent::Claimed(e) => {
                self.holder = Some(e.owner);
                self.kind = Some(e.kind);
                self.organization_id = Some(e.organization_id);
            }
            ReservationEvent::Released(_) => self.holder = None,
        }
        self
    }

    fn decide(
        &self,
        command: ReservationCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<ReservationEvent>, ReservationError> {
        match command {
            ReservationCommand::Claim {
                owner,
                organization_id,
                kind,
            } => {
                let other_org = self.organization_id.is_some_and(|o| o != organization_id);
                let other_kind = self.kind.is_some_and(|k| k != kind);
                if other_org || other_kind {
                    return Err(ReservationError::Mismatch);
                }
                match self.holder {
                    Some(holder) if holder == owner => Ok(vec![]),
                    Some(holder) => Err(ReservationError::Taken { holder }),
                    None => Ok(vec![ReservationEvent::Claimed(ReservationClaimed {
                        owner,
                        organization_id,
                        kind,
                        at: now,
                    })]),
                }
            }
            ReservationCommand::Release { owner } => Ok(if self.holder == Some(owner) {
                vec![ReservationEvent::Released(ReservationReleased {
                    owner,
                    at: now,
                })]
            } else {
                vec![]
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::given_when;

    const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;
    const ORG: Uuid = Uuid::from_u128(7);
    const ADA: Uuid = Uuid::from_u128(1);
    const BOB: Uuid = Uuid::from_u128(2);

    fn claim(owner: Uuid) -> ReservationCommand {
        ReservationCommand::Claim {
            owner,
            organization_id: ORG,
            kind: ReservationKind::Username,
        }
    }

    fn claimed(owner: Uuid) -> ReservationEvent {
        ReservationEvent::Claimed(ReservationClaimed {
            owner,
            organization_id: ORG,
            kind: ReservationKind::Username,
            at: NOW,
        })
    }

    fn released(owner: Uuid) -> ReservationEvent {
        ReservationEvent::Released(ReservationReleased { owner, at: NOW })
    }

    #[test]
    fn a_free_claim_is_taken_by_the_first_owner() {
        assert_eq!(
            given_when::<Reservation>(&[], claim(ADA), NOW),
            Ok(vec![claimed(ADA)])
        );
    }

    #[test]
    fn claiming_again_by_the_holder_records_nothing() {
        assert_eq!(
            given_when::<Reservation>(&[claimed(ADA)], claim(ADA), NOW),
            Ok(vec![])
        );
    }

    #[test]
    fn a_held_claim_is_refused_to_another_owner() {
        assert_eq!(
            given_when::<Reservation>(&[claimed(ADA)], claim(BOB), NOW),
            Err(ReservationError::Taken { holder: ADA })
        );
    }

    #[test]
    fn only_the_holder_releases() {
        assert_eq!(
            given_when::<Reservation>(
                &[claimed(ADA)],
                ReservationCommand::Release { owner: BOB },
                NOW
            ),
            Ok(vec![])
        );
        assert_eq!(
            given_when::<Reservation>(
                &[claimed(ADA)],
                ReservationCommand::Release { owner: ADA },
                NOW
            ),
            Ok(vec![released(ADA)])
        );
        assert_eq!(
            given_when::<Reservation>(&[], ReservationCommand::Release { owner: ADA }, NOW),
            Ok(vec![])
        );
    }

    #[test]
    fn a_released_claim_is_free_for_anyone() {
        let history = [claimed(ADA), released(ADA)];
        assert!(Reservation::fold(&history).is_free());
        assert_eq!(
            given_when::<Reservation>(&history, claim(BOB), NOW),
            Ok(vec![claimed(BOB)])
        );
        assert_eq!(
            given_when::<Reservation>(&history, ReservationCommand::Release { owner: ADA }, NOW),
            Ok(vec![])
        );
    }

    #[test]
    fn a_claim_for_another_organization_or_kind_is_refused() {
        let other_kind = ReservationCommand::Claim {
            owner: ADA,
            organization_id: ORG,
            kind: ReservationKind::Email,
        };
        let other_org = ReservationCommand::Claim {
            owner: ADA,
            organization_id: Uuid::from_u128(8),
            kind: ReservationKind::Username,
        };
        let history = [claimed(ADA), released(ADA)];
        for command in [other_kind, other_org] {
            assert_eq!(
                given_when::<Reservation>(&history, command, NOW),
                Err(ReservationError::Mismatch)
            );
        }
    }

    #[test]
    fn claims_are_lowercase_hex_of_bounded_length() {
        assert!(is_valid_claim(&"ab12".repeat(8)));
        assert!(!is_valid_claim("ab12"));
        assert!(!is_valid_claim(&"AB12".repeat(8)));
        assert!(!is_valid_claim(&"a".repeat(MAX_CLAIM_LEN + 1)));
    }

    #[test]
    fn events_round_trip_and_name_no_subject() {
        for e in [claimed(ADA), released(ADA)] {
            assert_eq!(e.subject(), None);
            let back = ReservationEvent::decode(e.event_type(), e.to_data()).unwrap();
            assert_eq!(back, e);
        }
        assert_eq!(claimed(ADA).to_data()["kind"], "username");
        assert!(matches!(
            ReservationEvent::decode("reservation.lost.v1", &Value::Null),
            Err(DecodeError::UnknownType(_))
        ));
    }
}
