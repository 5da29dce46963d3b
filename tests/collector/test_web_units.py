"""The pure parts of the pages: messages, buckets, sessions, image sniffing."""

from datetime import UTC, datetime

import pytest

from edufleet_collector.errors import InvalidInput
from edufleet_collector.web.i18n import MESSAGES, _from_accept_language
from edufleet_collector.web.pages.uploads import check_photo, sniff_image
from edufleet_collector.web.ratelimit import Rate, RateLimiter
from edufleet_collector.web.sessions import SessionSigner


def test_every_message_exists_in_both_languages():
    assert set(MESSAGES["zh"]) == set(MESSAGES["en"])
    assert all(MESSAGES["zh"].values()) and all(MESSAGES["en"].values())


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-CN,zh;q=0.9", "zh"),
        ("en-US,en;q=0.9,zh;q=0.8", "en"),
        ("fr-FR,en;q=0.5,zh;q=0.7", "zh"),
        ("de-DE", None),
        ("en;q=abc,zh", "zh"),
    ],
)
def test_accept_language_picks_the_preferred_supported_language(header, expected):
    assert _from_accept_language(header) == expected


def test_bucket_refuses_past_its_burst_and_refills_with_time():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    rate = Rate(burst=3, per_minute=60)
    assert [limiter.allow("c", "1.2.3.4", rate) for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert limiter.allow("c", "5.6.7.8", rate)
    now[0] += 1.0
    assert limiter.allow("c", "1.2.3.4", rate)
    assert not limiter.allow("c", "1.2.3.4", rate)


def test_bucket_map_stays_bounded():
    limiter = RateLimiter(max_keys=10)
    for n in range(100):
        limiter.allow("c", str(n), Rate(burst=1, per_minute=1))
    assert len(limiter._buckets) == 10


def test_session_cookie_is_refused_when_forged_or_expired():
    signer = SessionSigner("k" * 40)
    before = datetime.now(UTC)
    cookie = signer.issue(42)
    session = signer.read(cookie)
    assert session is not None
    assert session[0] == 42
    assert before <= session[1] <= datetime.now(UTC)
    assert signer.read(cookie[:-2] + "xx") is None
    assert SessionSigner("other-key" * 5).read(cookie) is None
    assert SessionSigner("k" * 40, max_age=-1).read(cookie) is None


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe1rest", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\nrest", "image/png"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00", "image/heic"),
        (b"GIF89a", None),
        (b"<svg xmlns=", None),
    ],
)
def test_sniff_image_reads_the_magic_bytes(head, kind):
    found = sniff_image(head)
    assert (found[0] if found else None) == kind


def test_check_photo_names_the_limit_when_too_big():
    with pytest.raises(InvalidInput, match="exceeds the 1,024-byte limit") as caught:
        check_photo(b"\xff\xd8\xff" + b"\x00" * 2000, "image/jpeg", max_bytes=1024)
    assert caught.value.field == "photo_size"
    assert check_photo(b"\xff\xd8\xff\x00", "application/octet-stream", max_bytes=99)


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("/e/tickets/3", "/e/tickets/3"),
        ("//evil.example/x", None),
        ("https://evil.example/", None),
        ("/\\evil.example", None),
    ],
)
def test_login_redirects_only_to_local_paths(value, safe):
    from edufleet_collector.web.pages.auth import _safe_next

    assert _safe_next(value) == safe
