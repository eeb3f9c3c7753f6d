-- 0008 staff generation: signing a staff member out everywhere.
--
-- A staff token carries its staff row's generation from when it was signed, and every staff
-- request checks that the two still agree (machiai/staff_generation.py). Deactivating, a
-- role change, a new password and signing out add one, so every token signed before stops
-- working (within 2 s: each process re-reads a row at most that often).
ALTER TABLE staff ADD COLUMN generation bigint NOT NULL DEFAULT 1 CHECK (generation >= 1);
