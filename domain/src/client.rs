//! The OAuth client: an application registered in an organization, its
//! settings (redirect URIs, grants, scopes, how it authenticates) and the
//! secrets a confidential client authenticates with.
//!
//! Secrets enter this aggregate only as the hex SHA-256 of their value: the
//! plaintext is drawn and shown once by the command side and never recorded.
//! At most [`MAX_LIVE_SECRETS`] secrets are live (neither deleted nor expired)
//! at any time, which keeps rotation possible without unbounded growth.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use url::{Host, Url};
use uuid::Uuid;

use crate::decider::{Aggregate, DecodeError, DomainEvent};

pub const MAX_NAME_LEN: usize = 200;
pub const MAX_DESCRIPTION_LEN: usize = 1000;
pub const MAX_SECRET_DESCRIPTION_LEN: usize = 200;
pub const MAX_REDIRECT_URIS: usize = 20;
/// Longer redirect URIs are refused; the value is stored in every event.
pub const MAX_REDIRECT_URI_LEN: usize = 2000;
pub const MAX_SCOPES: usize = 100;
pub const MIN_ACCESS_TOKEN_LIFETIME_SECS: u32 = 60;
pub const MAX_ACCESS_TOKEN_LIFETIME_SECS: u32 = 86_400;
/// How many secrets may be live (not deleted, not expired) at once.
pub const MAX_LIVE_SECRETS: usize = 10;
pub const MAX_RESOURCES: usize = 20;

/// The scope of the admin API.
pub const ADMIN_SCOPE: &str = "idp:admin";

/// Scopes granted only when asked for by name: a token request without a
/// `scope` never gets them.
pub const PRIVILEGED_SCOPES: [&str; 1] = [ADMIN_SCOPE];

/// Why a token request's scope or resource is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the scope `{0}` is not allowed for this client")]
    ScopeNotAllowed(String),
    #[error("the scope `{0}` was not part of the original grant")]
    ScopeNotGranted(String),
    #[error("resource must be an absolute URI without a fragment (RFC 8707)")]
    MalformedResource,
    #[error("the resource `{0}` is not one this client may ask tokens for")]
    ResourceNotAllowed(String),
    #[error("this client may not use the {} grant", .0.as_str())]
    GrantNotAllowed(GrantType),
}

fn scope_tokens(scope: &str) -> impl Iterator<Item = &str> {
    scope.split(' ').filter(|s| !s.is_empty())
}

/// The scope granted to a token request: those asked for, each of which
/// must be allowed; when none is asked for, the allowed ones less the
/// privileged ones (RFC 6749 §3.3 lets the server pick a default).
pub fn granted_scope(requested: Option<&str>, allowed: &[String]) -> Result<String, GrantError> {
    let mut granted: Vec<&str> = Vec::new();
    match requested {
        None => granted.extend(
            allowed
                .iter()
                .map(String::as_str)
                .filter(|s| !PRIVILEGED_SCOPES.contains(s)),
        ),
        Some(req) => {
            for s in scope_tokens(req) {
                if !allowed.iter().any(|a| a == s) {
                    return Err(GrantError::ScopeNotAllowed(s.to_owned()));
                }
                if !granted.contains(&s) {
                    granted.push(s);
                }
            }
        }
    }
    Ok(granted.join(" "))
}

/// The scope of a refreshed token: at most what was granted originally
/// (RFC 6749 §6), all of it when none is asked for; and never more than
/// the client is still allowed.
pub fn narrowed_scope(
    requested: Option<&str>,
    original: &str,
    allowed: &[String],
) -> Result<String, GrantError> {
    let mut granted: Vec<&str> = Vec::new();
    match requested {
        None => granted.extend(scope_tokens(original).filter(|s| allowed.iter().any(|a| a == s))),
        Some(req) => {
            for s in scope_tokens(req) {
                if !scope_tokens(original).any(|o| o == s) {
                    return Err(GrantError::ScopeNotGranted(s.to_owned()));
                }
                if !allowed.iter().any(|a| a == s) {
                    return Err(GrantError::ScopeNotAllowed(s.to_owned()));
                }
                if !granted.contains(&s) {
                    granted.push(s);
                }
            }
        }
    }
    Ok(granted.join(" "))
}

impl ClientSettings {
    /// The audience of a token requested with `resource`: this server
    /// (`issuer`) when none is named, else the named resource, which must
    /// be this server or one the client lists.
    pub fn audience_for(&self, resource: Option<&str>, issuer: &str) -> Result<String, GrantError> {
        let Some(resource) = resource else {
            return Ok(issuer.to_owned());
        };
        check_resource(resource).map_err(|_| GrantError::MalformedResource)?;
        if resource == issuer || self.resources.iter().any(|r| r == resource) {
            Ok(resource.to_owned())
        } else {
            Err(GrantError::ResourceNotAllowed(resource.to_owned()))
        }
    }
}

fn check_resource(uri: &str) -> Result<(), &'static str> {
    let parsed = url::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    if parsed.fragment().is_some() {
        return Err("a resource indicator has no fragment");
    }
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err("too long");
    }
    Ok(())
}

fn validate_resources(resources: &[String]) -> Result<(), ClientError> {
    if resources.len() > MAX_RESOURCES {
        return Err(invalid(format!("at most {MAX_RESOURCES} resources")));
    }
    for (i, uri) in resources.iter().enumerate() {
        let bad = |reason| ClientError::InvalidResource {
            uri: uri.clone(),
            reason,
        };
        check_resource(uri).map_err(bad)?;
        if resources[..i].contains(uri) {
            return Err(bad("listed twice"));
        }
    }
    Ok(())
}

/// RFC 6749 section 2.1.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    #[default]
    Public,
    Confidential,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Confidential => "confidential",
        }
    }
}

/// How the client authenticates at the token endpoint
/// (`token_endpoint_auth_method`, RFC 7591 section 2).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    #[default]
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GrantType {
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "refresh_token")]
    RefreshToken,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

impl GrantType {
    pub const ALL: [Self; 4] = [
        Self::ClientCredentials,
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::TokenExchange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }
}

/// A string that names none of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

impl FromStr for GrantType {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "grant_type",
                value: s.to_owned(),
            })
    }
}

impl FromStr for AuthMethod {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        [
            Self::ClientSecretBasic,
            Self::ClientSecretPost,
            Self::PrivateKeyJwt,
            Self::None,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| UnknownValue {
            kind: "token_endpoint_auth_method",
            value: s.to_owned(),
        })
    }
}

impl FromStr for ClientType {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        [Self::Public, Self::Confidential]
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "client_type",
                value: s.to_owned(),
            })
    }
}

/// What an administrator configures on a client.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSettings {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub auth_method: AuthMethod,
    /// A JWK Set of the client's public keys, for `private_key_jwt`.
    #[serde(default)]
    pub jwks: Option<Value>,
    pub access_token_lifetime_secs: u32,
    /// The resource servers (RFC 8707 resource indicators, absolute URIs)
    /// the client may ask tokens for, besides this server itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Where RP-initiated logout may send the browser back, matched exactly
    /// like redirect URIs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    /// How the client's ID tokens are signed.
    #[serde(default, skip_serializing_if = "IdTokenAlg::is_default")]
    pub id_token_signed_response_alg: IdTokenAlg,
    /// A first-party client: people are never asked to consent to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_consent: bool,
    /// How long a refresh token of this client lives unused, in seconds
    /// (the server's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_lifetime_secs: Option<u32>,
    /// Refresh tokens even when `offline_access` was not granted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_without_offline_access: bool,
}

/// The algorithms an ID token may be signed with (`id_token_signed_response_alg`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdTokenAlg {
    #[default]
    ES256,
    RS256,
}

impl IdTokenAlg {
    pub const ALL: [Self; 2] = [Self::ES256, Self::RS256];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    fn is_default(&self) -> bool {
        *self == Self::ES256
    }
}

impl FromStr for IdTokenAlg {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "id_token_signed_response_alg",
                value: s.to_owned(),
            })
    }
}

/// Shortest and longest refresh token lifetimes a client may set.
pub const MIN_REFRESH_TOKEN_LIFETIME_SECS: u32 = 60;
pub const MAX_REFRESH_TOKEN_LIFETIME_SECS: u32 = 366 * 86_400;

/// Changes to a client's settings: absent fields stay as they are. Merged
/// into the current settings by the decider, under the stream's
/// serialization, so two changes at once never undo each other.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SettingsChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<GrantType>>,
    pub scopes: Option<Vec<String>>,
    pub auth_method: Option<AuthMethod>,
    pub jwks: Option<Value>,
    pub access_token_lifetime_secs: Option<u32>,
    pub resources: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub id_token_signed_response_alg: Option<IdTokenAlg>,
    pub skip_consent: Option<bool>,
    /// `Some(None)` returns to the server's default.
    pub refresh_token_lifetime_secs: Option<Option<u32>>,
    pub refresh_without_offline_access: Option<bool>,
}

impl SettingsChanges {
    /// `current` with the changes applied.
    pub fn applied_to(self, current: &ClientSettings) -> ClientSettings {
        let mut s = current.clone();
        if let Some(v) = self.name {
            s.name = v;
        }
        if let Some(v) = self.description {
            s.description = v;
        }
        if let Some(v) = self.redirect_uris {
            s.redirect_uris = v;
        }
        if let Some(v) = self.grant_types {
            s.grant_types = v;
        }
        if let Some(v) = self.scopes {
            s.scopes = v;
        }
        if let Some(v) = self.auth_method {
            s.auth_method = v;
        }
        if let Some(v) = self.jwks {
            s.jwks = Some(v);
        }
        if let Some(v) = self.access_token_lifetime_secs {
            s.access_token_lifetime_secs = v;
        }
        if let Some(v) = self.resources {
            s.resources = v;
        }
        if let Some(v) = self.post_logout_redirect_uris {
            s.post_logout_redirect_uris = v;
        }
        if let Some(v) = self.id_token_signed_response_alg {
            s.id_token_signed_response_alg = v;
        }
        if let Some(v) = self.skip_consent {
            s.skip_consent = v;
        }
        if let Some(v) = self.refresh_token_lifetime_secs {
            s.refresh_token_lifetime_secs = v;
        }
        if let Some(v) = self.refresh_without_offline_access {
            s.refresh_without_offline_access = v;
        }
        s
    }
}

/// How long secrets may live: configuration, passed in with the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretPolicy {
    pub max_lifetime_days: u32,
    pub allow_never_expiring: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    Create {
        client_id: Uuid,
        organization_id: Uuid,
        client_type: ClientType,
        settings: ClientSettings,
        /// Only the bootstrap sets this.
        platform_admin: bool,
    },
    Update {
        settings: ClientSettings,
    },
    /// Changes some settings, merged into the current ones.
    Change {
        changes: SettingsChanges,
    },
    Enable,
    Disable,
    Delete,
    CreateSecret {
        secret_id: Uuid,
        description: String,
        /// The hex SHA-256 of the secret's value; never the value itself.
        hash: String,
        expires_at: Option<OffsetDateTime>,
        policy: SecretPolicy,
    },
    DeleteSecret {
        secret_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCreated {
    pub client_id: Uuid,
    pub organization_id: Uuid,
    pub client_type: ClientType,
    pub settings: ClientSettings,
    /// The platform's own admin client (the one the first start creates):
    /// its admin tokens reach every organization. Set only at creation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub platform_admin: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientUpdated {
    pub settings: ClientSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientEnabled {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientDisabled {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientDeleted {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSecretCreated {
    pub secret_id: Uuid,
    pub description: String,
    /// Hex SHA-256 of the secret's value.
    pub hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSecretDeleted {
    pub secret_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Created(ClientCreated),
    Updated(ClientUpdated),
    Enabled(ClientEnabled),
    Disabled(ClientDisabled),
    Deleted(ClientDeleted),
    SecretCreated(ClientSecretCreated),
    SecretDeleted(ClientSecretDeleted),
}

pub const CREATED_V1: &str = "client.created.v1";
pub const UPDATED_V1: &str = "client.updated.v1";
pub const ENABLED_V1: &str = "client.enabled.v1";
pub const DISABLED_V1: &str = "client.disabled.v1";
pub const DELETED_V1: &str = "client.deleted.v1";
pub const SECRET_CREATED_V1: &str = "client.secret_created.v1";
pub const SECRET_DELETED_V1: &str = "client.secret_deleted.v1";

fn decode_as<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    event_type: &str,
    data: D,
) -> Result<T, DecodeError> {
    // From a borrowed tree or straight from the stored text: no copy first.
    T::deserialize(data).map_err(|e| DecodeError::malformed(event_type, e))
}

impl DomainEvent for ClientEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => CREATED_V1,
            Self::Updated(_) => UPDATED_V1,
            Self::Enabled(_) => ENABLED_V1,
            Self::Disabled(_) => DISABLED_V1,
            Self::Deleted(_) => DELETED_V1,
            Self::SecretCreated(_) => SECRET_CREATED_V1,
            Self::SecretDeleted(_) => SECRET_DELETED_V1,
        }
    }

    fn to_data(&self) -> Value {
        // Plain structs with string keys: serializing cannot fail.
        match self {
            Self::Created(e) => serde_json::to_value(e),
            Self::Updated(e) => serde_json::to_value(e),
            Self::Enabled(e) => serde_json::to_value(e),
            Self::Disabled(e) => serde_json::to_value(e),
            Self::Deleted(e) => serde_json::to_value(e),
            Self::SecretCreated(e) => serde_json::to_value(e),
            Self::SecretDeleted(e) => serde_json::to_value(e),
        }
        .unwrap_or(Value::Null)
    }

    fn decode<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        match event_type {
            CREATED_V1 => decode_as(event_type, data).map(Self::Created),
            UPDATED_V1 => decode_as(event_type, data).map(Self::Updated),
            ENABLED_V1 => decode_as(event_type, data).map(Self::Enabled),
            DISABLED_V1 => decode_as(event_type, data).map(Self::Disabled),
            DELETED_V1 => decode_as(event_type, data).map(Self::Deleted),
            SECRET_CREATED_V1 => decode_as(event_type, data).map(Self::SecretCreated),
            SECRET_DELETED_V1 => decode_as(event_type, data).map(Self::SecretDeleted),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ClientError {
    #[error("the client already exists (client ids are never reused, even after deletion)")]
    AlreadyExists,
    #[error("organization_id names no organization")]
    UnknownOrganization,
    #[error("the client does not exist")]
    NotFound,
    #[error("the client has been deleted")]
    Deleted,
    #[error("the name must be 1 to {MAX_NAME_LEN} characters and not blank")]
    InvalidName,
    #[error("invalid redirect URI {uri:?}: {reason}")]
    InvalidRedirectUri { uri: String, reason: &'static str },
    #[error(
        "invalid scope {0:?}: a scope must be an RFC 6749 scope-token (printable ASCII \
         except space, '\"' and '\\') and be listed once"
    )]
    InvalidScope(String),
    #[error("invalid client settings: {0}")]
    InvalidSettings(String),
    #[error("invalid jwks: {0}")]
    InvalidJwks(String),
    #[error("invalid resource {uri:?}: {reason}")]
    InvalidResource { uri: String, reason: &'static str },
    #[error("a public client cannot have secrets")]
    PublicClientCannotHaveSecrets,
    #[error("a client may have at most {limit} live secrets; delete one first")]
    SecretLimitReached { limit: usize },
    #[error("a secret may live at most {max_days} days")]
    SecretLifetimeTooLong { max_days: u32 },
    #[error("a secret must expire: never-expiring secrets are not allowed")]
    NeverExpiringNotAllowed,
    #[error("a secret's expiry must be in the future")]
    SecretExpiryInPast,
    #[error("the secret does not exist or was already deleted")]
    SecretNotFound,
    #[error(
        "the description is too long: at most {MAX_DESCRIPTION_LEN} characters for a \
         client, {MAX_SECRET_DESCRIPTION_LEN} for a secret"
    )]
    InvalidDescription,
}

/// One secret as the aggregate remembers it: its hash, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretState {
    pub id: Uuid,
    pub description: String,
    pub hash: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub deleted: bool,
}

impl SecretState {
    /// Not deleted and not expired at `now`.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        !self.deleted && self.expires_at.is_none_or(|t| t > now)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Client {
    pub exists: bool,
    pub id: Uuid,
    pub organization_id: Uuid,
    pub client_type: ClientType,
    pub settings: ClientSettings,
    pub enabled: bool,
    pub deleted: bool,
    pub created_at: Option<OffsetDateTime>,
    pub secrets: Vec<SecretState>,
    /// Its admin tokens reach every organization.
    pub platform_admin: bool,
}

impl Client {
    /// Whether the client may use `grant`: registered for it, and never
    /// `client_credentials` for a public client (it cannot act as itself).
    pub fn may_use(&self, grant: GrantType) -> Result<(), GrantError> {
        let public_as_itself =
            self.client_type == ClientType::Public && grant == GrantType::ClientCredentials;
        if self.settings.grant_types.contains(&grant) && !public_as_itself {
            Ok(())
        } else {
            Err(GrantError::GrantNotAllowed(grant))
        }
    }

    /// The secrets that authenticate at `now`.
    pub fn live_secrets(&self, now: OffsetDateTime) -> impl Iterator<Item = &SecretState> + '_ {
        self.secrets.iter().filter(move |s| s.is_live(now))
    }

    /// Created, enabled and not deleted: may obtain tokens.
    pub fn is_active(&self) -> bool {
        self.exists && self.enabled && !self.deleted
    }

    fn must_be_current(&self) -> Result<(), ClientError> {
        if !self.exists {
            return Err(ClientError::NotFound);
        }
        if self.deleted {
            return Err(ClientError::Deleted);
        }
        Ok(())
    }
}

fn invalid(reason: impl Into<String>) -> ClientError {
    ClientError::InvalidSettings(reason.into())
}

/// Checks settings for a client of `client_type`; returns them with the name
/// and description trimmed (everything else is kept exactly as given).
pub fn validate_settings(
    client_type: ClientType,
    settings: ClientSettings,
) -> Result<ClientSettings, ClientError> {
    let name = settings.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ClientError::InvalidName);
    }
    let description = settings.description.trim();
    if description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ClientError::InvalidDescription);
    }
    validate_redirect_uris(&settings.redirect_uris)?;
    validate_redirect_uris(&settings.post_logout_redirect_uris)?;
    if let Some(secs) = settings.refresh_token_lifetime_secs
        && !(MIN_REFRESH_TOKEN_LIFETIME_SECS..=MAX_REFRESH_TOKEN_LIFETIME_SECS).contains(&secs)
    {
        return Err(invalid(format!(
            "refresh_token_lifetime_secs must be between {MIN_REFRESH_TOKEN_LIFETIME_SECS} and \
             {MAX_REFRESH_TOKEN_LIFETIME_SECS}"
        )));
    }
    validate_scopes(&settings.scopes)?;
    validate_resources(&settings.resources)?;
    validate_grants(client_type, &settings)?;
    let lifetime = settings.access_token_lifetime_secs;
    if !(MIN_ACCESS_TOKEN_LIFETIME_SECS..=MAX_ACCESS_TOKEN_LIFETIME_SECS).contains(&lifetime) {
        return Err(invalid(format!(
            "access_token_lifetime_secs must be between {MIN_ACCESS_TOKEN_LIFETIME_SECS} and \
             {MAX_ACCESS_TOKEN_LIFETIME_SECS}"
        )));
    }
    validate_auth_method(client_type, &settings)?;
    Ok(ClientSettings {
        name: name.to_owned(),
        description: description.to_owned(),
        ..settings
    })
}

fn validate_redirect_uris(uris: &[String]) -> Result<(), ClientError> {
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs"
        )));
    }
    for (i, uri) in uris.iter().enumerate() {
        if let Err(reason) = check_redirect_uri(uri) {
            return Err(ClientError::InvalidRedirectUri {
                uri: uri.clone(),
                reason,
            });
        }
        if uris[..i].contains(uri) {
            return Err(ClientError::InvalidRedirectUri {
                uri: uri.clone(),
                reason: "listed twice",
            });
        }
    }
    Ok(())
}

/// One redirect URI (RFC 9700 section 2.1, OAuth 2.1 section 2.3.1): absolute,
/// no fragment, https except for a loopback host. The string is matched
/// exactly later, so whatever `Url::parse` would silently strip is refused.
fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err("longer than 2000 characters");
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    let url = Url::parse(uri).map_err(|_| "not an absolute URL")?;
    if url.fragment().is_some() {
        return Err("must not contain a fragment");
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(Host::Domain(d)) => d == "localhost",
                Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
                Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
                None => false,
            };
            if !loopback {
                return Err(
                    "http is allowed only for a loopback host (127.0.0.1, [::1], localhost)",
                );
            }
        }
        _ => return Err("the scheme must be https (or http for a loopback host)"),
    }
    // The parser accepts `https:host`, `https:///host` and backslashes for
    // slashes; the string is compared as written, so it must say plainly
    // which host it names.
    let plain = uri.split_once("://").is_some_and(|(scheme, rest)| {
        scheme.eq_ignore_ascii_case(url.scheme()) && !rest.starts_with('/')
    }) && !uri.contains('\\');
    if !plain {
        return Err("must be written as scheme://host/... without backslashes");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information");
    }
    Ok(())
}

/// RFC 6749 section 3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

fn validate_scopes(scopes: &[String]) -> Result<(), ClientError> {
    if scopes.len() > MAX_SCOPES {
        return Err(invalid(format!("at most {MAX_SCOPES} scopes")));
    }
    for (i, scope) in scopes.iter().enumerate() {
        if !is_scope_token(scope) || scopes[..i].contains(scope) {
            return Err(ClientError::InvalidScope(scope.clone()));
        }
    }
    Ok(())
}

fn validate_grants(client_type: ClientType, settings: &ClientSettings) -> Result<(), ClientError> {
    let grants = &settings.grant_types;
    if grants.is_empty() {
        return Err(invalid("at least one grant type is required"));
    }
    for (i, g) in grants.iter().enumerate() {
        if grants[..i].contains(g) {
            return Err(invalid(format!("grant type {} listed twice", g.as_str())));
        }
    }
    // Installed applications are public clients; they may trade an auth
    // token (token exchange), which proves the instance, but never act as
    // themselves (client credentials).
    if client_type == ClientType::Public && grants.contains(&GrantType::ClientCredentials) {
        return Err(invalid(format!(
            "a public client cannot use the {} grant",
            GrantType::ClientCredentials.as_str()
        )));
    }
    if grants.contains(&GrantType::AuthorizationCode) && settings.redirect_uris.is_empty() {
        return Err(invalid(
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    Ok(())
}

fn validate_auth_method(
    client_type: ClientType,
    settings: &ClientSettings,
) -> Result<(), ClientError> {
    match (client_type, settings.auth_method) {
        (ClientType::Public, AuthMethod::None) => {}
        (ClientType::Public, m) => {
            return Err(invalid(format!(
                "a public client must use auth method none, not {}",
                m.as_str()
            )));
        }
        (ClientType::Confidential, AuthMethod::None) => {
            return Err(invalid(
                "a confidential client must authenticate: auth method none is not allowed",
            ));
        }
        (ClientType::Confidential, AuthMethod::PrivateKeyJwt) if settings.jwks.is_none() => {
            return Err(invalid(
                "private_key_jwt needs jwks with the client's public keys",
            ));
        }
        (ClientType::Confidential, _) => {}
    }
    if let Some(jwks) = &settings.jwks {
        validate_jwks(jwks)?;
    }
    Ok(())
}

fn validate_jwks(jwks: &Value) -> Result<(), ClientError> {
    crate::jwk::validate_jwks(jwks).map_err(|e| ClientError::InvalidJwks(e.to_string()))
}

fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Client {
    fn decide_create_secret(
        &self,
        secret_id: Uuid,
        description: String,
        hash: String,
        expires_at: Option<OffsetDateTime>,
        policy: SecretPolicy,
        now: OffsetDateTime,
    ) -> Result<Vec<ClientEvent>, ClientError> {
        self.must_be_current()?;
        if self.client_type == ClientType::Public {
            return Err(ClientError::PublicClientCannotHaveSecrets);
        }
        let description = description.trim();
        if description.chars().count() > MAX_SECRET_DESCRIPTION_LEN {
            return Err(ClientError::InvalidDescription);
        }
        if !is_sha256_hex(&hash) {
            return Err(invalid(
                "the secret hash must be 64 lowercase hex characters (SHA-256)",
            ));
        }
        if self.secrets.iter().any(|s| s.id == secret_id) {
            return Err(invalid(format!("secret {secret_id} already exists")));
        }
        match expires_at {
            None if !policy.allow_never_expiring => {
                return Err(ClientError::NeverExpiringNotAllowed);
            }
            None => {}
            Some(t) if t <= now => return Err(ClientError::SecretExpiryInPast),
            Some(t) if t - now > Duration::days(i64::from(policy.max_lifetime_days)) => {
                return Err(ClientError::SecretLifetimeTooLong {
                    max_days: policy.max_lifetime_days,
                });
            }
            Some(_) => {}
        }
        if self.live_secrets(now).count() >= MAX_LIVE_SECRETS {
            return Err(ClientError::SecretLimitReached {
                limit: MAX_LIVE_SECRETS,
            });
        }
        Ok(vec![ClientEvent::SecretCreated(ClientSecretCreated {
            secret_id,
            description: description.to_owned(),
            hash,
            created_at: now,
            expires_at,
        })])
    }
}

impl Aggregate for Client {
    type Event = ClientEvent;
    type Command = ClientCommand;
    type Error = ClientError;
    const CATEGORY: &'static str = "client";

    fn evolve(mut self, event: &ClientEvent) -> Self {
        match event {
            ClientEvent::Created(e) => {
                self.exists = true;
                self.id = e.client_id;
                self.organization_id = e.organization_id;
                self.client_type = e.client_type;
                self.settings = e.settings.clone();
                self.enabled = true;
                self.created_at = Some(e.created_at);
                self.platform_admin = e.platform_admin;
            }
            ClientEvent::Updated(e) => self.settings = e.settings.clone(),
            ClientEvent::Enabled(_) => self.enabled = true,
            ClientEvent::Disabled(_) => self.enabled = false,
            ClientEvent::Deleted(_) => self.deleted = true,
            ClientEvent::SecretCreated(e) => self.secrets.push(SecretState {
                id: e.secret_id,
                description: e.description.clone(),
                hash: e.hash.clone(),
                created_at: e.created_at,
                expires_at: e.expires_at,
                deleted: false,
            }),
            ClientEvent::SecretDeleted(e) => {
                if let Some(s) = self.secrets.iter_mut().find(|s| s.id == e.secret_id) {
                    s.deleted = true;
                }
            }
        }
        self
    }

    fn decide(
        &self,
        command: ClientCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<ClientEvent>, ClientError> {
        match command {
            ClientCommand::Create {
                client_id,
                organization_id,
                client_type,
                settings,
                platform_admin,
            } => {
                if self.exists {
                    return Err(ClientError::AlreadyExists);
                }
                Ok(vec![ClientEvent::Created(ClientCreated {
                    client_id,
                    organization_id,
                    client_type,
                    settings: validate_settings(client_type, settings)?,
                    platform_admin,
                    created_at: now,
                })])
            }
            ClientCommand::Change { changes } => {
                self.must_be_current()?;
                let settings = changes.applied_to(&self.settings);
                self.decide(ClientCommand::Update { settings }, now)
            }
            ClientCommand::Update { settings } => {
                self.must_be_current()?;
                let settings = validate_settings(self.client_type, settings)?;
                if settings == self.settings {
                    return Ok(vec![]);
                }
                Ok(vec![ClientEvent::Updated(ClientUpdated { settings })])
            }
            ClientCommand::Enable => {
                self.must_be_current()?;
                Ok(if self.enabled {
                    vec![]
                } else {
                    vec![ClientEvent::Enabled(ClientEnabled {})]
                })
            }
            ClientCommand::Disable => {
                self.must_be_current()?;
                Ok(if self.enabled {
                    vec![ClientEvent::Disabled(ClientDisabled {})]
                } else {
                    vec![]
                })
            }
            ClientCommand::Delete => {
                self.must_be_current()?;
                Ok(vec![ClientEvent::Deleted(ClientDeleted {})])
            }
            ClientCommand::CreateSecret {
                secret_id,
                description,
                hash,
                expires_at,
                policy,
            } => self.decide_create_secret(secret_id, description, hash, expires_at, policy, now),
            ClientCommand::DeleteSecret { secret_id } => {
                self.must_be_current()?;
                if !self.secrets.iter().any(|s| s.id == secret_id && !s.deleted) {
                    return Err(ClientError::SecretNotFound);
                }
                Ok(vec![ClientEvent::SecretDeleted(ClientSecretDeleted {
                    secret_id,
                })])
            }
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
