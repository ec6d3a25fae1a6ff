//! A person's claims as scopes release them (OpenID Connect Core §5.4), for
//! the ID token and the UserInfo endpoint alike.

use domain::user::User;
use serde_json::{Map, Value, json};

/// The scopes this server understands, each in words for the consent
/// screen.
pub const SCOPES: &[(&str, &str)] = &[
    ("openid", "Know who you are (your account id)"),
    ("profile", "See your name, and your profile details"),
    ("email", "See your email address"),
    ("phone", "See your phone number"),
    ("address", "See your postal address"),
    ("offline_access", "Stay connected when you are not using it"),
];

/// What a scope means to the person asked, for the consent screen.
pub fn describe(scope: &str) -> String {
    SCOPES.iter().find(|(s, _)| *s == scope).map_or_else(
        || format!("Use the permission “{scope}”"),
        |(_, d)| (*d).to_owned(),
    )
}

/// Every claim the scopes can release (`claims_supported`).
pub const SUPPORTED: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "sid",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "picture",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "updated_at",
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
    "address",
];

fn has(scope: &str, name: &str) -> bool {
    scope.split(' ').any(|s| s == name)
}

/// The claims `scope` releases about `user` (besides `sub`). Personal
/// values that were erased are left out.
pub fn for_scope(user: &User, scope: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(k.to_owned(), v);
        }
    };
    if has(scope, "profile") {
        let p = user.profile.value();
        let text = |f: fn(&domain::user::Profile) -> Option<&String>| {
            p.and_then(f).map(|s| Value::String(s.clone()))
        };
        put("name", text(|p| p.name.as_ref()));
        put("given_name", text(|p| p.given_name.as_ref()));
        put("family_name", text(|p| p.family_name.as_ref()));
        put("middle_name", text(|p| p.middle_name.as_ref()));
        put("nickname", text(|p| p.nickname.as_ref()));
        put("picture", text(|p| p.picture.as_ref()));
        put("gender", text(|p| p.gender.as_ref()));
        put("birthdate", text(|p| p.birthdate.as_ref()));
        put("zoneinfo", text(|p| p.zoneinfo.as_ref()));
        put("locale", text(|p| p.locale.as_ref()));
        put(
            "preferred_username",
            user.username.value().map(|u| json!(u)),
        );
        put("updated_at", Some(json!(user.updated_at.unix_timestamp())));
    }
    if has(scope, "email")
        && let Some(email) = user.email.as_ref().and_then(|e| e.value())
    {
        put("email", Some(json!(email)));
        put("email_verified", Some(json!(user.email_verified)));
    }
    if has(scope, "phone")
        && let Some(phone) = user.phone_number.as_ref().and_then(|e| e.value())
    {
        put("phone_number", Some(json!(phone)));
        put("phone_number_verified", Some(json!(user.phone_verified)));
    }
    if has(scope, "address")
        && let Some(address) = user.profile.value().and_then(|p| p.address.as_ref())
    {
        put("address", serde_json::to_value(address).ok());
    }
    out
}
