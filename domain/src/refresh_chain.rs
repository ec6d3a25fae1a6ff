//! Refresh token rotation with reuse detection, the one mechanism behind
//! every refresh chain: an installed instance's (`auth_token`) and a
//! person's grant to an application (`grant`).
//!
//! A chain has one live refresh token; presenting it rotates it (the next
//! one becomes live and the presented one is remembered as used).
//! Presenting a used one again means a copy is held by someone else: the
//! aggregate records the reuse and revokes the whole chain.

use std::collections::VecDeque;

use uuid::Uuid;

use crate::registration::constant_time_eq;

/// The refresh token currently valid in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentRefresh {
    pub id: Uuid,
    /// Hex SHA-256 of the token's secret part.
    pub hash: String,
}

/// How many leading hex characters of a used refresh token's hash are kept:
/// 64 bits, so that presenting a used token's id with a guessed secret does
/// not count as reuse (which would let anyone who saw an id in a log revoke
/// the chain), for 16 bytes per used token instead of a whole hash.
pub const FINGERPRINT_LEN: usize = 16;

/// The first [`FINGERPRINT_LEN`] bytes of a hex hash.
pub fn fingerprint(hash: &str) -> [u8; FINGERPRINT_LEN] {
    let mut out = [0u8; FINGERPRINT_LEN];
    for (o, b) in out.iter_mut().zip(hash.bytes()) {
        *o = b;
    }
    out
}

/// What a presented refresh token is to its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// The live token: rotate it.
    Current,
    /// A token rotated away, with its right secret: someone holds a copy.
    Reused,
    /// An unknown id, or a known id with a wrong secret.
    Invalid,
}

/// How many rotated-away tokens a chain remembers, newest kept. A token
/// older than that is refused like an unknown one (it never works again)
/// but no longer revokes the chain: the state a refresh loads and copies
/// stays small however long the chain lives (a token refreshed every five
/// minutes for a year rotates 100,000 times).
pub const REMEMBERED_USED: usize = 256;

/// A chain's live refresh token and the fingerprints of the latest ones
/// rotated away (at most [`REMEMBERED_USED`], oldest first).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshChain {
    pub current: Option<CurrentRefresh>,
    pub used: VecDeque<(Uuid, [u8; FINGERPRINT_LEN])>,
}

impl RefreshChain {
    /// Makes `(id, hash)` the live token; the one before it becomes used.
    pub fn rotate(&mut self, id: Uuid, hash: &str) {
        if let Some(previous) = self.current.take() {
            if self.used.len() >= REMEMBERED_USED {
                self.used.pop_front();
            }
            self.used
                .push_back((previous.id, fingerprint(&previous.hash)));
        }
        self.current = Some(CurrentRefresh {
            id,
            hash: hash.to_owned(),
        });
    }

    /// What `(id, hash)` is to this chain, compared in constant time.
    pub fn presented(&self, id: Uuid, hash: &str) -> Presented {
        if let Some(current) = &self.current
            && current.id == id
        {
            return if constant_time_eq(current.hash.as_bytes(), hash.as_bytes()) {
                Presented::Current
            } else {
                Presented::Invalid
            };
        }
        match self.used.iter().find(|(used, _)| *used == id) {
            Some((_, fp)) if constant_time_eq(fp, &fingerprint(hash)) => Presented::Reused,
            _ => Presented::Invalid,
        }
    }

    /// Whether `(id, hash)` is the live token.
    pub fn is_current(&self, id: Uuid, hash: &str) -> bool {
        self.presented(id, hash) == Presented::Current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    #[test]
    fn rotation_moves_the_live_token_to_the_used_ones() {
        let mut chain = RefreshChain::default();
        chain.rotate(Uuid::from_u128(1), A);
        assert_eq!(chain.presented(Uuid::from_u128(1), A), Presented::Current);
        chain.rotate(Uuid::from_u128(2), B);
        assert_eq!(chain.presented(Uuid::from_u128(2), B), Presented::Current);
        assert_eq!(chain.presented(Uuid::from_u128(1), A), Presented::Reused);
        // A used id with a guessed secret is not reuse: it revokes nothing.
        assert_eq!(chain.presented(Uuid::from_u128(1), C), Presented::Invalid);
        assert_eq!(chain.presented(Uuid::from_u128(2), A), Presented::Invalid);
        assert_eq!(chain.presented(Uuid::from_u128(3), A), Presented::Invalid);
    }

    #[test]
    fn a_long_chain_remembers_its_latest_tokens_only() {
        let mut chain = RefreshChain::default();
        let n = REMEMBERED_USED as u128 + 10;
        for i in 0..=n {
            chain.rotate(Uuid::from_u128(i), A);
        }
        assert_eq!(chain.used.len(), REMEMBERED_USED);
        assert_eq!(
            chain.presented(Uuid::from_u128(n - 1), A),
            Presented::Reused
        );
        assert_eq!(
            chain.presented(Uuid::from_u128(0), A),
            Presented::Invalid,
            "too old to remember: refused, without revoking"
        );
    }
}
