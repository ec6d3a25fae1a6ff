-- Users and groups. Personal values are here in the clear (the read models
-- are rebuilt from the log, where they are encrypted per person); a user's
-- erasure deletes their rows.
CREATE TABLE users (
    id                   TEXT    PRIMARY KEY,
    organization_id      TEXT    NOT NULL,
    username             TEXT    NOT NULL,
    username_key         TEXT    NOT NULL, -- NFKC, case-folded: search and sort
    email                TEXT,
    email_key            TEXT,
    email_verified       BIGINT NOT NULL,
    phone_number         TEXT,
    phone_verified       BIGINT NOT NULL,
    profile              TEXT    NOT NULL, -- JSON
    attributes           TEXT    NOT NULL, -- JSON
    status               TEXT    NOT NULL,
    has_password         BIGINT NOT NULL,
    must_change_password BIGINT NOT NULL,
    password_set_at      TEXT,
    created_at           TEXT    NOT NULL,
    updated_at           TEXT    NOT NULL,
    last_sign_in_at      TEXT,
    revision             BIGINT NOT NULL
);
CREATE INDEX users_by_username ON users (organization_id, username_key, id);
CREATE INDEX users_by_email ON users (organization_id, email_key, id);
CREATE INDEX users_by_created ON users (organization_id, created_at, id);
CREATE INDEX users_by_sign_in ON users (organization_id, last_sign_in_at, id);

-- One row per custom attribute value (a list gives one row per item).
CREATE TABLE user_attributes (
    user_id TEXT NOT NULL,
    name    TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (user_id, name, value)
);
CREATE INDEX user_attributes_by_value ON user_attributes (name, value, user_id);

CREATE TABLE groups (
    id              TEXT    PRIMARY KEY,
    organization_id TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    revision        BIGINT NOT NULL
);
CREATE INDEX groups_by_organization ON groups (organization_id, id);

-- Direct members: users (member_type 'user') and groups ('group').
CREATE TABLE group_members (
    group_id    TEXT NOT NULL,
    member_id   TEXT NOT NULL,
    member_type TEXT NOT NULL,
    added_at    TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_by_member ON group_members (member_id, group_id);
