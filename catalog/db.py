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
from geomlops.service_errors import database_unavailable
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
    role that owns the tables (:mod:`geomlops.stack.roles`). With the platform's timeouts
    (:meth:`Connections.db_connect`); a server lost in the middle is the same
    :class:`~geomlops.errors.ServiceUnavailable` as one never reached.
    """
    settings = settings or get_settings()
    conn = get_connections(settings).db_connect(settings.db.pgstac_database, owner=owner)
    try:
        with conn:  # commits, or rolls back when the block raises
            conn.execute("SET search_path TO pgstac, public")
            yield conn
    except psycopg.OperationalError as exc:
        raise database_unavailable(exc) from exc
