"""``edufleet grafana push`` and ``edufleet grafana set-password``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from psycopg import sql

from ..errors import ConfigError, InvalidInput
from ..grafana.dashboards import load_dashboards
from ..grafana.push import GRAFANA_ROLE, connect, datasource_for, push
from ..logs import configure_logging
from ..settings import load_settings
from .common import connect as connect_database
from .common import start

PASSWORD_ENV = "EDUFLEET_GRAFANA_DB_PASSWORD"
TOKEN_ENV = "EDUFLEET_GRAFANA_TOKEN"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("grafana", help="publish the walls to Grafana")
    grafana_sub = parser.add_subparsers(dest="grafana_command", required=True)

    push_parser = grafana_sub.add_parser(
        "push",
        help="create or update the folder, the datasource and the dashboards",
    )
    push_parser.add_argument("--url", required=True, help="Grafana's base URL")
    push_parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV, ""),
        help=f"service account token with the Admin role (or set {TOKEN_ENV})",
    )
    push_parser.add_argument(
        "--dashboards",
        type=Path,
        default=Path("dashboards"),
        help="folder of dashboard JSON files (default: ./dashboards)",
    )
    push_parser.add_argument(
        "--db-url",
        help="how Grafana reaches the database, e.g. "
        "postgresql://edufleet_grafana@db:5432/edufleet?sslmode=disable; "
        "default: EDUFLEET_DATABASE_URL's host and database as edufleet_grafana",
    )
    push_parser.add_argument(
        "--update-password",
        action="store_true",
        help=f"send {PASSWORD_ENV} to an existing datasource too",
    )
    push_parser.set_defaults(handler=run_push)

    password = grafana_sub.add_parser(
        "set-password",
        help=f"set the {GRAFANA_ROLE} database role's password from {PASSWORD_ENV}",
    )
    password.set_defaults(handler=run_set_password)


def _default_db_url() -> str:
    settings = load_settings()
    parts = urlsplit(settings.database_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{GRAFANA_ROLE}@{host}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


def run_push(args: argparse.Namespace) -> int:
    configure_logging("WARNING", "text")
    folder: Path = args.dashboards
    if not folder.is_dir():
        raise InvalidInput(
            f"--dashboards {str(folder)!r} is not a folder; run from the "
            "repository root or pass the path of its dashboards/ folder",
            field="dashboards",
        )
    dashboards = load_dashboards(folder)
    if not dashboards:
        raise InvalidInput(
            f"{folder} holds no *.json dashboards; nothing to push", field="dashboards"
        )
    db_url = args.db_url or _default_db_url()
    datasource = datasource_for(db_url=db_url, password=os.environ.get(PASSWORD_ENV))
    api = connect(args.url, args.token)
    report = push(
        api,
        url=args.url,
        datasource=datasource,
        dashboards=dashboards,
        update_password=args.update_password,
    )
    print(f"Grafana {report.version}: folder {report.folder}")
    print(f"datasource {datasource['uid']}: {report.datasource}")
    for uid, outcome in report.dashboards.items():
        print(f"dashboard {uid}: {outcome}")
    print(f"{report.changes()} changes")
    return 0


def run_set_password(args: argparse.Namespace) -> int:
    settings = start(log_level="WARNING")
    password = os.environ.get(PASSWORD_ENV, "")
    if len(password) < 16:
        raise ConfigError(
            f"{PASSWORD_ENV} must hold the password for {GRAFANA_ROLE}, at least "
            "16 characters; generate one with `openssl rand -base64 24`"
        )
    with connect_database(settings) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(GRAFANA_ROLE), sql.Literal(password)
            )
        )
        conn.commit()
    print(f"password of {GRAFANA_ROLE} set; give Grafana's datasource the same one")
    return 0
