-- 0001 initial schema: tenants, events, clinics, slots, registry, bookings,
-- staff, audit log, outbox. Postgres is the source of truth; the CHECKs and
-- unique indexes here are the last line of defence whatever Redis says.

CREATE TABLE municipalities (
    code        text PRIMARY KEY CHECK (code ~ '^[0-9]{6}$'),  -- 全国地方公共団体コード
    name_ja     text NOT NULL CHECK (length(name_ja) BETWEEN 1 AND 200),
    name_en     text NOT NULL CHECK (length(name_en) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vaccines (
    code                text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    name_ja             text NOT NULL,
    name_en             text NOT NULL,
    -- Dose rules as data: dose n+1 is bookable only this many days after dose n.
    dose_interval_days  integer NOT NULL CHECK (dose_interval_days BETWEEN 0 AND 365),
    max_doses           smallint NOT NULL DEFAULT 2 CHECK (max_doses BETWEEN 1 AND 9)
);

CREATE TYPE event_state AS ENUM ('scheduled', 'prequeue', 'open', 'paused', 'sold_out', 'closed');

CREATE TABLE events (
    id                 text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    municipality_code  text NOT NULL REFERENCES municipalities(code),
    name_ja            text NOT NULL CHECK (length(name_ja) BETWEEN 1 AND 200),
    name_en            text NOT NULL CHECK (length(name_en) BETWEEN 1 AND 200),
    prequeue_at        timestamptz NOT NULL,
    opens_at           timestamptz NOT NULL,
    closes_at          timestamptz NOT NULL,
    admit_per_minute   integer NOT NULL CHECK (admit_per_minute BETWEEN 1 AND 1000000),
    max_active         integer NOT NULL CHECK (max_active BETWEEN 1 AND 10000000),
    eligibility_group  text CHECK (eligibility_group IS NULL OR length(eligibility_group) BETWEEN 1 AND 40),
    state              event_state NOT NULL DEFAULT 'scheduled',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (prequeue_at <= opens_at AND opens_at < closes_at)
);
CREATE INDEX events_municipality_idx ON events (municipality_code);

CREATE TABLE clinics (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    municipality_code  text NOT NULL REFERENCES municipalities(code),
    name_ja            text NOT NULL CHECK (length(name_ja) BETWEEN 1 AND 200),
    name_en            text NOT NULL CHECK (length(name_en) BETWEEN 1 AND 200),
    area               text NOT NULL CHECK (length(area) BETWEEN 1 AND 100),
    address            text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- Lets child tables prove a clinic and its municipality agree (tenant isolation in the schema).
    UNIQUE (id, municipality_code)
);
CREATE INDEX clinics_municipality_idx ON clinics (municipality_code, area);

CREATE TABLE slots (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    clinic_id      uuid NOT NULL REFERENCES clinics(id),
    event_id       text NOT NULL REFERENCES events(id),
    starts_at      timestamptz NOT NULL,
    duration_min   integer NOT NULL CHECK (duration_min BETWEEN 1 AND 1440),
    capacity       integer NOT NULL CHECK (capacity BETWEEN 0 AND 100000),
    booked         integer NOT NULL DEFAULT 0 CHECK (booked >= 0),
    dose_number    smallint NOT NULL CHECK (dose_number BETWEEN 1 AND 9),
    vaccine_code   text NOT NULL REFERENCES vaccines(code),
    -- Optional narrowing of the event's window for this slot; NULL = the event's window.
    publish_from   timestamptz,
    publish_until  timestamptz,
    closed         boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT slots_no_oversell CHECK (booked <= capacity),
    CHECK (publish_from IS NULL OR publish_until IS NULL OR publish_from < publish_until),
    UNIQUE (clinic_id, starts_at, vaccine_code, dose_number)
);
CREATE INDEX slots_event_start_idx ON slots (event_id, starts_at);
CREATE INDEX slots_clinic_start_idx ON slots (clinic_id, starts_at);

-- Eligibility registry imported by the municipality (接種券番号 + birth date).
CREATE TABLE registry (
    municipality_code  text NOT NULL REFERENCES municipalities(code),
    voucher_number     text NOT NULL CHECK (voucher_number ~ '^[0-9]{10}$'),
    birth_date         date NOT NULL,
    eligibility_groups text[] NOT NULL DEFAULT '{}',
    imported_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (municipality_code, voucher_number)
);

CREATE TYPE staff_role AS ENUM ('admin', 'operator', 'clinic');

CREATE TABLE staff (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    municipality_code  text NOT NULL REFERENCES municipalities(code),
    login              text NOT NULL UNIQUE CHECK (login ~ '^[a-z0-9][a-z0-9._-]{2,63}$'),
    display_name       text NOT NULL,
    role               staff_role NOT NULL,
    clinic_id          uuid,
    password_hash      text NOT NULL,
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- Clinic staff belong to exactly one clinic of their own municipality; others to none.
    CHECK ((role = 'clinic') = (clinic_id IS NOT NULL)),
    FOREIGN KEY (clinic_id, municipality_code) REFERENCES clinics(id, municipality_code)
);

CREATE TYPE booking_status AS ENUM ('confirmed', 'cancelled', 'attended', 'no_show');
CREATE TYPE booking_channel AS ENUM ('web', 'operator');

CREATE TABLE bookings (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    confirmation_code  text NOT NULL UNIQUE,
    slot_id            uuid NOT NULL REFERENCES slots(id),
    -- No foreign key to the registry: a re-import must not rewrite booking history.
    municipality_code  text NOT NULL REFERENCES municipalities(code),
    voucher_number     text NOT NULL CHECK (voucher_number ~ '^[0-9]{10}$'),
    dose_number        smallint NOT NULL CHECK (dose_number BETWEEN 1 AND 9),
    vaccine_code       text NOT NULL REFERENCES vaccines(code),
    slot_starts_at     timestamptz NOT NULL,
    status             booking_status NOT NULL DEFAULT 'confirmed',
    channel            booking_channel NOT NULL,
    created_by         uuid REFERENCES staff(id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    cancelled_at       timestamptz,
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);
-- One active booking per resident and dose, across web, phone and every channel.
CREATE UNIQUE INDEX bookings_one_active_per_dose
    ON bookings (municipality_code, voucher_number, dose_number)
    WHERE status IN ('confirmed', 'attended');
CREATE INDEX bookings_slot_idx ON bookings (slot_id) WHERE status <> 'cancelled';

-- Retried confirm/cancel/change requests return the first result.
CREATE TABLE idempotency_keys (
    scope          text NOT NULL,
    key            text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash   text NOT NULL,
    status_code    integer NOT NULL,
    response       jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE TABLE audit_log (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT now(),
    municipality_code  text,
    actor_kind         text NOT NULL CHECK (actor_kind IN ('staff', 'resident', 'system')),
    actor_id           text NOT NULL,
    action             text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),  -- e.g. booking.slot.capacity_changed
    target             text NOT NULL DEFAULT '',
    before             jsonb,
    after              jsonb,
    request_id         text
);
CREATE INDEX audit_log_municipality_at_idx ON audit_log (municipality_code, at);

-- Transactional outbox: written in the same transaction as the change it announces.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    topic         text NOT NULL CHECK (topic ~ '^[a-z_]+(\.[a-z_]+)+$'),
    payload       jsonb NOT NULL,
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
