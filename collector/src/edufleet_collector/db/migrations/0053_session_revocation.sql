-- Login sessions live in signed cookies; a user's cookies issued before this
-- moment are refused. Logging out, a new password, a changed role or scope,
-- and `edufleet users revoke-sessions` move it to now.
ALTER TABLE users
    ADD COLUMN sessions_valid_after timestamptz NOT NULL DEFAULT '-infinity';
