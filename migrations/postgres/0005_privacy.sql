-- Per-subject data keys, each sealed under the master key (never in the
-- log). Deleting a row erases the subject (crypto-shredding).
CREATE TABLE IF NOT EXISTS subject_keys ( -- a keys database of its own may be this one
    subject    TEXT PRIMARY KEY,
    sealed_key TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- The person an instance's user name names.
ALTER TABLE auth_tokens ADD COLUMN subject TEXT;
CREATE INDEX auth_tokens_by_subject ON auth_tokens (subject);
