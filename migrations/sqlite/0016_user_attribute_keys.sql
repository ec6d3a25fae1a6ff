-- SCIM compares most attributes regardless of case: each value is stored beside its
-- lowercased key, and an organization's filter on a name and a key is one index range
-- (no lower() over every value of the name). The users projection's version 3 fills the
-- column (a rebuild).
ALTER TABLE user_attributes ADD COLUMN value_key TEXT NOT NULL DEFAULT '';
CREATE INDEX user_attributes_by_key ON user_attributes (organization_id, name, value_key, user_id);
