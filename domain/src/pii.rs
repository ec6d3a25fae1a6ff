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

/// Serde for a personal `String` the domain keeps plain (an empty string
/// when erased): stored as `{"$pii": …}` like a [`Pii`], read from any
/// stored form, or from a bare string stored before the field was marked
/// personal. Use as `#[serde(with = "crate::pii::marked_string")]`.
pub mod marked_string {
    use super::{Pii, Value};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(value: &str, serializer: S) -> Result<S::Ok, S::Error> {
        Pii::new(value).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(plain) => Ok(plain),
            stored => Pii::<String>::deserialize(stored)
                .map(|p| p.value().cloned().unwrap_or_default())
                .map_err(serde::de::Error::custom),
        }
    }

    /// The same for an optional value (`None` is left out when stored).
    pub mod option {
        use super::super::Value;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            value: &Option<String>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => super::serialize(v, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<String>, D::Error> {
            match Option::<Value>::deserialize(deserializer)? {
                None | Some(Value::Null) => Ok(None),
                Some(v) => super::deserialize(v)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
            }
        }
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
    fn a_marked_string_is_stored_as_personal_and_reads_older_plain_values() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Device {
            #[serde(default, with = "marked_string")]
            name: String,
            #[serde(
                default,
                skip_serializing_if = "Option::is_none",
                with = "marked_string::option"
            )]
            renamed: Option<String>,
        }
        let d = Device {
            name: "Grace's phone".into(),
            renamed: Some("Grace's tablet".into()),
        };
        let stored = serde_json::to_value(&d).unwrap();
        assert_eq!(
            stored,
            json!({"name": {"$pii": "Grace's phone"}, "renamed": {"$pii": "Grace's tablet"}})
        );
        assert!(is_pii_object(&stored["name"]) && is_pii_object(&stored["renamed"]));
        assert_eq!(serde_json::from_value::<Device>(stored).unwrap(), d);
        let older: Device = serde_json::from_value(json!({"name": "kiosk"})).unwrap();
        assert_eq!(
            (older.name.as_str(), older.renamed.as_deref()),
            ("kiosk", None)
        );
        assert_eq!(
            serde_json::to_value(&older).unwrap(),
            json!({"name": {"$pii": "kiosk"}})
        );
        let erased: Device = serde_json::from_value(
            json!({"name": {"$pii_erased": true}, "renamed": {"$pii_enc": "x", "kid": "s"}}),
        )
        .unwrap();
        assert_eq!(
            (erased.name.as_str(), erased.renamed.as_deref()),
            ("", Some(""))
        );
    }

    #[test]
    fn a_bare_value_is_refused() {
        assert!(serde_json::from_value::<Pii<String>>(json!("x")).is_err());
    }
}
