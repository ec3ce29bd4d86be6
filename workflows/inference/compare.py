"""A published prediction against a reference label raster: IoU and F1 per class.

The label is read on the prediction's pixel grid (the window of the label that the mask
covers, resampled by nearest neighbour when grids differ), so a mask covering part of a
label, or a label in another CRS, compares pixel for pixel. Label pixels equal to its nodata
(or ``-1``, the platform's "ignore") and mask pixels without a prediction (255) are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from geomlops.connections import get_connections
from geomlops.errors import ValidationFailed
from geomlops.ml.data import IGNORE
from geomlops.ml.metrics import segmentation_metrics
from geomlops.ml.raster import MASK_NODATA
from geomlops.settings import Settings
from geomlops.transformers.postprocess import threshold_mask
from geomlops.workflows.inference.storage import gdal_env, raster_path


def compare_mask(
    mask_href: str, reference: Path, class_names: list[str], threshold: float | None = None
) -> dict[str, float]:
    """Metrics (``<class>`` IoU/F1, mIoU, accuracy) of the mask at ``mask_href``.

    With ``threshold`` the raster is a probability or continuous value, compared as its
    threshold mask (1 at or above, 0 below: ``class_names`` name those two).
    """
    with rasterio.open(raster_path(mask_href)) as mask_src:
        mask = mask_src.read(1)
        if threshold is not None:
            mask = threshold_mask(mask, threshold, 1)
        with (
            rasterio.open(reference) as ref,
            WarpedVRT(
                ref,
                crs=mask_src.crs,
                transform=mask_src.transform,
                width=mask_src.width,
                height=mask_src.height,
                resampling=Resampling.nearest,
                nodata=ref.nodata if ref.nodata is not None else IGNORE,
            ) as aligned,
        ):
            label = aligned.read(1).astype("int64")
            if ref.nodata is not None:
                label[label == ref.nodata] = IGNORE
    label[mask == MASK_NODATA] = IGNORE
    label[(label < 0) | (label >= len(class_names))] = IGNORE
    prediction = np.where(mask == MASK_NODATA, 0, mask)
    metrics = segmentation_metrics(prediction, label, class_names, prefix="ref")
    metrics["ref_compared_pixels"] = float((label != IGNORE).sum())
    return metrics


def compare_published(
    published: dict[str, Any], reference: Path, settings: Settings
) -> dict[str, dict[str, float]]:
    """Metrics of every published scene mask against ``reference``, by mask URI."""
    from geomlops.workflows.inference.config import InferenceRunConfig
    from geomlops.workflows.inference.progress import config_uri

    conn = get_connections(settings)
    run = published["masks"][0].split("/")[3] if published["masks"] else ""
    config = InferenceRunConfig.load(conn, config_uri(settings.s3.bucket_predictions, run))
    spec = config.model.spec
    names = [c.name for c in config.model.classes]
    if spec.kind.float_raster:
        if spec.threshold is None:
            raise ValidationFailed(
                f"{config.model.name} answers a {spec.kind.value} without a threshold: it has "
                "no class mask to compare with a reference label",
                hint="declare geomlops:threshold on its mlm:output, or compare without --compare",
            )
        names = [f"below_{spec.threshold_class[1]}", spec.threshold_class[1]]
    with gdal_env(conn):
        return {
            uri: compare_mask(uri, reference, names, spec.threshold) for uri in published["masks"]
        }
