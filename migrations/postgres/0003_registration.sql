CREATE TABLE registration_tokens (
    id              TEXT    PRIMARY KEY,
    organization_id TEXT    NOT NULL,
    client_id       TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    count           BIGINT NOT NULL,
    used            BIGINT NOT NULL,
    expires_at      TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    revoked_at      TEXT,
    last_used_at    TEXT
);
CREATE INDEX registration_tokens_by_organization ON registration_tokens (organization_id, id);

-- The instances that consumed a registration token (never a token hash).
CREATE TABLE auth_tokens (
    id                    TEXT PRIMARY KEY,
    registration_token_id TEXT NOT NULL,
    client_id             TEXT NOT NULL,
    organization_id       TEXT NOT NULL,
    instance_id           TEXT NOT NULL,
    device_name           TEXT NOT NULL,
    user_name             TEXT,
    app_version           TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    source_ip             TEXT,
    user_agent            TEXT,
    exchanged_at          TEXT,
    last_used_at          TEXT,
    chain_revoked_at      TEXT,
    deleted_at            TEXT
);
CREATE INDEX auth_tokens_by_registration_token ON auth_tokens (registration_token_id, id);
