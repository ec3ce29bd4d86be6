"""The collections of the catalog, defined once (DESIGN.md §4).

``models`` holds one item per model version (MLM), ``datasets`` one per dataset version,
``imagery`` the source scenes (COGs in the imagery bucket), ``predictions`` the outputs of
inference, ``processors`` the generic processors (user scripts, one item per version, with
their sha256) that batch inference may run after publishing. Each declares the extensions
its own JSON uses (the processing extension, used by model and prediction items, is left
out: declared on a collection it demands processing fields there) and summarises what the
platform writes into it; ``geomlops up`` creates them if missing
(:mod:`geomlops.catalog.bootstrap`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pystac

from geomlops.catalog.extensions import (
    EO_SCHEMA,
    FILE_SCHEMA,
    MLM_SCHEMA,
    PROJECTION_SCHEMA,
    RASTER_SCHEMA,
    VERSION_SCHEMA,
)
from geomlops.model.ids import MODELS_COLLECTION

MODELS = MODELS_COLLECTION
DATASETS = "datasets"
IMAGERY = "imagery"
PREDICTIONS = "predictions"
PROCESSORS = "processors"
COLLECTION_IDS = (MODELS, DATASETS, IMAGERY, PREDICTIONS, PROCESSORS)

# The extent of a collection without items: the whole world, from the first Landsat (1972)
# on, open-ended (no item of the platform is older). Once it has items, its extent follows
# them (:mod:`geomlops.catalog.extents`).
_WORLD = pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]])
_SINCE_1972 = pystac.TemporalExtent([[datetime(1972, 7, 23, tzinfo=UTC), None]])
_LICENSE = "other"  # per item: models, datasets and scenes come under their own licences


def _collection(
    collection_id: str,
    title: str,
    description: str,
    extensions: list[str],
    keywords: list[str],
    summaries: dict[str, Any],
    item_assets: dict[str, dict[str, Any]] | None = None,
) -> pystac.Collection:
    collection = pystac.Collection(
        id=collection_id,
        title=title,
        description=description,
        extent=pystac.Extent(_WORLD, _SINCE_1972),
        license=_LICENSE,
        keywords=keywords,
        stac_extensions=extensions,
        summaries=pystac.Summaries(summaries),
    )
    if item_assets:
        collection.extra_fields["item_assets"] = item_assets
    return collection


def catalog_collections() -> list[pystac.Collection]:
    """The catalog's collections, freshly built (callers may mutate them)."""
    return [
        _collection(
            MODELS,
            "Model versions",
            "One item per registered model version, described with the Machine Learning "
            "Model (MLM) extension: tasks, framework, inputs (bands, shape, normalisation), "
            "outputs (classes), accelerator and hyperparameters, with version links and "
            "lineage to the MLflow run, training dataset, source commit and image digest.",
            [MLM_SCHEMA, VERSION_SCHEMA, FILE_SCHEMA],
            ["machine learning", "model", "mlm"],
            {
                "mlm:framework": ["pytorch"],
                "mlm:accelerator": ["cuda", "amd64"],  # MLM calls a plain CPU "amd64"
            },
        ),
        _collection(
            DATASETS,
            "Dataset versions",
            "One item per training dataset version (a DVC revision with its checksum), the "
            "lineage that model version items point to.",
            [VERSION_SCHEMA, FILE_SCHEMA],
            ["training data", "dataset", "dvc"],
            {},
        ),
        _collection(
            IMAGERY,
            "Source imagery",
            "Source scenes stored as Cloud Optimized GeoTIFFs in the imagery bucket, with "
            "projection, raster and band metadata and a footprint in EPSG:4326.",
            [PROJECTION_SCHEMA, RASTER_SCHEMA, EO_SCHEMA, FILE_SCHEMA],
            ["imagery", "cog", "satellite"],
            {},
            item_assets={
                "image": {
                    "type": pystac.MediaType.COG,
                    "roles": ["data"],
                    "title": "Scene as a Cloud Optimized GeoTIFF",
                }
            },
        ),
        _collection(
            PREDICTIONS,
            "Predictions",
            "Outputs of inference: a COG mask and GeoJSON vectors per tile, each item "
            "`derived_from` its model version item and its source imagery items.",
            [PROJECTION_SCHEMA, RASTER_SCHEMA, FILE_SCHEMA],
            ["prediction", "inference", "flood"],
            {},
            item_assets={
                "mask": {
                    "type": pystac.MediaType.COG,
                    "roles": ["data"],
                    "title": "Predicted mask (COG)",
                },
                "vectors": {
                    "type": pystac.MediaType.GEOJSON,
                    "roles": ["data"],
                    "title": "Predicted polygons (GeoJSON)",
                },
            },
        ),
        _collection(
            PROCESSORS,
            "Generic processors",
            "User Python scripts run as their own step after a batch-inference run publishes "
            "its outputs (`geomlops processor register`): one item per version, its script "
            "in S3 with its sha256, the parameters it declares and its registered defaults.",
            [VERSION_SCHEMA, FILE_SCHEMA],
            ["processor", "post-processing", "script"],
            {},
            item_assets={
                "script": {
                    "type": "text/x-python",
                    "roles": ["code"],
                    "title": "The processor's Python script",
                }
            },
        ),
    ]


def collection_dicts() -> list[dict[str, Any]]:
    """The collections as STAC JSON, ready for PgSTAC or the transactions API."""
    return [
        c.to_dict(include_self_link=False, transform_hrefs=False) for c in catalog_collections()
    ]


def placeholder_extent() -> dict[str, Any]:
    """The extent of a collection that holds no item yet, as STAC JSON."""
    return pystac.Extent(_WORLD, _SINCE_1972).to_dict()
