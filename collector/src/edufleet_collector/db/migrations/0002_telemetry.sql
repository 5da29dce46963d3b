-- Telemetry samples. The table itself is created by the storage-mode variant:
-- a TimescaleDB hypertable, or a natively range-partitioned table. Both have
-- the same name and columns, so every query reads either.
--
-- (device_id, sid, seq) identifies a sample: the agent's session id and its
-- sequence number within the session. ts is part of the unique key because
-- partitioned tables need the partition column in every unique index; a
-- redelivered sample carries the same ts, so duplicates are still caught.

CREATE TABLE telemetry_settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retention interval NOT NULL DEFAULT interval '90 days',
    partition_span interval NOT NULL DEFAULT interval '1 day'
);
INSERT INTO telemetry_settings DEFAULT VALUES;
