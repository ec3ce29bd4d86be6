"""The ``mlm:*`` queryables of the models collection, registered in PgSTAC.

PgSTAC lists only ``id``, ``datetime`` and ``geometry`` at ``/queryables`` until more are
registered; filtering on other properties works anyway, but clients (QGIS, STAC Browser,
pystac-client) discover what they can filter on from this list. The definitions carry a
JSON ``type`` because PgSTAC picks the SQL cast from it (arrays become ``text[]``, so
``a_contains`` works on ``mlm:tasks``).

Band names sit inside ``mlm:input[*].bands``, which CQL2 cannot reach (PgSTAC's array
operators read a property path, not an expression), so the catalog client derives the flat
``geomlops:input_bands`` from them on every write (:mod:`geomlops.catalog.mlm`) and it is
registered here as a queryable of the models collection too.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from stac_model.base import TaskEnum

from geomlops.catalog.collections import MODELS
from geomlops.catalog.extensions import MLM_SCHEMA
from geomlops.catalog.mlm import INPUT_BANDS


def _q(title: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"title": title, "description": description, "$comment": MLM_SCHEMA, **schema}


MLM_QUERYABLES: dict[str, dict[str, Any]] = {
    "mlm:name": _q("Model name", "Name of the model.", type="string"),
    "mlm:architecture": _q("Architecture", "Model architecture, e.g. UNet.", type="string"),
    "mlm:tasks": _q(
        "Tasks",
        "Tasks the model performs; filter with a_contains / a_overlaps.",
        type="array",
        items={"type": "string", "enum": [t.value for t in TaskEnum]},
    ),
    "mlm:framework": _q("Framework", "Framework the model runs in, e.g. pytorch.", type="string"),
    "mlm:framework_version": _q("Framework version", "Version of the framework.", type="string"),
    "mlm:accelerator": _q(
        "Accelerator", "Accelerator the model is built for (cuda, amd64, …).", type="string"
    ),
    "mlm:total_parameters": _q("Parameters", "Total number of parameters.", type="integer"),
    "mlm:memory_size": _q("Memory size", "Memory needed to load the model, bytes.", type="integer"),
    INPUT_BANDS: _q(
        "Input bands",
        "Names of the bands any model input takes (derived from mlm:input[*].bands on "
        "write); filter with a_contains / a_overlaps.",
        type="array",
        items={"type": "string"},
    ),
}


def register_mlm_queryables(conn: psycopg.Connection) -> None:
    """Register (or update) the ``mlm:*`` queryables for the models collection. Idempotent."""
    for name, definition in MLM_QUERYABLES.items():
        conn.execute(
            "SELECT pgstac.upsert_queryable(%s, %s::jsonb, NULL, NULL, %s)",
            (name, json.dumps(definition), [MODELS]),
        )
