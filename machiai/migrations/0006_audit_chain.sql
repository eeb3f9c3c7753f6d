-- 0006 audit chain: the audit log becomes tamper-evident and append-only.
--
-- Writers append audit rows as before, in the transaction of the change they record, and
-- do nothing more: no trigger, no lock. A sealer, audit_seal() below (booking calls it
-- every second; `machiai audit seal` from cron where booking does not run), links the
-- committed rows into hash chains afterwards, in batches: one chain per municipality, the
-- rows without one forming their own. Each row gets one seal (audit_seals): its position
-- in its chain, the previous seal's hash and its own hash over that and the row's values.
-- Chain order is seal order: a row whose transaction commits late is sealed in a later
-- batch, after rows with higher ids. Until it is sealed (about a second) a row can be
-- changed unseen; `machiai audit verify` reports rows left unsealed too long.
--
-- The encoding (machiai/audit.py recomputes it in Python; the verifier trusts no SQL):
--   hash = sha256(prev_hash || message), message = F(id) || F(seq)
--       || F(at in epoch microseconds) || F(municipality_code) || F(actor_kind)
--       || F(actor_id) || F(action) || F(target) || F(before) || F(after) || F(request_id)
--   F(NULL) = 'N';  F(v) = 'S' || <length of utf8(v) in bytes, decimal> || ':' || utf8(v)
--   integers in decimal; before/after as Postgres prints a jsonb (jsonb_out, `jsonb::text`);
--   seq: the seal's position (1, 2, ...); prev_hash of a chain's first seal: 32 zero bytes.
--
-- Finding the rows to seal without ever skipping one. Ids are drawn at insert time but
-- transactions commit in another order, so "every row with an id up to the highest sealed
-- one is sealed" would be false. The sealer keeps instead a watermark below which every
-- row is sealed or will never exist (audit_sealer.sealed_through), and each run seals every
-- committed row above it that has no seal yet, in id order. It raises the watermark only to
-- ids whose writers have all ended:
--   1. A writer's transaction has its id before it draws an audit row's id (the id default
--      below asks for the transaction id first).
--   2. The sealer reads the last id handed out (mark_id; the sequence hands them out one
--      at a time, CACHE 1) and then takes a transaction id of its own (mark_xid), newer
--      than every one assigned before: the writer of any id <= mark_id had its transaction
--      id before that, so below mark_xid.
--   3. A later run finds every transaction below mark_xid ended (the xmin of its snapshot
--      has reached mark_xid) before it reads the rows: the committed ones are all visible,
--      and it seals them. Every row with an id <= mark_id is then sealed or never will
--      exist, so the watermark moves to mark_id, and the mark to the one this run took.
--   (Not a snapshot's xmax for mark_xid: that is the last ended transaction id + 1, and a
--   writer's older id may still be running.)
-- A long transaction holds the watermark back (never the sealing): each run then looks at
-- more rows, that is all.
--
-- Append-only: UPDATE, DELETE and TRUNCATE of audit_log and audit_seals are refused by
-- triggers for every role (table owner included); the application's role, machiai_app,
-- may not even try (no UPDATE/DELETE privilege), writes no seal (it may only call
-- audit_seal) and may not choose an audit row's id. A superuser can still bypass triggers
-- (session_replication_role = replica); `machiai audit verify` then names the row.
-- infra/README.md, "Database roles and the audit log", says how to use machiai_app.

-- Ids from a plain sequence (CACHE 1), drawn only once the writer's transaction has its
-- id (point 1 above; CASE evaluates its condition first). No privilege to choose an id.
ALTER TABLE audit_log ALTER COLUMN id DROP IDENTITY;
CREATE SEQUENCE audit_log_id_seq CACHE 1 OWNED BY audit_log.id;
SELECT setval('audit_log_id_seq', coalesce(max(id), 0) + 1, false) FROM audit_log;
ALTER TABLE audit_log ALTER COLUMN id SET DEFAULT
    CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('audit_log_id_seq') END;

-- One seal per audit row. chain = '' for rows without a municipality, else
-- 'm' || municipality_code (no municipality code can collide with the empty chain).
-- sealed_at is not hashed: it says when the seal was made, nothing proves it. audit_id
-- is an audit_log id, without a foreign key: its check would lock every sealed row (a
-- write to audit_log's pages, WAL and full-page images included: a third of what sealing
-- cost, benchmarks/HISTORY.md) for nothing the triggers and the verifier do not give
-- already (audit rows are never deleted; verify names a seal whose row is gone).
CREATE TABLE audit_seals (
    audit_id           bigint PRIMARY KEY,
    chain              text NOT NULL,
    municipality_code  text,
    seq                bigint NOT NULL CHECK (seq > 0),
    prev_hash          bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash               bytea NOT NULL CHECK (octet_length(hash) = 32),
    sealed_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_seals_one_per_position UNIQUE (chain, seq),
    CHECK (chain = coalesce('m' || municipality_code, ''))
);

-- One row per chain: its last seal (the sealer links the next one to it).
CREATE TABLE audit_heads (
    chain              text PRIMARY KEY,
    municipality_code  text,
    last_id            bigint NOT NULL,
    last_seq           bigint NOT NULL,
    last_hash          bytea NOT NULL CHECK (octet_length(last_hash) = 32),
    CHECK (chain = coalesce('m' || municipality_code, ''))
);

-- The sealer's place (see above). mark_xid '0': nothing to wait for (set below, while
-- this migration keeps every writer out).
CREATE TABLE audit_sealer (
    one             boolean PRIMARY KEY DEFAULT true CHECK (one),
    sealed_through  bigint NOT NULL,
    mark_id         bigint NOT NULL,
    mark_xid        xid8 NOT NULL
);

-- One field of the encoding above, as text (audit_message converts the whole to UTF-8).
CREATE FUNCTION audit_field(v text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce('S' || octet_length(convert_to(v, 'UTF8')) || ':' || v, 'N')
$$;

-- A row's message at position seq: the bytes hashed after the previous hash. before and
-- after as their jsonb text. (SQL functions the planner inlines: a call costs nothing.)
CREATE FUNCTION audit_message(
    id bigint, seq bigint, at timestamptz, municipality_code text, actor_kind text,
    actor_id text, action text, target text, before text, after text, request_id text
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(audit_field(id::text) || audit_field(seq::text)
        -- numeric since Postgres 14 (exact); 13's double is within 0.3 µs, so round() is exact
        || audit_field(round(extract(epoch FROM at) * 1000000)::bigint::text)
        || audit_field(municipality_code) || audit_field(actor_kind) || audit_field(actor_id)
        || audit_field(action) || audit_field(target) || audit_field(before)
        || audit_field(after) || audit_field(request_id), 'UTF8')
$$;

-- The chain as an aggregate: over a chain's messages in order, from the hash its first one
-- follows (start), a running window aggregate gives each row's hash. (plpgsql: a third of
-- the cost of a SQL function called per row.)
CREATE FUNCTION audit_chain_step(state bytea, start bytea, message bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN sha256(coalesce(state, start) || message);
END;
$$;
CREATE AGGREGATE audit_chain(start bytea, message bytea) (
    SFUNC = audit_chain_step, STYPE = bytea
);

-- Seal up to max_rows committed audit rows: returns how many it sealed; 0 when there was
-- nothing to seal or another process is sealing (one sealer at a time, whatever the
-- process; the others return at once). SECURITY DEFINER: callers need only EXECUTE, and
-- no role but the owner writes seals, heads or the sealer's place. work_mem: a batch of
-- rows (their before/after included) is sorted by chain in memory.
CREATE FUNCTION audit_seal(max_rows integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp SET work_mem = '64MB' AS $$
DECLARE
    watermark bigint;
    marked_id bigint;
    ready boolean;
    n integer;
    batch_last bigint;
    through bigint;
    next_id bigint;
    next_xid xid8;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'audit_seal(max_rows): max_rows must be 1 or more, not %', max_rows;
    END IF;
    -- Keys: 1835098984 = 'mach', 1936023916 = 'seal'.
    IF NOT pg_try_advisory_xact_lock(1835098984, 1936023916) THEN
        RETURN 0;
    END IF;
    IF (SELECT seqcache FROM pg_sequence
        WHERE seqrelid = 'audit_log_id_seq'::regclass) IS DISTINCT FROM 1 THEN
        RAISE EXCEPTION 'audit_log_id_seq must hand out ids one at a time (CACHE 1)';
    END IF;
    -- Point 3, before the rows are read (their snapshot comes after this one). A mark at or
    -- past this snapshot's xmax was taken in another cluster, whose dump was restored here:
    -- its writers are long gone. (In this cluster the mark's own transaction has ended, so
    -- it is below xmax.)
    SELECT p.sealed_through, p.mark_id,
           p.mark_xid <= pg_snapshot_xmin(s) OR p.mark_xid >= pg_snapshot_xmax(s)
    INTO STRICT watermark, marked_id, ready
    FROM audit_sealer p, pg_current_snapshot() s;
    -- Point 2, the next mark, taken before this function writes (not when the caller's
    -- transaction already has an id: the mark then stays, and the next run moves it).
    IF ready AND pg_current_xact_id_if_assigned() IS NULL THEN
        next_id := (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
                    FROM audit_log_id_seq);
        next_xid := pg_current_xact_id();
    END IF;

    WITH batch AS (
        -- The first rows above the watermark without a seal, in id order.
        SELECT a.id, a.at, a.municipality_code, a.actor_kind, a.actor_id, a.action,
               a.target, a.before::text AS before, a.after::text AS after, a.request_id,
               coalesce('m' || a.municipality_code, '') AS chain
        FROM audit_log a
        WHERE a.id > watermark
          AND NOT EXISTS (SELECT FROM audit_seals s WHERE s.audit_id = a.id)
        ORDER BY a.id LIMIT max_rows
    ),
    placed AS (
        -- Each chain's rows, in id order, after its head.
        SELECT b.*, coalesce(h.last_hash, decode(repeat('00', 32), 'hex')) AS start,
               coalesce(h.last_seq, 0) AS head_seq,
               row_number() OVER (PARTITION BY b.chain ORDER BY b.id) AS nth,
               count(*) OVER (PARTITION BY b.chain) AS rows_in_chain
        FROM batch b LEFT JOIN audit_heads h ON h.chain = b.chain
    ),
    hashed AS (
        SELECT p.id, p.chain, p.municipality_code, p.head_seq + p.nth AS seq, p.start,
               p.nth = p.rows_in_chain AS last,
               audit_chain(p.start, audit_message(p.id, p.head_seq + p.nth, p.at,
                                                 p.municipality_code, p.actor_kind,
                                                 p.actor_id, p.action, p.target, p.before,
                                                 p.after, p.request_id))
                   OVER (PARTITION BY p.chain ORDER BY p.id) AS hash
        FROM placed p
    ),
    sealed AS (
        -- UNIQUE (chain, seq) is the last word: a second sealer could not fork a chain.
        INSERT INTO audit_seals (audit_id, chain, municipality_code, seq, prev_hash, hash)
        SELECT x.id, x.chain, x.municipality_code, x.seq,
               coalesce(lag(x.hash) OVER (PARTITION BY x.chain ORDER BY x.id), x.start),
               x.hash
        FROM hashed x
    ),
    heads AS (
        INSERT INTO audit_heads (chain, municipality_code, last_id, last_seq, last_hash)
        SELECT x.chain, x.municipality_code, x.id, x.seq, x.hash FROM hashed x WHERE x.last
        ON CONFLICT (chain) DO UPDATE
            SET last_id = EXCLUDED.last_id, last_seq = EXCLUDED.last_seq,
                last_hash = EXCLUDED.last_hash
    )
    SELECT count(*), max(x.id) INTO n, batch_last FROM hashed x;

    IF ready THEN
        -- Every row up to mark_id is visible now; those up to the batch's last id (all of
        -- them when the batch was not full) are sealed.
        through := CASE WHEN n < max_rows THEN marked_id ELSE least(marked_id, batch_last) END;
        IF through = marked_id AND next_xid IS NOT NULL THEN
            UPDATE audit_sealer
            SET sealed_through = through, mark_id = next_id, mark_xid = next_xid;
        ELSIF through > watermark THEN
            UPDATE audit_sealer SET sealed_through = through;
        END IF;
    END IF;
    RETURN n;
END;
$$;

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit rows and their seals are never edited or deleted; '
                     'see infra/README.md';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_seals_append_only BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- The rows written before this migration, sealed now. The ALTER TABLE above keeps every
-- writer out until this migration commits, so every id handed out so far is final: the
-- first mark needs no waiting (mark_xid 0).
INSERT INTO audit_sealer (sealed_through, mark_id, mark_xid)
SELECT 0, CASE WHEN is_called THEN last_value ELSE last_value - 1 END, '0'
FROM audit_log_id_seq;
DO $$
BEGIN
    WHILE audit_seal(10000) = 10000 LOOP
    END LOOP;
END;
$$;

-- The application's role: a NOLOGIN group role; deployers grant it to the login role
-- the services connect as (which should not own the tables: an owner has every right).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'machiai_app') THEN
        BEGIN
            CREATE ROLE machiai_app NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'the role machiai_app does not exist and % may not create it',
                    current_user
                    USING HINT = 'as an administrator: CREATE ROLE machiai_app NOLOGIN; '
                                 'then run machiai migrate again';
        END;
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA public TO machiai_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO machiai_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO machiai_app;
-- The audit log: read and append only, its ids drawn by the default (USAGE on the
-- sequence, no setval). Seals, heads and the sealer's place move through audit_seal alone.
REVOKE ALL ON audit_log, audit_seals, audit_heads, audit_sealer, schema_migrations
    FROM machiai_app;
REVOKE ALL ON SEQUENCE audit_log_id_seq FROM machiai_app;
GRANT SELECT ON audit_log, audit_seals, audit_heads, audit_sealer, schema_migrations
    TO machiai_app;
GRANT INSERT (at, municipality_code, actor_kind, actor_id, action, target, before, after,
              request_id) ON audit_log TO machiai_app;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO machiai_app;
REVOKE ALL ON FUNCTION audit_seal(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_seal(integer) TO machiai_app;
-- Tables and sequences of later migrations (created by the same migrating role).
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO machiai_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO machiai_app;
