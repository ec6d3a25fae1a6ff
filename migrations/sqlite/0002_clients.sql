CREATE TABLE clients (
    id              TEXT    PRIMARY KEY,
    organization_id TEXT    NOT NULL,
    client_type     TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    settings        TEXT    NOT NULL, -- the client's settings as JSON
    enabled         INTEGER NOT NULL,
    deleted         INTEGER NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    revision        INTEGER NOT NULL
);
CREATE INDEX clients_by_organization ON clients (organization_id, id);

-- Secret metadata only: the hash stays in the log and the client aggregate.
CREATE TABLE client_secrets (
    id           TEXT    PRIMARY KEY,
    client_id    TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    deleted      INTEGER NOT NULL
);
CREATE INDEX client_secrets_by_client ON client_secrets (client_id, id);
