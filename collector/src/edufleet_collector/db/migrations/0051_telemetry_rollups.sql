-- Telemetry rollups for the device panels: per device, per minute and per
-- hour, the numeric host metrics the agent reports.
--
-- Both storage modes expose the same relations, telemetry_1m and telemetry_1h,
-- with the same columns:
--   bucket, device_id, samples,
--   cpu_avg, cpu_max   host.cpu_pct
--   mem_avg, mem_max   host.mem_pct
--   disk_max           the fullest mount, host.disk_pct[<mount>]
--   temp_max           the hottest sensor, host.temp_c[<sensor>]
-- TimescaleDB keeps them as continuous aggregates with refresh policies; on
-- plain PostgreSQL they are tables that the rollup job refreshes.
--
-- A single metric is read with the expression written out,
--   CASE WHEN jsonb_typeof(metrics -> 'host.cpu_pct') = 'number'
--        THEN (metrics ->> 'host.cpu_pct')::double precision END
-- rather than through a function call, since it runs once per sample.

-- The largest numeric value of a metric family: "name" and every
-- "name[label]" (one value per mount, per sensor...).
CREATE FUNCTION metric_family_max(metrics jsonb, family text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT max((e.value #>> '{}')::double precision)
    FROM jsonb_each(metrics) e
    WHERE jsonb_typeof(e.value) = 'number'
      AND (e.key = family OR left(e.key, length(family) + 1) = family || '[')
$$;
COMMENT ON FUNCTION metric_family_max(jsonb, text) IS
    'The largest numeric value among a metric and its labelled variants, e.g. '
    'host.disk_pct[/] and host.disk_pct[/home].';
