-- The sign-ins begun and not yet ended (neither completed nor recorded as
-- expired), so that one left half-way is recorded as expired once its time
-- is up, not only when someone comes back to it. No personal value. Part
-- of the audit projection (projections/src/sign_ins.rs), whose version it
-- leaves alone: it fills from here on, and sign-ins begun before it are
-- recorded as expired when someone comes back to them, as before.
CREATE TABLE open_sign_ins (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    expires_at      TEXT NOT NULL
);
CREATE INDEX open_sign_ins_by_expiry ON open_sign_ins (expires_at, id);
