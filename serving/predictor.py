"""A resolved model version, loaded, answering "which class is each pixel" for a GeoTIFF.

Everything the model needs to read an image is taken from the MLM item it was trained with
(bands by name, z-score statistics, patch size, classes), and the heavy lifting is the
shared model-package code (:mod:`geomlops.ml`): band selection, normalisation and the
overlapping-tile prediction are the very functions ``predict`` and ``evaluate`` use, so an
online answer equals a batch one. The model itself is the ``torch.export`` program the train
entry point logged: serving needs torch, not the package's code or its training framework.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geomlops.errors import ValidationFailed
from geomlops.ml.raster import MASK_NODATA, Raster
from geomlops.ml.scaling import normalise
from geomlops.ml.tiling import predict_probabilities
from geomlops.serving.artifacts import download
from geomlops.serving.resolve import ResolvedModel
from geomlops.settings import Settings
from geomlops.transformers.raster_to_vector import payload


@dataclass(frozen=True)
class MlmSpec:
    """The parts of an MLM item that say how to feed the model and read its answer."""

    bands: list[str]
    mean: list[float]
    stddev: list[float]
    patch_size: int
    classes: list[dict[str, Any]]
    nodata: float | None
    """A band value meaning "no data", from the item's ``bands[].nodata`` when recorded."""

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> MlmSpec:
        """Read and check ``mlm:input[0]`` and ``mlm:output[0]``; problems name the field."""
        props = item.get("properties", {})
        try:
            given = props["mlm:input"][0]
            output = props["mlm:output"][0]
            bands = [b if isinstance(b, str) else b["name"] for b in given["bands"]]
            scaling = given["value_scaling"]
            patch_size = int(given["input"]["shape"][-1])
            classes = [
                {"value": int(c["value"]), "name": str(c["name"])}
                for c in output["classification:classes"]
            ]
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise ValidationFailed(
                f"the model's MLM item lacks what serving needs: {error!r}",
                hint="mlm:input[0] needs bands, input.shape and value_scaling; mlm:output[0] "
                "needs classification:classes",
            ) from None
        if len(scaling) != len(bands) or any(s.get("type") != "z-score" for s in scaling):
            raise ValidationFailed(
                "mlm:input[0].value_scaling must hold one z-score entry per band",
                hint="run `python -m geomlops.ml.scaling PACKAGE_DIR --write` and retrain",
            )
        nodata = {b.get("nodata") for b in props.get("bands", []) if isinstance(b, dict)}
        return cls(
            bands=bands,
            mean=[float(s["mean"]) for s in scaling],
            stddev=[float(s["stddev"]) for s in scaling],
            patch_size=patch_size,
            classes=classes,
            nodata=nodata.pop() if len(nodata) == 1 and None not in nodata else None,
        )


def select_device() -> torch.device:
    """CUDA when present, else CPU (as the package entry points' ``auto``)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """One loaded model version: ``predict(raster)`` -> the mask payload for the transformer."""

    def __init__(
        self,
        resolved: ResolvedModel,
        model: torch.nn.Module,
        *,
        device: torch.device,
        overlap: int,
        batch_size: int,
        with_probabilities: bool = True,
    ) -> None:
        self.resolved = resolved
        self.spec = MlmSpec.from_item(resolved.mlm_item)
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
        """Download the exported program of ``resolved`` and load it on the best device."""
        MlmSpec.from_item(resolved.mlm_item)  # refuse an unusable item before downloading
        folder = cache_dir or Path(tempfile.gettempdir()) / "geomlops-serving"
        target = folder / f"{resolved.name}-v{resolved.version}.pt2"
        if not target.is_file():
            download(resolved.model_file_uri, target, settings=settings)
        device = select_device()
        model = torch.export.load(str(target)).module().to(device)
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
            "stac_item_id": self.resolved.stac_item_id,
        }

    def predict(self, raster: Raster) -> dict[str, Any]:
        """The mask payload (``jsonData``) of ``raster`` (bands in the model's order)."""
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
        )
        missing = np.isnan(data).any(axis=0)
        mask = probabilities.argmax(axis=0).astype("uint8")
        mask[missing] = MASK_NODATA
        # The confidence of the chosen class (H x W) is all the transformer needs for each
        # polygon's mean confidence, at 1/K of the bytes of every class's probability.
        confidence = probabilities.max(axis=0) if self.with_probabilities else None
        return payload.encode(
            mask,
            raster.transform,
            raster.crs,
            classes=self.spec.classes,
            nodata=MASK_NODATA,
            probabilities=confidence,
            compress=True,
        )
