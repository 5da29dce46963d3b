-- Work orders: tickets and their event log, dispatch, SLA policies, pauses,
-- timers, the notification outbox and ratings.
--
-- Ticket states:  reported -> dispatched -> accepted -> scheduled -> resolved -> closed
--                 and cancelled. "Reopened" is an event, not a state: it returns
--                 a resolved or closed ticket to dispatched (or reported when no
--                 engineer can take it).
-- Colours:        red = reported, dispatched; yellow = accepted, scheduled;
--                 green = resolved, closed; grey = cancelled.

CREATE FUNCTION ticket_colour(status text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN status IN ('reported', 'dispatched') THEN 'red'
        WHEN status IN ('accepted', 'scheduled') THEN 'yellow'
        WHEN status IN ('resolved', 'closed') THEN 'green'
        ELSE 'grey'
    END
$$;

-- Open means an engineer still has work to do.
CREATE FUNCTION ticket_is_open(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT status IN ('reported', 'dispatched', 'accepted', 'scheduled')
$$;

CREATE TABLE tickets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL DEFAULT 'device' CHECK (kind IN ('device', 'incident')),
    device_id bigint REFERENCES devices (id),
    school_id bigint NOT NULL REFERENCES schools (id),
    room_id bigint REFERENCES rooms (id),
    source text NOT NULL CHECK (source IN ('agent', 'qr', 'hotline', 'admin')),
    -- An agent rule's fault code, or 'offline' / 'network_outage' for
    -- connectivity; NULL for reports by people.
    fault_code text CHECK (length(fault_code) <= 64),
    -- The symptom a person picked (category_symptoms.code or 'other').
    symptom text CHECK (length(symptom) <= 64),
    severity text NOT NULL DEFAULT '' CHECK (length(severity) <= 16),
    title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    priority text NOT NULL DEFAULT 'normal'
        CHECK (priority IN ('low', 'normal', 'high', 'critical')),
    status text NOT NULL DEFAULT 'reported' CHECK (
        status IN ('reported', 'dispatched', 'accepted', 'scheduled',
                   'resolved', 'closed', 'cancelled')
    ),
    engineer_id bigint REFERENCES engineers (id),
    dispatch_rule text CHECK (dispatch_rule IN ('primary', 'backup', 'pool', 'manual', 'none')),
    dispatch_reason text NOT NULL DEFAULT '',
    -- Personal data of the person who reported; masked on pages, purged later.
    reporter_name text NOT NULL DEFAULT '' CHECK (length(reporter_name) <= 100),
    reporter_phone text NOT NULL DEFAULT '' CHECK (length(reporter_phone) <= 40),
    reporter_purged_at timestamptz,
    -- The public status page is /t/<status_token>.
    status_token text NOT NULL UNIQUE CHECK (length(status_token) BETWEEN 16 AND 64),
    me_too_count int NOT NULL DEFAULT 0,
    recurrence_count int NOT NULL DEFAULT 0,
    reopen_count int NOT NULL DEFAULT 0,
    -- Root-cause grouping: device tickets under a network incident.
    parent_id bigint REFERENCES tickets (id),
    merged_into bigint REFERENCES tickets (id),
    visit_at timestamptz,
    resolution_code text CHECK (length(resolution_code) <= 64),
    resolution_note text NOT NULL DEFAULT '' CHECK (length(resolution_note) <= 4000),
    parts jsonb NOT NULL DEFAULT '[]'::jsonb,
    self_recovered boolean NOT NULL DEFAULT false,
    verified boolean,
    verified_at timestamptz,
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Timestamps of the lifecycle (first acceptance, last resolution).
    reported_at timestamptz NOT NULL,
    dispatched_at timestamptz,
    accepted_at timestamptz,
    resolved_at timestamptz,
    closed_at timestamptz,
    updated_at timestamptz NOT NULL,
    -- SLA figures, recomputed from the event log on every transition so the
    -- walls can aggregate without replaying events.
    sla_policy_id bigint,
    response_target_seconds int,
    resolution_target_seconds int,
    sla_measure text CHECK (sla_measure IN ('wall', 'service')),
    response_seconds double precision,
    response_service_seconds double precision,
    resolution_seconds double precision,
    resolution_service_seconds double precision,
    paused_seconds double precision NOT NULL DEFAULT 0,
    response_due_at timestamptz,
    resolution_due_at timestamptz,
    response_breached boolean NOT NULL DEFAULT false,
    resolution_breached boolean NOT NULL DEFAULT false,
    CHECK (kind = 'incident' OR device_id IS NOT NULL),
    CHECK (merged_into IS DISTINCT FROM id),
    CHECK (parent_id IS DISTINCT FROM id)
);

-- At most one open ticket per device and fault code: the guard that makes
-- racing ingest processes agree, whatever their timing.
CREATE UNIQUE INDEX tickets_open_fault_idx ON tickets (device_id, fault_code)
    WHERE ticket_is_open(status) AND fault_code IS NOT NULL AND kind = 'device';
-- At most one open network incident per school.
CREATE UNIQUE INDEX tickets_open_incident_idx ON tickets (school_id)
    WHERE ticket_is_open(status) AND kind = 'incident';
CREATE INDEX tickets_open_school_idx ON tickets (school_id, status)
    WHERE ticket_is_open(status);
CREATE INDEX tickets_school_created_idx ON tickets (school_id, reported_at);
CREATE INDEX tickets_engineer_idx ON tickets (engineer_id, status);
CREATE INDEX tickets_reported_idx ON tickets (reported_at);
CREATE INDEX tickets_status_idx ON tickets (status, reported_at);
CREATE INDEX tickets_device_idx ON tickets (device_id, reported_at);
CREATE INDEX tickets_parent_idx ON tickets (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX tickets_resolved_idx ON tickets (resolved_at) WHERE status = 'resolved';

-- Every change of a ticket, in order. The SLA clocks are computed from here.
CREATE TABLE ticket_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id bigint NOT NULL REFERENCES tickets (id),
    at timestamptz NOT NULL,
    actor text NOT NULL CHECK (length(actor) BETWEEN 1 AND 100),
    kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 32),
    from_status text,
    to_status text,
    note text NOT NULL DEFAULT '' CHECK (length(note) <= 4000),
    data jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX ticket_events_ticket_idx ON ticket_events (ticket_id, at, id);
CREATE INDEX ticket_events_kind_idx ON ticket_events (kind, at);

-- Pauses stop the resolution clock: waiting for the reporter's appointment,
-- for parts, or because the school is closed. ends_at is a planned end (the
-- visit time); ended_at the actual one.
CREATE TABLE ticket_pauses (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id bigint NOT NULL REFERENCES tickets (id),
    reason text NOT NULL CHECK (reason IN ('appointment', 'parts', 'school_closed')),
    started_at timestamptz NOT NULL,
    ends_at timestamptz,
    ended_at timestamptz,
    actor text NOT NULL,
    note text NOT NULL DEFAULT '',
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX ticket_pauses_ticket_idx ON ticket_pauses (ticket_id, started_at);
CREATE UNIQUE INDEX ticket_pauses_one_open_idx ON ticket_pauses (ticket_id)
    WHERE ended_at IS NULL;

-- SLA policies per region (nearest ancestor wins; NULL region is the default)
-- and per priority. Targets are counted in service hours of the school's
-- calendar, or in wall-clock time.
CREATE TABLE sla_policies (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region_code text REFERENCES regions (code),
    priority text NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'critical')),
    response_seconds int NOT NULL CHECK (response_seconds > 0),
    resolution_seconds int NOT NULL CHECK (resolution_seconds > 0),
    measure text NOT NULL DEFAULT 'service' CHECK (measure IN ('wall', 'service')),
    warn_ratio double precision NOT NULL DEFAULT 0.8 CHECK (warn_ratio > 0 AND warn_ratio < 1),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sla_policies_scope_idx
    ON sla_policies (coalesce(region_code, ''), priority);

INSERT INTO sla_policies (region_code, priority, response_seconds, resolution_seconds, measure) VALUES
    (NULL, 'critical', 900, 4 * 3600, 'wall'),
    (NULL, 'high', 3600, 8 * 3600, 'service'),
    (NULL, 'normal', 3600, 16 * 3600, 'service'),
    (NULL, 'low', 4 * 3600, 40 * 3600, 'service');

-- Timers of the escalation rules, kept in the database so none is lost on a
-- restart. Workers claim due rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE ticket_timers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id bigint NOT NULL REFERENCES tickets (id),
    kind text NOT NULL CHECK (kind IN (
        'accept_timeout', 'redispatch', 'response_warn', 'response_breach',
        'resolution_warn', 'resolution_breach', 'auto_close', 'verify')),
    due_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    fired_at timestamptz,
    fired_by text,
    cancelled_at timestamptz,
    data jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX ticket_timers_due_idx ON ticket_timers (due_at)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
CREATE UNIQUE INDEX ticket_timers_pending_idx ON ticket_timers (ticket_id, kind)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;

-- Engineers' working hours (local time of the school calendar's zone) and
-- leave. An engineer without shift rows is always on shift.
CREATE TABLE engineer_shifts (
    engineer_id bigint NOT NULL REFERENCES engineers (id) ON DELETE CASCADE,
    weekday int NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    starts time NOT NULL,
    ends time NOT NULL,
    CHECK (ends > starts),
    PRIMARY KEY (engineer_id, weekday, starts)
);

CREATE TABLE engineer_leave (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    engineer_id bigint NOT NULL REFERENCES engineers (id) ON DELETE CASCADE,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    note text NOT NULL DEFAULT '',
    CHECK (ends_at > starts_at)
);
CREATE INDEX engineer_leave_engineer_idx ON engineer_leave (engineer_id, ends_at);

-- Where notifications go. A channel belongs to a region (NULL: everywhere)
-- and an audience; the nearest region with a channel for the audience wins.
-- Engineers are also reached at engineers.email.
CREATE TABLE notification_channels (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region_code text REFERENCES regions (code),
    audience text NOT NULL CHECK (audience IN ('engineers', 'supervisors', 'reporters')),
    kind text NOT NULL CHECK (kind IN ('webhook', 'wecom', 'dingtalk', 'email')),
    target text NOT NULL CHECK (length(target) BETWEEN 1 AND 500),
    secret text NOT NULL DEFAULT '',
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_channels_region_idx
    ON notification_channels (coalesce(region_code, ''), audience) WHERE enabled;

-- The transactional outbox: written in the same transaction as the ticket
-- change, delivered by the worker. "sending" rows carry a lease; a row whose
-- lease ran out is taken again with the same idempotency key.
CREATE TABLE notifications (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id bigint REFERENCES tickets (id),
    event text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('webhook', 'wecom', 'dingtalk', 'email')),
    channel_id bigint REFERENCES notification_channels (id),
    target text NOT NULL,
    recipient text NOT NULL DEFAULT '',
    subject text NOT NULL DEFAULT '',
    body text NOT NULL DEFAULT '',
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    idempotency_key text NOT NULL UNIQUE,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until timestamptz,
    lease_owner text,
    last_error text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    sent_at timestamptz,
    dead_at timestamptz
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX notifications_lease_idx ON notifications (lease_until)
    WHERE status = 'sending';
CREATE INDEX notifications_ticket_idx ON notifications (ticket_id);
CREATE INDEX notifications_dead_idx ON notifications (dead_at) WHERE status = 'dead';

-- Single-use rating links; only the token's SHA-256 digest is stored.
CREATE TABLE rating_tokens (
    digest bytea PRIMARY KEY,
    ticket_id bigint NOT NULL REFERENCES tickets (id),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX rating_tokens_ticket_idx ON rating_tokens (ticket_id);

CREATE TABLE ticket_ratings (
    ticket_id bigint PRIMARY KEY REFERENCES tickets (id),
    stars int NOT NULL CHECK (stars BETWEEN 1 AND 5),
    comment text NOT NULL DEFAULT '' CHECK (length(comment) <= 2000),
    rated_at timestamptz NOT NULL
);

-- Agent fault events as received, keyed for idempotency on the agent's
-- (device, session, sequence). Verification reads them back.
CREATE TABLE fault_events (
    device_id bigint NOT NULL REFERENCES devices (id),
    sid text NOT NULL,
    seq bigint NOT NULL,
    subject_device_id bigint NOT NULL REFERENCES devices (id),
    action text NOT NULL CHECK (action IN ('opened', 'cleared')),
    code text NOT NULL,
    severity text NOT NULL DEFAULT '',
    message text NOT NULL DEFAULT '',
    evidence jsonb NOT NULL DEFAULT '{}'::jsonb,
    ts timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    ticket_id bigint REFERENCES tickets (id),
    outcome text NOT NULL DEFAULT '',
    PRIMARY KEY (device_id, sid, seq)
);
CREATE INDEX fault_events_subject_idx ON fault_events (subject_device_id, code, ts);

-- Devices currently lost or silent, for root-cause grouping of outages.
CREATE TABLE connectivity_losses (
    device_id bigint PRIMARY KEY REFERENCES devices (id),
    school_id bigint NOT NULL REFERENCES schools (id),
    state text NOT NULL,
    lost_at timestamptz NOT NULL,
    ticket_id bigint REFERENCES tickets (id)
);
CREATE INDEX connectivity_losses_school_idx ON connectivity_losses (school_id, lost_at);

-- A view for the walls: open tickets with their colour and age.
CREATE VIEW ticket_board AS
SELECT t.id, t.kind, t.school_id, s.region_code, t.device_id, t.room_id,
       t.priority, t.status, ticket_colour(t.status) AS colour,
       t.engineer_id, t.parent_id, t.reported_at, t.accepted_at, t.resolved_at,
       t.response_breached, t.resolution_breached, t.response_due_at,
       t.resolution_due_at
FROM tickets t JOIN schools s ON s.id = t.school_id
WHERE t.merged_into IS NULL;
