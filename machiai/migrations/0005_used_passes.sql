-- 0005 used passes: an admission pass opens one booking session, also after Redis lost
-- its memory. Redis keeps the redeemed passes too (the cheap first refusal, and what the
-- waitroom reads); this table is the record that survives it.
--
-- keep_until: past it the pass itself is refused as expired (its signed age), so the row
-- proves nothing more and may go (booking's background loop deletes such rows).
CREATE TABLE used_passes (
    pass_id     text PRIMARY KEY CHECK (length(pass_id) BETWEEN 1 AND 100),
    event_id    text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    session_id  text NOT NULL,
    used_at     timestamptz NOT NULL DEFAULT now(),
    keep_until  timestamptz NOT NULL
);
CREATE INDEX used_passes_keep_until ON used_passes (keep_until);
