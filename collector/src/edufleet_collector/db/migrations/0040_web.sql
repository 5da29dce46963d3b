-- What the web pages keep: who read personal data, and failed logins.

-- Every read of a reporter's name or phone number, for PIPL accountability.
CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    user_id bigint REFERENCES users (id),
    action text NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
    object_type text NOT NULL CHECK (length(object_type) BETWEEN 1 AND 64),
    object_id text NOT NULL CHECK (length(object_id) BETWEEN 1 AND 64),
    detail jsonb NOT NULL DEFAULT '{}'::jsonb,
    client_ip inet
);
CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id, at);
CREATE INDEX audit_log_user_idx ON audit_log (user_id, at);

-- Failed login attempts, by account name and by client address. Rows older
-- than the throttling window are ignored and may be deleted at any time.
CREATE TABLE login_failures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    user_name text NOT NULL,
    client_ip inet
);
CREATE INDEX login_failures_name_idx ON login_failures (user_name, at);
CREATE INDEX login_failures_ip_idx ON login_failures (client_ip, at);
