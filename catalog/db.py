"""Synchronous connections to the PgSTAC database, for the CLI and bootstrap.

The STAC API has its own asyncpg pools; everything else (key management, collections,
queryables, the bench loader) connects here, with the credentials from
:func:`geomlops.connections.get_connections`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from geomlops.connections import get_connections
from geomlops.errors import StackNotRunning
from geomlops.settings import Settings, get_settings


def pgstac_url(settings: Settings | None = None, *, owner: bool = False) -> str:
    """Libpq URL of the PgSTAC database, as the app role (or, with ``owner``, its owner)."""
    settings = settings or get_settings()
    return get_connections(settings).db_url(settings.db.pgstac_database, owner=owner)


@contextmanager
def pgstac_connection(
    settings: Settings | None = None, *, owner: bool = False
) -> Iterator[psycopg.Connection]:
    """One transaction on the PgSTAC database: committed on success, rolled back on error.

    As the app role the platform runs as; ``owner`` (the bootstrap only) connects as the
    role that owns the tables (:mod:`geomlops.stack.roles`).
    """
    url = pgstac_url(settings, owner=owner)
    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise StackNotRunning(
            f"cannot reach the catalog database: {str(exc).splitlines()[0]}",
            hint="run `geomlops up` first (or check GEOMLOPS_DB_DSN)",
        ) from exc
    with conn:  # commits, or rolls back when the block raises
        conn.execute("SET search_path TO pgstac, public")
        yield conn
