"""A resolved model version, loaded, answering "which class is each pixel" for a GeoTIFF.

Everything the model needs to read an image is taken from the MLM item it was trained with
(bands by name, z-score statistics, patch size, classes), and the heavy lifting is the
shared model-package code (:mod:`geomlops.ml`): band selection, normalisation and the
overlapping-tile prediction are the very functions ``predict`` and ``evaluate`` use, so an
online answer equals a batch one. The model is loaded by the one loading function of
serving and batch inference (:func:`geomlops.ml.runtime.load_model`): a ``torch.export``
program in process, or a pyfunc model in its package's environment, per its item's
``mlm:artifact_type``; serving needs neither the package's code nor its framework.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from geomlops.ml.probabilities import blend_probabilities, class_mask
from geomlops.ml.raster import MASK_NODATA, Raster
from geomlops.ml.runtime import LoadedModel, load_model
from geomlops.ml.scaling import normalise
from geomlops.model.io import ModelIO
from geomlops.model.resolve import ResolvedModel
from geomlops.settings import Settings
from geomlops.transformers.raster_to_vector import payload


class Predictor:
    """One loaded model version: ``predict(raster)`` -> the mask payload for the transformer."""

    def __init__(
        self,
        resolved: ResolvedModel,
        model: LoadedModel,
        *,
        overlap: int,
        batch_size: int,
        with_probabilities: bool = True,
    ) -> None:
        self.resolved = resolved
        self.spec = ModelIO.from_item(resolved.mlm_item)
        self.model = model
        self.overlap = min(overlap, self.spec.patch_size // 2)
        self.batch_size = batch_size
        self.with_probabilities = with_probabilities

    @classmethod
    def load(
        cls,
        resolved: ResolvedModel,
        settings: Settings,
        *,
        cache_dir: Path | None = None,
        with_probabilities: bool = True,
    ) -> Predictor:
        """Load ``resolved`` through the platform's one loading function, on the best device."""
        ModelIO.from_item(resolved.mlm_item)  # refuse an unusable item before downloading
        folder = cache_dir or Path(tempfile.gettempdir()) / "geomlops-serving"
        model = load_model(
            resolved.name,
            resolved.artifact_uri,
            resolved.runtime,
            settings,
            cache_dir=folder,
        )
        return cls(
            resolved,
            model,
            overlap=settings.serving.overlap,
            batch_size=settings.serving.batch_size,
            with_probabilities=with_probabilities,
        )

    @property
    def tags(self) -> dict[str, str]:
        """What every answer carries, so it can be traced to the model version."""
        return {
            "model_name": self.resolved.name,
            "model_version": self.resolved.version,
            "stac_item_id": self.resolved.item_id,
        }

    def predict(self, raster: Raster) -> dict[str, Any]:
        """The mask payload (``jsonData``) of ``raster`` (bands in the model's order)."""
        data = raster.data
        if self.spec.nodata is not None:
            data = np.where(data == self.spec.nodata, np.nan, data).astype("float32")
        probabilities = blend_probabilities(
            self.model,
            normalise(data, self.spec.mean, self.spec.stddev),
            patch_size=self.spec.patch_size,
            overlap=self.overlap,
            batch_size=self.batch_size,
        )
        missing = np.isnan(data).any(axis=0)
        mask, confidence = class_mask(probabilities, self.spec)
        mask[missing] = MASK_NODATA
        # The confidence of the chosen class (H x W) is all the transformer needs for each
        # polygon's mean confidence, at 1/K of the bytes of every class's probability.
        return payload.encode(
            mask,
            raster.transform,
            raster.crs,
            classes=[asdict(c) for c in self.spec.mask_classes()],
            nodata=MASK_NODATA,
            probabilities=confidence if self.with_probabilities else None,
            compress=True,
        )
