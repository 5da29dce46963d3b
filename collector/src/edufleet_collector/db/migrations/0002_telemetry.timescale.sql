CREATE TABLE telemetry (
    ts timestamptz NOT NULL,
    device_id bigint NOT NULL,
    sid text NOT NULL,
    seq bigint NOT NULL,
    metrics jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

SELECT create_hypertable('telemetry', 'ts', chunk_time_interval => interval '1 day');

CREATE UNIQUE INDEX telemetry_sample_key ON telemetry (device_id, sid, seq, ts);
CREATE INDEX telemetry_device_ts_idx ON telemetry (device_id, ts DESC);

ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'ts DESC, sid, seq'
);
SELECT add_compression_policy('telemetry', interval '7 days');
SELECT add_retention_policy('telemetry', interval '90 days');
