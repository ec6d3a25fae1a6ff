-- An attribute filter within an organization is one index range. The users
-- projection's version 2 fills the column (a rebuild).
ALTER TABLE user_attributes ADD COLUMN organization_id TEXT NOT NULL DEFAULT '';
CREATE INDEX user_attributes_by_organization ON user_attributes (organization_id, name, value, user_id);
