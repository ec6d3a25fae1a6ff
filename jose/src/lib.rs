//! Signing keys and the JWTs they sign: the key ring folded from the log's
//! `signingkey` events (keyring.rs) and RFC 9068 access tokens signed with
//! its active key and verified against the keys it holds (jwt.rs); each
//! private key parsed once (signer.rs).
//!
//! Both sides read it: the command side signs what it issues and rotates
//! keys, the projections' token views verify what is presented. It records
//! nothing: generating, activating and retiring keys are commands.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod jwt;
pub mod keyring;
pub mod signer;

pub use jwt::{
    AccessTokenClaims, Audience, JwtError, left_half_hash, sign_access_token, sign_id_token,
    verify_access_token, verify_id_token_hint,
};
pub use keyring::{Entry, KeyError, KeyRing};
pub use signer::Signer;
