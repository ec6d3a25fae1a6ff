-- Projection checkpoints: one row per projection, written in the same
-- transaction as that projection's read-model rows.
CREATE TABLE projection_checkpoints (
    name           TEXT    PRIMARY KEY,
    version        BIGINT NOT NULL,
    commit_pos     BIGINT NOT NULL,
    prepare_pos    BIGINT NOT NULL,
    events_applied BIGINT NOT NULL DEFAULT 0,
    updated_at     TEXT    NOT NULL
);

CREATE TABLE organizations (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    revision   BIGINT NOT NULL
);
CREATE INDEX organizations_by_name ON organizations (name, id);
