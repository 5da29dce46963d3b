-- Every change of a device's connection state, kept for availability
-- analysis and for an engineer reading a device's recent past: when did the
-- projector controller go silent, how often does this PC drop off.
--
-- A trigger on device_state records the changes, whichever part of the
-- collector makes them (state messages, the silence detector, a device coming
-- back). last_seen moves with every message, so only a changed state fires it.
CREATE TABLE device_state_history (
    device_id bigint NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at timestamptz NOT NULL,
    state text NOT NULL,
    previous text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_state_history_device_idx ON device_state_history (device_id, at);
CREATE INDEX device_state_history_at_idx ON device_state_history USING brin (at);

CREATE FUNCTION record_device_state_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_state_history (device_id, at, state, previous)
    VALUES (
        NEW.device_id,
        NEW.state_since,
        NEW.state,
        CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER device_state_inserted
    AFTER INSERT ON device_state
    FOR EACH ROW EXECUTE FUNCTION record_device_state_change();

CREATE TRIGGER device_state_changed
    AFTER UPDATE OF state ON device_state
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION record_device_state_change();

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'edufleet_grafana') THEN
        GRANT SELECT ON device_state_history TO edufleet_grafana;
    END IF;
END
$$;
