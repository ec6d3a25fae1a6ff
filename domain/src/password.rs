//! The password policy, after NIST SP 800-63B (5.1.1.2): a length range, no
//! composition rules, and refusal of passwords that are or contain the
//! user's own identifiers or that a deny list (breached or common
//! passwords) holds.
//!
//! Passwords are compared in their NFKC form ([`normalize_password`]), which
//! is also the form to hash, so that the same password typed on two
//! keyboards verifies. Length counts Unicode scalar values of that form.
//! The deny list is a predicate the caller supplies; this module does not
//! know where the list lives.

use unicode_normalization::UnicodeNormalization;

use crate::user::normalize_identifier;

/// Usernames and email local parts shorter than this are only refused when
/// they are the whole password, not when they occur inside it.
pub const MIN_CONTAINED_LEN: usize = 3;

/// The password as hashed and measured: NFKC, nothing trimmed (every
/// character the user typed counts).
pub fn normalize_password(password: &str) -> String {
    password.nfkc().collect()
}

/// Why a password was refused; the message states the rule.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PasswordRefused {
    #[error("the password must be at least {min} characters")]
    TooShort { min: usize },
    #[error("the password must be at most {max} characters")]
    TooLong { max: usize },
    #[error("the password must not be the username")]
    SameAsUsername,
    #[error("the password must not contain the username")]
    ContainsUsername,
    #[error("the password must not contain the email address")]
    ContainsEmail,
    #[error("the password is too common or known to be breached")]
    Denied,
}

impl PasswordRefused {
    /// A stable machine name of the rule, for an API's error detail.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "min_length",
            Self::TooLong { .. } => "max_length",
            Self::SameAsUsername | Self::ContainsUsername => "username",
            Self::ContainsEmail => "email",
            Self::Denied => "deny_list",
        }
    }
}

/// The length range a password must fall in, in characters of its NFKC
/// form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
}

impl Default for PasswordPolicy {
    /// 12 to 128 characters.
    fn default() -> Self {
        Self {
            min_length: 12,
            max_length: 128,
        }
    }
}

impl PasswordPolicy {
    /// Checks a new password, in this order: length, the username (equal,
    /// whatever its length; contained, when it has at least
    /// [`MIN_CONTAINED_LEN`] characters), the email address (the whole
    /// address, or its local part when that has at least
    /// [`MIN_CONTAINED_LEN`] characters), the deny list. Identifiers are
    /// compared case-insensitively, both sides in the
    /// [`normalize_identifier`] form; `denied` receives the password in that
    /// form too (NFKC, lowercased, not trimmed).
    pub fn check(
        &self,
        password: &str,
        username: &str,
        email: Option<&str>,
        denied: impl Fn(&str) -> bool,
    ) -> Result<(), PasswordRefused> {
        let normalized = normalize_password(password);
        let length = normalized.chars().count();
        if length < self.min_length {
            return Err(PasswordRefused::TooShort {
                min: self.min_length,
            });
        }
        if length > self.max_length {
            return Err(PasswordRefused::TooLong {
                max: self.max_length,
            });
        }
        let lowered: String = normalized.to_lowercase().nfkc().collect();
        let username = normalize_identifier(username);
        if lowered == username {
            return Err(PasswordRefused::SameAsUsername);
        }
        if username.chars().count() >= MIN_CONTAINED_LEN && lowered.contains(&username) {
            return Err(PasswordRefused::ContainsUsername);
        }
        if let Some(email) = email.map(normalize_identifier).filter(|e| !e.is_empty()) {
            let local = email.rsplit_once('@').map_or("", |(local, _)| local);
            let contains_local =
                local.chars().count() >= MIN_CONTAINED_LEN && lowered.contains(local);
            if lowered.contains(&email) || contains_local {
                return Err(PasswordRefused::ContainsEmail);
            }
        }
        if denied(&lowered) {
            return Err(PasswordRefused::Denied);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(password: &str) -> Result<(), PasswordRefused> {
        PasswordPolicy::default()
            .check(password, "ada", Some("ada.lovelace@example.org"), |_| false)
    }

    #[test]
    fn long_passwords_of_any_composition_pass() {
        assert_eq!(check("correct horse battery staple"), Ok(()));
        assert_eq!(check("aaaaaaaaaaaa"), Ok(()));
        assert_eq!(check("пароль-пароль"), Ok(()));
    }

    #[test]
    fn length_is_counted_in_characters_after_nfkc() {
        assert_eq!(check("short"), Err(PasswordRefused::TooShort { min: 12 }));
        // Eleven characters, each several bytes: still too short.
        assert_eq!(
            check(&"é".repeat(11)),
            Err(PasswordRefused::TooShort { min: 12 })
        );
        // "e" and a combining acute compose to one character.
        assert_eq!(
            check(&"e\u{301}".repeat(11)),
            Err(PasswordRefused::TooShort { min: 12 })
        );
        // The ligature "ﬃ" is three characters once normalized.
        assert_eq!(check(&"ﬃ".repeat(4)), Ok(()));
        assert_eq!(check(&"x".repeat(128)), Ok(()));
        assert_eq!(
            check(&"x".repeat(129)),
            Err(PasswordRefused::TooLong { max: 128 })
        );
        let policy = PasswordPolicy {
            min_length: 8,
            max_length: 10,
        };
        assert_eq!(policy.check("12345678", "ada", None, |_| false), Ok(()));
        assert_eq!(
            policy.check("12345678901", "ada", None, |_| false),
            Err(PasswordRefused::TooLong { max: 10 })
        );
    }

    #[test]
    fn the_username_is_refused_whole_or_inside() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            policy.check("Grace.Hopper", "grace.hopper", None, |_| false),
            Err(PasswordRefused::SameAsUsername)
        );
        // Fullwidth letters normalize to the username.
        assert_eq!(
            policy.check("ＧＲＡＣＥ.ＨＯＰＰＥＲ", "grace.hopper", None, |_| false),
            Err(PasswordRefused::SameAsUsername)
        );
        assert_eq!(
            check("my-ADA-password"),
            Err(PasswordRefused::ContainsUsername)
        );
        // A username too short to be looked for inside.
        assert_eq!(
            policy.check("my-al-password", "al", None, |_| false),
            Ok(())
        );
        let long = "abcdefghijkl";
        assert_eq!(
            PasswordPolicy {
                min_length: 2,
                max_length: 64
            }
            .check("al", "al", None, |_| false),
            Err(PasswordRefused::SameAsUsername)
        );
        assert_eq!(
            policy.check(long, "ijk", None, |_| false),
            Err(PasswordRefused::ContainsUsername)
        );
    }

    #[test]
    fn the_email_address_or_its_local_part_is_refused() {
        let policy = PasswordPolicy::default();
        let check = |p: &str, email: &str| policy.check(p, "someone", Some(email), |_| false);
        assert_eq!(
            check("x-Bob@Example.org-x", "bob@example.org"),
            Err(PasswordRefused::ContainsEmail)
        );
        assert_eq!(
            check("my name is bobby!", "bobby@example.org"),
            Err(PasswordRefused::ContainsEmail)
        );
        // A local part shorter than three characters is only refused as
        // part of the whole address.
        assert_eq!(check("jo jo jo jo jo", "jo@example.org"), Ok(()));
        assert_eq!(
            check("jo@example.org!!", "jo@example.org"),
            Err(PasswordRefused::ContainsEmail)
        );
    }

    #[test]
    fn the_deny_list_sees_the_normalized_lowercased_password() {
        let seen = std::cell::RefCell::new(String::new());
        let r = PasswordPolicy::default().check("Ｐassword1234", "ada", None, |p| {
            *seen.borrow_mut() = p.to_owned();
            p == "password1234"
        });
        assert_eq!(r, Err(PasswordRefused::Denied));
        assert_eq!(seen.borrow().as_str(), "password1234");
    }

    #[test]
    fn each_refusal_names_its_rule() {
        let rules = [
            (PasswordRefused::TooShort { min: 12 }, "min_length"),
            (PasswordRefused::TooLong { max: 128 }, "max_length"),
            (PasswordRefused::SameAsUsername, "username"),
            (PasswordRefused::ContainsUsername, "username"),
            (PasswordRefused::ContainsEmail, "email"),
            (PasswordRefused::Denied, "deny_list"),
        ];
        for (refusal, rule) in rules {
            assert_eq!(refusal.rule(), rule);
            assert!(refusal.to_string().starts_with("the password"));
        }
        assert_eq!(
            PasswordRefused::TooShort { min: 12 }.to_string(),
            "the password must be at least 12 characters"
        );
    }

    #[test]
    fn the_hashed_form_is_nfkc_and_untrimmed() {
        assert_eq!(normalize_password(" ﬁ "), " fi ");
        assert_eq!(normalize_password("e\u{301}"), "é");
    }
}
