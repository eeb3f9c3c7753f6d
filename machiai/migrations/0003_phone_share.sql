-- 0003 phone share: per event, a share of every slot's capacity kept for the operator
-- channel (the call centre) until a release time; per slot, how many of its bookings
-- came by phone, kept right by the statements that move `booked`.
--
-- The rule itself (booking/README.md, "A share for the phone") is enforced by the booking
-- statement (booking/store/pg_confirm.py) and, in front of it, by the hold script; the
-- schema keeps the counter honest.

-- phone_share_pct: 0 = nothing kept (every event so far). phone_release_at: when the kept
-- places join the web pool; NULL = never, i.e. kept as long as the slot can be booked.
ALTER TABLE events
    ADD COLUMN phone_share_pct smallint NOT NULL DEFAULT 0
        CHECK (phone_share_pct BETWEEN 0 AND 100),
    ADD COLUMN phone_release_at timestamptz;

-- Bookings of the slot made by an operator (active ones: confirmed, attended, no-show,
-- as `booked` counts them).
ALTER TABLE slots ADD COLUMN booked_phone integer NOT NULL DEFAULT 0;
UPDATE slots s SET booked_phone = p.n
FROM (SELECT slot_id, count(*)::integer AS n FROM bookings
      WHERE channel = 'operator' AND status <> 'cancelled' GROUP BY slot_id) p
WHERE p.slot_id = s.id;
ALTER TABLE slots ADD CONSTRAINT slots_phone_within_booked
    CHECK (booked_phone BETWEEN 0 AND booked);

-- Redis mirrors every slot with the kept count and the release time of its event, newest
-- slot version wins (0002). A change of the event's share therefore bumps the version of
-- each of its slots (slots_bump_version does the bump), so the re-mirror is taken.
CREATE FUNCTION events_share_bumps_slots() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE slots SET version = version WHERE event_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_share_bumps_slots
    AFTER UPDATE OF phone_share_pct, phone_release_at ON events
    FOR EACH ROW
    WHEN (OLD.phone_share_pct IS DISTINCT FROM NEW.phone_share_pct
          OR OLD.phone_release_at IS DISTINCT FROM NEW.phone_release_at)
    EXECUTE FUNCTION events_share_bumps_slots();
