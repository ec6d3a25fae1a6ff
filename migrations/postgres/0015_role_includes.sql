-- Roles inside roles: whoever holds `parent_id` holds `child_id` too.
CREATE TABLE role_includes (
    parent_id       TEXT NOT NULL,
    child_id        TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    included_at     TEXT NOT NULL,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX role_includes_by_child ON role_includes (child_id, parent_id);
