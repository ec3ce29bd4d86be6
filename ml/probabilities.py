"""Blending overlapping tiles' probabilities, and reading a class mask from them (numpy only).

Tiles of ``patch_size`` overlap, and each tile's probabilities are blended with a weight
that falls towards its edges, where a convolutional network sees the least context; this
removes the seams a plain mosaic of tiles shows. A scene smaller than one tile is padded
with zeros (the mean after normalisation) and cropped back. The model is any callable
answering probabilities for a batch, whatever runs it (:mod:`geomlops.ml.runtime`), so this
module needs no torch: serving, batch inference and publishing import it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from geomlops.ml.split import window_starts
from geomlops.model.io import ModelIO

Probabilities = Callable[[np.ndarray], np.ndarray]
"""Normalised float32 (B x C x H x W) -> probabilities (B x K x H x W), as a numpy array:
what :func:`geomlops.ml.runtime.load_model` returns, whatever runs the model."""


def edge_weight(size: int, overlap: int) -> np.ndarray:
    """2-D blending weight: 1 in the middle, falling linearly over ``overlap`` to the edge."""
    ramp = max(overlap, 1)
    distance = np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5)
    line = np.clip(distance / ramp, 1.0 / ramp, 1.0).astype("float32")
    return np.outer(line, line)


def blend_probabilities(
    model: Probabilities,
    scaled: np.ndarray,
    *,
    patch_size: int,
    overlap: int,
    batch_size: int = 8,
) -> np.ndarray:
    """Blended probabilities (K x H x W, float32) of a model already answering probabilities."""
    if not 0 <= overlap < patch_size // 2 + 1:
        raise ValueError(f"overlap {overlap} must be in [0, {patch_size // 2}]")
    _, height, width = scaled.shape
    padded_h, padded_w = max(height, patch_size), max(width, patch_size)
    if (padded_h, padded_w) != (height, width):
        scaled = np.pad(scaled, ((0, 0), (0, padded_h - height), (0, padded_w - width)))
    stride = patch_size - overlap
    windows = [
        (r, c)
        for r in window_starts(padded_h, patch_size, stride)
        for c in window_starts(padded_w, patch_size, stride)
    ]
    weight = edge_weight(patch_size, overlap)
    total: np.ndarray | None = None
    weights = np.zeros((padded_h, padded_w), dtype="float32")
    for first in range(0, len(windows), batch_size):
        chunk = windows[first : first + batch_size]
        batch = np.stack([scaled[:, r : r + patch_size, c : c + patch_size] for r, c in chunk])
        probabilities = np.asarray(model(np.ascontiguousarray(batch)), dtype="float32")
        if total is None:
            total = np.zeros((probabilities.shape[1], padded_h, padded_w), dtype="float32")
        for (r, c), tile in zip(chunk, probabilities, strict=True):
            total[:, r : r + patch_size, c : c + patch_size] += tile * weight
            weights[r : r + patch_size, c : c + patch_size] += weight
    assert total is not None  # noqa: S101 - at least one window always exists
    return (total / weights)[:, :height, :width]


def class_mask(probabilities: np.ndarray, io: ModelIO) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 mask, confidence of the chosen class) of blended probabilities (K x H x W).

    Per-class scores: argmax. A probability output: its class where the probability reaches
    the threshold, ``not_<class>`` elsewhere (:meth:`ModelIO.mask_classes`).
    """
    if io.threshold is None:
        return probabilities.argmax(axis=0).astype("uint8"), probabilities.max(axis=0)
    (only,) = io.classes
    other = next(c.value for c in io.mask_classes() if c.value != only.value)
    probability = probabilities[0]
    hit = probability >= io.threshold
    mask = np.where(hit, only.value, other).astype("uint8")
    return mask, np.where(hit, probability, 1.0 - probability)
