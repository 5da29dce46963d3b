"""Keyset pagination: pages ordered by id, continued by an opaque cursor.

A cursor carries the id of the last row a page showed; the next page starts
after it. Unlike OFFSET, a deep page costs the same as the first one, and rows
added or removed meanwhile never shift a page into duplicates or gaps.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from ..errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_CURSOR_PREFIX = "id:"

T = TypeVar("T")


class Listing(BaseModel, Generic[T]):
    """One page of a list: its items and the cursor of the next page, if any."""

    items: list[T]
    next: str | None


@dataclass(frozen=True)
class Page:
    """Which page to read: at most ``limit`` rows with an id above ``after``."""

    limit: int = DEFAULT_LIMIT
    after: int | None = None

    @classmethod
    def parse(cls, limit: int, after: str | None) -> Page:
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(
                f"limit {limit} is outside 1..{MAX_LIMIT}; ask for fewer rows a page",
                field="limit",
            )
        return cls(limit=limit, after=decode_cursor(after) if after else None)


def encode_cursor(last_id: int) -> str:
    raw = f"{_CURSOR_PREFIX}{last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor continues after; InvalidInput for anything not ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        return int(text.removeprefix(_CURSOR_PREFIX))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"cursor {cursor!r} is not one this API issued; pass the 'next' value "
            "of the previous page unchanged",
            field="after",
        ) from exc


def paginate(rows: Sequence[T], page: Page, key: Callable[[T], int]) -> Listing[T]:
    """Cut a fetch of ``limit + 1`` rows into a page and the next page's cursor."""
    items = list(rows[: page.limit])
    more = len(rows) > page.limit
    return Listing[T](
        items=items, next=encode_cursor(key(items[-1])) if more and items else None
    )
