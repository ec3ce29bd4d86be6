"""Sliding-window inference of a torch model answering logits, over a scene of any size.

The blending of overlapping tiles is :mod:`geomlops.ml.probabilities`' (numpy only); this
module turns a torch model's logits into the probabilities it blends.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from geomlops.ml.probabilities import Probabilities, blend_probabilities

Model = Callable[[torch.Tensor], torch.Tensor]
"""Normalised float32 (B x C x H x W) -> logits (B x K x H x W)."""


@torch.inference_mode()
def predict_probabilities(
    model: Model,
    scaled: np.ndarray,
    *,
    patch_size: int,
    overlap: int,
    device: torch.device,
    batch_size: int = 8,
) -> np.ndarray:
    """Class probabilities (K x H x W, float32) of a torch ``model`` for bands (C x H x W)."""
    return blend_probabilities(
        as_probabilities(model, device),
        scaled,
        patch_size=patch_size,
        overlap=overlap,
        batch_size=batch_size,
    )


def as_probabilities(model: Model, device: torch.device) -> Probabilities:
    """A torch ``model`` answering logits, as a numpy callable answering softmax probabilities."""

    def probabilities(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = model(torch.from_numpy(np.ascontiguousarray(batch)).to(device))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    return probabilities
