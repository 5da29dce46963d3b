-- Analytics for the walls and for procurement: service periods, availability,
-- SLA figures, failures, and the asset views.
--
-- Everything here reads what the registry and the tickets wrote; nothing
-- writes back. Two tables are filled by jobs of the collector
-- (edufleet_collector.analytics): service_periods, from the school calendars,
-- and ticket_sla_facts / device_reliability, recomputed from the tickets.

-- ---------------------------------------------------------------------------
-- Service periods
-- ---------------------------------------------------------------------------

-- The opening hours of each effective calendar, as UTC spans, for a window
-- around today. calendar_key is calendars.id, or 0 for the built-in default
-- calendar (weekdays, 07:30-12:00 and 14:30-17:30 Asia/Shanghai) that a
-- school without any calendar follows. A period never exceeds one day, which
-- lets lookups bound their index range on both sides.
CREATE TABLE service_periods (
    calendar_key bigint NOT NULL,
    starts timestamptz NOT NULL,
    ends timestamptz NOT NULL,
    CHECK (ends > starts AND ends - starts <= interval '1 day'),
    PRIMARY KEY (calendar_key, starts)
);
COMMENT ON TABLE service_periods IS
    'Service hours of each effective school calendar as UTC spans; filled by '
    'the refresh_service_periods job from the Python calendar rules.';

-- What window each calendar's periods cover, and a digest of them, so the
-- job rewrites a calendar only when its periods changed.
CREATE TABLE service_calendars (
    calendar_key bigint PRIMARY KEY,
    covers_from timestamptz NOT NULL,
    covers_to timestamptz NOT NULL,
    fingerprint text NOT NULL,
    refreshed_at timestamptz NOT NULL
);
COMMENT ON TABLE service_calendars IS
    'The window of service_periods materialised per calendar, with a digest.';

-- Which effective calendar each school follows (its own, else its nearest
-- region''s, else the default 0).
CREATE TABLE school_service_calendars (
    school_id bigint PRIMARY KEY REFERENCES schools (id) ON DELETE CASCADE,
    calendar_key bigint NOT NULL
);
CREATE INDEX school_service_calendars_key_idx
    ON school_service_calendars (calendar_key, school_id);
COMMENT ON TABLE school_service_calendars IS
    'The effective calendar of each school, as resolved by the calendar store.';

CREATE VIEW school_service_periods AS
SELECT c.school_id, p.starts, p.ends
FROM school_service_calendars c
JOIN service_periods p ON p.calendar_key = c.calendar_key;
COMMENT ON VIEW school_service_periods IS
    'Service periods per school (school_id, starts, ends), UTC.';

-- Seconds of service time of a calendar inside [p_from, p_to).
CREATE FUNCTION calendar_service_seconds(
    p_key bigint, p_from timestamptz, p_to timestamptz
) RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(sum(extract(epoch FROM least(ends, p_to) - greatest(starts, p_from))), 0)::double precision
    FROM service_periods
    WHERE p_to > p_from
      AND calendar_key = p_key
      AND starts < p_to
      AND starts > p_from - interval '1 day'
      AND ends > p_from
$$;
COMMENT ON FUNCTION calendar_service_seconds(bigint, timestamptz, timestamptz) IS
    'Seconds of service time of one effective calendar inside [from, to).';

-- Seconds of a school's service time inside [p_from, p_to).
CREATE FUNCTION school_service_seconds(
    p_school bigint, p_from timestamptz, p_to timestamptz
) RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT calendar_service_seconds(
        coalesce((SELECT calendar_key FROM school_service_calendars
                  WHERE school_id = p_school), 0),
        p_from, p_to)
$$;
COMMENT ON FUNCTION school_service_seconds(bigint, timestamptz, timestamptz) IS
    'Seconds of the school''s service time inside [from, to), by its calendar.';

-- How far each job of the analytics has got (rollups, SLA facts).
CREATE TABLE analytics_watermarks (
    name text PRIMARY KEY,
    done_until timestamptz NOT NULL
);
COMMENT ON TABLE analytics_watermarks IS
    'The moment up to which each analytics job has computed its figures.';

-- ---------------------------------------------------------------------------
-- Regions: every region with each of its ancestors (itself included)
-- ---------------------------------------------------------------------------

CREATE VIEW region_tree AS
WITH RECURSIVE up(ancestor_code, region_code, depth) AS (
    SELECT code, code, 0 FROM regions
    UNION ALL
    SELECT r.parent_code, up.region_code, up.depth + 1
    FROM up JOIN regions r ON r.code = up.ancestor_code
    WHERE r.parent_code IS NOT NULL
)
SELECT ancestor_code, region_code, depth FROM up;
COMMENT ON VIEW region_tree IS
    'Pairs (ancestor_code, region_code): each region with itself (depth 0) '
    'and every region above it.';

-- ---------------------------------------------------------------------------
-- Downtime and availability
-- ---------------------------------------------------------------------------

-- Until when a ticket keeps its device down: open tickets for ever (until
-- now, when clipped), others until resolution (or closing, for a ticket closed
-- without a resolution). The expression is written out, here and in
-- device_downtime_spans, so that the index and the view match it exactly.
-- The index is not partial so that ANALYZE keeps statistics of the
-- expression and the planner estimates the window's tickets well.
CREATE INDEX tickets_downtime_idx ON tickets ((
    CASE WHEN status IN ('reported', 'dispatched', 'accepted', 'scheduled')
         THEN 'infinity'::timestamptz
         ELSE coalesce(resolved_at, closed_at, updated_at) END
), reported_at) INCLUDE (device_id, school_id);

CREATE INDEX tickets_updated_idx ON tickets (updated_at);
-- The wall's oldest open tickets and today's fixes.
CREATE INDEX tickets_open_reported_idx ON tickets (reported_at)
    WHERE ticket_is_open(status) AND merged_into IS NULL;
CREATE INDEX tickets_resolved_at_idx ON tickets (resolved_at)
    WHERE resolved_at IS NOT NULL AND merged_into IS NULL;

-- A device is down from the moment a fault is reported until it is fixed.
-- Agent connectivity counts through the tickets ingest opens for devices that
-- are lost or silent in service hours; cancelled and merged tickets do not
-- count. Time paused waiting for parts or an appointment is still downtime.
CREATE VIEW device_downtime_spans AS
SELECT t.id AS ticket_id, t.device_id, t.school_id, t.reported_at AS starts,
       CASE WHEN status IN ('reported', 'dispatched', 'accepted', 'scheduled')
            THEN 'infinity'::timestamptz
            ELSE coalesce(resolved_at, closed_at, updated_at) END AS ends
FROM tickets t
WHERE t.kind = 'device' AND t.status <> 'cancelled' AND t.merged_into IS NULL;
COMMENT ON VIEW device_downtime_spans IS
    'One row per device ticket that made its device unusable: reported_at to '
    'resolution (infinity while open). Overlapping spans are merged by '
    'downtime_intervals().';

-- Merged downtime of each device inside [p_from, p_to), open spans clipped at
-- p_now. Overlapping tickets of one device count once.
CREATE FUNCTION downtime_intervals(
    p_from timestamptz, p_to timestamptz, p_now timestamptz DEFAULT now(),
    p_device bigint DEFAULT NULL
) RETURNS TABLE (device_id bigint, school_id bigint, starts timestamptz, ends timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH spans AS (
        SELECT d.device_id, d.school_id,
               greatest(d.starts, p_from) AS s,
               least(d.ends, p_to, p_now) AS e
        FROM device_downtime_spans d
        WHERE d.ends > p_from AND d.starts < p_to
          AND (p_device IS NULL OR d.device_id = p_device)
    ), marked AS (
        SELECT spans.*,
               CASE WHEN s <= max(e) OVER (
                        PARTITION BY spans.device_id ORDER BY s, e
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                    THEN 0 ELSE 1 END AS fresh
        FROM spans WHERE e > s
    ), islands AS (
        SELECT marked.*,
               sum(fresh) OVER (PARTITION BY marked.device_id ORDER BY s, e) AS island
        FROM marked
    )
    SELECT islands.device_id, min(islands.school_id), min(s), max(e)
    FROM islands GROUP BY islands.device_id, island
$$;
COMMENT ON FUNCTION downtime_intervals(timestamptz, timestamptz, timestamptz, bigint) IS
    'Merged downtime spans per device (or the one given) inside [from, to), '
    'open tickets clipped at now.';

-- Downtime of each device that had any inside [p_from, p_to), in wall-clock
-- seconds and in the seconds that fall in its school's service hours.
CREATE FUNCTION device_downtime(
    p_from timestamptz, p_to timestamptz, p_now timestamptz DEFAULT now(),
    p_device bigint DEFAULT NULL
) RETURNS TABLE (device_id bigint, school_id bigint, down_seconds double precision,
                 down_service_seconds double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT d.device_id, d.school_id,
           sum(extract(epoch FROM d.ends - d.starts))::double precision,
           coalesce(sum((
               SELECT sum(extract(epoch FROM least(p.ends, d.ends) - greatest(p.starts, d.starts)))
               FROM service_periods p
               WHERE p.calendar_key = coalesce(c.calendar_key, 0)
                 AND p.starts < d.ends
                 AND p.starts > d.starts - interval '1 day'
                 AND p.ends > d.starts
           )), 0)::double precision
    FROM downtime_intervals(p_from, p_to, p_now, p_device) d
    LEFT JOIN school_service_calendars c ON c.school_id = d.school_id
    GROUP BY d.device_id, d.school_id
$$;
COMMENT ON FUNCTION device_downtime(timestamptz, timestamptz, timestamptz, bigint) IS
    'Per device with downtime in [from, to): wall-clock and service-hour seconds down.';

-- Devices that count for availability: those meant to be in use.
CREATE VIEW availability_devices AS
SELECT d.id AS device_id, d.school_id, d.room_id, d.category, c.always_on
FROM devices d JOIN device_categories c ON c.code = d.category
WHERE d.status IN ('in_service', 'under_repair');
COMMENT ON VIEW availability_devices IS
    'Devices counted by availability: in service or under repair (not spare, '
    'not retired), with whether their category is always on.';

-- How many counted devices each school has, and how many are always on.
CREATE MATERIALIZED VIEW school_device_counts AS
SELECT a.school_id, count(*) AS devices, count(*) FILTER (WHERE a.always_on) AS always_on
FROM availability_devices a
GROUP BY a.school_id;
CREATE UNIQUE INDEX school_device_counts_key ON school_device_counts (school_id);
COMMENT ON MATERIALIZED VIEW school_device_counts IS
    'Counted devices per school (all, and always-on); refreshed hourly, so a '
    'device added or retired counts from the next refresh on.';

-- Service time of every school inside [p_from, p_to), the window ending at
-- p_now at the latest (hours still to come count neither way): in its
-- calendar's service hours, and around the clock for always-on devices.
CREATE FUNCTION school_service_totals(
    p_from timestamptz, p_to timestamptz, p_now timestamptz DEFAULT now()
) RETURNS TABLE (school_id bigint, service_seconds double precision,
                 clock_seconds double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH calendars AS (
        SELECT k.calendar_key,
               calendar_service_seconds(k.calendar_key, p_from, least(p_to, p_now)) AS s
        FROM (SELECT calendar_key FROM service_calendars UNION SELECT 0) k
    )
    SELECT s.id, coalesce(k.s, 0),
           extract(epoch FROM least(p_to, greatest(p_now, p_from)) - p_from)::double precision
    FROM schools s
    LEFT JOIN school_service_calendars c ON c.school_id = s.id
    LEFT JOIN calendars k ON k.calendar_key = coalesce(c.calendar_key, 0)
$$;
COMMENT ON FUNCTION school_service_totals(timestamptz, timestamptz, timestamptz) IS
    'Per school: service seconds by its calendar and wall-clock seconds in '
    '[from, min(to, now)).';

-- Availability of every counted device in [p_from, p_to): the share of its
-- service time in which it was usable. Ordinary devices are measured in their
-- school's service hours; always-on categories (controllers, switches,
-- cameras) around the clock. service_seconds is 0 when the window holds no
-- service time, and availability is then NULL.
CREATE FUNCTION device_availability(
    p_from timestamptz, p_to timestamptz, p_now timestamptz DEFAULT now(),
    p_device bigint DEFAULT NULL, p_school bigint DEFAULT NULL
) RETURNS TABLE (device_id bigint, school_id bigint, room_id bigint, category text,
                 service_seconds double precision, down_seconds double precision,
                 availability double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH figures AS (
        SELECT a.device_id, a.school_id, a.room_id, a.category,
               CASE WHEN a.always_on THEN t.clock_seconds
                    ELSE t.service_seconds END AS service_seconds,
               CASE WHEN a.always_on THEN coalesce(x.down_seconds, 0)
                    ELSE coalesce(x.down_service_seconds, 0) END AS down_seconds
        FROM availability_devices a
        JOIN school_service_totals(p_from, p_to, p_now) t ON t.school_id = a.school_id
        LEFT JOIN device_downtime(p_from, p_to, p_now, p_device) x
            ON x.device_id = a.device_id
        WHERE (p_device IS NULL OR a.device_id = p_device)
          AND (p_school IS NULL OR a.school_id = p_school)
    )
    SELECT f.*, CASE WHEN f.service_seconds > 0
                     THEN greatest(0, 1 - f.down_seconds / f.service_seconds) END
    FROM figures f
$$;
COMMENT ON FUNCTION device_availability(timestamptz, timestamptz, timestamptz, bigint, bigint) IS
    'Availability per counted device (or the one device, or the devices of the '
    'one school, given) in [from, to): 1 - down service seconds / service '
    'seconds. Always-on categories use wall-clock time.';

-- Availability per school in [p_from, p_to), summed over its devices without
-- visiting every device: device counts per school (school_device_counts),
-- downtime only for the devices that had some.
CREATE FUNCTION school_availability(
    p_from timestamptz, p_to timestamptz, p_now timestamptz DEFAULT now()
) RETURNS TABLE (school_id bigint, devices bigint, service_seconds double precision,
                 down_seconds double precision, availability double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH down AS (
        SELECT x.school_id,
               sum(CASE WHEN a.always_on THEN x.down_seconds
                        ELSE x.down_service_seconds END) AS seconds
        FROM device_downtime(p_from, p_to, p_now) x
        JOIN availability_devices a ON a.device_id = x.device_id
        GROUP BY x.school_id
    ), figures AS (
        SELECT n.school_id, n.devices,
               ((n.devices - n.always_on) * t.service_seconds
                + n.always_on * t.clock_seconds)::double precision AS service_seconds,
               coalesce(d.seconds, 0)::double precision AS down_seconds
        FROM school_device_counts n
        JOIN school_service_totals(p_from, p_to, p_now) t ON t.school_id = n.school_id
        LEFT JOIN down d ON d.school_id = n.school_id
    )
    SELECT f.*, CASE WHEN f.service_seconds > 0
                     THEN greatest(0, 1 - f.down_seconds / f.service_seconds) END
    FROM figures f
$$;
COMMENT ON FUNCTION school_availability(timestamptz, timestamptz, timestamptz) IS
    'Availability per school in [from, to): device service seconds, down '
    'seconds and their ratio.';

-- Availability per room: the same figures grouped by the devices' rooms.
CREATE FUNCTION room_availability(
    p_from timestamptz, p_to timestamptz, p_now timestamptz DEFAULT now(),
    p_school bigint DEFAULT NULL
) RETURNS TABLE (room_id bigint, school_id bigint, devices bigint,
                 service_seconds double precision, down_seconds double precision,
                 availability double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT d.room_id, min(d.school_id), count(*), sum(d.service_seconds),
           sum(d.down_seconds),
           CASE WHEN sum(d.service_seconds) > 0
                THEN greatest(0, 1 - sum(d.down_seconds) / sum(d.service_seconds)) END
    FROM device_availability(p_from, p_to, p_now, NULL, p_school) d
    WHERE d.room_id IS NOT NULL
    GROUP BY d.room_id
$$;
COMMENT ON FUNCTION room_availability(timestamptz, timestamptz, timestamptz, bigint) IS
    'Availability per room (of every school, or of the one given) in [from, to).';

-- Availability per region (province, city or county, district) in
-- [p_from, p_to), summing every school in the region's subtree.
CREATE FUNCTION region_availability(
    p_from timestamptz, p_to timestamptz, p_now timestamptz DEFAULT now()
) RETURNS TABLE (region_code text, level text, schools bigint, devices bigint,
                 service_seconds double precision, down_seconds double precision,
                 availability double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT t.ancestor_code, min(r.level), count(*), sum(a.devices)::bigint,
           sum(a.service_seconds), sum(a.down_seconds),
           CASE WHEN sum(a.service_seconds) > 0
                THEN greatest(0, 1 - sum(a.down_seconds) / sum(a.service_seconds)) END
    FROM school_availability(p_from, p_to, p_now) a
    JOIN schools s ON s.id = a.school_id
    JOIN region_tree t ON t.region_code = s.region_code
    JOIN regions r ON r.code = t.ancestor_code
    GROUP BY t.ancestor_code
$$;
COMMENT ON FUNCTION region_availability(timestamptz, timestamptz, timestamptz) IS
    'Availability per region in [from, to), over every school below it.';

-- ---------------------------------------------------------------------------
-- Response and resolution times, SLA attainment
-- ---------------------------------------------------------------------------

-- SLA figures of tickets as of p_now, recomputed from the timestamps of the
-- lifecycle and the pauses: response from reported to first acceptance,
-- resolution from reported to resolution minus paused time, each in
-- wall-clock seconds and in the school's service seconds. A ticket still open
-- is measured up to p_now; its *_met is false once past the target, NULL
-- while it still can make it. Targets are the ones the ticket was given;
-- sla_measure says which of the two figures the target is counted in.
CREATE FUNCTION ticket_sla_compute(p_now timestamptz, p_ids bigint[] DEFAULT NULL)
RETURNS TABLE (
    ticket_id bigint, school_id bigint, region_code text, engineer_id bigint,
    category text, priority text, status text, reported_at timestamptz,
    accepted_at timestamptz, resolved_at timestamptz, sla_measure text,
    response_target_seconds int, resolution_target_seconds int,
    response_seconds double precision, response_service_seconds double precision,
    resolution_seconds double precision, resolution_service_seconds double precision,
    paused_seconds double precision, paused_service_seconds double precision,
    response_met boolean, resolution_met boolean, computed_at timestamptz
)
LANGUAGE sql STABLE AS $$
    WITH base AS (
        SELECT t.id, t.school_id, s.region_code, t.engineer_id, d.category,
               t.priority, t.status, t.reported_at, t.accepted_at,
               t.resolved_at, coalesce(t.sla_measure, 'service') AS measure,
               t.response_target_seconds, t.resolution_target_seconds,
               coalesce(c.calendar_key, 0) AS calendar_key,
               greatest(t.reported_at, least(coalesce(t.accepted_at, p_now), p_now)) AS response_end,
               greatest(t.reported_at, CASE
                   WHEN ticket_is_open(t.status) THEN p_now
                   ELSE least(coalesce(t.resolved_at, t.closed_at, t.updated_at), p_now)
               END) AS resolution_end,
               t.accepted_at IS NOT NULL AND t.accepted_at <= p_now AS accepted,
               NOT ticket_is_open(t.status) AS finished
        FROM tickets t
        JOIN schools s ON s.id = t.school_id
        LEFT JOIN devices d ON d.id = t.device_id
        LEFT JOIN school_service_calendars c ON c.school_id = t.school_id
        WHERE t.status <> 'cancelled' AND t.merged_into IS NULL
          AND t.reported_at <= p_now
          AND (p_ids IS NULL OR t.id = ANY (p_ids))
    ), paused AS (
        SELECT b.id,
               sum(extract(epoch FROM least(coalesce(p.ended_at, p_now), b.resolution_end)
                                      - greatest(p.started_at, b.reported_at))) AS wall,
               sum(calendar_service_seconds(
                   b.calendar_key, greatest(p.started_at, b.reported_at),
                   least(coalesce(p.ended_at, p_now), b.resolution_end))) AS service
        FROM base b
        JOIN ticket_pauses p ON p.ticket_id = b.id
        WHERE p.started_at < b.resolution_end
          AND coalesce(p.ended_at, p_now) > b.reported_at
        GROUP BY b.id
    ), figures AS (
        SELECT b.*,
               extract(epoch FROM b.response_end - b.reported_at)::double precision AS rsp,
               calendar_service_seconds(b.calendar_key, b.reported_at, b.response_end) AS rsp_service,
               greatest(0, extract(epoch FROM b.resolution_end - b.reported_at)
                           - coalesce(p.wall, 0))::double precision AS res,
               greatest(0, calendar_service_seconds(b.calendar_key, b.reported_at, b.resolution_end)
                           - coalesce(p.service, 0))::double precision AS res_service,
               coalesce(p.wall, 0)::double precision AS paused_wall,
               coalesce(p.service, 0)::double precision AS paused_service
        FROM base b LEFT JOIN paused p ON p.id = b.id
    ), judged AS (
        SELECT f.*,
               CASE WHEN f.measure = 'wall' THEN f.rsp ELSE f.rsp_service END AS rsp_counted,
               CASE WHEN f.measure = 'wall' THEN f.res ELSE f.res_service END AS res_counted
        FROM figures f
    )
    SELECT j.id, j.school_id, j.region_code, j.engineer_id, j.category, j.priority,
           j.status, j.reported_at, j.accepted_at, j.resolved_at, j.measure,
           j.response_target_seconds, j.resolution_target_seconds,
           j.rsp, j.rsp_service, j.res, j.res_service, j.paused_wall, j.paused_service,
           CASE WHEN j.response_target_seconds IS NULL THEN NULL
                WHEN j.rsp_counted > j.response_target_seconds THEN false
                WHEN j.accepted THEN true END,
           CASE WHEN j.resolution_target_seconds IS NULL THEN NULL
                WHEN j.res_counted > j.resolution_target_seconds THEN false
                WHEN j.finished THEN true END,
           p_now
    FROM judged j
$$;
COMMENT ON FUNCTION ticket_sla_compute(timestamptz, bigint[]) IS
    'SLA figures of tickets (all, or the ids given) as of a moment: response '
    'and resolution in wall-clock and service seconds, pauses deducted from '
    'resolution, and whether each target was met (NULL while still pending).';

-- The SLA figures kept for the dashboards, refreshed by the rollup job for
-- tickets that changed and for every open ticket.
CREATE TABLE ticket_sla_facts (
    ticket_id bigint PRIMARY KEY REFERENCES tickets (id),
    school_id bigint NOT NULL,
    region_code text NOT NULL,
    engineer_id bigint,
    category text,
    priority text NOT NULL,
    status text NOT NULL,
    reported_at timestamptz NOT NULL,
    accepted_at timestamptz,
    resolved_at timestamptz,
    sla_measure text NOT NULL,
    response_target_seconds int,
    resolution_target_seconds int,
    response_seconds double precision NOT NULL,
    response_service_seconds double precision NOT NULL,
    resolution_seconds double precision NOT NULL,
    resolution_service_seconds double precision NOT NULL,
    paused_seconds double precision NOT NULL,
    paused_service_seconds double precision NOT NULL,
    response_met boolean,
    resolution_met boolean,
    computed_at timestamptz NOT NULL
);
CREATE INDEX ticket_sla_facts_reported_idx ON ticket_sla_facts (reported_at);
CREATE INDEX ticket_sla_facts_resolved_idx ON ticket_sla_facts (resolved_at)
    WHERE resolved_at IS NOT NULL;
CREATE INDEX ticket_sla_facts_engineer_idx ON ticket_sla_facts (engineer_id, reported_at);
CREATE INDEX ticket_sla_facts_school_idx ON ticket_sla_facts (school_id, reported_at);
CREATE INDEX ticket_sla_facts_open_idx ON ticket_sla_facts (ticket_id)
    WHERE status IN ('reported', 'dispatched', 'accepted', 'scheduled');
COMMENT ON TABLE ticket_sla_facts IS
    'ticket_sla_compute() kept per ticket for the dashboards; refreshed by the '
    'rollup job (changed tickets and every open one).';

-- Attainment and times per month, region (with its ancestors), school,
-- engineer and category are all GROUP BYs of this view.
CREATE VIEW ticket_sla_monthly AS
SELECT date_trunc('month', f.reported_at AT TIME ZONE 'Asia/Shanghai')::date AS month,
       f.region_code, f.school_id, f.engineer_id, coalesce(f.category, 'incident') AS category,
       count(*) AS tickets,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY f.response_seconds)
           FILTER (WHERE f.accepted_at IS NOT NULL) AS response_p50_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY f.response_seconds)
           FILTER (WHERE f.accepted_at IS NOT NULL) AS response_p90_seconds,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY f.resolution_seconds)
           FILTER (WHERE f.resolved_at IS NOT NULL) AS resolution_p50_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY f.resolution_seconds)
           FILTER (WHERE f.resolved_at IS NOT NULL) AS resolution_p90_seconds,
       count(*) FILTER (WHERE f.response_met) AS response_met,
       count(*) FILTER (WHERE f.response_met IS NOT NULL) AS response_judged,
       count(*) FILTER (WHERE f.resolution_met) AS resolution_met,
       count(*) FILTER (WHERE f.resolution_met IS NOT NULL) AS resolution_judged
FROM ticket_sla_facts f
GROUP BY 1, 2, 3, 4, 5;
COMMENT ON VIEW ticket_sla_monthly IS
    'Per month (Asia/Shanghai), region, school, engineer and category: ticket '
    'count, median and p90 response and resolution (wall-clock seconds), and '
    'the met/judged counts from which SLA attainment % is met / judged.';

-- ---------------------------------------------------------------------------
-- Failures and reliability
-- ---------------------------------------------------------------------------

-- Age band of an asset from its purchase date.
CREATE FUNCTION age_band(purchase_date date, on_day date) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN purchase_date IS NULL THEN 'unknown'
        WHEN purchase_date > on_day - interval '1 year' THEN '0-1y'
        WHEN purchase_date > on_day - interval '3 years' THEN '1-3y'
        WHEN purchase_date > on_day - interval '5 years' THEN '3-5y'
        WHEN purchase_date > on_day - interval '8 years' THEN '5-8y'
        ELSE '8y+'
    END
$$;
COMMENT ON FUNCTION age_band(date, date) IS
    'Age band of an asset: 0-1y, 1-3y, 3-5y, 5-8y, 8y+ or unknown.';

-- Failures and downtime of each device over the 365 days before the job ran.
-- A failure is a device ticket that was not cancelled or merged.
CREATE TABLE device_reliability (
    device_id bigint PRIMARY KEY REFERENCES devices (id),
    failures int NOT NULL,
    down_seconds double precision NOT NULL,
    last_failure_at timestamptz,
    computed_at timestamptz NOT NULL
);
COMMENT ON TABLE device_reliability IS
    'Per device with failures in the last 365 days: count, merged downtime in '
    'wall-clock seconds, last failure; rebuilt by the rollup job.';

CREATE MATERIALIZED VIEW failure_rates AS
SELECT d.category, d.brand, d.model, age_band(d.purchase_date, current_date) AS age_band,
       count(*) AS devices,
       coalesce(sum(r.failures), 0) AS failures,
       coalesce(sum(r.failures), 0)::double precision / count(*) AS failures_per_device_year,
       CASE WHEN sum(r.failures) > 0
            THEN count(*) * 365.0 / sum(r.failures) END AS mtbf_days
FROM devices d
LEFT JOIN device_reliability r ON r.device_id = d.id
WHERE d.status <> 'retired'
GROUP BY 1, 2, 3, 4;
CREATE UNIQUE INDEX failure_rates_key ON failure_rates (category, brand, model, age_band);
COMMENT ON MATERIALIZED VIEW failure_rates IS
    'Per category, brand, model and age band over the last 365 days: devices, '
    'failures, failures per device-year, and mean time between failures in '
    'days (device-days in service / failures). Refreshed hourly.';

-- ---------------------------------------------------------------------------
-- Assets and procurement
-- ---------------------------------------------------------------------------

CREATE MATERIALIZED VIEW asset_counts AS
SELECT d.school_id, d.category, age_band(d.purchase_date, current_date) AS age_band,
       d.status, count(*) AS devices, coalesce(sum(d.price), 0) AS value
FROM devices d
GROUP BY 1, 2, 3, 4;
CREATE UNIQUE INDEX asset_counts_key ON asset_counts (school_id, category, age_band, status);
COMMENT ON MATERIALIZED VIEW asset_counts IS
    'Devices and their purchase value by school, category, age band and '
    'status. Refreshed hourly.';

CREATE VIEW warranties_expiring AS
SELECT d.id AS device_id, d.asset_tag, d.category, d.brand, d.model, d.school_id,
       d.warranty_until, d.warranty_until - current_date AS days_left
FROM devices d
WHERE d.status <> 'retired'
  AND d.warranty_until >= current_date
  AND d.warranty_until < current_date + 90;
COMMENT ON VIEW warranties_expiring IS
    'Devices whose warranty ends within the next 90 days.';

CREATE VIEW devices_past_service_life AS
SELECT d.id AS device_id, d.asset_tag, d.category, d.brand, d.model, d.school_id,
       d.purchase_date, c.service_life_years,
       (d.purchase_date + make_interval(years => c.service_life_years))::date AS life_ends_on,
       extract(epoch FROM age(current_date, d.purchase_date)) / (365.25 * 86400) AS age_years
FROM devices d
JOIN device_categories c ON c.code = d.category
WHERE d.status <> 'retired'
  AND d.purchase_date IS NOT NULL
  AND d.purchase_date + make_interval(years => c.service_life_years) <= current_date;
COMMENT ON VIEW devices_past_service_life IS
    'Devices older than their category''s service life.';

-- The replacement list: devices ranked by a score that adds up the share of
-- service life used (capped at 2), failures in the last year (a quarter point
-- each, capped at 2) and downtime in the last year (a point per 10 days,
-- capped at 1). Only devices at 80 % of their life or with a failure appear.
CREATE MATERIALIZED VIEW replacement_candidates AS
WITH scored AS (
    SELECT d.id AS device_id, d.asset_tag, d.category, d.brand, d.model, d.school_id,
           d.purchase_date, c.service_life_years,
           CASE WHEN d.purchase_date IS NULL THEN 0
                ELSE (current_date - d.purchase_date) / (365.25 * c.service_life_years) END AS life_used,
           coalesce(r.failures, 0) AS failures,
           coalesce(r.down_seconds, 0) / 86400.0 AS down_days
    FROM devices d
    JOIN device_categories c ON c.code = d.category
    LEFT JOIN device_reliability r ON r.device_id = d.id
    WHERE d.status <> 'retired'
)
SELECT s.*,
       least(s.life_used, 2) + least(s.failures * 0.25, 2) + least(s.down_days / 10, 1) AS score,
       rank() OVER (ORDER BY least(s.life_used, 2) + least(s.failures * 0.25, 2)
                             + least(s.down_days / 10, 1) DESC, s.device_id) AS rank
FROM scored s
WHERE s.life_used >= 0.8 OR s.failures > 0;
CREATE UNIQUE INDEX replacement_candidates_key ON replacement_candidates (device_id);
CREATE INDEX replacement_candidates_rank_idx ON replacement_candidates (rank);
COMMENT ON MATERIALIZED VIEW replacement_candidates IS
    'Devices ranked for replacement by age, failures and downtime (see '
    'score). Refreshed hourly.';

-- ---------------------------------------------------------------------------
-- The wall
-- ---------------------------------------------------------------------------

-- The worst open ticket of each school: 2 red, 1 yellow, 0 none; every school
-- appears, with its coordinates.
CREATE VIEW school_status AS
SELECT s.id AS school_id, s.code, s.name, s.region_code, s.lat AS latitude,
       s.lon AS longitude,
       coalesce(w.severity, 0) AS severity,
       CASE coalesce(w.severity, 0) WHEN 2 THEN 'red' WHEN 1 THEN 'yellow'
            ELSE 'green' END AS colour,
       coalesce(w.red, 0) AS red, coalesce(w.yellow, 0) AS yellow
FROM schools s
LEFT JOIN (
    SELECT t.school_id,
           max(CASE ticket_colour(t.status) WHEN 'red' THEN 2 ELSE 1 END) AS severity,
           count(*) FILTER (WHERE ticket_colour(t.status) = 'red') AS red,
           count(*) FILTER (WHERE ticket_colour(t.status) = 'yellow') AS yellow
    FROM tickets t
    -- The open states spelled out (ticket_is_open) so the planner estimates
    -- them from the status statistics and reads tickets_status_idx.
    WHERE t.status IN ('reported', 'dispatched', 'accepted', 'scheduled')
      AND t.merged_into IS NULL
    GROUP BY t.school_id
) w ON w.school_id = s.id;
COMMENT ON VIEW school_status IS
    'Every school with its worst open ticket colour (red/yellow/green, '
    'severity 2/1/0), open red and yellow counts, and its coordinates.';
