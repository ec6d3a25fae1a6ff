-- The audit trail, compact form: times as integers only (formatted when read),
-- no position text, a `journal` flag, and fewer, smaller indexes.
--
-- Journal entries (token issued or revoked, failed client authentication:
-- the day-bucketed streams that are most of the log) are indexed by actor,
-- organization and correlation only; filters by action, stream or category
-- find them by walking the trail, where they are dense. Aggregate events
-- keep every index. Time ranges go through `audit_minutes`, which bounds
-- the positions of the entries that occurred in each minute, instead of an
-- index over every entry's time.
--
-- The old table is dropped. The projection's version is now 2, so a node
-- that starts on a database whose `audit` checkpoint is of version 1
-- rebuilds the trail beside the (now empty) live table, as for any version
-- change; an unfinished next generation of the old form is dropped.
DROP TABLE IF EXISTS audit_entries__next;
DROP TABLE IF EXISTS audit_entries__old;
DROP TABLE audit_entries;
DELETE FROM projection_checkpoints WHERE name = 'audit#next';

CREATE TABLE audit_entries (
    commit_pos      INTEGER NOT NULL,
    prepare_pos     INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    stream          TEXT    NOT NULL, -- the target
    category        TEXT    NOT NULL, -- the stream's category
    revision        INTEGER NOT NULL, -- the event's revision in its stream
    action          TEXT    NOT NULL, -- the event type
    journal         INTEGER NOT NULL, -- 1 for journal events (see above)
    outcome         TEXT    NOT NULL, -- success | failure
    occurred_us     INTEGER NOT NULL, -- metadata.occurred_at, unix microseconds
    recorded_us     INTEGER NOT NULL, -- when the log committed it, unix microseconds
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
CREATE INDEX audit_by_organization ON audit_entries (organization_id, commit_pos DESC, prepare_pos DESC)
    WHERE organization_id IS NOT NULL;
CREATE INDEX audit_by_correlation ON audit_entries (correlation_id);
CREATE INDEX audit_by_subject ON audit_entries (subject, commit_pos DESC, prepare_pos DESC)
    WHERE subject IS NOT NULL;
CREATE INDEX audit_by_action ON audit_entries (action, commit_pos DESC, prepare_pos DESC)
    WHERE journal = 0;
CREATE INDEX audit_by_stream ON audit_entries (stream, commit_pos DESC, prepare_pos DESC)
    WHERE journal = 0;
CREATE INDEX audit_by_category ON audit_entries (category, commit_pos DESC, prepare_pos DESC)
    WHERE journal = 0;
-- Refusals are rare: a partial index finds them without walking the successes.
CREATE INDEX audit_failures ON audit_entries (commit_pos DESC, prepare_pos DESC)
    WHERE outcome = 'failure';

-- For each minute (unix microseconds / 60,000,000) in which entries
-- occurred, the lowest and highest commit position among them: a time range
-- becomes a range of positions, checked entry by entry against occurred_us.
CREATE TABLE audit_minutes (
    minute       INTEGER PRIMARY KEY,
    first_commit INTEGER NOT NULL,
    last_commit  INTEGER NOT NULL
);
