-- Roles of each organization and who holds them. Holders are users, groups,
-- clients and organizations, named by id only; a user's effective roles
-- are joined from here with the group memberships of 0009.
CREATE TABLE roles (
    id              TEXT    PRIMARY KEY,
    organization_id TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    permissions     TEXT    NOT NULL, -- JSON array, sorted
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    revision        BIGINT  NOT NULL
);
CREATE INDEX roles_by_organization ON roles (organization_id, id);

CREATE TABLE role_assignments (
    role_id         TEXT NOT NULL,
    holder_type     TEXT NOT NULL, -- user, group, client, organization
    holder_id       TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    assigned_at     TEXT NOT NULL,
    PRIMARY KEY (role_id, holder_type, holder_id)
);
CREATE INDEX role_assignments_by_holder ON role_assignments (holder_id, holder_type, role_id);
