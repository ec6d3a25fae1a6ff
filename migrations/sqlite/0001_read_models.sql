-- Projection checkpoints: one row per projection, written in the same
-- transaction as that projection's read-model rows.
CREATE TABLE projection_checkpoints (
    name           TEXT    PRIMARY KEY,
    version        INTEGER NOT NULL,
    commit_pos     INTEGER NOT NULL,
    prepare_pos    INTEGER NOT NULL,
    events_applied INTEGER NOT NULL DEFAULT 0,
    updated_at     TEXT    NOT NULL
);

CREATE TABLE organizations (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    revision   INTEGER NOT NULL
);
CREATE INDEX organizations_by_name ON organizations (name, id);
