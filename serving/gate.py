"""The message a pipeline's mask model hands the primary model in the Seldon graph.

In the graph MODEL(mask) → MODEL(primary) → OUTPUT_TRANSFORMER the executor sends the mask
model's answer, not the client's request, to the primary model. So the mask model answers
with both: the request as it came (its ``binData`` or ``jsonData.url``, untouched) and the
pixels its rule masked, as a mask payload on the image's own grid::

    {"jsonData": {"request": {"binData": "…"}, "gate": {mask payload, 1 = masked}},
     "meta": {"tags": {"mask_model_name": …, "mask_model_version": …, …}}}

The primary model reads the same image with its own bands, predicts, and turns the gated
pixels into no data. The mask model's tags ride along in ``meta.tags`` beside the primary's,
so the answer names every version that contributed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from geomlops.ml.raster import Raster
from geomlops.serving.inputs import InputRejected
from geomlops.transformers.raster_to_vector import payload

REQUEST_KEY = "request"
GATE_KEY = "gate"
IMAGE_KEYS = ("binData", "jsonData", "strData")
"""What of a Seldon message is its image (``meta`` is not: it is passed on as tags)."""


def gated_message(request: Mapping[str, Any], raster: Raster, masked: np.ndarray) -> dict:
    """``jsonData`` for the primary model: the request's image and the masked pixels."""
    return {
        REQUEST_KEY: {k: request[k] for k in IMAGE_KEYS if k in request},
        GATE_KEY: payload.encode(
            masked.astype("uint8"), raster.transform, raster.crs, nodata=None, compress=True
        ),
    }


def split_gated(request: Mapping[str, Any]) -> tuple[Mapping[str, Any], np.ndarray | None]:
    """(the image request, the masked pixels or None) of a message reaching a model.

    A message without a gate is a client's request, returned as it is.
    """
    data = request.get("jsonData")
    if not (isinstance(data, Mapping) and GATE_KEY in data and REQUEST_KEY in data):
        return request, None
    inner = data[REQUEST_KEY]
    if not isinstance(inner, Mapping):
        raise InputRejected("jsonData.request must be the Seldon request the mask model got")
    try:
        gate = payload.decode(data[GATE_KEY])
    except Exception as error:  # a ValidationFailed naming the field, or a malformed one
        raise InputRejected(f"jsonData.gate is not a mask payload: {error}") from None
    return inner, gate.mask.astype(bool)


def check_grid(masked: np.ndarray, raster: Raster) -> None:
    """The gate must lie on the image's grid (both models read the same image)."""
    if masked.shape != raster.data.shape[1:]:
        raise InputRejected(
            f"jsonData.gate has shape {list(masked.shape)}, the image "
            f"{list(raster.data.shape[1:])}: the mask model read another image"
        )
