"""Prepare a cluster's PostgreSQL and object store: what the Helm chart's hook Jobs run.

``python -m geomlops.setup databases`` creates the platform's two databases (PgSTAC and
MLflow) when missing and migrates PgSTAC with ``pypgstac migrate``; ``python -m
geomlops.setup buckets`` creates the platform's buckets (DESIGN.md §7) when missing. Both
read only the settings (``GEOMLOPS_DB_*``, ``GEOMLOPS_S3_*``), are idempotent, and wait for
their server first: on a fresh install the Jobs start while the bundled PostgreSQL and S3
pods are still coming up. The local stack does the same work itself when it starts.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from geomlops.connections import get_connections
from geomlops.errors import GeomlopsError, StackError
from geomlops.settings import Settings, get_settings

log = logging.getLogger("geomlops.setup")
T = TypeVar("T")


def _wait(what: str, attempt: Callable[[], T], timeout: float) -> T:
    """``attempt()`` until it succeeds or ``timeout`` seconds pass (a server starting up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{what} did not answer within {timeout:.0f} s: {exc}",
                    hint="check the server's address and credentials in the chart's values",
                ) from exc
            log.info("waiting for %s: %s", what, str(exc).splitlines()[0] if str(exc) else exc)
            time.sleep(2)


def databases(settings: Settings, timeout: float = 300.0) -> list[str]:
    """Create the PgSTAC and MLflow databases if missing, then migrate PgSTAC.

    Returns the databases created. An external server's user needs CREATEDB, or the
    databases must exist beforehand (then nothing is created).
    """
    import psycopg
    from psycopg import sql

    conn_info = get_connections(settings)
    admin_url = conn_info.db_url("postgres", owner=True)

    def connect() -> psycopg.Connection:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)

    created = []
    with _wait("PostgreSQL", connect, timeout) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in (
            settings.db.pgstac_database,
            settings.db.mlflow_database,
            settings.db.mlflow_auth_database,
        ):
            if name not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                created.append(name)
    url = conn_info.db_url(settings.db.pgstac_database, owner=True)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("pypgstac")), "migrate", "--dsn", url],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise StackError(f"pypgstac migrate failed:\n{result.stderr.strip()[-2000:]}")
    log.info("PgSTAC migrated: %s", result.stdout.strip().splitlines()[-1:] or "")
    _grant_app_role(settings, url)
    return created


def _grant_app_role(settings: Settings, pgstac_url: str) -> None:
    """Give the app role (when the DBA made one) PgSTAC's ingest role and MLflow's databases.

    The platform then runs as it (``GEOMLOPS_DB_DSN``) while the owner
    (``GEOMLOPS_DB_OWNER_DSN``) keeps the catalog's tables: :mod:`geomlops.stack.roles`.
    """
    from urllib.parse import unquote, urlsplit

    import psycopg

    from geomlops.stack import roles

    conn_info = get_connections(settings)
    app = settings.db.app_user
    app_dsn = urlsplit(conn_info.db_dsn)
    with psycopg.connect(pgstac_url, autocommit=True, connect_timeout=10) as conn:
        if conn_info.db_dsn != conn_info.db_owner_dsn and app_dsn.username == app:
            # Two DSNs (the chart's bundled server): the app DSN's password defines the role.
            roles.ensure_app_role(conn, app, unquote(app_dsn.password or ""))
        elif not roles.app_role_exists(conn, app):
            log.warning("no database role %s: the platform runs as the owner's role", app)
            return
        roles.grant_pgstac(conn, app)
    for database in (settings.db.mlflow_database, settings.db.mlflow_auth_database):
        url = conn_info.db_url(database, owner=True)
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            roles.give_database(conn, database, app)


def buckets(settings: Settings, timeout: float = 300.0) -> list[str]:
    """Create the platform's buckets if missing; returns those created."""
    client = get_connections(settings).s3_client()
    existing = {b["Name"] for b in _wait("S3", client.list_buckets, timeout).get("Buckets", [])}
    created = []
    for bucket in settings.s3.buckets.values():
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
            created.append(bucket)
    return created


def main(argv: list[str] | None = None) -> int:
    """Entry point of the hook Jobs; exit 1 with the error on stderr when a step fails."""
    parser = argparse.ArgumentParser(prog="python -m geomlops.setup", description=__doc__)
    parser.add_argument("what", choices=["databases", "buckets"])
    parser.add_argument("--timeout", type=float, default=300.0, help="Seconds to wait.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    settings = get_settings()
    try:
        step = databases if args.what == "databases" else buckets
        created = step(settings, args.timeout)
    except GeomlopsError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1
    log.info("%s ready (created: %s)", args.what, ", ".join(created) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
