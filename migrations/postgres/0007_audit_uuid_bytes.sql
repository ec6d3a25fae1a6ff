-- The audit trail keeps its UUIDs (event, organization, correlation, causation) as their
-- 16 bytes instead of 36 characters: a fifth less to write per entry, and shorter keys
-- for the organization and correlation indexes to sort. They are formatted when read.
--
-- As in 0006 the table is created anew and the projection's version (now 3) makes a
-- start rebuild the trail from the log beside the empty live table.
DROP TABLE IF EXISTS audit_entries__next;
DROP TABLE IF EXISTS audit_entries__old;
DROP TABLE audit_entries;
DELETE FROM projection_checkpoints WHERE name = 'audit#next';

CREATE TABLE audit_entries (
    commit_pos      BIGINT  NOT NULL,
    prepare_pos     BIGINT  NOT NULL,
    event_id        BYTEA   NOT NULL, -- 16 bytes
    stream          TEXT    COLLATE "C" NOT NULL, -- the target
    category        TEXT    COLLATE "C" NOT NULL, -- the stream's category
    revision        BIGINT  NOT NULL, -- the event's revision in its stream
    action          TEXT    COLLATE "C" NOT NULL, -- the event type
    journal         BIGINT  NOT NULL, -- 1 for journal events (see 0006)
    outcome         TEXT    NOT NULL, -- success | failure
    occurred_us     BIGINT  NOT NULL, -- metadata.occurred_at, unix microseconds
    recorded_us     BIGINT  NOT NULL, -- when the log committed it, unix microseconds
    actor_kind      TEXT    NOT NULL,
    actor_id        TEXT,
    subject         TEXT,
    organization_id BYTEA,            -- 16 bytes
    source_ip       TEXT,
    user_agent      TEXT,
    correlation_id  BYTEA   NOT NULL, -- 16 bytes
    causation_id    BYTEA,            -- 16 bytes
    PRIMARY KEY (commit_pos, prepare_pos)
);
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
CREATE INDEX audit_failures ON audit_entries (commit_pos DESC, prepare_pos DESC)
    WHERE outcome = 'failure';
