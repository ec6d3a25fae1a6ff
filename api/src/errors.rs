//! How each family of domain and command errors is said on the wire, in
//! one place: RFC 6749 error codes for the OAuth endpoints, RFC 9457
//! problems for the admin API. Domain and command errors stay typed and
//! know nothing of either format.

use axum::http::StatusCode;
use commands::CommandError;
use commands::registration::RegistrationFailure;
use domain::client::ClientError;
use domain::organization::OrganizationError;
use domain::registration::{AuthTokenError, RegistrationTokenError};

use crate::oauth::error::OAuthError;
use crate::problem::Problem;
use privacy::PrivacyError;

/// The machine-readable code sent with a registration token's refusal.
pub fn registration_code(e: &RegistrationTokenError) -> &'static str {
    use RegistrationTokenError as E;
    match e {
        E::Expired => "registration_token_expired",
        E::Exhausted => "registration_token_exhausted",
        E::Revoked => "registration_token_revoked",
        E::NotFound => "registration_token_not_found",
        E::AlreadyExists
        | E::InvalidCount
        | E::InvalidExpiry
        | E::InvalidDescription
        | E::InvalidInstance(_)
        | E::InvalidHash
        | E::UnknownClient => "invalid_request",
    }
}

/// The OAuth error code (RFC 6749 §5.2) of an auth token's refusal: every
/// exchange and refresh refusal is `invalid_grant`.
pub fn auth_token_code(e: &AuthTokenError) -> &'static str {
    use AuthTokenError as E;
    match e {
        E::NotFound
        | E::Deleted
        | E::InvalidCredential
        | E::AlreadyExchanged
        | E::ChainRevoked
        | E::ChainRevokedByReplay
        | E::Revoked => "invalid_grant",
        E::ScopeNotGranted(_) => "invalid_scope",
        E::AlreadyExists | E::InvalidHash | E::InvalidInstance(_) => "invalid_request",
    }
}

/// The code of a registration failure (`server_error` when the log failed).
pub fn failure_code(e: &RegistrationFailure) -> &'static str {
    match e {
        RegistrationFailure::RegistrationToken(e) => registration_code(e),
        RegistrationFailure::AuthToken(e) => auth_token_code(e),
        RegistrationFailure::Contention { .. } | RegistrationFailure::Log(_) => "server_error",
    }
}

/// At the token endpoint: an exchange or refresh refused.
impl From<RegistrationFailure> for OAuthError {
    fn from(e: RegistrationFailure) -> Self {
        match e {
            RegistrationFailure::AuthToken(e @ AuthTokenError::ScopeNotGranted(_)) => {
                OAuthError::invalid_scope(e.to_string())
            }
            RegistrationFailure::AuthToken(e) => OAuthError::invalid_grant(e.to_string()),
            RegistrationFailure::RegistrationToken(e) => OAuthError::invalid_grant(e.to_string()),
            other => OAuthError::server_error(&other),
        }
    }
}

/// At `/registration/consume`.
impl From<RegistrationFailure> for Problem {
    fn from(e: RegistrationFailure) -> Self {
        match e {
            RegistrationFailure::RegistrationToken(e) => {
                let status = match e {
                    RegistrationTokenError::NotFound => StatusCode::UNAUTHORIZED,
                    RegistrationTokenError::Expired
                    | RegistrationTokenError::Exhausted
                    | RegistrationTokenError::Revoked => StatusCode::FORBIDDEN,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                Problem::refused(status, registration_code(&e), e.to_string())
            }
            RegistrationFailure::AuthToken(e) => Problem::refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                auth_token_code(&e),
                e.to_string(),
            ),
            other => Problem::internal(&other),
        }
    }
}

impl From<CommandError<ClientError>> for Problem {
    fn from(e: CommandError<ClientError>) -> Self {
        match e {
            CommandError::Domain(d) => match d {
                ClientError::NotFound | ClientError::Deleted => Problem::not_found("client"),
                ClientError::SecretNotFound => Problem::not_found("secret"),
                ClientError::AlreadyExists => {
                    Problem::conflict("client-id-taken", "a client with this client_id exists")
                }
                e @ ClientError::SecretLimitReached { .. } => {
                    Problem::limit("secret-limit", e.to_string())
                        .with("limit", domain::client::MAX_LIVE_SECRETS)
                }
                other => Problem::validation(other.to_string()),
            },
            other => Problem::internal(&other),
        }
    }
}

impl From<CommandError<OrganizationError>> for Problem {
    fn from(e: CommandError<OrganizationError>) -> Self {
        match e {
            CommandError::Domain(OrganizationError::NotFound) => Problem::not_found("organization"),
            CommandError::Domain(OrganizationError::AlreadyExists) => {
                Problem::conflict("organization-exists", "the organization already exists")
            }
            CommandError::Domain(
                e @ (OrganizationError::InvalidName | OrganizationError::InvalidBranding(_)),
            ) => Problem::validation(e.to_string()),
            CommandError::Domain(OrganizationError::InvalidSignInPolicy(e)) => {
                Problem::validation(e.to_string()).with("field", e.field)
            }
            other => Problem::internal(&other),
        }
    }
}

impl From<CommandError<RegistrationTokenError>> for Problem {
    fn from(e: CommandError<RegistrationTokenError>) -> Self {
        match e {
            CommandError::Domain(RegistrationTokenError::NotFound) => {
                Problem::not_found("registration token")
            }
            CommandError::Domain(RegistrationTokenError::UnknownClient) => {
                Problem::validation("client_id names no client of an organization")
            }
            CommandError::Domain(other) => Problem::validation(other.to_string()),
            other => Problem::internal(&other),
        }
    }
}

impl From<CommandError<AuthTokenError>> for Problem {
    fn from(e: CommandError<AuthTokenError>) -> Self {
        match e {
            CommandError::Domain(AuthTokenError::NotFound) => Problem::not_found("auth token"),
            CommandError::Domain(other) => Problem::validation(other.to_string()),
            other => Problem::internal(&other),
        }
    }
}

impl From<PrivacyError> for Problem {
    fn from(e: PrivacyError) -> Self {
        match e {
            PrivacyError::InvalidSubject => Problem::bad_request(e.to_string()),
            PrivacyError::UnknownSubject => Problem::not_found("subject"),
            PrivacyError::NothingToCorrect | PrivacyError::Correction { .. } => {
                Problem::validation(e.to_string())
            }
            other => Problem::internal(&other),
        }
    }
}

impl From<commands::user::UserFailure> for Problem {
    fn from(e: commands::user::UserFailure) -> Self {
        use commands::user::UserFailure as F;
        use domain::user::UserError as E;
        match e {
            F::User(E::Invalid { field, reason }) => {
                Problem::validation(format!("{field}: {reason}")).with("field", field)
            }
            F::User(E::NotFound) => Problem::not_found("user"),
            F::User(E::AlreadyExists) => {
                Problem::conflict("user-id-taken", "a user with this user_id exists")
            }
            F::User(e @ E::Deactivated) => Problem::conflict("user-deactivated", e.to_string()),
            F::User(e @ E::NoPassword) => Problem::conflict("no-password", e.to_string()),
            F::Taken { field } => Problem::conflict(
                if field == "email" {
                    "email-taken"
                } else {
                    "username-taken"
                },
                format!("the {field} is taken in this organization"),
            )
            .with("field", field),
            F::Password(r) => Problem::validation(format!("password: {r}"))
                .with("field", "password")
                .with("rule", r.rule()),
            F::UnknownOrganization => Problem::validation("organization_id names no organization")
                .with("field", "organization_id"),
            F::Stale { actual, .. } => Problem::stale(actual),
            F::Contention { .. } => Problem::unavailable(e.to_string()),
            other => Problem::internal(&other),
        }
    }
}

impl From<privacy::people::DeleteUserError> for Problem {
    fn from(e: privacy::people::DeleteUserError) -> Self {
        match e {
            privacy::people::DeleteUserError::User(u) => u.into(),
            privacy::people::DeleteUserError::Privacy(p) => p.into(),
        }
    }
}

impl From<commands::group::GroupFailure> for Problem {
    fn from(e: commands::group::GroupFailure) -> Self {
        use commands::group::GroupFailure as F;
        use domain::group::{GroupError as E, GroupTreeError as T};
        match e {
            F::Group(E::NotFound) => Problem::not_found("group"),
            F::Group(E::AlreadyExists) => {
                Problem::conflict("group-id-taken", "a group with this group_id exists")
            }
            F::Group(e @ E::InvalidName) => {
                Problem::validation(e.to_string()).with("field", "name")
            }
            F::Group(e @ E::InvalidDescription) => {
                Problem::validation(e.to_string()).with("field", "description")
            }
            F::Group(e @ E::InvalidExternalId) => {
                Problem::validation(e.to_string()).with("field", "external_id")
            }
            F::Tree(T::Cycle { path }) => Problem::conflict(
                "group-cycle",
                "a group cannot contain itself, directly or through other groups",
            )
            .with(
                "cycle",
                path.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ),
            F::Tree(T::Forgotten { .. }) => Problem::not_found("group"),
            F::UnknownOrganization => Problem::validation("organization_id names no organization")
                .with("field", "organization_id"),
            F::UnknownUser(id) => Problem::validation(format!(
                "user {id} is not a user of the group's organization"
            ))
            .with("field", "user_id"),
            F::UnknownGroup(id) => {
                Problem::validation(format!("group {id} is not a group of the organization"))
                    .with("field", "group_id")
            }
            F::Stale { actual, .. } => Problem::stale(actual),
            F::Contention { .. } => Problem::unavailable(e.to_string()),
            other => Problem::internal(&other),
        }
    }
}

impl From<commands::authz::PolicyFailure> for Problem {
    fn from(e: commands::authz::PolicyFailure) -> Self {
        use commands::authz::PolicyFailure as F;
        use domain::authz_policy::AuthzPolicyError as E;
        match e {
            F::Compile(c) => {
                let mut p =
                    Problem::validation(format!("the policy does not compile: {}", c.message))
                        .with("field", "source");
                if let Some(line) = c.line {
                    p = p.with("line", line);
                }
                if let Some(column) = c.column {
                    p = p.with("column", column);
                }
                p
            }
            F::Policy(e @ E::InvalidSource) => {
                Problem::validation(e.to_string()).with("field", "source")
            }
            F::Policy(e @ E::InvalidDescription) => {
                Problem::validation(e.to_string()).with("field", "description")
            }
            F::Policy(E::NoSuchVersion(_)) => Problem::not_found("policy version"),
            F::Policy(e @ E::NothingToRollBackTo) => {
                Problem::conflict("nothing-to-roll-back-to", e.to_string())
            }
            F::UnknownOrganization => Problem::not_found("organization"),
            F::Stale { actual, .. } => Problem::stale(actual),
            F::Contention { .. } => Problem::unavailable(e.to_string()),
            other => Problem::internal(&other),
        }
    }
}

impl From<commands::role::RoleFailure> for Problem {
    fn from(e: commands::role::RoleFailure) -> Self {
        use commands::role::RoleFailure as F;
        use domain::role::RoleError as E;
        match e {
            F::Role(E::NotFound) => Problem::not_found("role"),
            F::Role(E::AlreadyExists) => {
                Problem::conflict("role-id-taken", "a role with this role_id exists")
            }
            F::Role(e @ E::InvalidName) => Problem::validation(e.to_string()).with("field", "name"),
            F::Role(e @ E::InvalidDescription) => {
                Problem::validation(e.to_string()).with("field", "description")
            }
            F::Role(E::InvalidPermission { permission }) => {
                let detail = E::InvalidPermission {
                    permission: permission.clone(),
                }
                .to_string();
                Problem::validation(detail)
                    .with("field", "permissions")
                    .with("permission", permission)
            }
            F::Role(e @ E::TooManyPermissions) => {
                Problem::validation(e.to_string()).with("field", "permissions")
            }
            F::Role(e @ E::ForeignHolder) => {
                Problem::validation(e.to_string()).with("field", "holder_id")
            }
            F::UnknownOrganization => Problem::validation("organization_id names no organization")
                .with("field", "organization_id"),
            F::Tree(domain::group::GroupTreeError::Cycle { path }) => Problem::conflict(
                "role-cycle",
                "a role cannot include itself, directly or through other roles",
            )
            .with(
                "cycle",
                path.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ),
            F::Tree(domain::group::GroupTreeError::Forgotten { .. }) => Problem::not_found("role"),
            F::UnknownRole(id) => {
                Problem::validation(format!("role {id} is not a role of the organization"))
                    .with("field", "role_id")
            }
            F::UnknownHolder(holder) => Problem::validation(format!(
                "no {} {} in the role's organization",
                holder.kind(),
                holder.id()
            ))
            .with("field", "holder_id"),
            F::Stale { actual, .. } => Problem::stale(actual),
            F::Contention { .. } => Problem::unavailable(e.to_string()),
            other => Problem::internal(&other),
        }
    }
}

/// The sign-in flow API's refusals.
impl From<commands::sign_in::SignInFailure> for Problem {
    fn from(e: commands::sign_in::SignInFailure) -> Self {
        use commands::sign_in::SignInFailure as F;
        use domain::sign_in::SignInError as S;
        match e {
            F::SignIn(S::NotFound) => Problem::refused(
                StatusCode::NOT_FOUND,
                "sign-in-not-found",
                "no sign-in with this id belongs to this browser",
            ),
            F::SignIn(e @ S::Expired) => {
                Problem::refused(StatusCode::GONE, "sign-in-expired", e.to_string())
            }
            F::SignIn(e @ S::Completed) => {
                Problem::refused(StatusCode::CONFLICT, "sign-in-completed", e.to_string())
            }
            F::SignIn(e @ (S::MethodNotAllowed(_) | S::NotFirstFactor(_) | S::AlreadyUsed(_))) => {
                Problem::refused(StatusCode::CONFLICT, "step-not-allowed", e.to_string())
            }
            F::SignIn(S::OtherUser) => Problem::refused(
                StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "the identifier, the password or the code is not right",
            ),
            F::SignIn(e @ S::StepsRemaining { remaining }) => {
                Problem::refused(StatusCode::CONFLICT, "steps-remaining", e.to_string())
                    .with("remaining_factors", remaining)
            }
            F::SignIn(e @ S::Invalid { field, .. }) => {
                Problem::validation(e.to_string()).with("field", field)
            }
            F::SignIn(e @ S::NoCode) => {
                Problem::refused(StatusCode::CONFLICT, "no-code", e.to_string())
            }
            F::SignIn(e @ S::CodeExpired) => {
                Problem::refused(StatusCode::GONE, "code-expired", e.to_string())
            }
            F::SignIn(e @ S::CodeExhausted) => {
                Problem::refused(StatusCode::CONFLICT, "code-exhausted", e.to_string())
            }
            F::SignIn(e @ (S::CodeRecentlySent | S::TooManyCodes)) => Problem::refused(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-codes",
                e.to_string(),
            ),
            F::SignIn(e @ S::NoPasskeyChallenge) => {
                Problem::refused(StatusCode::CONFLICT, "no-passkey-challenge", e.to_string())
            }
            F::SignIn(e @ S::AlreadyExists) => Problem::internal(&e),
            F::UnknownOrganization => {
                Problem::validation("no such organization").with("field", "organization_id")
            }
            F::UnknownClient => {
                Problem::validation("no such client in this organization, or it is disabled")
                    .with("field", "client_id")
            }
            F::UserInactive => Problem::refused(
                StatusCode::FORBIDDEN,
                "sign-in-refused",
                "this person may not sign in",
            ),
            F::Contention { .. } => Problem::unavailable("the sign-in is busy; try the step again"),
            other @ (F::Session(_) | F::NoPseudonyms | F::Hashing(_) | F::Log(_)) => {
                Problem::internal(&other)
            }
        }
    }
}

/// A session that does not authenticate, or could not be changed.
impl From<commands::session::SessionFailure> for Problem {
    fn from(e: commands::session::SessionFailure) -> Self {
        use commands::session::SessionFailure as F;
        use domain::session::SessionError as S;
        match e {
            F::Session(S::NotFound)
            | F::Session(S::Revoked)
            | F::Session(S::Expired)
            | F::UserInactive => Problem::refused(
                StatusCode::UNAUTHORIZED,
                "no-session",
                "sign in first: there is no valid session cookie",
            ),
            F::Session(e @ S::NoAddressCode) => {
                Problem::validation(e.to_string()).with("field", "verification")
            }
            F::Contention { .. } => Problem::unavailable("the session is busy; try again"),
            other => Problem::internal(&other),
        }
    }
}

/// A credential that could not be enrolled, checked or removed.
impl From<commands::credentials::CredentialFailure> for Problem {
    fn from(e: commands::credentials::CredentialFailure) -> Self {
        use commands::credentials::CredentialFailure as F;
        use domain::credentials::CredentialsError as C;
        match e {
            F::Credentials(e @ C::NoTotp) => {
                Problem::refused(StatusCode::NOT_FOUND, "no-totp", e.to_string())
            }
            F::Credentials(e @ C::TotpReplayed) => {
                Problem::refused(StatusCode::CONFLICT, "code-used", e.to_string())
            }
            F::Credentials(e @ C::Invalid { field, .. }) => {
                Problem::validation(e.to_string()).with("field", field)
            }
            F::WrongCode => Problem::validation("the code is not right").with("field", "code"),
            F::Credentials(e @ C::NoPasskey) => Problem::not_found("passkey").detail(e.to_string()),
            F::Credentials(e @ C::PasskeyExists) => {
                Problem::conflict("passkey-exists", e.to_string())
            }
            F::Credentials(e @ C::TooManyPasskeys) => {
                Problem::limit("too-many-passkeys", e.to_string())
                    .with("limit", domain::credentials::MAX_PASSKEYS)
            }
            F::Session(_) => Problem::refused(
                StatusCode::UNAUTHORIZED,
                "no-session",
                "sign in first: there is no valid session cookie",
            ),
            F::Contention { .. } => Problem::unavailable("busy; try again"),
            other @ F::Log(_) => Problem::internal(&other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_refusals_carry_their_codes() {
        use RegistrationTokenError as E;
        assert_eq!(
            registration_code(&E::Exhausted),
            "registration_token_exhausted"
        );
        assert_eq!(registration_code(&E::Expired), "registration_token_expired");
        assert_eq!(registration_code(&E::Revoked), "registration_token_revoked");
        assert_eq!(
            registration_code(&E::NotFound),
            "registration_token_not_found"
        );
        for e in [
            E::AlreadyExists,
            E::InvalidCount,
            E::InvalidExpiry,
            E::InvalidDescription,
            E::InvalidInstance("x".into()),
            E::InvalidHash,
            E::UnknownClient,
        ] {
            assert_eq!(registration_code(&e), "invalid_request", "{e:?}");
        }
    }

    #[test]
    fn every_exchange_and_refresh_refusal_is_invalid_grant() {
        use AuthTokenError as E;
        for e in [
            E::NotFound,
            E::Deleted,
            E::InvalidCredential,
            E::AlreadyExchanged,
            E::ChainRevoked,
            E::ChainRevokedByReplay,
            E::Revoked,
        ] {
            assert_eq!(auth_token_code(&e), "invalid_grant", "{e:?}");
        }
        for e in [
            E::AlreadyExists,
            E::InvalidHash,
            E::InvalidInstance("x".into()),
        ] {
            assert_eq!(auth_token_code(&e), "invalid_request", "{e:?}");
        }
    }

    #[test]
    fn failures_carry_the_domain_codes() {
        let f: RegistrationFailure = CommandError::Domain(RegistrationTokenError::Exhausted).into();
        assert_eq!(failure_code(&f), "registration_token_exhausted");
        let f: RegistrationFailure = CommandError::Domain(AuthTokenError::ChainRevoked).into();
        assert_eq!(failure_code(&f), "invalid_grant");
        let f: RegistrationFailure =
            CommandError::<AuthTokenError>::Contention { attempts: 3 }.into();
        assert_eq!(failure_code(&f), "server_error");
    }
}
