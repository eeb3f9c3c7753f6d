-- 0009 delivery: the outbox is delivered (booking/delivery/, README "Notifications").
--
-- The resident's address is kept with the booking (not in the registry), so it goes with
-- the booking's retention. Each municipality chooses its channels; a municipality with no
-- row here gets the log channel (development's default, and harmless anywhere).
--
-- One delivery per (outbox message, channel, recipient), made in the transaction that
-- marks the outbox row published: at most one row each (the unique key below), so the
-- fan-out may run in any number of workers at once. A worker claims due rows with FOR
-- UPDATE SKIP LOCKED in a short transaction that sets leased_until, sends outside any
-- transaction, then records the outcome; a worker that dies leaves its rows leased until
-- leased_until, after which another takes them (at-least-once; the idempotency key lets
-- the receiver drop the duplicate).

ALTER TABLE bookings
    -- The resident's e-mail address for messages about this booking (NULL: none given).
    -- A sane shape only (one @, no spaces, at most 254 octets as SMTP allows): whether it
    -- exists is for the mail server to say.
    ADD COLUMN contact_email text
        CHECK (contact_email IS NULL OR (octet_length(contact_email) BETWEEN 3 AND 254
               AND contact_email ~ '^[^@[:space:]]+@[^@[:space:]]+$')),
    ADD COLUMN contact_locale text NOT NULL DEFAULT 'ja' CHECK (contact_locale IN ('ja', 'en'));

CREATE TABLE delivery_channels (
    municipality_code  text NOT NULL REFERENCES municipalities (code),
    channel            text NOT NULL CHECK (channel IN ('log', 'email', 'webhook')),
    enabled            boolean NOT NULL DEFAULT true,
    -- The webhook channel's receiver (a LINE or SMS bridge of the city); others: NULL.
    webhook_url        text CHECK (webhook_url IS NULL OR (webhook_url ~ '^https?://[^[:space:]]+$'
                                   AND length(webhook_url) <= 2000)),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (municipality_code, channel),
    CHECK ((channel = 'webhook') = (webhook_url IS NOT NULL) OR (channel = 'webhook' AND NOT enabled))
);

CREATE TYPE delivery_state AS ENUM ('pending', 'sent', 'dead');

CREATE TABLE deliveries (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id          bigint NOT NULL REFERENCES outbox (id),
    municipality_code  text REFERENCES municipalities (code),
    channel            text NOT NULL CHECK (channel IN ('log', 'email', 'webhook')),
    -- An e-mail address, a webhook URL, or 'log'.
    recipient          text NOT NULL CHECK (length(recipient) BETWEEN 1 AND 2000),
    locale             text NOT NULL DEFAULT 'ja' CHECK (locale IN ('ja', 'en')),
    -- Stable per (message, channel, recipient): a resend carries the same key.
    idempotency_key    text NOT NULL UNIQUE,
    state              delivery_state NOT NULL DEFAULT 'pending',
    -- Attempts started (counted when claimed, so a message that kills its worker still
    -- reaches the dead state).
    attempts           integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    leased_until       timestamptz,
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    sent_at            timestamptz,
    UNIQUE (outbox_id, channel, recipient),
    CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
-- What the workers claim: pending rows that are due.
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at, id) WHERE state = 'pending';
-- What the admin console lists.
CREATE INDEX deliveries_dead_idx ON deliveries (municipality_code, id) WHERE state = 'dead';
