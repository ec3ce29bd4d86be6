"""The model of cloud-s2: s2cloudless's LightGBM pixel classifier as an MLflow pyfunc model.

The train entry point logs :class:`CloudProbability` with the booster file the s2cloudless
wheel ships as the model's artifact, so a model version carries its own weights (and their
sha256 in the run's params): loading it needs s2cloudless and LightGBM, which live in this
package's environment only, never the platform's.

Input and output follow the platform's runtime contract (model_packages/README.md): float32
``N x C x H x W`` after the MLM item's normalisation (here reflectance = value / 10000, the
ten bands s2cloudless reads, in its order) -> float32 ``N x 1 x H x W`` cloud probability.
The classifier is per pixel: nothing is smoothed or dilated (s2cloudless's mask
post-processing is not the probability).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np

BOOSTER_ARTIFACT = "booster"
"""Key of the LightGBM booster file among the pyfunc model's artifacts."""

BANDS = 10
"""s2cloudless without ``all_bands`` reads B01, B02, B04, B05, B08, B8A, B09, B10, B11, B12."""


def cloud_probability(detector: Any, batch: np.ndarray) -> np.ndarray:
    """``N x 10 x H x W`` reflectance -> ``N x 1 x H x W`` float32 cloud probability."""
    batch = np.asarray(batch, dtype="float32")
    if batch.ndim != 4 or batch.shape[1] != BANDS:
        raise ValueError(
            f"cloud-s2 takes N x {BANDS} x H x W reflectance (bands B1, B2, B4, B5, B8, B8A, "
            f"B9, B10, B11, B12), got shape {batch.shape}"
        )
    probability = detector.get_cloud_probability_maps(np.moveaxis(batch, 1, -1))
    return probability[:, np.newaxis].astype("float32")


def detector_for(booster_file: str) -> Any:
    """s2cloudless's detector on ``booster_file``, per pixel (no averaging, no dilation)."""
    from s2cloudless import S2PixelCloudDetector

    return S2PixelCloudDetector(
        all_bands=False, average_over=None, dilation_size=None, model_filename=booster_file
    )


class CloudProbability(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """Cloud probability of every pixel of a batch of reflectance tiles."""

    def load_context(self, context: Any) -> None:
        """Load the booster logged with the model (lazily by s2cloudless: first predict)."""
        self.detector = detector_for(context.artifacts[BOOSTER_ARTIFACT])

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """``N x 10 x H x W`` float32 reflectance -> ``N x 1 x H x W`` cloud probability.

        Unannotated on purpose: MLflow reads a type hint here as a schema of its own (and
        warns about ``Any``); the logged signature (a float32 tensor) is the schema.
        """
        return cloud_probability(self.detector, np.asarray(model_input))
