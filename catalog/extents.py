"""Collection extents that follow their items, kept by the database itself.

A collection's extent tells a client (QGIS, STAC Browser, pystac-client) where and when its
items lie before it searches. The collections are created with a placeholder (the whole
world, from 1972 on); from then on a statement-level trigger on ``pgstac.items`` recomputes
the spatial and temporal extent of each collection a statement touched, from the items
themselves, so every writer (the STAC API's transactions, ``pypgstac`` loads, bootstrap)
keeps it true, and a deletion shrinks it. A collection left without items gets the
placeholder back: STAC requires an extent, and ``null`` would make the collection invalid.

PgSTAC's own ``update_collection_extent`` setting is not used: it writes ``null`` when a
collection empties, and keeps the footprint of a partition whose items are all deleted.

Why the row lock first: the extent is computed in a statement of its own after the
collection's row is locked, so a concurrent writer that committed meanwhile is seen (each
PL/pgSQL statement takes a new snapshot under READ COMMITTED) and the last update wins
with every committed item counted.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

FUNCTION = "geomlops_refresh_extent"
TRIGGER_FUNCTION = "geomlops_items_extent_trigger"
TRIGGERS = {
    "INSERT": "geomlops_extent_after_insert",
    "UPDATE": "geomlops_extent_after_update",
    "DELETE": "geomlops_extent_after_delete",
}

_REFRESH = """
CREATE OR REPLACE FUNCTION pgstac.{function}(_collection text) RETURNS jsonb AS $$
DECLARE
    box geometry;
    first_dt timestamptz;
    last_dt timestamptz;
    extent jsonb;
BEGIN
    PERFORM 1 FROM pgstac.collections WHERE id = _collection FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT st_extent(geometry)::geometry, min(datetime), max(end_datetime)
        INTO box, first_dt, last_dt
        FROM pgstac.items WHERE collection = _collection;
    IF box IS NULL OR first_dt IS NULL THEN
        extent := {placeholder};
    ELSE
        extent := jsonb_build_object(
            'spatial', jsonb_build_object('bbox', jsonb_build_array(jsonb_build_array(
                st_xmin(box), st_ymin(box), st_xmax(box), st_ymax(box)))),
            'temporal', jsonb_build_object('interval', jsonb_build_array(jsonb_build_array(
                to_char(first_dt AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                to_char(coalesce(last_dt, first_dt) AT TIME ZONE 'UTC',
                        'YYYY-MM-DD"T"HH24:MI:SS"Z"'))))
        );
    END IF;
    UPDATE pgstac.collections
        SET content = jsonb_set(content, '{{extent}}', extent)
        WHERE id = _collection AND content->'extent' IS DISTINCT FROM extent;
    RETURN extent;
END;
$$ LANGUAGE plpgsql VOLATILE SET search_path TO pgstac, public;
"""

_TRIGGER = """
CREATE OR REPLACE FUNCTION pgstac.{trigger_function}() RETURNS trigger AS $$
DECLARE
    c text;
BEGIN
    FOR c IN SELECT DISTINCT collection FROM changed ORDER BY 1 LOOP
        PERFORM pgstac.{function}(c);
    END LOOP;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path TO pgstac, public;
"""


def ensure_extent_triggers(conn: psycopg.Connection, placeholder: dict[str, Any]) -> None:
    """(Re)create the function and the triggers; idempotent, run by every bootstrap.

    ``placeholder`` is the extent of a collection without items (the collections' own
    definition, :mod:`geomlops.catalog.collections`, passed in so it is written once).
    """
    conn.execute(
        sql.SQL(_REFRESH).format(
            function=sql.Identifier(FUNCTION),
            placeholder=sql.SQL("{}::jsonb").format(sql.Literal(json.dumps(placeholder))),
        )
    )
    conn.execute(
        sql.SQL(_TRIGGER).format(
            trigger_function=sql.Identifier(TRIGGER_FUNCTION), function=sql.Identifier(FUNCTION)
        )
    )
    for event, name in TRIGGERS.items():
        table = "OLD" if event == "DELETE" else "NEW"
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {name} ON pgstac.items").format(
                name=sql.Identifier(name)
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER {name} AFTER {event} ON pgstac.items "
                "REFERENCING {table} TABLE AS changed FOR EACH STATEMENT "
                "EXECUTE FUNCTION pgstac.{function}()"
            ).format(
                name=sql.Identifier(name),
                event=sql.SQL(event),
                table=sql.SQL(table),
                function=sql.Identifier(TRIGGER_FUNCTION),
            )
        )


def refresh_extent(conn: psycopg.Connection, collection: str) -> dict[str, Any] | None:
    """Recompute one collection's extent from its items now; None if there is no such one.

    Bootstrap calls it after upserting the collections, which writes their placeholder.
    """
    row = conn.execute(
        sql.SQL("SELECT pgstac.{}(%s)").format(sql.Identifier(FUNCTION)), (collection,)
    ).fetchone()
    return row[0] if row else None
