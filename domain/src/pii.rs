//! `Pii<T>`: a marker for personal data inside events.
//!
//! Stored form (fixed now so that encryption needs no migration): a personal
//! value is always wrapped in a one-key JSON object.
//!
//! - `{"$pii": <value>}`: the clear value, as the domain produces it;
//! - `{"$pii_enc": "<base64>", "kid": "<subject>"}`: the value encrypted under
//!   the subject's key, as the event log's codec stores it once personal-data
//!   encryption is configured;
//! - `{"$pii_erased": true}`: the subject's key was deleted (crypto-shredding).
//!
//! The codec finds these objects anywhere in an event's JSON without knowing
//! the event's type, so any event may hold personal data in any field.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

pub const CLEAR_KEY: &str = "$pii";
pub const ENCRYPTED_KEY: &str = "$pii_enc";
pub const ERASED_KEY: &str = "$pii_erased";

/// A personal value, or the fact that it was erased.
#[derive(Clone, PartialEq, Eq)]
pub enum Pii<T> {
    Value(T),
    Erased,
}

impl<T> Pii<T> {
    pub fn new(value: T) -> Self {
        Self::Value(value)
    }
    pub fn value(&self) -> Option<&T> {
        match self {
            Self::Value(v) => Some(v),
            Self::Erased => None,
        }
    }
    pub fn is_erased(&self) -> bool {
        matches!(self, Self::Erased)
    }
}

impl<T> std::fmt::Debug for Pii<T> {
    /// Never prints the value: personal data stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Pii(<redacted>)"),
            Self::Erased => f.write_str("Pii(<erased>)"),
        }
    }
}

impl<T: Serialize> Serialize for Pii<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = Map::new();
        match self {
            Self::Value(v) => {
                let v = serde_json::to_value(v).map_err(serde::ser::Error::custom)?;
                map.insert(CLEAR_KEY.to_owned(), v);
            }
            Self::Erased => {
                map.insert(ERASED_KEY.to_owned(), Value::Bool(true));
            }
        }
        map.serialize(serializer)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Pii<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(deserializer)?;
        if let Some(v) = map.remove(CLEAR_KEY) {
            return serde_json::from_value(v)
                .map(Self::Value)
                .map_err(serde::de::Error::custom);
        }
        if map.contains_key(ERASED_KEY) || map.contains_key(ENCRYPTED_KEY) {
            // An encrypted value that reached the domain undecrypted has no
            // key left to open it: it reads as erased.
            return Ok(Self::Erased);
        }
        Err(serde::de::Error::custom(
            "a personal value must be an object with `$pii`, `$pii_enc` or `$pii_erased`",
        ))
    }
}

/// Whether a JSON value is a stored personal value in any of its forms.
pub fn is_pii_object(value: &Value) -> bool {
    match value {
        Value::Object(m) => {
            m.contains_key(CLEAR_KEY) || m.contains_key(ENCRYPTED_KEY) || m.contains_key(ERASED_KEY)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_in_the_stored_form() {
        let p = Pii::new("ada@example.org".to_owned());
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v, json!({"$pii": "ada@example.org"}));
        let back: Pii<String> = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn erased_and_unopened_values_read_as_erased() {
        let erased: Pii<String> = serde_json::from_value(json!({"$pii_erased": true})).unwrap();
        assert!(erased.is_erased());
        let sealed: Pii<String> =
            serde_json::from_value(json!({"$pii_enc": "AAAA", "kid": "s"})).unwrap();
        assert!(sealed.is_erased());
        assert_eq!(
            serde_json::to_value(&erased).unwrap(),
            json!({"$pii_erased": true})
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let p = Pii::new("secret-name".to_owned());
        assert!(!format!("{p:?}").contains("secret-name"));
    }

    #[test]
    fn a_bare_value_is_refused() {
        assert!(serde_json::from_value::<Pii<String>>(json!("x")).is_err());
    }
}
