//! What signing in takes: the methods a person may use, which of them may
//! come first, and how many factors make a sign-in. An organization sets
//! one policy (a client may override it); the sign-in session keeps the
//! policy it started under and decides each step against it.
//!
//! Factors are counted by method, each method once: a password is one, a
//! code sent by email, SMS or WhatsApp is one, a TOTP code is one, a passkey
//! is one, or two when the authenticator verified the user (it was both
//! something held and something known or are). The first step must be a
//! first factor; a code sent to an address or number counts as a first
//! factor only when the policy allows passwordless codes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// How a person proves who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Password,
    Email,
    Sms,
    Whatsapp,
    Totp,
    Passkey,
    Sso,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Self::Password,
        Self::Email,
        Self::Sms,
        Self::Whatsapp,
        Self::Totp,
        Self::Passkey,
        Self::Sso,
    ];

    /// As it is written in requests, answers and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
            Self::Totp => "totp",
            Self::Passkey => "passkey",
            Self::Sso => "sso",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// A one-time code sent to an address or number.
    pub fn is_sent_code(self) -> bool {
        matches!(self, Self::Email | Self::Sms | Self::Whatsapp)
    }

    /// A code sent to the person's phone number.
    pub fn is_phone_code(self) -> bool {
        matches!(self, Self::Sms | Self::Whatsapp)
    }

    /// The authentication method reference (RFC 8176) a step of this
    /// method adds to `amr`.
    pub fn amr(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::Email | Self::Whatsapp | Self::Totp => "otp",
            Self::Sms => "sms",
            Self::Passkey => "hwk",
            Self::Sso => "fed",
        }
    }
}

/// Why a policy was refused. `field` names the part of the policy.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid {field}: {reason}")]
pub struct PolicyInvalid {
    pub field: &'static str,
    pub reason: &'static str,
}

/// The most factors a policy may require.
pub const MAX_FACTORS: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInPolicy {
    /// The methods that may be used at all.
    pub methods: BTreeSet<Method>,
    /// The methods a sign-in may begin with.
    pub first_factors: BTreeSet<Method>,
    /// How many factors a sign-in needs (1 to [`MAX_FACTORS`]).
    pub factors_required: u8,
    /// Whether a code sent by email, SMS or WhatsApp may be the first
    /// factor (passwordless sign-in).
    pub passwordless_codes: bool,
}

impl Default for SignInPolicy {
    /// Every method may be used; a password or a passkey begins; one
    /// factor is enough.
    fn default() -> Self {
        Self {
            methods: Method::ALL.into_iter().collect(),
            first_factors: [Method::Password, Method::Passkey].into_iter().collect(),
            factors_required: 1,
            passwordless_codes: false,
        }
    }
}

/// A step that succeeded, as far as factor counting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factor {
    pub method: Method,
    /// The authenticator verified the user (a passkey with UV).
    pub user_verified: bool,
}

impl Factor {
    /// How many factors the step counts for.
    pub fn weight(self) -> u8 {
        if self.method == Method::Passkey && self.user_verified {
            2
        } else {
            1
        }
    }
}

/// Why a step may not be taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepRefused {
    /// The policy does not allow the method.
    NotAllowed,
    /// The method may not begin a sign-in.
    NotFirstFactor,
    /// The method was already used in this sign-in.
    AlreadyUsed,
}

impl SignInPolicy {
    pub fn validate(self) -> Result<Self, PolicyInvalid> {
        if self.methods.is_empty() {
            return Err(PolicyInvalid {
                field: "methods",
                reason: "at least one method must be allowed",
            });
        }
        if !(1..=MAX_FACTORS).contains(&self.factors_required) {
            return Err(PolicyInvalid {
                field: "factors_required",
                reason: "must be between 1 and 3",
            });
        }
        if !self.first_factors.is_subset(&self.methods) {
            return Err(PolicyInvalid {
                field: "first_factors",
                reason: "every first factor must be an allowed method",
            });
        }
        if self.first_factors_usable().next().is_none() {
            return Err(PolicyInvalid {
                field: "first_factors",
                reason: "no allowed method can begin a sign-in (codes count only with passwordless_codes)",
            });
        }
        // What the methods could add up to, each counted at most once.
        let best: u32 = self
            .methods
            .iter()
            .map(|&m| {
                u32::from(
                    Factor {
                        method: m,
                        user_verified: true,
                    }
                    .weight(),
                )
            })
            .sum();
        if best < u32::from(self.factors_required) {
            return Err(PolicyInvalid {
                field: "factors_required",
                reason: "the allowed methods cannot add up to that many factors",
            });
        }
        Ok(self)
    }

    fn is_first_factor(&self, m: Method) -> bool {
        self.first_factors.contains(&m) && (!m.is_sent_code() || self.passwordless_codes)
    }

    /// The methods that may begin a sign-in under this policy.
    pub fn first_factors_usable(&self) -> impl Iterator<Item = Method> + '_ {
        self.methods
            .iter()
            .copied()
            .filter(|&m| self.is_first_factor(m))
    }

    /// Whether a step of `method` may follow the steps `done`.
    pub fn may_take(&self, done: &[Factor], method: Method) -> Result<(), StepRefused> {
        if !self.methods.contains(&method) {
            return Err(StepRefused::NotAllowed);
        }
        // SMS and WhatsApp reach the same phone: one factor, however sent.
        let same = |m: Method| m == method || (m.is_phone_code() && method.is_phone_code());
        if done.iter().any(|f| same(f.method)) {
            return Err(StepRefused::AlreadyUsed);
        }
        if done.is_empty() && !self.is_first_factor(method) {
            return Err(StepRefused::NotFirstFactor);
        }
        Ok(())
    }

    /// Factors counted so far.
    pub fn counted(done: &[Factor]) -> u8 {
        done.iter()
            .map(|f| f.weight())
            .fold(0u8, u8::saturating_add)
    }

    /// Factors still needed after `done`.
    pub fn remaining(&self, done: &[Factor]) -> u8 {
        self.factors_required.saturating_sub(Self::counted(done))
    }

    /// The methods that may be the next step after `done` (while factors
    /// remain; none once enough are counted).
    pub fn next_methods(&self, done: &[Factor]) -> Vec<Method> {
        if !done.is_empty() && self.remaining(done) == 0 {
            return Vec::new();
        }
        self.methods
            .iter()
            .copied()
            .filter(|&m| self.may_take(done, m).is_ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(method: Method) -> Factor {
        Factor {
            method,
            user_verified: false,
        }
    }

    fn two_factors() -> SignInPolicy {
        SignInPolicy {
            factors_required: 2,
            ..SignInPolicy::default()
        }
    }

    #[test]
    fn the_default_is_one_factor_begun_by_a_password_or_a_passkey() {
        let p = SignInPolicy::default().validate().unwrap();
        assert_eq!(p.next_methods(&[]), vec![Method::Password, Method::Passkey]);
        assert_eq!(p.remaining(&[f(Method::Password)]), 0);
        assert!(p.next_methods(&[f(Method::Password)]).is_empty());
    }

    #[test]
    fn a_second_factor_may_be_any_other_allowed_method() {
        let p = two_factors().validate().unwrap();
        let done = [f(Method::Password)];
        assert_eq!(p.remaining(&done), 1);
        let next = p.next_methods(&done);
        assert!(next.contains(&Method::Totp));
        assert!(next.contains(&Method::Email));
        assert!(!next.contains(&Method::Password));
        assert_eq!(
            p.may_take(&done, Method::Password),
            Err(StepRefused::AlreadyUsed)
        );
    }

    #[test]
    fn a_code_begins_only_when_passwordless_codes_are_allowed() {
        let mut p = SignInPolicy::default();
        p.first_factors.insert(Method::Email);
        assert_eq!(
            p.may_take(&[], Method::Email),
            Err(StepRefused::NotFirstFactor)
        );
        p.passwordless_codes = true;
        assert_eq!(p.may_take(&[], Method::Email), Ok(()));
        assert_eq!(
            p.may_take(&[], Method::Totp),
            Err(StepRefused::NotFirstFactor)
        );
    }

    #[test]
    fn a_user_verified_passkey_counts_as_two() {
        let p = two_factors();
        let done = [Factor {
            method: Method::Passkey,
            user_verified: true,
        }];
        assert_eq!(p.remaining(&done), 0);
        assert_eq!(p.remaining(&[f(Method::Passkey)]), 1);
    }

    #[test]
    fn sms_and_whatsapp_reach_one_phone_so_count_once() {
        let p = two_factors();
        let done = [f(Method::Password), f(Method::Sms)];
        assert_eq!(
            p.may_take(&done, Method::Whatsapp),
            Err(StepRefused::AlreadyUsed)
        );
        assert_eq!(
            p.may_take(&[f(Method::Password), f(Method::Whatsapp)], Method::Sms),
            Err(StepRefused::AlreadyUsed)
        );
        assert_eq!(p.may_take(&done, Method::Email), Ok(()));
    }

    #[test]
    fn a_method_outside_the_policy_is_refused() {
        let mut p = SignInPolicy::default();
        p.methods.remove(&Method::Sms);
        assert_eq!(
            p.may_take(&[f(Method::Password)], Method::Sms),
            Err(StepRefused::NotAllowed)
        );
    }

    #[test]
    fn impossible_policies_are_refused() {
        let mut p = SignInPolicy {
            factors_required: 0,
            ..SignInPolicy::default()
        };
        assert_eq!(p.clone().validate().unwrap_err().field, "factors_required");
        p.factors_required = 4;
        assert_eq!(p.clone().validate().unwrap_err().field, "factors_required");
        let only_password = SignInPolicy {
            methods: [Method::Password].into_iter().collect(),
            first_factors: [Method::Password].into_iter().collect(),
            factors_required: 2,
            passwordless_codes: false,
        };
        assert_eq!(
            only_password.validate().unwrap_err().field,
            "factors_required"
        );
        let codes_only = SignInPolicy {
            methods: [Method::Email].into_iter().collect(),
            first_factors: [Method::Email].into_iter().collect(),
            factors_required: 1,
            passwordless_codes: false,
        };
        assert_eq!(codes_only.validate().unwrap_err().field, "first_factors");
        let outside = SignInPolicy {
            methods: [Method::Password].into_iter().collect(),
            first_factors: [Method::Passkey].into_iter().collect(),
            factors_required: 1,
            passwordless_codes: false,
        };
        assert_eq!(outside.validate().unwrap_err().field, "first_factors");
    }
}
