"""Where a prediction came from, as its items say it: lineage text, software, model links.

Kept apart from :mod:`geomlops.workflows.inference.publish` (which makes the outputs) so the
facts every item of a run carries about its origin, primary and mask models alike, are
written in one place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import metadata
from typing import Any
from urllib.parse import quote

import rasterio

from geomlops.catalog.collections import MODELS
from geomlops.model import properties as prop
from geomlops.model.kinds import OutputKind
from geomlops.workflows.inference.config import InferenceRunConfig

SOFTWARE = ("geomlops", "torch", "rasterio", "rio-cogeo", "shapely")


def software_versions() -> dict[str, str]:
    """Versions of the software that made a prediction (processing:software)."""
    versions = {name: metadata.version(name) for name in SOFTWARE}
    versions["gdal"] = rasterio.__gdal_version__
    return versions


def link(stac_url: str, rel: str, collection: str, item_id: str, title: str) -> dict[str, str]:
    """A STAC link to an item of ``collection`` on the STAC API."""
    return {
        "rel": rel,
        "href": f"{stac_url}/collections/{collection}/items/{quote(item_id, safe='')}",
        "type": "application/geo+json",
        "title": title,
    }


def contributing_models(config: InferenceRunConfig) -> list[dict[str, Any]]:
    """Every model version behind the run's outputs (``geomlops:models``), primary first."""
    model = config.model
    models: list[dict[str, Any]] = [
        {"role": "model", "name": model.name, "version": model.version, "item": model.item_id}
    ]
    if config.mask is not None:
        mask = config.mask.model
        models.append(
            {
                "role": "mask",
                "name": mask.name,
                "version": mask.version,
                "item": mask.item_id,
                "rule": config.mask.rule().describe(),
            }
        )
    return models


def _lineage_text(config: InferenceRunConfig) -> str:
    model = config.model
    nodata = "NaN" if model.kind.float_raster else "255"
    text = (
        f"Predicted by {model.name} version {model.version} ({model.stage}, "
        f"{model.model_uri}) over the scenes linked as derived_from, in tiles of "
        f"{config.tile_size} px blended over {config.overlap} px, in workflow run "
        f"{config.workflow}; pixels without data or under cloud are no data ({nodata})."
    )
    if config.mask is not None:
        mask = config.mask.model
        text += (
            f" Masked by {mask.name} version {mask.version} ({mask.stage}, {mask.model_uri}): "
            f"pixels where {config.mask.rule().describe()} are no data ({nodata}) too."
        )
    return text


def model_links(config: InferenceRunConfig, stac_url: str) -> list[dict[str, str]]:
    """``derived_from`` links to every contributing model version item."""
    return [
        link(
            stac_url,
            "derived_from",
            MODELS,
            m["item"],
            "model version" if m["role"] == "model" else f"{m['role']} model version",
        )
        for m in contributing_models(config)
    ]


def common_properties(config: InferenceRunConfig, workflow_runs: list[str]) -> dict[str, Any]:
    """What every item of a run says about where it came from (processing:*, geomlops:*)."""
    model = config.model
    common = {
        "processing:lineage": _lineage_text(config),
        "processing:software": software_versions(),
        "processing:datetime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "processing:facility": "geomlops-batch-inference",
        prop.WORKFLOW: config.workflow,
        prop.WORKFLOW_RUNS: workflow_runs,
        prop.MODEL: model.name,
        prop.MODEL_VERSION: model.version,
        prop.MODEL_ITEM: model.item_id,
        prop.MODELS: contributing_models(config),
        **({prop.PIPELINE: config.pipeline} if config.pipeline else {}),
        prop.OUTSIDE_REGION: config.outside_region,
        prop.OUTSIDE_FRACTION: config.request.outside_fraction,
        prop.REQUEST_DATETIME: config.request.datetime,
        prop.REQUEST_AOI: config.request.aoi_uri,
        prop.CLASSES: [{"value": c.value, "name": c.name} for c in model.classes],
        # Not complete until the run's generic processors have run (the `process` step).
        **({prop.PROCESSING: "pending"} if config.processors else {}),
    }
    if model.kind is not OutputKind.CLASS_MASK:  # a flood item reads as it always did
        spec = model.spec
        common[prop.OUTPUT_KIND] = spec.kind.value
        if spec.threshold is not None:
            common[prop.THRESHOLD] = spec.threshold
        if spec.unit:
            common[prop.UNIT] = spec.unit
    return common
