-- Entries by the address a request came from, newest first: what a security review asks
-- of the whole trail, often for an address with few entries or none, which without an
-- index meant reading every entry. (The User-Agent stays unindexed: long values shared by
-- many requests, and asked together with an address, an actor or a time range.)
CREATE INDEX audit_by_source_ip ON audit_entries (source_ip, commit_pos DESC, prepare_pos DESC)
    WHERE source_ip IS NOT NULL;
