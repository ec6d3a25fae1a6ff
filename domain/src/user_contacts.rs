//! A user's further ways of being reached, as a provisioning system keeps
//! them: SCIM's multi-valued `emails`, `phoneNumbers`, `ims`, `photos` and
//! `addresses` (RFC 7643 §4.1.2). The user is known by one email address,
//! one phone number, one postal address and one picture (the unique email,
//! the number codes are sent to, the OpenID Connect claims); [`Contacts`]
//! holds the others and how each of the user's own is labelled, so that a
//! provisioning system reads back what it wrote.
//!
//! Part of the profile, so under the user's subject like every personal
//! value. Re-exported by [`crate::user`].

use serde::{Deserialize, Serialize};

use crate::user::UserError;
use crate::user_profile::{Address, check_text, clean, invalid, is_picture_url, validate_address};

/// The most further values of each kind (emails, phone numbers, …).
pub const MAX_CONTACT_ITEMS: usize = 10;

/// How one of the user's own values is labelled: its kind (`work`,
/// `home`, `mobile`), a display label, and the value as it was written when
/// it is kept in another form (a phone number with separators, kept in
/// E.164 form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<String>,
}

impl Label {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A further value with its kind and display label. `primary` only where
/// the user has no value of their own of that kind (a phone number not in
/// E.164 form, an instant-messaging handle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labeled<T> {
    pub value: T,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primary: bool,
}

/// The labels of the user's own email, phone number, address and picture,
/// and the further values of each kind. Replaced as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contacts {
    #[serde(default, skip_serializing_if = "Label::is_empty")]
    pub email: Label,
    #[serde(default, skip_serializing_if = "Label::is_empty")]
    pub phone_number: Label,
    #[serde(default, skip_serializing_if = "Label::is_empty")]
    pub address: Label,
    #[serde(default, skip_serializing_if = "Label::is_empty")]
    pub picture: Label,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Labeled<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phone_numbers: Vec<Labeled<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ims: Vec<Labeled<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<Labeled<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Labeled<Address>>,
}

impl Contacts {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The E.164 form of a phone number written with visual separators or as
/// a `tel:` URI (RFC 3966): `tel:+1-201-555-0123` and `+1 (201) 555 0123`
/// are `+12015550123`. `None` when it names no E.164 number (no country
/// code, an extension, letters).
pub fn e164_of(written: &str) -> Option<String> {
    let w = written.trim();
    let w = match w.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("tel:") => &w[4..],
        _ => w,
    };
    let digits: String = w
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    crate::user_profile::validate_phone_number(&digits).ok()
}

fn validate_label(field: &str, label: Label) -> Result<Label, UserError> {
    let label = Label {
        kind: clean(label.kind),
        display: clean(label.display),
        written: clean(label.written),
    };
    for v in [&label.kind, &label.display, &label.written]
        .into_iter()
        .flatten()
    {
        check_text(field, v, false)?;
    }
    Ok(label)
}

/// Each further value of a list checked by `check` and labelled; blank
/// ones dropped, at most [`MAX_CONTACT_ITEMS`], at most one primary.
fn validate_list<T>(
    field: &str,
    items: Vec<Labeled<T>>,
    check: impl Fn(T) -> Result<Option<T>, UserError>,
) -> Result<Vec<Labeled<T>>, UserError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(value) = check(item.value)? else {
            continue;
        };
        let label = validate_label(
            field,
            Label {
                kind: item.kind,
                display: item.display,
                written: None,
            },
        )?;
        out.push(Labeled {
            value,
            kind: label.kind,
            display: label.display,
            primary: item.primary,
        });
    }
    if out.len() > MAX_CONTACT_ITEMS {
        return Err(invalid(
            field,
            format!("must hold at most {MAX_CONTACT_ITEMS} values"),
        ));
    }
    if out.iter().filter(|i| i.primary).count() > 1 {
        return Err(invalid(field, "must mark at most one value primary"));
    }
    Ok(out)
}

fn text_value(field: &'static str) -> impl Fn(String) -> Result<Option<String>, UserError> {
    move |v| {
        let v = v.trim().to_owned();
        if v.is_empty() {
            return Ok(None);
        }
        check_text(field, &v, false)?;
        Ok(Some(v))
    }
}

/// The contacts as stored: values trimmed, blank ones dropped, emails of
/// the shape [`crate::user::validate_email`] accepts, photos absolute
/// http(s) URLs, every text at most the profile's field length.
pub fn validate_contacts(c: Contacts) -> Result<Contacts, UserError> {
    let email_check = |v: String| {
        if v.trim().is_empty() {
            return Ok(None);
        }
        crate::user_profile::validate_email(&v)
            .map(Some)
            .map_err(|e| match e {
                UserError::Invalid { reason, .. } => invalid("profile.contacts.emails", reason),
                other => other,
            })
    };
    let photo_check = |v: String| {
        let v = v.trim().to_owned();
        if v.is_empty() {
            return Ok(None);
        }
        if v.chars().count() > crate::user_profile::MAX_PICTURE_LEN || !is_picture_url(&v) {
            return Err(invalid(
                "profile.contacts.photos",
                "must be absolute http or https URLs without whitespace",
            ));
        }
        Ok(Some(v))
    };
    Ok(Contacts {
        email: validate_label("profile.contacts.email", c.email)?,
        phone_number: validate_label("profile.contacts.phone_number", c.phone_number)?,
        address: validate_label("profile.contacts.address", c.address)?,
        picture: validate_label("profile.contacts.picture", c.picture)?,
        emails: validate_list("profile.contacts.emails", c.emails, email_check)?,
        phone_numbers: validate_list(
            "profile.contacts.phone_numbers",
            c.phone_numbers,
            text_value("profile.contacts.phone_numbers"),
        )?,
        ims: validate_list(
            "profile.contacts.ims",
            c.ims,
            text_value("profile.contacts.ims"),
        )?,
        photos: validate_list("profile.contacts.photos", c.photos, photo_check)?,
        addresses: validate_list("profile.contacts.addresses", c.addresses, validate_address)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: &str, kind: &str) -> Labeled<String> {
        Labeled {
            value: value.into(),
            kind: Some(kind.into()),
            display: None,
            primary: false,
        }
    }

    #[test]
    fn phone_numbers_with_separators_or_as_tel_uris_have_an_e164_form() {
        assert_eq!(
            e164_of("tel:+1-201-555-0123").as_deref(),
            Some("+12015550123")
        );
        assert_eq!(
            e164_of(" +44 (20) 7946.0018 ").as_deref(),
            Some("+442079460018")
        );
        assert_eq!(e164_of("555-555-5555"), None, "no country code");
        assert_eq!(e164_of("tel:+1-201-555-0123;ext=1"), None);
        assert_eq!(e164_of("+0 555"), None);
    }

    #[test]
    fn contacts_are_trimmed_checked_and_bounded() {
        let c = validate_contacts(Contacts {
            emails: vec![item(" b@home.example ", " home "), item("  ", "work")],
            phone_numbers: vec![item("555-555-4444", "mobile")],
            ..Contacts::default()
        })
        .unwrap();
        assert_eq!(c.emails, vec![item("b@home.example", "home")]);
        assert_eq!(c.phone_numbers, vec![item("555-555-4444", "mobile")]);

        let refused = |c: Contacts| match validate_contacts(c) {
            Err(UserError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let bad_email = Contacts {
            emails: vec![item("not an address", "home")],
            ..Contacts::default()
        };
        assert_eq!(refused(bad_email), "profile.contacts.emails");
        let many = Contacts {
            ims: (0..=MAX_CONTACT_ITEMS)
                .map(|i| item(&format!("h{i}"), "aim"))
                .collect(),
            ..Contacts::default()
        };
        assert_eq!(refused(many), "profile.contacts.ims");
        let mut two = item("a", "aim");
        two.primary = true;
        let twice = Contacts {
            ims: vec![two.clone(), two],
            ..Contacts::default()
        };
        assert_eq!(refused(twice), "profile.contacts.ims");
        let photo = Contacts {
            photos: vec![item("javascript:alert(1)", "photo")],
            ..Contacts::default()
        };
        assert_eq!(refused(photo), "profile.contacts.photos");
    }
}
