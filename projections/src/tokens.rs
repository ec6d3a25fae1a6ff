//! The token views: what validating and signing access tokens reads on every
//! request, kept current from the log by one subscription: the signing key
//! ring, the clients and auth tokens by id, the revocations in force, and
//! the waits of the failed client authentication throttle that any node
//! began.
//!
//! One place decides whether a token is good: signature by a key of ours,
//! issuer, expiry, not revoked, and its client still active. Introspection
//! and the admin API's bearer check both ask [`TokenViews::validate`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crypto::MasterKey;
use domain::authz_policy::AuthzPolicy;
use domain::client::Client;
use domain::registration::AuthToken;
use domain::signing_key::KeyAlgorithm;
use domain::throttle::ThrottlePolicy;
use domain::token::TokenEvent;
use eventlog::clock::Clock;
use eventlog::{EventLog, Filter, Position, RecordedEvent};
use jose::{AccessTokenClaims, KeyError, KeyRing, sign_access_token, verify_access_token};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::throttle::Throttle;
use crate::views::{AggregateCache, Revocations};

/// Why a token is not good (callers answer `active: false` or 401 alike).
#[derive(Debug, thiserror::Error)]
pub enum TokenInvalid {
    #[error("malformed, badly signed, expired or foreign token")]
    Unverifiable,
    #[error("the token was revoked")]
    Revoked,
    #[error("the token's client is disabled, deleted or unknown")]
    ClientInactive,
    #[error("the token's claims are malformed")]
    BadClaims,
}

/// A token that passed every check.
#[derive(Clone, Debug)]
pub struct ValidToken {
    pub claims: AccessTokenClaims,
    pub client_id: Uuid,
    /// The token's client as it is now.
    pub client: Arc<Client>,
    pub jti: String,
    pub scope: String,
}

/// How long a key just written may take to become readable.
const READABLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Verified tokens remembered at most.
const VERIFIED_ENTRIES: usize = 50_000;

pub type ClientCache = AggregateCache<Client>;

/// What a failure report records besides the counts: how the client
/// tried, why it failed last, and the request's metadata.
#[derive(Clone, Debug)]
pub struct FailureNote {
    pub auth_method: &'static str,
    pub reason: &'static str,
    pub metadata: domain::Metadata,
}

/// Failed client authentications by (canonical client id, source address).
pub type ClientThrottle = Throttle<(String, String), FailureNote>;

/// Failed sign-in steps by (account, source address): an account is
/// `user:{id}` or the keyed claim of an identifier nobody holds.
pub type UserThrottle = Throttle<(String, String), ()>;

/// The code limiter's keys: the account's, and the source address's.
fn code_keys(account: &str, source: Option<&str>) -> ((String, String), Option<(String, String)>) {
    (
        (account.to_owned(), String::new()),
        source.map(|s| (String::new(), s.to_owned())),
    )
}

pub use domain::token::AUTH_TOKEN_CLAIM;

pub struct TokenViews {
    pub issuer: String,
    pub token_endpoint: String,
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    master: MasterKey,
    keys: RwLock<KeyRing>,
    pub clients: ClientCache,
    pub auth_tokens: AggregateCache<AuthToken>,
    /// People's grants, for the access tokens issued under them.
    pub grants: AggregateCache<domain::grant::Grant>,
    /// People, sessions and consents as the OpenID Connect endpoints check
    /// them on every request (kept current by the same subscription).
    pub users: AggregateCache<domain::user::User>,
    pub sessions: AggregateCache<domain::session::Session>,
    pub consents: AggregateCache<domain::consent::Consents>,
    /// Each organization's Rego policies (the decision point compiles the
    /// active one).
    pub authz_policies: AggregateCache<AuthzPolicy>,
    /// Tokens whose signature was verified, with their claims.
    verified: RwLock<HashMap<String, AccessTokenClaims>>,
    /// Revoked, not yet expired tokens.
    revoked: Revocations,
    /// Failed client authentications, with the waits other nodes began.
    pub client_throttle: ClientThrottle,
    /// Failed sign-in steps by account and source address (every failure
    /// is recorded; each node counts them all).
    pub user_throttle: UserThrottle,
    /// Codes sent by account and by source address (every send is
    /// recorded; each node counts them all): a few are free, then each
    /// waits longer. Keyed by [`code_keys`]; see [`Self::code_send_wait`].
    code_throttle: UserThrottle,
    /// Failed sign-in steps by account from every address together
    /// (`ThrottlePolicy::account_wide`).
    pub account_throttle: Throttle<String, ()>,
    /// Failed sign-in steps by source address against every account
    /// together (`ThrottlePolicy::per_address`).
    pub address_throttle: Throttle<String, ()>,
}

impl TokenViews {
    pub fn new(
        issuer: String,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        master: MasterKey,
        ring: KeyRing,
    ) -> Self {
        Self {
            token_endpoint: format!("{issuer}/oauth/token"),
            issuer,
            log,
            clock,
            master,
            keys: RwLock::new(ring),
            clients: ClientCache::default(),
            auth_tokens: AggregateCache::default(),
            grants: AggregateCache::default(),
            users: AggregateCache::default(),
            sessions: AggregateCache::default(),
            consents: AggregateCache::default(),
            authz_policies: AggregateCache::default(),
            verified: RwLock::new(HashMap::new()),
            revoked: Revocations::default(),
            client_throttle: ClientThrottle::new(ThrottlePolicy::default()),
            user_throttle: UserThrottle::new(ThrottlePolicy::sign_in()),
            code_throttle: UserThrottle::new(ThrottlePolicy::code_sends()),
            account_throttle: Throttle::new(ThrottlePolicy::account_wide()),
            address_throttle: Throttle::new(ThrottlePolicy::per_address()),
        }
    }

    pub fn jwks(&self, now: OffsetDateTime, grace: time::Duration) -> serde_json::Value {
        self.keys
            .read()
            .map(|r| r.jwks(now, grace))
            .unwrap_or_else(|_| serde_json::json!({ "keys": [] }))
    }

    /// Brings the key ring up to the log until `kid` is the active key of
    /// its algorithm (after a rotation here, so that the next token is
    /// signed with the new key).
    pub async fn catch_up_keys(&self, kid: &str) -> Result<(), KeyError> {
        self.catch_up_keys_until(|r: &KeyRing| {
            r.get(kid)
                .is_some_and(|e| r.active(e.alg).is_some_and(|a| a.kid == kid))
        })
        .await
    }

    /// Brings the key ring up to the log until `done` holds of it (after a
    /// change made here, so that this node acts on it at once).
    pub async fn catch_up_keys_until(
        &self,
        done: impl Fn(&KeyRing) -> bool,
    ) -> Result<(), KeyError> {
        let mut ring = match self.keys.read() {
            Ok(r) => r.clone(),
            Err(_) => return Ok(()),
        };
        ring.catch_up_until(&self.log, &self.master, done, READABLE_WITHIN)
            .await?;
        if let Ok(mut current) = self.keys.write()
            && ring.position() > current.position()
        {
            *current = ring;
            if let Ok(mut verified) = self.verified.write() {
                verified.clear();
            }
        }
        Ok(())
    }

    /// How long before a code may be sent to `account` (or from `source`,
    /// when given), if either must still wait.
    pub fn code_send_wait(
        &self,
        account: &str,
        source: Option<&str>,
        now: OffsetDateTime,
    ) -> Option<time::Duration> {
        let (by_account, by_source) = code_keys(account, source);
        std::iter::once(by_account)
            .chain(by_source)
            .find_map(|key| self.code_throttle.wait(&key, now))
    }

    /// Counts a code about to be sent to `account` (and from `source`,
    /// when given); answers the fact to record, so that every node counts
    /// it too.
    pub fn count_code_send(
        &self,
        account: &str,
        source: Option<&str>,
        user_id: Option<uuid::Uuid>,
        now: OffsetDateTime,
    ) -> domain::sign_in::CodeSendCounted {
        let (by_account, by_source) = code_keys(account, source);
        let (account_sends, account_blocked_until) = self.code_throttle.count(by_account, now);
        let (source_sends, source_blocked_until) = match by_source {
            Some(key) => {
                let (sends, until) = self.code_throttle.count(key, now);
                (Some(sends), until)
            }
            None => (None, None),
        };
        domain::sign_in::CodeSendCounted {
            user_id,
            account: account.to_owned(),
            account_sends,
            account_blocked_until,
            source_sends,
            source_blocked_until,
            at: now,
        }
    }

    /// Whether tokens can be signed (an active ES256 key is loaded).
    pub fn can_sign(&self) -> bool {
        self.keys
            .read()
            .is_ok_and(|r| r.active(KeyAlgorithm::ES256).is_some())
    }

    /// Reads the key ring as it is now (`None` if a writer panicked).
    pub fn with_ring<R>(&self, read: impl FnOnce(&KeyRing) -> R) -> Option<R> {
        self.keys.read().ok().map(|ring| read(&ring))
    }

    /// Checks a token completely.
    pub async fn validate(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<ValidToken, TokenInvalid> {
        let claims = self.verified(token, now)?;
        if self.revoked.contains(&claims.jti) {
            return Err(TokenInvalid::Revoked);
        }
        let client_id = Uuid::parse_str(&claims.client_id).map_err(|_| TokenInvalid::BadClaims)?;
        let client = match self.clients.get(&self.log, client_id).await {
            Ok(Some(c)) if c.is_active() => c,
            _ => return Err(TokenInvalid::ClientInactive),
        };
        // No token of ours lives longer than its client's lifetime, whatever
        // its `exp` says.
        let lifetime = i64::from(client.settings.access_token_lifetime_secs);
        if claims.iat.saturating_add(lifetime) <= now.unix_timestamp() {
            return Err(TokenInvalid::Unverifiable);
        }
        // A token issued to an instance dies with its auth token.
        if let Some(v) = claims.extra.get(AUTH_TOKEN_CLAIM) {
            let id = v
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or(TokenInvalid::BadClaims)?;
            match self.auth_tokens.get(&self.log, id).await {
                Ok(Some(a)) if a.is_usable() => {}
                _ => return Err(TokenInvalid::Revoked),
            }
        }
        // A token issued under a person's grant dies with the grant.
        if let Some(v) = claims.extra.get(domain::token::GRANT_CLAIM) {
            let id = v
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or(TokenInvalid::BadClaims)?;
            match self.grants.get(&self.log, id).await {
                Ok(Some(g)) if g.is_usable() => {}
                _ => return Err(TokenInvalid::Revoked),
            }
        }
        Ok(ValidToken {
            jti: claims.jti.clone(),
            scope: claims.scope.clone(),
            client_id,
            client,
            claims,
        })
    }

    /// The claims of a token whose signature, issuer and expiry check out.
    /// A signature is verified once; the claims are then remembered until
    /// the token expires (revocation and the client's state are checked on
    /// every call by the caller, never cached here).
    fn verified(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessTokenClaims, TokenInvalid> {
        let now_s = now.unix_timestamp();
        if let Some(c) = self
            .verified
            .read()
            .ok()
            .and_then(|m| m.get(token).cloned())
            && c.exp > now_s
        {
            return Ok(c);
        }
        let claims = {
            let ring = self.keys.read().map_err(|_| TokenInvalid::Unverifiable)?;
            verify_access_token(
                &ring,
                token,
                &self.issuer,
                now_s,
                i64::from(domain::client::MAX_ACCESS_TOKEN_LIFETIME_SECS),
            )
            .map_err(|_| TokenInvalid::Unverifiable)?
        };
        if let Ok(mut m) = self.verified.write() {
            if m.len() >= VERIFIED_ENTRIES {
                m.retain(|_, c| c.exp > now_s);
                if m.len() >= VERIFIED_ENTRIES {
                    m.clear();
                }
            }
            m.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }

    /// Signs ID token `claims` with the active key of `alg`.
    pub fn sign_id_token(
        &self,
        alg: KeyAlgorithm,
        claims: &serde_json::Value,
    ) -> Result<String, KeyError> {
        let ring = self.keys.read().map_err(|_| KeyError::Poisoned)?;
        jose::sign_id_token(&ring, alg, claims)
    }

    /// The claims of an ID token this server signed, expired or not.
    pub fn id_token_hint(&self, token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
        let ring = self.keys.read().ok()?;
        jose::verify_id_token_hint(&ring, token, &self.issuer).ok()
    }

    /// Signs `claims` with the active ES256 key.
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, KeyError> {
        let ring = self.keys.read().map_err(|_| KeyError::Poisoned)?;
        sign_access_token(&ring, KeyAlgorithm::ES256, claims)
    }

    /// The client `id` as the log has it now.
    pub async fn client(&self, id: Uuid) -> Result<Option<Arc<Client>>, eventlog::Error> {
        self.clients.get(&self.log, id).await
    }

    /// The person `id` as the log has it (kept current by the
    /// subscription).
    pub async fn user(&self, id: Uuid) -> Result<Option<Arc<domain::user::User>>, eventlog::Error> {
        self.users.get(&self.log, id).await
    }

    /// The session `id` as the log has it (kept current by the
    /// subscription).
    pub async fn session(
        &self,
        id: Uuid,
    ) -> Result<Option<Arc<domain::session::Session>>, eventlog::Error> {
        self.sessions.get(&self.log, id).await
    }

    /// The consents of person `id` (kept current by the subscription).
    pub async fn consents(
        &self,
        id: Uuid,
    ) -> Result<Option<Arc<domain::consent::Consents>>, eventlog::Error> {
        self.consents.get(&self.log, id).await
    }

    /// The auth token `id` as the log has it now.
    pub async fn auth_token(&self, id: Uuid) -> Result<Option<Arc<AuthToken>>, eventlog::Error> {
        self.auth_tokens.get(&self.log, id).await
    }

    /// Applies a revocation recorded here at once (other nodes apply it
    /// from the log).
    pub fn revoked_here(&self, token: &ValidToken) {
        self.revoked.revoked(
            token.jti.clone(),
            token.claims.exp,
            self.clock.now().unix_timestamp(),
        );
    }

    /// Applies an event from the log to the in-memory views.
    pub fn apply(&self, e: &RecordedEvent) {
        match e.category() {
            "client" => {
                if let Some(id) = stream_id(e) {
                    self.clients.invalidate(id);
                }
            }
            "authtoken" => {
                if let Some(id) = stream_id(e) {
                    self.auth_tokens.invalidate(id);
                }
            }
            "grant" => {
                if let Some(id) = stream_id(e) {
                    self.grants.invalidate(id);
                }
            }
            "user" => {
                if let Some(id) = stream_id(e) {
                    self.users.invalidate(id);
                }
            }
            "session" => {
                if let Some(id) = stream_id(e) {
                    self.sessions.invalidate(id);
                }
            }
            "consent" => {
                if let Some(id) = stream_id(e) {
                    self.consents.invalidate(id);
                }
            }
            "authzpolicy" => {
                if let Some(id) = stream_id(e) {
                    self.authz_policies.invalidate(id);
                }
            }
            "signingkey" => {
                if let Ok(mut ring) = self.keys.write()
                    && e.position > ring.position()
                    && let Err(err) = ring.apply(e, &self.master)
                {
                    tracing::error!(error = %err, stream = %e.stream, "cannot apply a signing key event");
                }
                // A key revoked or retired changes what verifies: nothing
                // verified under the old ring is taken on trust.
                if let Ok(mut verified) = self.verified.write() {
                    verified.clear();
                }
            }
            "authfailures" => self.observe_failures(e),
            "revocations" => {
                if let Ok(TokenEvent::Revoked(r)) = eventlog::decode::<TokenEvent>(e) {
                    self.revoked.revoked(
                        r.jti.to_string(),
                        r.expires_at.unix_timestamp(),
                        self.clock.now().unix_timestamp(),
                    );
                }
            }
            _ => {}
        }
    }

    /// A wait another node (or this one, before a restart) began; a failed
    /// sign-in step anywhere; an unlock.
    fn observe_failures(&self, e: &RecordedEvent) {
        use domain::sign_in::{STEP_FAILED_V1, SignInStepFailed, SignInUnlocked, UNLOCKED_V1};
        if e.event_type == STEP_FAILED_V1 {
            if let Ok(f) = eventlog::decode::<SignInStepFailed>(e) {
                let source = e.metadata.source_ip.clone().unwrap_or_default();
                if let Some(n) = f.account_failures {
                    self.account_throttle
                        .observe_at(f.account.clone(), n, None, f.at);
                }
                if let (Some(n), false) = (f.address_failures, source.is_empty()) {
                    self.address_throttle.observe_at(
                        source.clone(),
                        n,
                        f.address_blocked_until,
                        f.at,
                    );
                }
                self.user_throttle.observe_at(
                    (f.account, source),
                    f.failures,
                    f.blocked_until,
                    f.at,
                );
            }
            return;
        }
        if e.event_type == domain::sign_in::CODE_SEND_COUNTED_V1 {
            if let Ok(c) = eventlog::decode::<domain::sign_in::CodeSendCounted>(e) {
                let source = c.source_sends.and(e.metadata.source_ip.as_deref());
                let (by_account, by_source) = code_keys(&c.account, source);
                self.code_throttle.observe_at(
                    by_account,
                    c.account_sends,
                    c.account_blocked_until,
                    c.at,
                );
                if let (Some(key), Some(sends)) = (by_source, c.source_sends) {
                    self.code_throttle
                        .observe_at(key, sends, c.source_blocked_until, c.at);
                }
            }
            return;
        }
        if e.event_type == UNLOCKED_V1 {
            if let Ok(u) = eventlog::decode::<SignInUnlocked>(e) {
                let account = format!("user:{}", u.user_id.simple());
                self.user_throttle.forget(|(a, _)| *a == account);
                self.account_throttle.forget(|a| *a == account);
            }
            return;
        }
        if let Ok(TokenEvent::ClientAuthFailed(f)) = eventlog::decode::<TokenEvent>(e)
            && f.blocked_until.is_some()
        {
            let source = e.metadata.source_ip.clone().unwrap_or_default();
            self.client_throttle.observe(
                (f.client_id, source),
                f.failures.unwrap_or(f.count),
                f.blocked_until,
            );
        }
    }

    /// Reads the waits begun today and yesterday (a wait lasts minutes at
    /// most), so that a restart forgets none.
    async fn load_waits(&self, until: Position) {
        let now = self.clock.now();
        for day in [now - time::Duration::days(1), now] {
            let stream = domain::token::auth_failure_stream(day);
            let mut from = None;
            loop {
                let page = match self
                    .log
                    .read_stream(&stream, eventlog::Direction::Forwards, from, 1000)
                    .await
                {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot load the client authentication throttle");
                        break;
                    }
                };
                let Some(last) = page.last() else { break };
                from = Some(last.revision + 1);
                page.iter()
                    .filter(|e| e.position <= until)
                    .for_each(|e| self.observe_failures(e));
                if page.len() < 1000 {
                    break;
                }
            }
        }
    }

    /// The categories [`Self::apply`] cares about.
    pub fn filter() -> Filter {
        Filter::categories([
            "client",
            "authtoken",
            "grant",
            "user",
            "session",
            "consent",
            "authzpolicy",
            "signingkey",
            "revocations",
            "authfailures",
        ])
    }

    /// Loads the revocations still in force, then follows the log from its
    /// head, applying what the views care about, until the task is dropped.
    pub async fn follow(self: Arc<Self>) {
        let start = match self.log.head().await {
            Ok(h) => h.unwrap_or(Position::START),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the log head");
                Position::START
            }
        };
        self.load_waits(start).await;
        // Revocations are few (their own category); read them all.
        let revocations = Filter::categories(["revocations"]);
        let mut after = Position::START;
        loop {
            match self.log.read_all(after, &revocations, 1000).await {
                Ok(page) if page.is_empty() => break,
                Ok(page) => {
                    for e in &page {
                        if e.position <= start {
                            self.apply(e);
                        }
                    }
                    after = page.last().map_or(after, |e| e.position);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot load revocations");
                    break;
                }
            }
        }
        // The whole log, filtered here: through a shared read of the tail
        // (`RunnerHandle::tail`) that costs nothing more per commit, where
        // a filtered subscription would read the log again.
        let filter = Self::filter();
        let mut sub = eventlog::Subscription::new(Arc::clone(&self.log), start, Filter::all(), 500);
        loop {
            match sub.next_batch().await {
                Ok(batch) => batch
                    .iter()
                    .filter(|e| filter.matches(&e.stream, &e.event_type))
                    .for_each(|e| self.apply(e)),
                Err(e) => {
                    tracing::error!(error = %e, "token views lost the log; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    sub = eventlog::Subscription::new(
                        Arc::clone(&self.log),
                        sub.position(),
                        Filter::all(),
                        500,
                    );
                }
            }
        }
    }
}

fn stream_id(e: &RecordedEvent) -> Option<Uuid> {
    e.stream
        .split_once('-')
        .and_then(|(_, id)| Uuid::parse_str(id).ok())
}
