"""Prepare the catalog once the stack is up: collections, queryables, key tables, admin key.

``geomlops up`` calls :func:`bootstrap` after every service is healthy, on every start, so
each step is idempotent: collections are upserted (their definitions in
:mod:`geomlops.catalog.collections` win, except for extents, which follow the items:
:mod:`geomlops.catalog.extents`), queryables re-registered, tables created if
missing, and the administrator key generated only the first time (kept in the state
directory's ``secrets/``, only its hash in PostgreSQL).
"""

from __future__ import annotations

import json
import logging

from geomlops import audit
from geomlops.catalog.collections import collection_dicts, placeholder_extent
from geomlops.catalog.db import pgstac_connection
from geomlops.catalog.extents import ensure_extent_triggers, refresh_extent
from geomlops.catalog.keys import ensure_admin_key, ensure_schema
from geomlops.catalog.queryables import register_mlm_queryables
from geomlops.errors import ConfigError
from geomlops.settings import Settings, get_settings
from geomlops.stack import roles
from geomlops.stack.state import StatePaths, secret

log = logging.getLogger(__name__)

ADMIN_KEY_SECRET = "admin_api_key"  # noqa: S105 - the name of a secrets/ file, not a secret


def admin_key(settings: Settings) -> str:
    """The administrator key from the state directory, generated on first use."""
    return secret(StatePaths(settings.stack.home), ADMIN_KEY_SECRET, {"key": 48})["key"]


def bootstrap(settings: Settings | None = None, *, key_from_settings: bool = False) -> None:
    """Create what the catalog needs, if missing; safe to run on every ``geomlops up``.

    ``key_from_settings`` takes the administrator key from ``GEOMLOPS_API_KEY`` instead of
    the state directory: a cluster's bootstrap Job has no state directory, and its key
    lives in a Kubernetes Secret. Opt-in only, so a personal key exported in a local shell
    never becomes the local stack's administrator key.
    """
    settings = settings or get_settings()
    if key_from_settings:
        if settings.auth.api_key is None:
            raise ConfigError(
                "--admin-key-from-settings needs GEOMLOPS_API_KEY",
                hint="set GEOMLOPS_API_KEY to the administrator key (the chart's Secret does)",
            )
        key = settings.auth.api_key.get_secret_value()
    else:
        key = admin_key(settings)
    with pgstac_connection(settings, owner=True) as conn:
        ensure_extent_triggers(conn, placeholder_extent())
        for collection in collection_dicts():
            conn.execute("SELECT pgstac.upsert_collection(%s::jsonb)", (json.dumps(collection),))
            # The definition carries the placeholder extent; the items decide the real one.
            refresh_extent(conn, collection["id"])
        register_mlm_queryables(conn)
        ensure_schema(conn)
        audit.ensure_schema(conn)
        if ensure_admin_key(conn, key):
            log.info("administrator API key stored (hash only)")
        app_role = settings.db.app_user
        if roles.app_role_exists(conn, app_role):
            roles.grant_app(conn, app_role)
        else:
            log.warning(
                "no database role %s: the platform runs as the role of GEOMLOPS_DB_DSN, which "
                "must not own the audit log (create it, or set GEOMLOPS_DB_APP_USER)",
                app_role,
            )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m geomlops.catalog.bootstrap")
    parser.add_argument(
        "--admin-key-from-settings",
        action="store_true",
        help="The administrator key is GEOMLOPS_API_KEY (a cluster), not the state directory's.",
    )
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    bootstrap(key_from_settings=parser.parse_args().admin_key_from_settings)
