"""The ``edufleet-agent`` command line: check, run, enroll."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edufleet_agent.config import DEFAULT_CONFIG, Config, load_config
from edufleet_agent.daemon import Agent, check, load_credentials, resolve_connection
from edufleet_agent.enroll import enroll
from edufleet_agent.errors import AgentError
from edufleet_agent.probes import builtin_specs
from edufleet_agent.rules import KNOWN_CODES

log = logging.getLogger("edufleet.agent")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load(path: Path | None) -> Config:
    return load_config(path or DEFAULT_CONFIG, builtin_specs(), rule_codes=KNOWN_CODES)


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _configure_logging("warning")
    print(json.dumps(check(config, builtin_specs()), indent=2, ensure_ascii=False))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _configure_logging(config.agent.log_level)
    credentials = load_credentials(config.agent.credentials_file)
    agent = Agent(config, builtin_specs(), resolve_connection(config, credentials))
    agent.install_signal_handlers()
    agent.run()
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _configure_logging(config.agent.log_level)
    target = args.credentials or config.agent.credentials_file
    response = enroll(
        args.url,
        args.token,
        target,
        room=args.room,
        asset_tag=args.asset_tag,
        ca_file=args.ca,
        sys_root=config.agent.sys_root,
    )
    print(
        f"enrolled as {response.device_id} (school {response.school_code}); "
        f"credentials saved to {target}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edufleet-agent", description="edufleet edge agent for classroom devices"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            type=Path,
            default=None,
            help=f"TOML config (default {DEFAULT_CONFIG})",
        )

    check = sub.add_parser(
        "check", help="run one collection cycle and print it as JSON"
    )
    with_config(check)
    check.set_defaults(handler=cmd_check)

    run = sub.add_parser("run", help="run the agent until stopped")
    with_config(run)
    run.set_defaults(handler=cmd_run)

    enrolling = sub.add_parser(
        "enroll", help="trade a school enrollment token for an identity"
    )
    with_config(enrolling)
    enrolling.add_argument(
        "--url", required=True, help="collector base URL, https://..."
    )
    enrolling.add_argument(
        "--token", required=True, help="the school's enrollment token"
    )
    enrolling.add_argument("--room", help="room name as registered for the school")
    enrolling.add_argument("--asset-tag", help="asset tag on the device's label")
    enrolling.add_argument(
        "--ca", type=Path, help="CA certificate to verify the collector"
    )
    enrolling.add_argument(
        "--credentials",
        type=Path,
        help="where to save the result (default from config)",
    )
    enrolling.set_defaults(handler=cmd_enroll)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except AgentError as exc:
        print(f"edufleet-agent: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
