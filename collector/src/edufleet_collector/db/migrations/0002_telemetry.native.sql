CREATE TABLE telemetry (
    ts timestamptz NOT NULL,
    device_id bigint NOT NULL,
    sid text NOT NULL,
    seq bigint NOT NULL,
    metrics jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (ts);

CREATE UNIQUE INDEX telemetry_sample_key ON telemetry (device_id, sid, seq, ts);
CREATE INDEX telemetry_device_ts_idx ON telemetry (device_id, ts DESC);

-- Catches a sample whose timestamp falls outside every daily partition, so
-- nothing is lost; the upkeep job logs it when it is not empty.
CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT;
