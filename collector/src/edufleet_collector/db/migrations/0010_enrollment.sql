-- Enrollment: school tokens that PCs exchange for a device identity, and the
-- identities themselves (one MQTT login per device, held by the broker).

-- A token lets any PC that presents it join one school, a bounded number of
-- times before it expires. Only the SHA-256 digest is stored.
CREATE TABLE enrollment_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id bigint NOT NULL REFERENCES schools (id),
    digest bytea NOT NULL UNIQUE,
    label text NOT NULL DEFAULT '' CHECK (length(label) <= 200),
    max_uses int NOT NULL CHECK (max_uses BETWEEN 1 AND 100000),
    uses int NOT NULL DEFAULT 0 CHECK (uses >= 0),
    expires_at timestamptz NOT NULL,
    created_by bigint REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz,
    CHECK (uses <= max_uses)
);
CREATE INDEX enrollment_tokens_school_idx ON enrollment_tokens (school_id, id);

-- The broker identity of an enrolled device, and the hardware that holds it.
-- Re-enrolling the same hardware (matched by DMI product UUID, then serial,
-- then any MAC address) keeps the device, its id and its history.
CREATE TABLE device_identities (
    device_id bigint PRIMARY KEY REFERENCES devices (id),
    broker_username text NOT NULL UNIQUE,
    product_uuid text CHECK (length(product_uuid) <= 200),
    serial text CHECK (length(serial) <= 200),
    macs text[] NOT NULL DEFAULT '{}',
    hostname text NOT NULL DEFAULT '' CHECK (length(hostname) <= 253),
    agent_version text NOT NULL DEFAULT '',
    token_id bigint REFERENCES enrollment_tokens (id),
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    last_enrolled_at timestamptz NOT NULL DEFAULT now(),
    enrollments int NOT NULL DEFAULT 1 CHECK (enrollments > 0),
    revoked_at timestamptz
);
CREATE INDEX device_identities_uuid_idx
    ON device_identities (product_uuid) WHERE product_uuid IS NOT NULL AND revoked_at IS NULL;
CREATE INDEX device_identities_serial_idx
    ON device_identities (serial) WHERE serial IS NOT NULL AND revoked_at IS NULL;
CREATE INDEX device_identities_macs_idx
    ON device_identities USING gin (macs) WHERE revoked_at IS NULL;
