-- People who log in (pages) or call the API (tokens), with a role and a scope.
--
-- province_admin   everything
-- district_bureau  the schools of region_code and its descendants
-- school_admin     the one school in school_id
-- engineer         the schools the linked engineer is assigned to

CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.@-]{2,64}$'),
    display_name text NOT NULL DEFAULT '',
    role text NOT NULL CHECK (
        role IN ('province_admin', 'district_bureau', 'school_admin', 'engineer')
    ),
    region_code text REFERENCES regions (code),
    school_id bigint REFERENCES schools (id),
    engineer_id bigint REFERENCES engineers (id),
    password_hash text,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (role <> 'district_bureau' OR region_code IS NOT NULL),
    CHECK (role <> 'school_admin' OR school_id IS NOT NULL),
    CHECK (role <> 'engineer' OR engineer_id IS NOT NULL)
);

-- API tokens are stored as SHA-256 digests; the token itself is shown once.
CREATE TABLE api_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    name text NOT NULL,
    digest bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);
