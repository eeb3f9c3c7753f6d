-- 0010 notify opt-in: day-before reminders run once per municipality and day, and one
-- "your turn is near" message per waiting ticket.
--
-- Both tables exist so that the job writing outbox rows is safe to run twice (and from
-- many processes at once): the run's row is claimed with INSERT ... ON CONFLICT DO NOTHING
-- in the same transaction as the outbox rows it writes, so a second run, concurrent or
-- later, finds the claim and writes nothing. (The residents' addresses themselves are
-- bookings.contact_email / contact_locale, migration 0009.)

-- One row per (municipality, day) whose reminders were written: the appointments on the
-- day after ``day`` (Japan time).
CREATE TABLE reminder_runs (
    municipality_code  text NOT NULL REFERENCES municipalities(code),
    day                date NOT NULL,
    reminders          integer NOT NULL CHECK (reminders >= 0),
    ran_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (municipality_code, day)
);

-- One row per ticket that was sent its "your turn is near" message: the waitroom's
-- notifier claims opt-ins in Redis at least once (a crash between the claim and this
-- write hands them out again); this key makes the outbox write happen once.
CREATE TABLE turn_notices (
    event_id    text NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    ticket_id   text NOT NULL CHECK (length(ticket_id) BETWEEN 1 AND 64),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, ticket_id)
);
