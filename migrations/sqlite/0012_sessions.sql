-- The sessions people hold, for listing and revoking them. Where a session
-- began (address, user agent) is personal: a user's erasure deletes their
-- rows. Whether a session is live is decided from the log; `ended_at` says
-- when it was revoked or found expired.
CREATE TABLE sessions (
    id                   TEXT    PRIMARY KEY,
    user_id              TEXT    NOT NULL,
    organization_id      TEXT    NOT NULL,
    methods              TEXT    NOT NULL, -- JSON array
    auth_time            TEXT    NOT NULL,
    created_at           TEXT    NOT NULL,
    last_used_at         TEXT    NOT NULL,
    expires_at           TEXT    NOT NULL,
    idle_timeout_seconds INTEGER NOT NULL,
    source_ip            TEXT,
    user_agent           TEXT,
    ended_at             TEXT,
    end_reason           TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id, created_at, id);
