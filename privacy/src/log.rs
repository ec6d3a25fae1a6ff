//! The event log as the rest of the system sees it once personal data is
//! encrypted: a decorator over any adapter.
//!
//! On append, every personal value (`{"$pii": v}`, anywhere in an event's
//! data) of an event that names a subject is replaced by
//! `{"$pii_enc": base64(nonce || XChaCha20-Poly1305(json(v))), "kid": subject}`
//! under that subject's key, with the subject as associated data. On read,
//! such values open back into `{"$pii": v}`, or read as
//! `{"$pii_erased": true}` once the key is gone. Events without a subject
//! (or without personal values) pass through untouched. Tamper evidence is
//! computed over the stored (encrypted) bytes, so an erasure changes nothing
//! the chain covers.

use std::sync::Arc;

use async_trait::async_trait;
use commands::crypto::{self, MasterKey};
use domain::pii::{CLEAR_KEY, ENCRYPTED_KEY, ERASED_KEY};
use domain::privacy::SUBJECT_ERASED_V1;
use eventlog::{
    Anchor, AppendResult, Direction, Error, EventLog, ExpectedRevision, Filter, NewEvent, Position,
    RecordedEvent, VerifyReport, holds_key,
};
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::vault::{DataKey, SubjectKeys};

/// The field of an encrypted value naming the subject whose key opens it.
const KID: &str = "kid";

pub struct PiiLog {
    inner: Arc<dyn EventLog>,
    keys: Arc<SubjectKeys>,
}

impl PiiLog {
    pub fn new(inner: Arc<dyn EventLog>, keys: Arc<SubjectKeys>) -> Self {
        Self { inner, keys }
    }

    /// The log underneath, holding the stored (encrypted) form.
    pub fn inner(&self) -> &Arc<dyn EventLog> {
        &self.inner
    }

    async fn seal_event(&self, event: &mut NewEvent) -> Result<(), Error> {
        let Some(subject) = event.subject.as_deref() else {
            return Ok(());
        };
        if !holds_key(&event.data, CLEAR_KEY) {
            return Ok(());
        }
        let key = self.keys.key_or_create(subject).await.map_err(backend)?;
        let subject = subject.to_owned();
        rewrite(&mut event.data, &mut |m| {
            if let Some(v) = m.remove(CLEAR_KEY) {
                m.clear();
                m.insert(
                    ENCRYPTED_KEY.into(),
                    Value::String(encrypt(&key, &subject, &v)),
                );
                m.insert(KID.into(), Value::String(subject.clone()));
            }
        });
        Ok(())
    }

    async fn open_event(&self, event: &mut RecordedEvent) -> Result<(), Error> {
        if event.event_type == SUBJECT_ERASED_V1
            && let Some(subject) = &event.subject
        {
            // Another node may have erased it: forget the key here too.
            self.keys.evict(subject);
        }
        if event.subject.is_none() || !event.data.may_hold_key(ENCRYPTED_KEY) {
            return Ok(());
        }
        let data = match event.data.value_mut() {
            Ok(data) => data,
            Err(e) => return Err(event.corrupt(e)),
        };
        let mut kids = Vec::new();
        collect_kids(data, &mut kids);
        if kids.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<(String, Option<DataKey>)> = Vec::with_capacity(kids.len());
        for kid in kids {
            let key = self.keys.key(&kid).await.map_err(backend)?;
            keys.push((kid, key));
        }
        rewrite(data, &mut |m| {
            let (Some(Value::String(sealed)), Some(Value::String(kid))) =
                (m.get(ENCRYPTED_KEY), m.get(KID))
            else {
                return;
            };
            let key = keys
                .iter()
                .find(|(k, _)| k == kid)
                .and_then(|(_, key)| *key);
            let opened = key.and_then(|key| decrypt(&key, kid, sealed));
            m.clear();
            match opened {
                Some(v) => m.insert(CLEAR_KEY.into(), v),
                None => m.insert(ERASED_KEY.into(), Value::Bool(true)),
            };
        });
        Ok(())
    }

    async fn open_all(&self, mut events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, Error> {
        for e in &mut events {
            self.open_event(e).await?;
        }
        Ok(events)
    }
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(format!("personal data keys: {e}"))
}

fn encrypt(key: &DataKey, subject: &str, value: &Value) -> String {
    let plain = serde_json::to_vec(value).unwrap_or_default();
    crypto::seal(&MasterKey::from_bytes(*key), subject.as_bytes(), &plain)
}

fn decrypt(key: &DataKey, subject: &str, sealed: &str) -> Option<Value> {
    let plain = crypto::open(&MasterKey::from_bytes(*key), subject.as_bytes(), sealed).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// The subjects named by the encrypted values in `value`.
fn collect_kids(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(m) => {
            if m.contains_key(ENCRYPTED_KEY) {
                if let Some(Value::String(kid)) = m.get(KID)
                    && !out.contains(kid)
                {
                    out.push(kid.clone());
                }
                return;
            }
            m.values().for_each(|v| collect_kids(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_kids(v, out)),
        _ => {}
    }
}

/// Calls `f` on every object that is a stored personal value; descends
/// into every other object and array.
fn rewrite(value: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
    match value {
        Value::Object(m) => {
            if m.contains_key(CLEAR_KEY) || m.contains_key(ENCRYPTED_KEY) {
                f(m);
            } else {
                m.values_mut().for_each(|v| rewrite(v, f));
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| rewrite(v, f)),
        _ => {}
    }
}

#[async_trait]
impl EventLog for PiiLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        mut events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        for e in &mut events {
            self.seal_event(e).await?;
        }
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let events = self
            .inner
            .read_stream(stream, direction, from, limit)
            .await?;
        self.open_all(events).await
    }

    async fn read_all(
        &self,
        after: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let events = self.inner.read_all(after, filter, limit).await?;
        self.open_all(events).await
    }

    async fn read_subject(&self, subject: &str) -> Result<Vec<RecordedEvent>, Error> {
        let events = self.inner.read_subject(subject).await?;
        self.open_all(events).await
    }

    async fn head(&self) -> Result<Option<Position>, Error> {
        self.inner.head().await
    }

    async fn count_after(&self, after: Position) -> Result<u64, Error> {
        self.inner.count_after(after).await
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.inner.wakeups()
    }

    async fn seal(&self) -> Result<Option<Anchor>, Error> {
        self.inner.seal().await
    }

    async fn verify(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<VerifyReport, Error> {
        self.inner.verify(progress).await
    }

    async fn drop_stream(&self, stream: &str) -> Result<u64, Error> {
        self.inner.drop_stream(stream).await
    }

    fn counts_cheaply(&self) -> bool {
        self.inner.counts_cheaply()
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_found_and_rewritten_anywhere() {
        let mut v = json!({
            "a": {"$pii": "Ada"},
            "list": [{"x": {"$pii": 1}}, 3],
            "plain": "keep"
        });
        assert!(holds_key(&v, CLEAR_KEY));
        let key = [7u8; 32];
        rewrite(&mut v, &mut |m| {
            if let Some(x) = m.remove(CLEAR_KEY) {
                m.insert(ENCRYPTED_KEY.into(), json!(encrypt(&key, "person:1", &x)));
                m.insert(KID.into(), json!("person:1"));
            }
        });
        assert!(!holds_key(&v, CLEAR_KEY));
        assert!(!v.to_string().contains("Ada"));
        assert_eq!(v["plain"], json!("keep"));
        let mut kids = Vec::new();
        collect_kids(&v, &mut kids);
        assert_eq!(kids, vec!["person:1".to_owned()]);
        let sealed = v["a"][ENCRYPTED_KEY].as_str().unwrap();
        assert_eq!(decrypt(&key, "person:1", sealed), Some(json!("Ada")));
        // Bound to its subject and its key.
        assert_eq!(decrypt(&key, "person:2", sealed), None);
        assert_eq!(decrypt(&[8u8; 32], "person:1", sealed), None);
        assert!(STANDARD.decode(sealed).is_ok());
    }
}
