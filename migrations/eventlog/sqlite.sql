-- The event log on SQLite. Applied idempotently by the eventlog adapter at open.
-- `position` is assigned by the single writer task in commit order, so the
-- rowid order is the global order every reader sees. AUTOINCREMENT keeps
-- positions from ever being reused, even after retention drops old streams.
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    BLOB    NOT NULL UNIQUE,
    stream      TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    category    TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    subject     TEXT,
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL, -- microseconds since the Unix epoch
    -- Hex SHA-256 link to the stream's previous event (eventlog/src/chain.rs).
    -- NULL only for events stored before the column existed, until `seal`.
    -- (Logs created before it get the column from the adapter at open.)
    chain       TEXT,
    UNIQUE (stream, revision)
);
CREATE INDEX IF NOT EXISTS events_by_subject ON events (subject, position) WHERE subject IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_category ON events (category, position);

-- Events a retention rule dropped (`EventLog::drop_stream`): their contents
-- are gone; their chain links stay, in the anchors' order, for `verify`.
CREATE TABLE IF NOT EXISTS dropped_links (
    position   INTEGER PRIMARY KEY,
    stream     TEXT    NOT NULL,
    revision   INTEGER NOT NULL,
    chain      TEXT,
    dropped_at INTEGER NOT NULL -- microseconds since the Unix epoch
);

-- Tamper-evidence anchors written by `seal`: anchor `seq` covers the events
-- after anchor seq-1 up to `position`; `events` counts the events up to
-- `position`; `hash` = SHA-256(previous hash || their chain links).
CREATE TABLE IF NOT EXISTS chain_anchors (
    seq       INTEGER PRIMARY KEY,
    position  INTEGER NOT NULL,
    events    INTEGER NOT NULL,
    hash      TEXT    NOT NULL,
    sealed_at INTEGER NOT NULL -- microseconds since the Unix epoch
);
