//! A user's personal values and the rules they must follow: the username,
//! email address and phone number a user is known by, the OpenID Connect
//! profile claims (OIDC Core 5.1), the postal address (5.1.1) and the
//! free-form attributes an organization keeps about its people.
//!
//! Every check is pure and names the field it refused (`email`,
//! `profile.birthdate`, `attributes.department`), never the value: the value
//! is personal and the error may be logged. The `validate_*` functions return
//! the value as it is to be stored (trimmed; blank optional values dropped).
//! Re-exported by [`crate::user`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Date, Month};

use crate::user::UserError;
use crate::user_contacts::Contacts;

/// The longest username, in characters, after trimming.
pub const MAX_USERNAME_LEN: usize = 100;
/// The longest email address, in characters (RFC 5321's path limit less
/// the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// The longest local part of an email address (RFC 5321 4.5.3.1.1).
pub const MAX_EMAIL_LOCAL_LEN: usize = 64;
/// The longest label of an email address's domain (RFC 1035).
pub const MAX_DOMAIN_LABEL_LEN: usize = 63;
/// The fewest and most digits of an E.164 phone number after the `+`.
pub const MIN_PHONE_DIGITS: usize = 2;
pub const MAX_PHONE_DIGITS: usize = 15;
/// The longest `zoneinfo` (an IANA time zone name such as `Europe/Paris`).
pub const MAX_ZONEINFO_LEN: usize = 64;
/// The longest `picture` URL.
pub const MAX_PICTURE_LEN: usize = 2048;
/// The longest value of every other profile and address field.
pub const MAX_PROFILE_FIELD_LEN: usize = 256;
/// The longest attribute name (`[A-Za-z][A-Za-z0-9_.-]*`).
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 64;
/// How many attributes a user may have.
pub const MAX_ATTRIBUTES: usize = 50;
/// The longest attribute value (each item of a list), in characters.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 1024;
/// How many items a list attribute may hold.
pub const MAX_ATTRIBUTE_ITEMS: usize = 100;

/// A postal address (OIDC Core 5.1.1). `formatted` and `street_address`
/// may hold several lines (`\n` or `\r\n`), as the specification allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// The profile claims of a user (OIDC Core 5.1), each optional. Replaced as
/// a whole when it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    /// The display name (the `name` claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// `YYYY-MM-DD`, or `0000-MM-DD` when the year is withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthdate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// A BCP 47 language tag such as `fr-CA` (`fr_CA` is accepted too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// An IANA time zone name such as `Europe/Paris`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoneinfo: Option<String>,
    /// An absolute `http` or `https` URL of a picture of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Further emails, phone numbers, addresses and pictures, and how the
    /// user's own are labelled (what SCIM's multi-valued attributes hold).
    /// Not a claim.
    #[serde(default, skip_serializing_if = "Contacts::is_empty")]
    pub contacts: Contacts,
}

/// The value of one attribute: a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    One(String),
    Many(Vec<String>),
}

/// The attributes of a user, by name.
pub type Attributes = BTreeMap<String, AttributeValue>;

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> UserError {
    UserError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn too_long(field: &str, max: usize) -> UserError {
    invalid(field, format!("must be at most {max} characters"))
}

/// The username as stored: trimmed, 1 to [`MAX_USERNAME_LEN`] characters,
/// with no whitespace or control character inside.
pub fn validate_username(username: &str) -> Result<String, UserError> {
    let username = username.trim();
    if username.is_empty() {
        return Err(invalid("username", "must not be blank"));
    }
    if username.chars().count() > MAX_USERNAME_LEN {
        return Err(too_long("username", MAX_USERNAME_LEN));
    }
    if username
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "username",
            "must not contain whitespace or control characters",
        ));
    }
    Ok(username.to_owned())
}

fn valid_domain_label(label: &str) -> bool {
    !label.is_empty()
        && label.chars().count() <= MAX_DOMAIN_LABEL_LEN
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| {
            c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
        })
}

/// The email address as stored: trimmed, of practical syntax (not all of
/// RFC 5322): one `@`; a local part of 1 to [`MAX_EMAIL_LOCAL_LEN`]
/// characters; a domain of at least two dot-separated labels, each of
/// letters, digits and inner hyphens (non-ASCII letters allowed); at most
/// [`MAX_EMAIL_LEN`] characters; no whitespace or control characters.
pub fn validate_email(email: &str) -> Result<String, UserError> {
    let email = email.trim();
    if email.chars().count() > MAX_EMAIL_LEN {
        return Err(too_long("email", MAX_EMAIL_LEN));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "email",
            "must not contain whitespace or control characters",
        ));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(invalid("email", "must contain an @"));
    };
    if domain.contains('@') {
        return Err(invalid("email", "must contain exactly one @"));
    }
    let local_len = local.chars().count();
    if local_len == 0 || local_len > MAX_EMAIL_LOCAL_LEN {
        return Err(invalid(
            "email",
            format!("the part before the @ must be 1 to {MAX_EMAIL_LOCAL_LEN} characters"),
        ));
    }
    if !domain.contains('.') || !domain.split('.').all(valid_domain_label) {
        return Err(invalid(
            "email",
            "the domain must be dot-separated labels of letters, digits and inner hyphens",
        ));
    }
    Ok(email.to_owned())
}

/// The phone number as stored: trimmed, in E.164 form, `+` then
/// [`MIN_PHONE_DIGITS`] to [`MAX_PHONE_DIGITS`] digits, the first not 0.
pub fn validate_phone_number(phone: &str) -> Result<String, UserError> {
    let phone = phone.trim();
    let digits = phone.strip_prefix('+').unwrap_or("");
    let ok = (MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !ok {
        return Err(invalid(
            "phone_number",
            format!(
                "must be in E.164 form: + then {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS} digits, the first not 0"
            ),
        ));
    }
    Ok(phone.to_owned())
}

/// `YYYY-MM-DD` naming a real date, or `0000-MM-DD` (the year withheld, as
/// OIDC allows) naming a day that exists in some year (`0000-02-29` does).
fn is_birthdate(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return false;
    }
    let (Ok(year), Ok(month), Ok(day)) = (
        s[0..4].parse::<i32>(),
        s[5..7].parse::<u8>(),
        s[8..10].parse::<u8>(),
    ) else {
        return false;
    };
    // Year 0 of the proleptic Gregorian calendar is a leap year, so a
    // withheld year accepts every day of some year.
    Month::try_from(month).is_ok_and(|m| Date::from_calendar_date(year, m, day).is_ok())
}

/// `[A-Za-z]{2,8}` then subtags of `[A-Za-z0-9]{1,8}`, separated by `-` or `_`.
fn is_locale(s: &str) -> bool {
    let mut parts = s.split(['-', '_']);
    let primary = parts.next().unwrap_or("");
    (2..=8).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn is_zoneinfo(s: &str) -> bool {
    (1..=MAX_ZONEINFO_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'/'))
}

pub(crate) fn is_picture_url(s: &str) -> bool {
    let scheme = |prefix: &str| {
        s.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    let rest = if scheme("https://") {
        s.get(8..)
    } else if scheme("http://") {
        s.get(7..)
    } else {
        None
    };
    let Some(rest) = rest else {
        return false;
    };
    !rest.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A plain text field: at most [`MAX_PROFILE_FIELD_LEN`] characters, no
/// control characters (line breaks allowed where `multiline`).
pub(crate) fn check_text(field: &str, value: &str, multiline: bool) -> Result<(), UserError> {
    if value.chars().count() > MAX_PROFILE_FIELD_LEN {
        return Err(too_long(field, MAX_PROFILE_FIELD_LEN));
    }
    let allowed = |c: char| multiline && (c == '\n' || c == '\r');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Trims an optional value and drops it when blank.
pub(crate) fn clean(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub(crate) fn validate_address(address: Address) -> Result<Option<Address>, UserError> {
    let address = Address {
        formatted: clean(address.formatted),
        street_address: clean(address.street_address),
        locality: clean(address.locality),
        region: clean(address.region),
        postal_code: clean(address.postal_code),
        country: clean(address.country),
    };
    for (field, value, multiline) in [
        ("profile.address.formatted", &address.formatted, true),
        (
            "profile.address.street_address",
            &address.street_address,
            true,
        ),
        ("profile.address.locality", &address.locality, false),
        ("profile.address.region", &address.region, false),
        ("profile.address.postal_code", &address.postal_code, false),
        ("profile.address.country", &address.country, false),
    ] {
        if let Some(v) = value {
            check_text(field, v, multiline)?;
        }
    }
    Ok((address != Address::default()).then_some(address))
}

/// The profile as stored: every value trimmed, blank ones (and an address
/// with no value left) dropped, each checked.
pub fn validate_profile(profile: Profile) -> Result<Profile, UserError> {
    let profile = Profile {
        given_name: clean(profile.given_name),
        family_name: clean(profile.family_name),
        middle_name: clean(profile.middle_name),
        nickname: clean(profile.nickname),
        name: clean(profile.name),
        gender: clean(profile.gender),
        birthdate: clean(profile.birthdate),
        address: profile.address.map(validate_address).transpose()?.flatten(),
        locale: clean(profile.locale),
        zoneinfo: clean(profile.zoneinfo),
        picture: clean(profile.picture),
        contacts: crate::user_contacts::validate_contacts(profile.contacts)?,
    };
    for (field, value) in [
        ("profile.given_name", &profile.given_name),
        ("profile.family_name", &profile.family_name),
        ("profile.middle_name", &profile.middle_name),
        ("profile.nickname", &profile.nickname),
        ("profile.name", &profile.name),
        ("profile.gender", &profile.gender),
    ] {
        if let Some(v) = value {
            check_text(field, v, false)?;
        }
    }
    if let Some(v) = &profile.birthdate
        && !is_birthdate(v)
    {
        return Err(invalid(
            "profile.birthdate",
            "must be a date YYYY-MM-DD, or 0000-MM-DD without the year",
        ));
    }
    if let Some(v) = &profile.locale
        && !is_locale(v)
    {
        return Err(invalid(
            "profile.locale",
            "must be a language tag such as en or fr-CA",
        ));
    }
    if let Some(v) = &profile.zoneinfo
        && !is_zoneinfo(v)
    {
        return Err(invalid(
            "profile.zoneinfo",
            format!(
                "must be a time zone name such as Europe/Paris, at most {MAX_ZONEINFO_LEN} characters"
            ),
        ));
    }
    if let Some(v) = &profile.picture {
        if v.chars().count() > MAX_PICTURE_LEN {
            return Err(too_long("profile.picture", MAX_PICTURE_LEN));
        }
        if !is_picture_url(v) {
            return Err(invalid(
                "profile.picture",
                "must be an absolute http or https URL without whitespace",
            ));
        }
    }
    Ok(profile)
}

fn is_attribute_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && key.len() <= MAX_ATTRIBUTE_KEY_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_attribute_item(field: &str, item: &str) -> Result<(), UserError> {
    if item.chars().count() > MAX_ATTRIBUTE_VALUE_LEN {
        return Err(too_long(field, MAX_ATTRIBUTE_VALUE_LEN));
    }
    if item.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// The attributes as stored, checked: at most [`MAX_ATTRIBUTES`] names of
/// `[A-Za-z][A-Za-z0-9_.-]{0,63}`; each value (each item of a list) at most
/// [`MAX_ATTRIBUTE_VALUE_LEN`] characters without control characters; a
/// list at most [`MAX_ATTRIBUTE_ITEMS`] items. Values are kept as given.
pub fn validate_attributes(attributes: Attributes) -> Result<Attributes, UserError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid(
            "attributes",
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    for (key, value) in &attributes {
        if !is_attribute_key(key) {
            return Err(invalid(
                "attributes",
                format!(
                    "the name {key:?} must be a letter then up to {} letters, digits, `_`, `.` or `-`",
                    MAX_ATTRIBUTE_KEY_LEN - 1
                ),
            ));
        }
        let field = format!("attributes.{key}");
        match value {
            AttributeValue::One(item) => check_attribute_item(&field, item)?,
            AttributeValue::Many(items) => {
                if items.len() > MAX_ATTRIBUTE_ITEMS {
                    return Err(invalid(
                        field,
                        format!("a list holds at most {MAX_ATTRIBUTE_ITEMS} items"),
                    ));
                }
                for item in items {
                    check_attribute_item(&field, item)?;
                }
            }
        }
    }
    Ok(attributes)
}
