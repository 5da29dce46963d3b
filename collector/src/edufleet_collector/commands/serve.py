"""``edufleet serve``: the web pages and the API."""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

from ..errors import InvalidInput
from ..web.app import create_app
from .common import start


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("serve", help="serve the web pages and the API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes"
    )
    parser.set_defaults(handler=run_serve)


def app_from_environment() -> FastAPI:
    """The app of one worker process, configured from the environment."""
    return create_app(start())


def run_serve(args: argparse.Namespace) -> int:
    settings = start()
    if args.workers < 1:
        raise InvalidInput(f"--workers must be 1 or more, not {args.workers}")
    if args.workers == 1:
        target: str | FastAPI = create_app(settings)
    else:
        # Several processes: each imports the app by name and opens its own
        # database pool (EDUFLEET_DB_POOL_MAX_SIZE connections per process).
        target = "edufleet_collector.commands.serve:app_from_environment"
    uvicorn.run(
        target,
        host=args.host,
        port=args.port,
        workers=args.workers,
        factory=args.workers > 1,
        log_config=None,
        access_log=False,
    )
    return 0
