//! A signing key's private half, parsed once, signing JWS compact tokens.
//!
//! jsonwebtoken's own signer parses the key's PKCS#8 DER again for every
//! signature (for P-256 that includes deriving the public point, as dear as
//! the signature itself); a token endpoint signs two tokens per request.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::signing_key::KeyAlgorithm;
use jsonwebtoken::Header;
use jsonwebtoken::errors::ErrorKind;
use serde::Serialize;

use crate::keyring::KeyError;

enum Pair {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

/// The private half of one signing key.
pub struct Signer {
    pair: Pair,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg())
            .field("key", &"[redacted]")
            .finish()
    }
}

fn failed(reason: impl std::fmt::Display) -> KeyError {
    KeyError::Signing(ErrorKind::Signing(reason.to_string()).into())
}

/// One part of a token: the value's JSON, base64url.
fn part<T: Serialize + ?Sized>(value: &T) -> Result<String, KeyError> {
    let json = serde_json::to_vec(value).map_err(failed)?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

impl Signer {
    /// Parses a PKCS#8 DER private key of `alg`.
    pub(crate) fn from_pkcs8(alg: KeyAlgorithm, der: &[u8]) -> Result<Self, String> {
        let pair = match alg {
            KeyAlgorithm::ES256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| e.to_string())?,
            ),
            KeyAlgorithm::RS256 => {
                Pair::Rs256(RsaKeyPair::from_pkcs8(der).map_err(|e| e.to_string())?)
            }
        };
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
        })
    }

    pub fn alg(&self) -> KeyAlgorithm {
        match self.pair {
            Pair::Es256(_) => KeyAlgorithm::ES256,
            Pair::Rs256(_) => KeyAlgorithm::RS256,
        }
    }

    /// `header.claims.signature`, each part base64url without padding
    /// (RFC 7515 §7.1). The header's `alg` must be this key's.
    pub fn sign<T: Serialize>(&self, header: &Header, claims: &T) -> Result<String, KeyError> {
        if header.alg != crate::jwt::jws_alg(self.alg()) {
            return Err(KeyError::Signing(ErrorKind::InvalidAlgorithm.into()));
        }
        let mut message = part(header)?;
        message.push('.');
        message.push_str(&part(claims)?);
        let signature = match &self.pair {
            Pair::Es256(pair) => pair
                .sign(&self.rng, message.as_bytes())
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Pair::Rs256(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &self.rng,
                    message.as_bytes(),
                    &mut signature,
                )
                .map_err(failed)?;
                signature
            }
        };
        message.push('.');
        message.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(message)
    }
}
