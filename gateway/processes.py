"""The processes the gateway offers, described as OGC API - Processes 1.0 asks.

Two processes: ``batch-inference`` (a workflow run of ``geomlops-batch-inference``, as
``geomlops infer`` submits it; asynchronous, dismissable) and ``predict`` (one image through
the Seldon graph to GeoJSON; synchronous). The descriptions are data, so ``/processes``,
``/processes/{id}`` and the input checks read the same text.
"""

from __future__ import annotations

from typing import Any

from geomlops.gateway.errors import NO_SUCH_PROCESS, OgcError

BATCH_INFERENCE = "batch-inference"
PREDICT = "predict"
VERSION = "1.0.0"
INTERVAL_PATTERN = r"^(\.\.|\d{4}-\d{2}-\d{2}\S*)/(\.\.|\d{4}-\d{2}-\d{2}\S*)$"
GEOJSON = "application/geo+json"
COG = "image/tiff; application=geotiff; profile=cloud-optimized"

_BATCH: dict[str, Any] = {
    "id": BATCH_INFERENCE,
    "version": VERSION,
    "title": "Batch inference over an area and a date range",
    "description": "Predicts a registered model over the imagery scenes covering an area "
    "of interest in a date range, as `geomlops infer` does: a workflow run of "
    "geomlops-batch-inference (tiles in shards), publishing a class-mask COG per scene, the "
    "run's polygons as GeoJSON, and prediction items linked to the model version and scenes. "
    "The job is the workflow run: its id is the run's name.",
    "keywords": ["inference", "segmentation", "STAC", "MLM"],
    "jobControlOptions": ["async-execute", "dismiss"],
    "outputTransmission": ["reference"],
    "inputs": {
        "model": {
            "title": "Registered model",
            "description": "The model's name, e.g. `flood-water-s2` (`/processes` lists none "
            "of them: the catalog's `models` collection does).",
            "schema": {"type": "string", "minLength": 1},
        },
        "version": {
            "title": "Model version",
            "description": "A version number; omitted means the production version.",
            "minOccurs": 0,
            "schema": {"type": "string", "pattern": r"^\d+$"},
        },
        "aoi": {
            "title": "Area of interest",
            "description": "GeoJSON (EPSG:4326) Polygon or MultiPolygon, as a geometry, a "
            "Feature or a FeatureCollection.",
            "schema": {"type": "object", "contentMediaType": GEOJSON},
        },
        "datetime": {
            "title": "Acquisition interval",
            "description": "START/END of the scenes' acquisition, e.g. 2019-09-01/2019-09-30 "
            "(`..` leaves a side open).",
            "schema": {"type": "string", "pattern": INTERVAL_PATTERN},
        },
        "allow-outside-region": {
            "title": "Allow an area beyond the model's region",
            "description": "Run even where the model was not trained or evaluated; the "
            "outputs are then flagged.",
            "minOccurs": 0,
            "schema": {"type": "boolean", "default": False},
        },
    },
    "outputs": {
        "polygons": {
            "title": "Predicted polygons",
            "description": "Polygons per class and scene, GeoJSON (EPSG:4326).",
            "schema": {"type": "string", "contentMediaType": GEOJSON},
        },
        "masks": {
            "title": "Class masks",
            "description": "One cloud-optimised GeoTIFF per scene (255 = no data or cloud).",
            "schema": {"type": "array", "items": {"type": "string", "contentMediaType": COG}},
        },
        "items": {
            "title": "Prediction items",
            "description": "The STAC items of the run (lineage: model version, scenes, run).",
            "schema": {"type": "array", "items": {"type": "string"}},
        },
    },
}

_PREDICT: dict[str, Any] = {
    "id": PREDICT,
    "version": VERSION,
    "title": "Predict one image through the Seldon graph",
    "description": "Sends one GeoTIFF (an href the graph may read: s3:// in an allowed "
    "bucket or https:// on an allowed host, or the image itself, base64) through the served "
    "model's Seldon graph (model, then raster-to-vector) and returns its GeoJSON.",
    "keywords": ["inference", "Seldon", "GeoJSON"],
    "jobControlOptions": ["sync-execute"],
    "outputTransmission": ["value"],
    "inputs": {
        "image": {
            "title": "Image",
            "description": 'An href (`{"href": "s3://imagery/…"}`) or the GeoTIFF as a '
            'qualified value (`{"value": BASE64, "mediaType": "image/tiff"}`).',
            "schema": {"type": "string", "contentMediaType": "image/tiff"},
        }
    },
    "outputs": {
        "polygons": {
            "title": "Predicted polygons",
            "schema": {"type": "object", "contentMediaType": GEOJSON},
        }
    },
}

PROCESSES: dict[str, dict[str, Any]] = {BATCH_INFERENCE: _BATCH, PREDICT: _PREDICT}


def description(process_id: str) -> dict[str, Any]:
    """The full description of ``process_id`` (404 with the OGC type when unknown)."""
    try:
        return PROCESSES[process_id]
    except KeyError:
        raise OgcError(
            404,
            "NoSuchProcess",
            f"no process {process_id!r}; processes: {', '.join(PROCESSES)}",
            NO_SUCH_PROCESS,
        ) from None


def summary(process_id: str) -> dict[str, Any]:
    """The description without inputs and outputs (what ``/processes`` lists)."""
    return {k: v for k, v in description(process_id).items() if k not in ("inputs", "outputs")}
