"""The HTTP probe: status pages of controllers and panels.

A page is up when it answers with the expected status and, when a pattern is
given, its body (the first 64 KiB) matches it.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
import urllib.error
import urllib.request
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from edufleet_agent.probes.base import (
    Metrics,
    ProbeOptions,
    ProbeSpec,
    label,
)
from edufleet_protocol.topics import DEVICE_ID_PATTERN

log = logging.getLogger("edufleet.agent.probes.http")

MAX_BODY: Final = 64 * 1024


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2000)]
    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)] | None = None
    expect_status: Annotated[int, Field(ge=100, le=599)] = 200
    expect_regex: Annotated[str, StringConstraints(max_length=500)] | None = None
    verify_tls: bool = True

    @field_validator("expect_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class HttpOptions(ProbeOptions):
    pages: list[Page] = Field(default_factory=list, max_length=32)
    request_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0

    def peripherals(self) -> list[tuple[str, str, str]]:
        return [(p.device_id, "http", p.url) for p in self.pages if p.device_id]


def fetch(url: str, timeout: float, verify_tls: bool) -> tuple[int, str]:
    """Status and the start of the body; HTTP errors are answers, not failures."""
    context = None
    if url.startswith("https:") and not verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"User-Agent": "edufleet-agent"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
            return int(reply.status), reply.read(MAX_BODY).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        body = exc.read(MAX_BODY).decode("utf-8", "replace") if exc.fp else ""
        return int(exc.code), body


def page_ok(page: Page, status: int, body: str) -> bool:
    if status != page.expect_status:
        return False
    return page.expect_regex is None or re.search(page.expect_regex, body) is not None


class HttpProbe:
    def __init__(self, options: HttpOptions) -> None:
        self.options = options

    def collect(self) -> Metrics:
        metrics: Metrics = {}
        for page in self.options.pages:
            who = label(page.device_id or page.name)
            started = time.perf_counter()
            try:
                status, body = fetch(
                    page.url, self.options.request_timeout_s, page.verify_tls
                )
            except (OSError, ValueError) as exc:
                log.debug("page %r unreachable: %s", page.name, exc)
                metrics[f"http.ok[{who}]"] = False
                metrics[f"http.status[{who}]"] = 0
                continue
            metrics[f"http.ok[{who}]"] = page_ok(page, status, body)
            metrics[f"http.status[{who}]"] = status
            metrics[f"http.latency_ms[{who}]"] = round(
                (time.perf_counter() - started) * 1000.0, 2
            )
        return metrics


SPEC = ProbeSpec(
    name="http",
    default_enabled=False,
    options=HttpOptions,
    factory=lambda options, context: HttpProbe(options),
    summary="status pages with expected HTTP status and body pattern",
)
