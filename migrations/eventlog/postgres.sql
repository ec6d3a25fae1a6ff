-- The event log on PostgreSQL. Applied idempotently by the eventlog adapter at open.
--
-- Global order: (tx_id, seq). A sequence alone commits out of order, so
-- readers only read rows whose transaction id is below the xmin of a current
-- snapshot: every transaction below it has finished, so nothing can later
-- appear below a position a reader has passed. Appends take a per-stream
-- advisory lock BEFORE their first write, so a stream's later revisions
-- always get larger transaction ids than its earlier ones.
CREATE TABLE IF NOT EXISTS events (
    tx_id       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    event_id    uuid        NOT NULL UNIQUE,
    stream      text        NOT NULL,
    revision    bigint      NOT NULL,
    category    text        NOT NULL,
    event_type  text        NOT NULL,
    subject     text,
    data        text        NOT NULL,
    metadata    text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tx_id, seq),
    UNIQUE (stream, revision)
);
CREATE INDEX IF NOT EXISTS events_by_subject ON events (subject, tx_id, seq) WHERE subject IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_category ON events (category, tx_id, seq);

-- Tamper evidence (eventlog/src/chain.rs documents it; the bytes below must
-- stay exactly those of `chain::canonical_bytes`).
-- Hex SHA-256 link to the stream's previous event; NULL only for events
-- stored before the column existed, until `seal` gives them one.
ALTER TABLE events ADD COLUMN IF NOT EXISTS chain text;

-- Anchor `seq` covers the readable events after anchor seq-1 up to
-- (tx_id, ev_seq); `events` counts the events up to there; `hash` =
-- SHA-256(previous hash || their chain links). Written by `seal`.
CREATE TABLE IF NOT EXISTS chain_anchors (
    seq       bigint      PRIMARY KEY,
    tx_id     xid8        NOT NULL,
    ev_seq    bigint      NOT NULL,
    events    bigint      NOT NULL,
    hash      text        NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Events a retention rule dropped (`EventLog::drop_stream`): their contents
-- are gone; their chain links stay, in the anchors' order, for `verify`.
CREATE TABLE IF NOT EXISTS dropped_links (
    tx_id      xid8        NOT NULL,
    seq        bigint      NOT NULL,
    stream     text        NOT NULL,
    revision   bigint      NOT NULL,
    chain      text,
    dropped_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tx_id, seq)
);

-- What an event's link hashes. A NULL `prev` (the previous link unknown)
-- gives NULL. `textsend` gives a text's bytes in the session's client
-- encoding, which the adapter's connections (sqlx) always set to UTF-8: the
-- same bytes as convert_to(t, 'UTF8') at a tenth of the cost. STABLE (not
-- IMMUTABLE) because textsend is, and so that plpgsql can inline it.
CREATE OR REPLACE FUNCTION idp_chain_bytes(
    prev bytea, p_stream text, p_revision bigint, p_id uuid, p_type text, p_subject text,
    p_data text, p_meta text, p_micros bigint)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT prev
        || int8send(octet_length(textsend(p_stream))::bigint) || textsend(p_stream)
        || int8send(p_revision)
        || uuid_send(p_id)
        || int8send(octet_length(textsend(p_type))::bigint) || textsend(p_type)
        || CASE WHEN p_subject IS NULL THEN '\x00'::bytea
                ELSE '\x01'::bytea || int8send(octet_length(textsend(p_subject))::bigint)
                     || textsend(p_subject) END
        || int8send(octet_length(textsend(p_data))::bigint) || textsend(p_data)
        || int8send(octet_length(textsend(p_meta))::bigint) || textsend(p_meta)
        || int8send(p_micros)
$$;

-- A stored link as bytes: NULL unless it is 64 lowercase hex digits.
CREATE OR REPLACE FUNCTION idp_chain_decode(link text)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(link) = 64 AND ltrim(link, '0123456789abcdef') = ''
                THEN decode(link, 'hex') END
$$;

-- Gives links, in order, to events stored before links existed (by `seal`).
-- An event whose predecessor has no usable link (a tampered log) stays
-- without; returns each event's link or NULL.
CREATE OR REPLACE FUNCTION idp_chain_backfill(p_tx xid8[], p_seq bigint[])
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    links text[] := '{}';
    i int;
    e_stream text; e_rev bigint; e_id uuid; e_type text; e_subject text; e_data text; e_meta text;
    e_micros bigint; e_chain text;
    prev bytea;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_tx, 1), 0) LOOP
        SELECT e.stream, e.revision, e.event_id, e.event_type, e.subject, e.data, e.metadata,
               (extract(epoch FROM e.recorded_at) * 1000000)::bigint, e.chain
          INTO e_stream, e_rev, e_id, e_type, e_subject, e_data, e_meta, e_micros, e_chain
          FROM events e WHERE e.tx_id = p_tx[i] AND e.seq = p_seq[i];
        IF e_chain IS NULL AND e_stream IS NOT NULL THEN
            IF e_rev = 0 THEN
                prev := decode(repeat('00', 32), 'hex');
            ELSE
                SELECT idp_chain_decode(p.chain) INTO prev
                  FROM events p WHERE p.stream = e_stream AND p.revision = e_rev - 1;
            END IF;
            e_chain := encode(sha256(idp_chain_bytes(prev, e_stream, e_rev, e_id, e_type, e_subject,
                                                     e_data, e_meta, e_micros)), 'hex');
            IF e_chain IS NOT NULL THEN
                UPDATE events e SET chain = e_chain
                 WHERE e.tx_id = p_tx[i] AND e.seq = p_seq[i] AND e.chain IS NULL;
            END IF;
        END IF;
        links := array_append(links, e_chain);
        prev := NULL;
    END LOOP;
    RETURN links;
END;
$$;

-- The body of an append, for a caller that already holds the stream's
-- advisory lock. Outcomes:
--   ok          appended; revision/tx/seq of the last event
--   idempotent  these ids are already stored here; same fields as ok
--   conflict    wrong expected revision; revision = actual (-1: no stream)
--   duplicate   an event id is stored elsewhere; dup_id names it
-- expected_kind: 0 any, 1 no stream, 2 stream exists, 3 exact.
CREATE OR REPLACE FUNCTION idp_append_locked(
    p_stream text, p_category text, p_expected_kind int, p_expected bigint,
    p_ids uuid[], p_types text[], p_subjects text[], p_data text[], p_meta text[])
RETURNS TABLE (outcome text, revision bigint, tx text, seq bigint, dup_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    cur bigint;
    head_chain text;
    link bytea;
    chains text[] := '{}';
    now_ts timestamptz := clock_timestamp();
    micros bigint;
    i int;
    first_stream text;
    first_rev bigint;
    n int := array_length(p_ids, 1);
    matching int;
    dup uuid;
BEGIN
    SELECT e.revision, e.chain INTO cur, head_chain
      FROM events e WHERE e.stream = p_stream ORDER BY e.revision DESC LIMIT 1;

    SELECT e.stream, e.revision INTO first_stream, first_rev FROM events e WHERE e.event_id = p_ids[1];
    IF FOUND THEN
        IF first_stream <> p_stream THEN
            RETURN QUERY SELECT 'duplicate'::text, NULL::bigint, NULL::text, NULL::bigint, p_ids[1];
            RETURN;
        END IF;
        SELECT count(*) INTO matching
          FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
          JOIN events e ON e.event_id = u.id
         WHERE e.stream = p_stream AND e.revision = first_rev + u.ord - 1;
        IF matching = n THEN
            RETURN QUERY SELECT 'idempotent'::text, e.revision, e.tx_id::text, e.seq, NULL::uuid
              FROM events e WHERE e.event_id = p_ids[n];
        ELSE
            RETURN QUERY SELECT 'duplicate'::text, NULL::bigint, NULL::text, NULL::bigint, p_ids[1];
        END IF;
        RETURN;
    END IF;

    IF NOT (p_expected_kind = 0
            OR (p_expected_kind = 1 AND cur IS NULL)
            OR (p_expected_kind = 2 AND cur IS NOT NULL)
            OR (p_expected_kind = 3 AND cur IS NOT NULL AND cur = p_expected)) THEN
        RETURN QUERY SELECT 'conflict'::text, coalesce(cur, -1), NULL::text, NULL::bigint, NULL::uuid;
        RETURN;
    END IF;

    -- Any of the ids stored anywhere: refused. (A concurrent append of the
    -- same id elsewhere can still race past this check; the unique index
    -- then fails the statement and the caller maps that to `duplicate`.)
    IF n > 1 THEN
        SELECT u.id INTO dup FROM unnest(p_ids) AS u(id) JOIN events e ON e.event_id = u.id LIMIT 1;
    END IF;
    IF dup IS NOT NULL THEN
        RETURN QUERY SELECT 'duplicate'::text, NULL::bigint, NULL::text, NULL::bigint, dup;
        RETURN;
    END IF;

    -- Chain links (see idp_chain_bytes). While the head awaits its link
    -- from `seal` (a log from before chains), these events wait too.
    micros := (extract(epoch FROM now_ts) * 1000000)::bigint;
    link := CASE WHEN cur IS NULL THEN decode(repeat('00', 32), 'hex') ELSE idp_chain_decode(head_chain) END;
    FOR i IN 1 .. n LOOP
        link := sha256(idp_chain_bytes(link, p_stream, coalesce(cur, -1) + i, p_ids[i], p_types[i],
                                       p_subjects[i], p_data[i], p_meta[i], micros));
        chains := array_append(chains, encode(link, 'hex'));
    END LOOP;

    RETURN QUERY
    WITH ins AS (
        INSERT INTO events (event_id, stream, revision, category, event_type, subject, data, metadata,
                            recorded_at, chain)
        SELECT u.id, p_stream, coalesce(cur, -1) + u.ord, p_category, u.ty, u.subj, u.d, u.m, now_ts, u.ch
          FROM unnest(p_ids, p_types, p_subjects, p_data, p_meta, chains)
               WITH ORDINALITY AS u(id, ty, subj, d, m, ch, ord)
         ORDER BY u.ord
        RETURNING events.revision, events.tx_id, events.seq
    )
    SELECT 'ok'::text, ins.revision, ins.tx_id::text, ins.seq, NULL::uuid
      FROM ins ORDER BY ins.revision DESC LIMIT 1;
END;
$$;

-- One append: one round trip, one short transaction.
CREATE OR REPLACE FUNCTION idp_append(
    p_stream text, p_category text, p_expected_kind int, p_expected bigint,
    p_ids uuid[], p_types text[], p_subjects text[], p_data text[], p_meta text[])
RETURNS TABLE (outcome text, revision bigint, tx text, seq bigint, dup_id uuid)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 7));
    RETURN QUERY SELECT * FROM idp_append_locked(p_stream, p_category, p_expected_kind, p_expected,
        p_ids, p_types, p_subjects, p_data, p_meta);
END;
$$;

-- Several appends in one transaction (group commit). Every stream lock is
-- taken first, in hash order (no deadlock between two batches), so the
-- transaction id, assigned at the first insert, still comes after every lock.
-- Each append succeeds or fails on its own; events are passed flat, with
-- a_counts[i] events belonging to append i. Returns one row per append.
CREATE OR REPLACE FUNCTION idp_append_batch(
    a_streams text[], a_categories text[], a_kinds int[], a_expected bigint[], a_counts int[],
    e_ids uuid[], e_types text[], e_subjects text[], e_data text[], e_meta text[])
RETURNS TABLE (idx int, outcome text, revision bigint, tx text, seq bigint, dup_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    h bigint;
    i int;
    j int;
    k int;
    off int := 0;
    lo int;
    hi int;
    r record;
    -- The streams of the batch, and their heads as the batch goes.
    heads text[];
    head_rev bigint[];
    head_chain text[];
    cur bigint;
    link bytea;
    now_ts timestamptz := clock_timestamp();
    micros bigint;
    -- The rows to insert, in order, and the append each ends.
    ins_ids uuid[] := '{}';
    ins_streams text[] := '{}';
    ins_revs bigint[] := '{}';
    ins_cats text[] := '{}';
    ins_types text[] := '{}';
    ins_subjects text[] := '{}';
    ins_data text[] := '{}';
    ins_meta text[] := '{}';
    ins_chains text[] := '{}';
    n int := 0;
    ends int[];
    results text[];
    result_revs bigint[];
    seqs bigint[];
    txt text;
BEGIN
    FOR h IN SELECT DISTINCT hashtextextended(s, 7) FROM unnest(a_streams) AS s ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(h);
    END LOOP;
    -- A retry or a duplicate id: decide each append on its own, as idp_append would.
    IF EXISTS (SELECT 1 FROM events e WHERE e.event_id = ANY(e_ids)) THEN
        FOR i IN 1 .. array_length(a_streams, 1) LOOP
            lo := off + 1;
            hi := off + a_counts[i];
            FOR r IN SELECT * FROM idp_append_locked(a_streams[i], a_categories[i], a_kinds[i], a_expected[i],
                    e_ids[lo:hi], e_types[lo:hi], e_subjects[lo:hi], e_data[lo:hi], e_meta[lo:hi]) LOOP
                idx := i;
                outcome := r.outcome;
                revision := r.revision;
                tx := r.tx;
                seq := r.seq;
                dup_id := r.dup_id;
                RETURN NEXT;
            END LOOP;
            off := hi;
        END LOOP;
        RETURN;
    END IF;

    -- The common case, set-based: every head in one query, every link
    -- computed here, every row in one INSERT.
    SELECT array_agg(s.stream), array_agg(hd.revision), array_agg(hd.chain)
      INTO heads, head_rev, head_chain
      FROM (SELECT DISTINCT unnest(a_streams) AS stream) s
      LEFT JOIN LATERAL (SELECT e.revision, e.chain FROM events e WHERE e.stream = s.stream
                          ORDER BY e.revision DESC LIMIT 1) hd ON true;
    micros := (extract(epoch FROM now_ts) * 1000000)::bigint;
    ends := array_fill(0, ARRAY[array_length(a_streams, 1)]);
    results := array_fill(NULL::text, ARRAY[array_length(a_streams, 1)]);
    result_revs := array_fill(NULL::bigint, ARRAY[array_length(a_streams, 1)]);
    FOR i IN 1 .. array_length(a_streams, 1) LOOP
        lo := off + 1;
        hi := off + a_counts[i];
        off := hi;
        j := array_position(heads, a_streams[i]);
        cur := head_rev[j];
        IF NOT (a_kinds[i] = 0
                OR (a_kinds[i] = 1 AND cur IS NULL)
                OR (a_kinds[i] = 2 AND cur IS NOT NULL)
                OR (a_kinds[i] = 3 AND cur IS NOT NULL AND cur = a_expected[i])) THEN
            results[i] := 'conflict';
            result_revs[i] := coalesce(cur, -1);
            CONTINUE;
        END IF;
        -- Chain links (see idp_chain_bytes); a head still awaiting its link
        -- from `seal` leaves these without one too.
        link := CASE WHEN cur IS NULL THEN decode(repeat('00', 32), 'hex')
                     ELSE idp_chain_decode(head_chain[j]) END;
        FOR k IN lo .. hi LOOP
            cur := coalesce(cur, -1) + 1;
            link := sha256(idp_chain_bytes(link, a_streams[i], cur, e_ids[k], e_types[k],
                                           e_subjects[k], e_data[k], e_meta[k], micros));
            -- Element assignment extends the arrays in place (appending
            -- with || would copy them every time).
            n := n + 1;
            ins_ids[n] := e_ids[k];
            ins_streams[n] := a_streams[i];
            ins_revs[n] := cur;
            ins_cats[n] := a_categories[i];
            ins_types[n] := e_types[k];
            ins_subjects[n] := e_subjects[k];
            ins_data[n] := e_data[k];
            ins_meta[n] := e_meta[k];
            ins_chains[n] := encode(link, 'hex');
        END LOOP;
        head_rev[j] := cur;
        head_chain[j] := encode(link, 'hex');
        results[i] := 'ok';
        result_revs[i] := cur;
        ends[i] := n;
    END LOOP;

    IF n > 0 THEN
        WITH ins AS (
            INSERT INTO events (event_id, stream, revision, category, event_type, subject, data, metadata,
                                recorded_at, chain)
            SELECT u.id, u.st, u.rev, u.cat, u.ty, u.subj, u.d, u.m, now_ts, u.ch
              FROM unnest(ins_ids, ins_streams, ins_revs, ins_cats, ins_types, ins_subjects, ins_data,
                          ins_meta, ins_chains) WITH ORDINALITY AS u(id, st, rev, cat, ty, subj, d, m, ch, ord)
             ORDER BY u.ord
            RETURNING events.seq, events.tx_id
        )
        SELECT array_agg(ins.seq ORDER BY ins.seq), min(ins.tx_id::text) INTO seqs, txt FROM ins;
    END IF;

    FOR i IN 1 .. array_length(a_streams, 1) LOOP
        idx := i;
        outcome := results[i];
        revision := result_revs[i];
        dup_id := NULL;
        IF results[i] = 'ok' THEN
            tx := txt;
            seq := seqs[ends[i]];
        ELSE
            tx := NULL;
            seq := NULL;
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$$;
