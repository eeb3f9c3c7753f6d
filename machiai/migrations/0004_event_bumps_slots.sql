-- 0004: every event field a slot's Redis mirror is built from bumps the event's slots.
--
-- Redis mirrors each slot with what its event gives it (booking window, closed, kept
-- count, release time), newest slot version wins (0002). 0003 bumped the slots on a
-- change of the phone share only, so an administrator closing an event or moving its
-- times left Redis holding the old window until a rebuild. Now any of these bumps the
-- versions (slots_bump_version does the bump), and booking's re-mirror
-- (booking/services/inventory.py) is taken. Opening (the state change at 9:00) changes
-- none of them and bumps nothing.
DROP TRIGGER events_share_bumps_slots ON events;
DROP FUNCTION events_share_bumps_slots();

CREATE FUNCTION events_bump_slots() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE slots SET version = version WHERE event_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_bump_slots
    AFTER UPDATE ON events
    FOR EACH ROW
    WHEN (OLD.opens_at IS DISTINCT FROM NEW.opens_at
          OR OLD.closes_at IS DISTINCT FROM NEW.closes_at
          OR (OLD.state = 'closed') IS DISTINCT FROM (NEW.state = 'closed')
          OR OLD.phone_share_pct IS DISTINCT FROM NEW.phone_share_pct
          OR OLD.phone_release_at IS DISTINCT FROM NEW.phone_release_at)
    EXECUTE FUNCTION events_bump_slots();
