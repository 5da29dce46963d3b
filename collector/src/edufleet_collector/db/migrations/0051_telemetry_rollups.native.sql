-- Native mode: rollup tables, refreshed by the collector's rollup job
-- (edufleet_collector.analytics.rollups.refresh_rollups), which re-aggregates
-- the recent buckets from telemetry on every run.

CREATE TABLE telemetry_1m (
    bucket timestamptz NOT NULL,
    device_id bigint NOT NULL,
    samples bigint NOT NULL,
    cpu_avg double precision,
    cpu_max double precision,
    mem_avg double precision,
    mem_max double precision,
    disk_max double precision,
    temp_max double precision,
    PRIMARY KEY (device_id, bucket)
);
COMMENT ON TABLE telemetry_1m IS
    'Per device and minute: sample count, CPU and memory average and maximum, '
    'fullest disk, hottest sensor.';

CREATE TABLE telemetry_1h (LIKE telemetry_1m INCLUDING ALL);
COMMENT ON TABLE telemetry_1h IS
    'Per device and hour: the same figures as telemetry_1m.';
CREATE INDEX telemetry_1m_bucket_idx ON telemetry_1m (bucket);
CREATE INDEX telemetry_1h_bucket_idx ON telemetry_1h (bucket);
