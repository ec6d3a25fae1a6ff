-- A group's id in the system that provisions it (SCIM's `externalId`), filled by the
-- users projection's version 4 (a rebuild).
ALTER TABLE groups ADD COLUMN external_id TEXT;
