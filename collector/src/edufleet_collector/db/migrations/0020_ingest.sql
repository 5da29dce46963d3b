-- Ingest: messages refused at the edge, device events, and what the silence
-- detector needs to know about each device's reporting rhythm.

-- Every message the collector refused, with why and a sample of what it was.
-- A refused message is still acknowledged to the broker: it is kept here.
CREATE TABLE rejected_messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic text NOT NULL,
    device_uid text,
    device_id bigint REFERENCES devices (id),
    reason text NOT NULL,
    detail text NOT NULL DEFAULT '',
    payload_bytes integer NOT NULL CHECK (payload_bytes >= 0),
    payload_sample bytea NOT NULL CHECK (length(payload_sample) <= 2048)
);
CREATE INDEX rejected_messages_received_idx ON rejected_messages (received_at DESC);
CREATE INDEX rejected_messages_reason_idx ON rejected_messages (reason, received_at DESC);
CREATE INDEX rejected_messages_device_idx ON rejected_messages (device_id, received_at DESC)
    WHERE device_id IS NOT NULL;

-- Things that happened to a device as seen on the wire, such as a birth whose
-- inventory differs from the asset record. occurred_at is the device's own
-- timestamp of the message; with the session and sequence (0 for messages
-- without one) it makes a redelivered message record its event once.
CREATE TABLE device_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id bigint NOT NULL REFERENCES devices (id),
    kind text NOT NULL CHECK (kind IN ('inventory_changed')),
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    sid text NOT NULL,
    seq bigint NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    UNIQUE (device_id, kind, sid, seq, occurred_at)
);
CREATE INDEX device_events_device_idx ON device_events (device_id, occurred_at DESC);
CREATE INDEX device_events_kind_idx ON device_events (kind, occurred_at DESC);

-- The interval the agent promised in its birth, so silence is judged against
-- the device's own rhythm; and whether the current outage was reported as a
-- fault (reported once, on the transition).
ALTER TABLE device_state
    ADD COLUMN report_interval_seconds integer CHECK (report_interval_seconds > 0),
    ADD COLUMN offline_reported boolean NOT NULL DEFAULT false;
