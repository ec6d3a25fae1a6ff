use crate::types::ExpectedRevision;

/// What the event log can refuse or fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The stream is not at the expected revision; `actual` is where it is
    /// (`None`: the stream does not exist).
    #[error("stream {stream}: expected {expected}, actual {}", fmt_actual(*actual))]
    WrongExpectedRevision {
        stream: String,
        expected: ExpectedRevision,
        actual: Option<u64>,
    },
    /// An event id is already stored somewhere else than this append puts it.
    #[error("event id {0} is already stored elsewhere in the log")]
    DuplicateEventId(uuid::Uuid),
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("stored event is corrupt: {0}")]
    Corrupt(String),
    #[error("the event log is closed")]
    Closed,
    #[error("unsupported event log URL: {0}")]
    UnsupportedUrl(String),
    /// A stream holds events no tamper-evidence anchor covers yet.
    #[error("stream {0} has events not yet sealed")]
    NotSealed(String),
    #[error("event log backend: {0}")]
    Backend(String),
}

fn fmt_actual(actual: Option<u64>) -> String {
    match actual {
        Some(r) => r.to_string(),
        None => "no stream".to_owned(),
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Backend(format!("sqlite: {e}"))
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Backend(format!("postgres: {e}"))
    }
}
