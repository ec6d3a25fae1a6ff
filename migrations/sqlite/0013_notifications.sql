-- The messages sent to people (codes, notices) and how their delivery
-- went; never their text. The recipient is personal: a user's erasure
-- deletes their rows.
CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    channel         TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    recipient       TEXT,
    status          TEXT NOT NULL, -- queued, sent, failed
    provider        TEXT,
    reason          TEXT,
    queued_at       TEXT NOT NULL,
    settled_at      TEXT
);
CREATE INDEX notifications_by_user ON notifications (user_id, queued_at, id);
