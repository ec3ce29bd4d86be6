"""Sliding-window inference over a scene of any size with a fixed-size model input.

Tiles of ``patch_size`` overlap, and each tile's class probabilities are blended with a
weight that falls towards its edges, where a convolutional network sees the least context;
this removes the seams a plain mosaic of tiles shows. A scene smaller than one tile is
padded with zeros (the mean after normalisation) and cropped back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from geomlops.ml.split import window_starts

Model = Callable[[Any], Any]
"""A torch module (tensor in, logits out), or a model :func:`geomlops.ml.runtime.load_model`
loaded (``takes_numpy``: numpy batch in, numpy scores out)."""


def edge_weight(size: int, overlap: int) -> np.ndarray:
    """2-D blending weight: 1 in the middle, falling linearly over ``overlap`` to the edge."""
    ramp = max(overlap, 1)
    distance = np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5)
    line = np.clip(distance / ramp, 1.0 / ramp, 1.0).astype("float32")
    return np.outer(line, line)


@torch.inference_mode()
def predict_probabilities(
    model: Model,
    scaled: np.ndarray,
    *,
    patch_size: int,
    overlap: int,
    device: torch.device,
    batch_size: int = 8,
    softmax: bool = True,
) -> np.ndarray:
    """Class probabilities (K x H x W, float32) for normalised bands (C x H x W).

    ``model`` is a torch module, or a model :func:`geomlops.ml.runtime.load_model` loaded
    (``takes_numpy``: a numpy batch in, numpy scores out, whatever runs it).
    ``softmax`` turns a class mask's logits (K >= 2) into probabilities before blending; a
    probability or continuous output (``softmax=False``, or one channel, where a softmax
    would make every pixel 1) is blended as the model answered it.
    """
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
        if getattr(model, "takes_numpy", False):  # geomlops.ml.runtime's loaded models
            scores = torch.from_numpy(np.asarray(model(np.ascontiguousarray(batch)))).float()
        else:
            scores = model(torch.from_numpy(np.ascontiguousarray(batch)).to(device)).float()
        if softmax and scores.shape[1] > 1:
            scores = torch.softmax(scores, dim=1)
        probabilities = scores.cpu().numpy()
        if total is None:
            total = np.zeros((probabilities.shape[1], padded_h, padded_w), dtype="float32")
        for (r, c), tile in zip(chunk, probabilities, strict=True):
            total[:, r : r + patch_size, c : c + patch_size] += tile * weight
            weights[r : r + patch_size, c : c + patch_size] += weight
    assert total is not None  # noqa: S101 - at least one window always exists
    return (total / weights)[:, :height, :width]
