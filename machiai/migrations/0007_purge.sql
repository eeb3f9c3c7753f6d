-- 0007 purge: a booking outlives its resident's personal data.
--
-- `machiai purge` (machiai/purge.py) removes what identifies residents of finished events;
-- the booking rows stay (slots.booked, statistics by status, date, clinic and dose), with
-- the voucher number gone and the time it went. Audit rows are never edited (0006).
ALTER TABLE bookings
    ALTER COLUMN voucher_number DROP NOT NULL,
    ADD COLUMN purged_at timestamptz,
    ADD CONSTRAINT bookings_voucher_or_purged
        CHECK (voucher_number IS NOT NULL OR purged_at IS NOT NULL);
