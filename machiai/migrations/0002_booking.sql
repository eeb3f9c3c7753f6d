-- 0002 booking: a per-slot version so Redis mirrors converge on Postgres in any
-- arrival order, the link from a changed booking to its replacement, and the
-- indexes booking's queries need.

ALTER TABLE slots ADD COLUMN version bigint NOT NULL DEFAULT 1;

-- Every update of a slot bumps its version, whoever makes it.
CREATE FUNCTION slots_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER slots_bump_version BEFORE UPDATE ON slots
    FOR EACH ROW EXECUTE FUNCTION slots_bump_version();

ALTER TABLE bookings ADD COLUMN replaced_by uuid REFERENCES bookings(id);
CREATE INDEX bookings_resident_idx ON bookings (municipality_code, voucher_number);
