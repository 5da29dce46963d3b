-- The read-only database role Grafana connects as.
--
-- The role is created without a password; whoever deploys sets one, e.g.
--     ALTER ROLE edufleet_grafana PASSWORD '...';
-- or `edufleet grafana set-password` (reads EDUFLEET_GRAFANA_DB_PASSWORD),
-- and gives the same value to Grafana's datasource.
--
-- Roles belong to the whole server: when the role exists already (another
-- edufleet database on the same server) it is reused. A migrating user
-- without CREATEROLE gets a notice instead of a failure, and no grants; an
-- administrator then creates the role and re-runs the grants below.
--
-- Grafana reads the analytics views and functions, and the registry tables
-- the panels show. It never sees personal data: from tickets only the columns
-- without the reporter's name and phone or the status token, from engineers
-- only id, name, region, skills and status.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'edufleet_grafana') THEN
        BEGIN
            CREATE ROLE edufleet_grafana LOGIN NOINHERIT;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot create role edufleet_grafana (no CREATEROLE); '
                'create it as an administrator and grant SELECT as in 0052_grafana_role.sql';
            RETURN;
        END;
    END IF;

    EXECUTE 'ALTER ROLE edufleet_grafana SET statement_timeout = ''15s''';
    EXECUTE 'ALTER ROLE edufleet_grafana SET default_transaction_read_only = on';
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO edufleet_grafana', current_database());
    GRANT USAGE ON SCHEMA public TO edufleet_grafana;
    GRANT SELECT ON
        regions, schools, rooms, devices, device_categories, category_symptoms,
        device_state, calendars, telemetry, telemetry_1m, telemetry_1h,
        service_periods, service_calendars, school_service_calendars,
        school_service_periods, region_tree, device_downtime_spans,
        availability_devices, ticket_sla_facts, ticket_sla_monthly,
        device_reliability, failure_rates, asset_counts, warranties_expiring,
        devices_past_service_life, replacement_candidates, school_status,
        ticket_events, ticket_pauses, ticket_ratings, school_engineers,
        analytics_watermarks, ticket_board, school_device_counts
    TO edufleet_grafana;
    GRANT SELECT (id, kind, device_id, school_id, room_id, source, fault_code,
                  symptom, severity, title, priority, status, engineer_id,
                  dispatch_rule, me_too_count, recurrence_count, reopen_count,
                  parent_id, merged_into, visit_at, resolution_code,
                  self_recovered, verified, reported_at, dispatched_at,
                  accepted_at, resolved_at, closed_at, updated_at,
                  response_target_seconds, resolution_target_seconds,
                  sla_measure, response_seconds, response_service_seconds,
                  resolution_seconds, resolution_service_seconds,
                  paused_seconds, response_due_at, resolution_due_at,
                  response_breached, resolution_breached)
        ON tickets TO edufleet_grafana;
    GRANT SELECT (id, name, region_code, skills, status, max_open_tickets)
        ON engineers TO edufleet_grafana;
END
$$;
