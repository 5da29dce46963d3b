"""Query parameters shared by the list routes: the page size and the cursor."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from ...registry.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page


async def page_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="rows per page")
    ] = DEFAULT_LIMIT,
    after: Annotated[
        str | None,
        Query(max_length=64, description="the 'next' cursor of the previous page"),
    ] = None,
) -> Page:
    return Page.parse(limit, after)


PageDep = Annotated[Page, Depends(page_params)]
