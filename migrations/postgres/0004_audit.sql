-- The audit trail: one row per event of the log, whatever its type. Event
-- data never reaches it (no secret, hash or personal value), only the
-- envelope: who did what to which stream, from where, when, and the outcome.
-- action, stream and category compare bytewise (COLLATE "C"), as on SQLite,
-- so an action prefix such as `client.` is one range of audit_by_action.
CREATE TABLE audit_entries (
    commit_pos      BIGINT  NOT NULL,
    prepare_pos     BIGINT  NOT NULL,
    position        TEXT    NOT NULL, -- the log position as text ("7" or "1234/5")
    event_id        TEXT    NOT NULL,
    stream          TEXT    COLLATE "C" NOT NULL, -- the target
    category        TEXT    COLLATE "C" NOT NULL, -- the stream's category
    revision        BIGINT  NOT NULL, -- the event's revision in its stream
    action          TEXT    COLLATE "C" NOT NULL, -- the event type
    outcome         TEXT    NOT NULL, -- success | failure
    occurred_at     TEXT    NOT NULL, -- RFC 3339 UTC
    occurred_us     BIGINT  NOT NULL, -- the same as unix microseconds, for time ranges
    recorded_at     TEXT    NOT NULL,
    actor_kind      TEXT    NOT NULL,
    actor_id        TEXT,
    subject         TEXT,
    organization_id TEXT,
    source_ip       TEXT,
    user_agent      TEXT,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT,
    PRIMARY KEY (commit_pos, prepare_pos)
);
-- Newest first, filtered by one column: each index ends with the position.
CREATE INDEX audit_by_actor ON audit_entries (actor_id, commit_pos DESC, prepare_pos DESC)
    WHERE actor_id IS NOT NULL;
CREATE INDEX audit_by_subject ON audit_entries (subject, commit_pos DESC, prepare_pos DESC)
    WHERE subject IS NOT NULL;
CREATE INDEX audit_by_organization ON audit_entries (organization_id, commit_pos DESC, prepare_pos DESC)
    WHERE organization_id IS NOT NULL;
CREATE INDEX audit_by_action ON audit_entries (action, commit_pos DESC, prepare_pos DESC);
CREATE INDEX audit_by_stream ON audit_entries (stream, commit_pos DESC, prepare_pos DESC);
CREATE INDEX audit_by_category ON audit_entries (category, commit_pos DESC, prepare_pos DESC);
CREATE INDEX audit_by_correlation ON audit_entries (correlation_id);
CREATE INDEX audit_by_time ON audit_entries (occurred_us);
-- Refusals are rare: a partial index finds them without walking the successes.
CREATE INDEX audit_failures ON audit_entries (commit_pos DESC, prepare_pos DESC)
    WHERE outcome = 'failure';
