-- TimescaleDB mode: continuous aggregates over the telemetry hypertable, with
-- real-time aggregation so the newest bucket is visible before the policy
-- materialises it. They are created WITH NO DATA (allowed inside the
-- migration's transaction); the policies fill them in the background.

CREATE MATERIALIZED VIEW telemetry_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(interval '1 minute', ts) AS bucket,
       device_id,
       count(*) AS samples,
       avg(CASE WHEN jsonb_typeof(metrics -> 'host.cpu_pct') = 'number' THEN (metrics ->> 'host.cpu_pct')::double precision END) AS cpu_avg,
       max(CASE WHEN jsonb_typeof(metrics -> 'host.cpu_pct') = 'number' THEN (metrics ->> 'host.cpu_pct')::double precision END) AS cpu_max,
       avg(CASE WHEN jsonb_typeof(metrics -> 'host.mem_pct') = 'number' THEN (metrics ->> 'host.mem_pct')::double precision END) AS mem_avg,
       max(CASE WHEN jsonb_typeof(metrics -> 'host.mem_pct') = 'number' THEN (metrics ->> 'host.mem_pct')::double precision END) AS mem_max,
       max(metric_family_max(metrics, 'host.disk_pct')) AS disk_max,
       max(metric_family_max(metrics, 'host.temp_c')) AS temp_max
FROM telemetry
GROUP BY bucket, device_id
WITH NO DATA;

CREATE MATERIALIZED VIEW telemetry_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(interval '1 hour', ts) AS bucket,
       device_id,
       count(*) AS samples,
       avg(CASE WHEN jsonb_typeof(metrics -> 'host.cpu_pct') = 'number' THEN (metrics ->> 'host.cpu_pct')::double precision END) AS cpu_avg,
       max(CASE WHEN jsonb_typeof(metrics -> 'host.cpu_pct') = 'number' THEN (metrics ->> 'host.cpu_pct')::double precision END) AS cpu_max,
       avg(CASE WHEN jsonb_typeof(metrics -> 'host.mem_pct') = 'number' THEN (metrics ->> 'host.mem_pct')::double precision END) AS mem_avg,
       max(CASE WHEN jsonb_typeof(metrics -> 'host.mem_pct') = 'number' THEN (metrics ->> 'host.mem_pct')::double precision END) AS mem_max,
       max(metric_family_max(metrics, 'host.disk_pct')) AS disk_max,
       max(metric_family_max(metrics, 'host.temp_c')) AS temp_max
FROM telemetry
GROUP BY bucket, device_id
WITH NO DATA;

CREATE INDEX telemetry_1m_device_idx ON telemetry_1m (device_id, bucket DESC);
CREATE INDEX telemetry_1h_device_idx ON telemetry_1h (device_id, bucket DESC);

-- Refresh the last hours every minute (late samples from agents replaying
-- their queue land within hours), keep minutes for 30 days and hours for 400.
SELECT add_continuous_aggregate_policy('telemetry_1m',
    start_offset => interval '6 hours', end_offset => interval '1 minute',
    schedule_interval => interval '1 minute');
SELECT add_continuous_aggregate_policy('telemetry_1h',
    start_offset => interval '3 days', end_offset => interval '1 hour',
    schedule_interval => interval '15 minutes');
SELECT add_retention_policy('telemetry_1m', interval '30 days');
SELECT add_retention_policy('telemetry_1h', interval '400 days');

COMMENT ON MATERIALIZED VIEW telemetry_1m IS
    'Per device and minute: sample count, CPU and memory average and maximum, '
    'fullest disk, hottest sensor (continuous aggregate).';
COMMENT ON MATERIALIZED VIEW telemetry_1h IS
    'Per device and hour: the same figures as telemetry_1m (continuous aggregate).';
