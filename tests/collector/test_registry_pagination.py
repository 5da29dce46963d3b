"""Keyset cursors and page cutting, on literal inputs."""

from __future__ import annotations

import pytest

from edufleet_collector.errors import InvalidInput
from edufleet_collector.registry.pagination import (
    MAX_LIMIT,
    Page,
    decode_cursor,
    encode_cursor,
    paginate,
)
from edufleet_collector.registry.query import like_pattern


def test_cursor_round_trips_and_is_opaque() -> None:
    cursor = encode_cursor(123456)
    assert "123456" not in cursor
    assert decode_cursor(cursor) == 123456


@pytest.mark.parametrize("bad", ["", "abc", "aWQ6eA", "bm9wZToxMg", "%%%"])
def test_foreign_cursor_is_rejected_on_the_after_field(bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_cursor(bad)
    assert caught.value.field == "after"


def test_page_limit_is_bounded() -> None:
    assert Page.parse(MAX_LIMIT, None) == Page(limit=MAX_LIMIT)
    with pytest.raises(InvalidInput, match=r"outside 1\.\.500"):
        Page.parse(MAX_LIMIT + 1, None)


def test_paginate_sets_next_only_when_more_rows_exist() -> None:
    page = Page(limit=3)
    full = paginate([1, 2, 3, 4], page, key=lambda n: n)
    assert full.items == [1, 2, 3]
    assert full.next is not None
    assert decode_cursor(full.next) == 3
    last = paginate([1, 2, 3], page, key=lambda n: n)
    assert last.next is None
    assert paginate([], page, key=lambda n: n).next is None


def test_like_pattern_takes_wildcards_literally() -> None:
    assert like_pattern("50%_a\\b") == "%50\\%\\_a\\\\b%"
