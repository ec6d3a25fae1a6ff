-- A status filter within an organization, and the totals counted with it, read one
-- covering index range instead of every user of the organization.
CREATE INDEX users_by_status ON users (organization_id, status, created_at, id);
