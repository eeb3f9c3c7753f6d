-- 0011 exports: what a vaccination ledger (予防接種台帳) needs that the schema lacked.
--
-- A clinic's 医療機関コード (10 digits) identifies it in the ledger; optional, since a
-- city may hand on its ledger by clinic name, but never two clinics of one municipality
-- with the same code. A booking marked attended may carry the vaccine's lot number, in
-- the shape booking/services/clinic.py accepts (capital letters, digits, hyphens).
ALTER TABLE clinics
    ADD COLUMN code text CHECK (code ~ '^[0-9]{10}$');
CREATE UNIQUE INDEX clinics_code_per_municipality
    ON clinics (municipality_code, code) WHERE code IS NOT NULL;

ALTER TABLE bookings
    ADD COLUMN lot text CHECK (lot ~ '^[A-Z0-9][A-Z0-9-]{0,19}$');

-- The ledger export reads a municipality's attended bookings by the appointment's time,
-- in that order, through a cursor: this index hands them over already sorted (no sort of
-- a million rows before the first one can leave).
CREATE INDEX bookings_attended_by_time
    ON bookings (municipality_code, slot_starts_at) WHERE status = 'attended';
