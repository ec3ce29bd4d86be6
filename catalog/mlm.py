"""Model version items with the Machine Learning Model (MLM) extension.

Items are built with stac-model (``MLModelProperties`` validates the fields, then the
pystac extension view writes them), so the platform writes MLM v1.6.0 only
(:data:`geomlops.catalog.extensions.MLM_SCHEMA`). One derived field is added on every write:
``geomlops:input_bands``, the band names of all inputs, because CQL2 cannot reach into
``mlm:input[*].bands`` (see :mod:`geomlops.catalog.queryables`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pystac
from pystac.extensions.version import VersionExtension
from stac_model.schema import MLModelExtension, MLModelProperties

from geomlops.catalog.collections import MODELS
from geomlops.catalog.validation import Problem
from geomlops.model import properties as prop
from geomlops.model.kinds import OUTPUT_KEY, kinds_text, output_problems

INPUT_BANDS = prop.INPUT_BANDS
WORLD_BBOX = (-180.0, -90.0, 180.0, 90.0)


OUTPUT_KIND_RULE = "output-kind"


def output_kind_problems(item: Mapping[str, Any]) -> list[Problem]:
    """Every ``mlm:output`` entry of a model item the platform cannot post-process.

    An item without a list of outputs is left to the MLM schema, which says so itself.
    """
    props = item.get("properties")
    outputs = props.get(OUTPUT_KEY) if isinstance(props, Mapping) else None
    if not isinstance(outputs, list) or not outputs:
        return []
    item_id = str(item.get("id") or "<no id>")
    return [
        Problem(
            item_id,
            f"$.properties.{field}",
            OUTPUT_KIND_RULE,
            f"{field}: {message}: not an output the platform can post-process; the output "
            f"kinds that exist: {kinds_text()}",
        )
        for field, message in output_problems(outputs)
    ]


def input_band_names(mlm_input: Any) -> list[str]:
    """Band names of every model input, first occurrence order, each once.

    MLM allows a band as a name or as an object with ``name``; both are read.
    """
    names: dict[str, None] = {}
    for model_input in mlm_input if isinstance(mlm_input, list) else []:
        bands = model_input.get("bands") if isinstance(model_input, Mapping) else None
        for band in bands if isinstance(bands, list) else []:
            name = band.get("name") if isinstance(band, Mapping) else band
            if isinstance(name, str) and name:
                names.setdefault(name)
    return list(names)


def with_derived_fields(item: dict[str, Any]) -> dict[str, Any]:
    """Set (or clear) ``geomlops:input_bands`` from ``mlm:input``; returns ``item``."""
    props = item.get("properties")
    if not isinstance(props, dict):
        return item
    bands = input_band_names(props.get("mlm:input"))
    if bands:
        props[INPUT_BANDS] = bands
    else:
        props.pop(INPUT_BANDS, None)
    return item


def _bbox_polygon(bbox: tuple[float, float, float, float]) -> dict[str, Any]:
    west, south, east, north = bbox
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def build_model_item(
    item_id: str,
    properties: MLModelProperties | Mapping[str, Any],
    *,
    assets: Mapping[str, pystac.Asset],
    bbox: tuple[float, float, float, float] = WORLD_BBOX,
    start: datetime | None = None,
    end: datetime | None = None,
    at: datetime | None = None,
    version: str | None = None,
    extra_properties: Mapping[str, Any] | None = None,
    collection: str = MODELS,
) -> pystac.Item:
    """A model version item: MLM fields, assets, where (``bbox``) and when it applies.

    Give ``at`` for a single time, or ``start`` and ``end`` for the period of the training
    data. The ``mlm:model`` asset (weights) is the caller's; MLM requires one. Named input
    bands are also listed in STAC 1.1 ``bands`` (item and ``mlm:model`` asset) unless
    given, as MLM requires.
    """
    if at is None and (start is None or end is None):
        raise ValueError("give `at`, or both `start` and `end`")
    props: dict[str, Any] = dict(extra_properties or {})
    if at is None:
        assert start is not None and end is not None  # noqa: S101 - checked just above
        props["start_datetime"] = pystac.utils.datetime_to_str(start)
        props["end_datetime"] = pystac.utils.datetime_to_str(end)
    item = pystac.Item(
        id=item_id,
        geometry=_bbox_polygon(bbox),
        bbox=list(bbox),
        datetime=at,
        properties=props,
        collection=collection,
    )
    # STAC 1.1 wants a `collection` link whenever `collection` is set; relative, as in a
    # static catalog (the catalog client swaps in the API's own on write).
    item.add_link(pystac.Link("collection", f"../{collection}.json", pystac.MediaType.JSON))
    for key, asset in assets.items():
        item.add_asset(key, asset)
    if isinstance(properties, Mapping):
        properties = MLModelProperties(**properties)
    MLModelExtension.ext(item, add_if_missing=True).apply(properties)
    # MLM requires named input bands to be described: STAC 1.1 core `bands`, which an item
    # may carry in its properties only when an asset has them too (the model asset here).
    named = input_band_names(item.properties.get("mlm:input"))
    if named and "bands" not in item.properties:
        bands = [{"name": name} for name in named]
        item.properties["bands"] = bands
        for asset in item.assets.values():
            if "mlm:model" in (asset.roles or []):
                asset.extra_fields.setdefault("bands", bands)
    if version is not None:
        VersionExtension.ext(item, add_if_missing=True).version = version
    with_derived_fields({"properties": item.properties})  # item.properties, in place
    return item
