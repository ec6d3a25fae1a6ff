//! Command handlers of users (see `domain::user`).
//!
//! Usernames and email addresses are unique per organization, decided here
//! and not by a read model: each normalized value has a reservation stream
//! named by its keyed claim (`domain::privacy::Pseudonyms::claim`), claimed
//! before the user's stream records the value and released when the value
//! changes or the user is erased. A claim whose owner never came to exist
//! (the process died between the claim and the creation) is taken over
//! once it is older than [`ORPHAN_AFTER`].
//!
//! Passwords are checked against the policy and hashed here (on the
//! bounded pool of [`Passwords`]); only the PHC string enters the command.

use domain::Metadata;
use domain::organization::Organization;
use domain::password::PasswordRefused;
use domain::reservation::{Reservation, ReservationCommand, ReservationError, ReservationKind};
use domain::user::{
    self, Attributes, AttributesPatch, InitialPassword, NewEmail, NewUsername, Profile,
    ProfilePatch, User, UserChanges, UserCommand, UserError, normalize_identifier,
};
use eventlog::Direction;
use time::Duration;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Outcome};
use crate::password::{PasswordError, Passwords};

/// How old a claim whose owner does not exist must be before another user
/// may take it over.
pub const ORPHAN_AFTER: Duration = Duration::seconds(60);

/// Why a user command did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum UserFailure {
    #[error(transparent)]
    User(UserError),
    #[error("the {field} is taken in this organization")]
    Taken { field: &'static str },
    #[error("the password is refused: {0}")]
    Password(PasswordRefused),
    #[error("the organization does not exist")]
    UnknownOrganization,
    #[error("the user changed since revision {expected}")]
    Stale { expected: u64, actual: Option<u64> },
    #[error("no keyed pseudonyms are configured: uniqueness cannot be decided")]
    NoPseudonyms,
    #[error(transparent)]
    Hashing(#[from] PasswordError),
    #[error("the stream kept changing under the command ({attempts} attempts)")]
    Contention { attempts: usize },
    #[error(transparent)]
    Log(#[from] eventlog::Error),
}

impl From<CommandError<UserError>> for UserFailure {
    fn from(e: CommandError<UserError>) -> Self {
        match e {
            CommandError::Domain(e) => Self::User(e),
            CommandError::Contention { attempts } => Self::Contention { attempts },
            CommandError::Stale { expected, actual } => Self::Stale { expected, actual },
            CommandError::Log(e) => Self::Log(e),
        }
    }
}

type Result<T> = std::result::Result<T, UserFailure>;

/// A user to create; the values are checked by the domain.
#[derive(Clone, Default)]
pub struct NewUser {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone_number: Option<String>,
    pub phone_verified: bool,
    pub profile: Profile,
    pub attributes: Attributes,
    /// An initial password, checked against the policy and hashed here.
    pub password: Option<String>,
    pub must_change_password: bool,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Clone, Default)]
pub struct UserPatch {
    pub username: Option<String>,
    /// `Some(None)` removes the address.
    pub email: Option<Option<String>>,
    pub phone_number: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub phone_verified: Option<bool>,
    pub profile: Option<Profile>,
    pub attributes: Option<Attributes>,
    /// Some profile fields, merged when the change is decided.
    pub profile_patch: Option<ProfilePatch>,
    /// Some attributes set or removed, merged when the change is decided.
    pub attributes_patch: Option<AttributesPatch>,
}

fn claim_of(
    bus: &CommandBus,
    organization: Uuid,
    kind: ReservationKind,
    value: &str,
) -> Result<String> {
    let ids = bus.person_ids().ok_or(UserFailure::NoPseudonyms)?;
    Ok(ids.claim(organization, kind.as_str(), &normalize_identifier(value)))
}

fn field_of(kind: ReservationKind) -> &'static str {
    match kind {
        ReservationKind::Username => "username",
        ReservationKind::Email => "email",
    }
}

/// Claims `claim` for `owner`, taking over a claim whose owner never came
/// to exist and is older than [`ORPHAN_AFTER`].
async fn reserve(
    bus: &CommandBus,
    claim: &str,
    kind: ReservationKind,
    organization_id: Uuid,
    owner: Uuid,
    meta: &Metadata,
) -> Result<()> {
    for _ in 0..2 {
        let command = ReservationCommand::Claim {
            owner,
            organization_id,
            kind,
        };
        // Most claims are of values nobody holds: decided on the empty
        // state without reading, and decided again on what is there if the
        // stream exists.
        match bus.execute_new::<Reservation>(claim, command, meta).await {
            Ok(_) => return Ok(()),
            Err(CommandError::Domain(ReservationError::Taken { holder })) => {
                if !orphaned(bus, claim, holder).await? {
                    return Err(UserFailure::Taken {
                        field: field_of(kind),
                    });
                }
                let release = ReservationCommand::Release { owner: holder };
                bus.execute::<Reservation>(claim, release, meta)
                    .await
                    .map_err(|e| reservation_failure(e, kind))?;
            }
            Err(CommandError::Domain(ReservationError::Mismatch)) => {
                return Err(UserFailure::Taken {
                    field: field_of(kind),
                });
            }
            Err(e) => return Err(reservation_failure(e, kind)),
        }
    }
    Err(UserFailure::Taken {
        field: field_of(kind),
    })
}

fn reservation_failure(e: CommandError<ReservationError>, kind: ReservationKind) -> UserFailure {
    match e {
        CommandError::Contention { attempts } => UserFailure::Contention { attempts },
        CommandError::Log(e) => UserFailure::Log(e),
        CommandError::Domain(_) | CommandError::Stale { .. } => UserFailure::Taken {
            field: field_of(kind),
        },
    }
}

/// Whether the claim's holder is not a user (or an erased one) and the
/// claim is old enough that no creation is still on its way.
async fn orphaned(bus: &CommandBus, claim: &str, holder: Uuid) -> Result<bool> {
    let (user, _) = bus.load::<User>(&holder.to_string()).await?;
    if user.exists() {
        return Ok(false);
    }
    if user.deleted {
        return Ok(true);
    }
    let stream = CommandBus::stream_name::<Reservation>(claim);
    let last = bus
        .log()
        .read_stream(&stream, Direction::Backwards, None, 1)
        .await?;
    let claimed_at = last.first().map(|e| e.recorded_at);
    Ok(claimed_at.is_some_and(|at| bus.clock().now() - at >= ORPHAN_AFTER))
}

/// Gives a claim back (best effort: a claim left behind is taken over
/// once orphaned).
async fn release(bus: &CommandBus, claim: &str, owner: Uuid, meta: &Metadata) {
    let command = ReservationCommand::Release { owner };
    if let Err(e) = bus.execute::<Reservation>(claim, command, meta).await {
        tracing::warn!(error = %e, "a uniqueness claim could not be released; it is taken over once orphaned");
    }
}

async fn organization_exists(bus: &CommandBus, id: Uuid) -> Result<()> {
    // An organization, once created, stays: a cached one will do.
    // One not seen yet may have been created on another node since: read.
    if bus
        .load_cached::<Organization>(&id.to_string())
        .await?
        .id
        .is_some()
        || bus
            .load::<Organization>(&id.to_string())
            .await?
            .0
            .id
            .is_some()
    {
        return Ok(());
    }
    Err(UserFailure::UnknownOrganization)
}

/// Creates a user: checks every value, claims the username (and the email
/// address), then records the user with its initial password in one append.
/// A refusal after the claims gives them back.
pub async fn create(
    bus: &CommandBus,
    passwords: &Passwords,
    new: NewUser,
    meta: &Metadata,
) -> Result<Outcome> {
    organization_exists(bus, new.organization_id).await?;
    // Everything the domain would refuse is refused before anything is
    // claimed.
    let username = user::validate_username(&new.username).map_err(UserFailure::User)?;
    let email = new
        .email
        .as_deref()
        .map(user::validate_email)
        .transpose()
        .map_err(UserFailure::User)?;
    if let Some(phone) = &new.phone_number {
        user::validate_phone_number(phone).map_err(UserFailure::User)?;
    }
    let profile = user::validate_profile(new.profile).map_err(UserFailure::User)?;
    let attributes = user::validate_attributes(new.attributes).map_err(UserFailure::User)?;
    let password = match &new.password {
        Some(p) => {
            passwords
                .check(p, &username, email.as_deref())
                .map_err(UserFailure::Password)?;
            Some(InitialPassword {
                hash: passwords.hash(p).await?,
                must_change: new.must_change_password,
            })
        }
        None => None,
    };
    let org = new.organization_id;
    let username_claim = claim_of(bus, org, ReservationKind::Username, &username)?;
    let email_claim = email
        .as_deref()
        .map(|e| claim_of(bus, org, ReservationKind::Email, e))
        .transpose()?;
    reserve(
        bus,
        &username_claim,
        ReservationKind::Username,
        org,
        new.id,
        meta,
    )
    .await?;
    if let Some(claim) = &email_claim
        && let Err(e) = reserve(bus, claim, ReservationKind::Email, org, new.id, meta).await
    {
        release(bus, &username_claim, new.id, meta).await;
        return Err(e);
    }
    let command = UserCommand::Create {
        id: new.id,
        organization_id: org,
        username,
        username_claim: username_claim.clone(),
        email,
        email_claim: email_claim.clone(),
        email_verified: new.email_verified,
        phone_number: new.phone_number,
        phone_verified: new.phone_verified,
        profile,
        attributes,
        created_by: meta.actor.id.clone().unwrap_or_default(),
        password,
    };
    match bus
        .execute_new::<User>(&new.id.to_string(), command, meta)
        .await
    {
        Ok(out) => Ok(out),
        Err(e) => {
            // A user already under this id keeps the claims it holds; the
            // others taken here are given back.
            let (existing, _) = bus.load::<User>(&new.id.to_string()).await?;
            let held = existing.claims();
            for claim in std::iter::once(&username_claim).chain(email_claim.as_ref()) {
                if !held.contains(claim) {
                    release(bus, claim, new.id, meta).await;
                }
            }
            Err(e.into())
        }
    }
}

/// Changes a user's values; with `if_revision`, only if the user's stream
/// is still at that revision. A new username or email address is claimed
/// first and the old one released after.
pub async fn change(
    bus: &CommandBus,
    user_id: Uuid,
    if_revision: Option<u64>,
    patch: UserPatch,
    meta: &Metadata,
) -> Result<Outcome> {
    let id = user_id.to_string();
    let (current, revision) = bus.load::<User>(&id).await?;
    if !current.exists() {
        return Err(UserFailure::User(UserError::NotFound));
    }
    if let Some(expected) = if_revision
        && revision != Some(expected)
    {
        return Err(UserFailure::Stale {
            expected,
            actual: revision,
        });
    }
    let org = current.organization_id;
    let mut claimed = Vec::new();
    let mut changes = UserChanges {
        phone_number: patch.phone_number,
        email_verified: patch.email_verified,
        phone_verified: patch.phone_verified,
        profile: patch.profile,
        attributes: patch.attributes,
        profile_patch: patch.profile_patch,
        attributes_patch: patch.attributes_patch,
        ..UserChanges::default()
    };
    let outcome = async {
        if let Some(name) = patch.username {
            let name = user::validate_username(&name).map_err(UserFailure::User)?;
            let claim = claim_of(bus, org, ReservationKind::Username, &name)?;
            if current.username_claim.as_deref() != Some(claim.as_str()) {
                reserve(bus, &claim, ReservationKind::Username, org, user_id, meta).await?;
                claimed.push(claim.clone());
            }
            changes.username = Some(NewUsername {
                username: name,
                claim,
            });
        }
        if let Some(email) = patch.email {
            let email = email
                .as_deref()
                .map(user::validate_email)
                .transpose()
                .map_err(UserFailure::User)?;
            let claim = email
                .as_deref()
                .map(|e| claim_of(bus, org, ReservationKind::Email, e))
                .transpose()?;
            if let Some(c) = &claim
                && current.email_claim.as_deref() != Some(c.as_str())
            {
                reserve(bus, c, ReservationKind::Email, org, user_id, meta).await?;
                claimed.push(c.clone());
            }
            changes.email = Some(NewEmail { email, claim });
        }
        let command = UserCommand::Change { changes };
        Ok::<_, UserFailure>(match if_revision {
            Some(expected) => bus.execute_at::<User>(&id, expected, command, meta).await?,
            None => bus.execute::<User>(&id, command, meta).await?,
        })
    }
    .await;
    match outcome {
        Ok(out) => {
            // The claims the user no longer holds are given back.
            let (after, _) = bus.load::<User>(&id).await?;
            let held = after.claims();
            for old in current.claims() {
                if !held.contains(&old) {
                    release(bus, &old, user_id, meta).await;
                }
            }
            Ok(out)
        }
        Err(e) => {
            for claim in &claimed {
                release(bus, claim, user_id, meta).await;
            }
            Err(e)
        }
    }
}

async fn execute(
    bus: &CommandBus,
    user_id: Uuid,
    if_revision: Option<u64>,
    command: UserCommand,
    meta: &Metadata,
) -> Result<Outcome> {
    let id = user_id.to_string();
    Ok(match if_revision {
        Some(expected) => bus.execute_at::<User>(&id, expected, command, meta).await?,
        None => bus.execute::<User>(&id, command, meta).await?,
    })
}

pub async fn deactivate(
    bus: &CommandBus,
    user_id: Uuid,
    if_revision: Option<u64>,
    meta: &Metadata,
) -> Result<Outcome> {
    execute(bus, user_id, if_revision, UserCommand::Deactivate, meta).await
}

pub async fn reactivate(
    bus: &CommandBus,
    user_id: Uuid,
    if_revision: Option<u64>,
    meta: &Metadata,
) -> Result<Outcome> {
    execute(bus, user_id, if_revision, UserCommand::Reactivate, meta).await
}

/// Sets a password the policy accepts (checked against the user's current
/// username and email address).
pub async fn set_password(
    bus: &CommandBus,
    passwords: &Passwords,
    user_id: Uuid,
    password: &str,
    must_change: bool,
    meta: &Metadata,
) -> Result<Outcome> {
    let (current, _) = bus.load::<User>(&user_id.to_string()).await?;
    if !current.exists() {
        return Err(UserFailure::User(UserError::NotFound));
    }
    let username = current.username.value().map_or("", String::as_str);
    let email = current
        .email
        .as_ref()
        .and_then(|e| e.value())
        .map(String::as_str);
    passwords
        .check(password, username, email)
        .map_err(UserFailure::Password)?;
    let hash = passwords.hash(password).await?;
    let command = UserCommand::SetPassword { hash, must_change };
    execute(bus, user_id, None, command, meta).await
}

pub async fn clear_password(bus: &CommandBus, user_id: Uuid, meta: &Metadata) -> Result<Outcome> {
    execute(bus, user_id, None, UserCommand::ClearPassword, meta).await
}

pub async fn require_password_change(
    bus: &CommandBus,
    user_id: Uuid,
    required: bool,
    meta: &Metadata,
) -> Result<Outcome> {
    let command = UserCommand::RequirePasswordChange { required };
    execute(bus, user_id, None, command, meta).await
}

/// Records the user's deletion and gives back their claims. The erasure
/// of their personal data (their subject's key) is the privacy layer's,
/// which calls this first.
pub async fn delete(
    bus: &CommandBus,
    user_id: Uuid,
    if_revision: Option<u64>,
    meta: &Metadata,
) -> Result<Outcome> {
    let (current, _) = bus.load::<User>(&user_id.to_string()).await?;
    let claims = current.claims();
    let out = execute(bus, user_id, if_revision, UserCommand::Delete, meta).await?;
    for claim in claims {
        release(bus, &claim, user_id, meta).await;
    }
    Ok(out)
}
