//! An event's data as a reader gets it: the stored JSON text, parsed only
//! when someone asks. Most readers of a page never look at the data (the
//! audit trail reads the envelope, a projection skips the types it does not
//! handle), and building a tree of every payload cost more than reading the
//! log itself.

use std::borrow::Cow;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// The data of a recorded event.
#[derive(Clone)]
pub struct EventData(Repr);

#[derive(Clone)]
enum Repr {
    /// As a store holds it; not checked until parsed.
    Text(String),
    Tree(Value),
}

/// How an [`EventData`] is held, for a reader that deserializes either form
/// itself.
pub enum Stored<'a> {
    Text(&'a str),
    Tree(&'a Value),
}

impl EventData {
    pub fn stored(&self) -> Stored<'_> {
        match &self.0 {
            Repr::Text(t) => Stored::Text(t),
            Repr::Tree(v) => Stored::Tree(v),
        }
    }

    /// Data read from a store: kept as text until asked for.
    pub fn from_text(text: String) -> Self {
        Self(Repr::Text(text))
    }

    /// The data as a JSON tree, parsed if it is still text.
    pub fn value(&self) -> Result<Cow<'_, Value>, serde_json::Error> {
        match &self.0 {
            Repr::Text(t) => serde_json::from_str(t).map(Cow::Owned),
            Repr::Tree(v) => Ok(Cow::Borrowed(v)),
        }
    }

    pub fn into_value(self) -> Result<Value, serde_json::Error> {
        match self.0 {
            Repr::Text(t) => serde_json::from_str(&t),
            Repr::Tree(v) => Ok(v),
        }
    }

    /// The tree, to change in place (parsed once, then kept as a tree).
    pub fn value_mut(&mut self) -> Result<&mut Value, serde_json::Error> {
        if let Repr::Text(t) = &self.0 {
            self.0 = Repr::Tree(serde_json::from_str(t)?);
        }
        Ok(match &mut self.0 {
            Repr::Tree(v) => v,
            // Parsed just above: a tree from here on.
            Repr::Text(_) => return Err(serde::de::Error::custom("data is not a tree")),
        })
    }

    /// Deserializes straight from the text: no tree in between, and fields
    /// `T` does not name are skipped over.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match &self.0 {
            Repr::Text(t) => serde_json::from_str(t),
            Repr::Tree(v) => T::deserialize(v),
        }
    }

    /// The JSON text.
    pub fn text(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Text(t) => Cow::Borrowed(t),
            Repr::Tree(v) => Cow::Owned(v.to_string()),
        }
    }

    /// False only if no object in the data has the key `key`; true may be
    /// a false alarm while the data is text (the key's characters appear
    /// somewhere in it). For keys JSON writes without escapes, which every
    /// key this is asked about is.
    pub fn may_hold_key(&self, key: &str) -> bool {
        match &self.0 {
            Repr::Text(t) => t.contains(key),
            Repr::Tree(v) => holds_key(v, key),
        }
    }
}

/// Whether an object anywhere in `v` has the key `key`.
pub fn holds_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|v| holds_key(v, key)),
        Value::Array(items) => items.iter().any(|v| holds_key(v, key)),
        _ => false,
    }
}

impl From<Value> for EventData {
    fn from(v: Value) -> Self {
        Self(Repr::Tree(v))
    }
}

/// Equal when they hold the same JSON value; text that does not parse
/// equals only the same text.
impl PartialEq for EventData {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Tree(a), Repr::Tree(b)) => a == b,
            (Repr::Text(a), Repr::Text(b)) if a == b => true,
            _ => match (self.value(), other.value()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
        }
    }
}

impl PartialEq<Value> for EventData {
    fn eq(&self, other: &Value) -> bool {
        self.value().is_ok_and(|v| *v == *other)
    }
}

/// The JSON text.
impl fmt::Display for EventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Text(t) => f.write_str(t),
            Repr::Tree(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Debug for EventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Text(t) => f.write_str(t),
            Repr::Tree(v) => write!(f, "{v}"),
        }
    }
}

/// Serialized as the JSON value it holds.
impl Serialize for EventData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value()
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[test]
    fn text_and_tree_of_the_same_value_are_equal_and_read_alike() {
        let text = EventData::from_text(r#"{"a":1,"b":{"c":"x"}}"#.into());
        let tree = EventData::from(json!({"b": {"c": "x"}, "a": 1}));
        assert_eq!(text, tree);
        assert_eq!(text, json!({"a": 1, "b": {"c": "x"}}));
        assert_ne!(text, EventData::from(json!({"a": 2})));
        assert_eq!(text.value().unwrap()["b"]["c"], "x");
        #[derive(Deserialize, PartialEq, Debug)]
        struct A {
            a: u32,
        }
        assert_eq!(text.decode::<A>().unwrap(), A { a: 1 });
        assert_eq!(tree.decode::<A>().unwrap(), A { a: 1 });
        assert_eq!(
            serde_json::to_value(&text).unwrap(),
            json!({"a": 1, "b": {"c": "x"}})
        );
    }

    #[test]
    fn a_key_is_found_in_text_and_in_nested_trees() {
        let text = EventData::from_text(r#"{"a":[{"$k":1}]}"#.into());
        assert!(text.may_hold_key("$k"));
        assert!(!text.may_hold_key("$z"));
        let tree = EventData::from(json!({"a": [{"$k": 1}]}));
        assert!(tree.may_hold_key("$k"));
        assert!(!EventData::from(json!({"a": "$k"})).may_hold_key("$k"));
    }

    #[test]
    fn text_that_does_not_parse_fails_when_read_not_when_held() {
        let mut bad = EventData::from_text("{oops".into());
        assert!(bad.value().is_err());
        assert!(bad.value_mut().is_err());
        assert!(serde_json::to_value(&bad).is_err());
        assert_eq!(bad.text(), "{oops");
        assert_eq!(bad, EventData::from_text("{oops".into()));
    }

    #[test]
    fn a_tree_changed_in_place_stays_changed() {
        let mut d = EventData::from_text(r#"{"a":1}"#.into());
        d.value_mut().unwrap()["a"] = json!(2);
        assert_eq!(d, json!({"a": 2}));
        assert_eq!(d.text(), r#"{"a":2}"#);
    }
}
