from edufleet_collector.accounts import create_token, create_user
from edufleet_collector.web.deps import TokenCache


def _revoke(conn):
    conn.execute("UPDATE api_tokens SET revoked_at = now()")


def test_token_cache_trusts_a_checked_token_for_its_ttl(conn):
    user = create_user(conn, name="cache-admin", role="province_admin")
    token = create_token(conn, user_name="cache-admin")
    cache = TokenCache(ttl=3600)
    assert cache.user_id(conn, token) == user
    _revoke(conn)
    assert cache.user_id(conn, token) == user  # within the ttl: not re-read


def test_token_cache_rereads_after_its_ttl_and_sees_the_revocation(conn):
    user = create_user(conn, name="cache-admin", role="province_admin")
    token = create_token(conn, user_name="cache-admin")
    cache = TokenCache(ttl=0)
    assert cache.user_id(conn, token) == user
    _revoke(conn)
    assert cache.user_id(conn, token) is None


def test_token_cache_never_remembers_an_unknown_token(conn):
    cache = TokenCache(ttl=3600)
    assert cache.user_id(conn, "eft_not-a-token") is None
    user = create_user(conn, name="late", role="province_admin")
    token = create_token(conn, user_name="late")
    assert cache.user_id(conn, token) == user


def test_token_use_is_recorded_at_most_once_a_minute(conn):
    create_user(conn, name="cache-admin", role="province_admin")
    token = create_token(conn, user_name="cache-admin")

    def last_used_after(ago: str):
        conn.execute(f"UPDATE api_tokens SET last_used_at = now() - interval '{ago}'")
        conn.commit()
        TokenCache(ttl=0).user_id(conn, token)
        conn.commit()
        return conn.execute(
            "SELECT now() - last_used_at < interval '5 seconds' FROM api_tokens"
        ).fetchone()[0]

    assert last_used_after("30 seconds") is False  # recent enough: left alone
    assert last_used_after("2 minutes") is True  # stale: recorded again
