"""A resolved model version, loaded, answering "what is each pixel" for a GeoTIFF.

Everything the model needs to read an image is taken from the MLM item it was trained with
(bands by name, z-score statistics, patch size, classes), and the heavy lifting is the
shared model-package code (:mod:`geomlops.ml`): band selection, normalisation and the
overlapping-tile prediction are the very functions ``predict`` and ``evaluate`` use, so an
online answer equals a batch one. The model itself is the ``torch.export`` program the train
entry point logged: serving needs torch, not the package's code or its training framework.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geomlops.errors import ValidationFailed
from geomlops.ml.raster import MASK_NODATA, Raster
from geomlops.ml.runtime import LoadedModel, load_model
from geomlops.ml.scaling import normalise
from geomlops.ml.tiling import predict_probabilities
from geomlops.model.io import ModelIO
from geomlops.model.kinds import OutputKind
from geomlops.model.resolve import ResolvedModel
from geomlops.settings import Settings
from geomlops.transformers.postprocess import raster_nodata, to_raster
from geomlops.transformers.raster_to_vector import payload


def select_device() -> torch.device:
    """CUDA when present, else CPU (as the package entry points' ``auto``)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """One loaded model version: ``predict(raster)`` -> the payload for the output transformer.

    A class mask is the argmax of the model's scores; a probability or continuous output its
    one channel (:func:`geomlops.transformers.postprocess.to_raster`). A chip classifier has
    no per-pixel raster: it is refused when loaded, until serving runs one.
    """

    def __init__(
        self,
        resolved: ResolvedModel,
        model: LoadedModel,
        *,
        device: torch.device,
        overlap: int,
        batch_size: int,
        with_probabilities: bool = True,
    ) -> None:
        self.resolved = resolved
        self.spec = ModelIO.from_item(resolved.mlm_item)
        if not self.spec.kind.rasterised:
            raise ValidationFailed(
                f"model {resolved.name} v{resolved.version}: its output is {self.spec.kind.value}"
                ", which serving does not run yet (it serves per-pixel outputs)"
            )
        self.model = model
        self.device = device
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
        """Load ``resolved`` through the platform's one loading function, on the best device.

        A ``torch.export`` program in process; a pyfunc model (``mlm:artifact_type``
        ``mlflow.pyfunc``) in a subprocess in its package's environment
        (:func:`geomlops.ml.runtime.load_model`).
        """
        ModelIO.from_item(resolved.mlm_item)  # refuse an unusable item before downloading
        folder = cache_dir or Path(tempfile.gettempdir()) / "geomlops-serving"
        model = load_model(
            resolved.name, resolved.artifact_uri, resolved.runtime, settings, cache_dir=folder
        )
        device = getattr(model, "torch_device", None) or torch.device("cpu")
        return cls(
            resolved,
            model,
            device=device,
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

    def probabilities(self, raster: Raster) -> tuple[np.ndarray, np.ndarray]:
        """(per-class probabilities K x H x W, no-data pixels H x W) of ``raster``."""
        data = raster.data
        if self.spec.nodata is not None:
            data = np.where(data == self.spec.nodata, np.nan, data).astype("float32")
        probabilities = predict_probabilities(
            self.model,
            normalise(data, self.spec.mean, self.spec.stddev),
            patch_size=self.spec.patch_size,
            overlap=self.overlap,
            device=self.device,
            batch_size=self.batch_size,
            softmax=self.spec.kind is OutputKind.CLASS_MASK,
        )
        return probabilities, np.isnan(data).any(axis=0)

    def predict(self, raster: Raster, masked: np.ndarray | None = None) -> dict[str, Any]:
        """The payload (``jsonData``) of ``raster`` (bands in the model's order).

        ``masked``: pixels a pipeline's mask model masked (H x W, True = masked); they
        become no data, as pixels without data do, so the transformer draws nothing there.
        """
        probabilities, missing = self.probabilities(raster)
        kind = self.spec.kind  # the output's kind chooses the raster (and the transformer's work)
        raster_out = to_raster(kind, probabilities)
        raster_out[missing] = raster_nodata(kind)
        if masked is not None:
            raster_out[masked] = raster_nodata(kind)
        confidence = None
        if self.with_probabilities and kind is OutputKind.CLASS_MASK:
            # The confidence of the chosen class (H x W) is all the transformer needs for each
            # polygon's mean confidence, at 1/K of the bytes of every class's probability.
            confidence = probabilities.max(axis=0)
        return payload.encode(
            raster_out,
            raster.transform,
            raster.crs,
            classes=[asdict(c) for c in self.spec.classes],
            nodata=MASK_NODATA if kind is OutputKind.CLASS_MASK else None,
            probabilities=confidence,
            compress=True,
            output=self.spec.output_spec,
        )
