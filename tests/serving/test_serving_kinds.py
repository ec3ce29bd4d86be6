"""The serving model component answers by its output's kind (no stack: a stand-in model).

A probability model's answer is its one channel as float32 (no softmax, NaN where no data)
with its ``output`` in the payload, so the output transformer draws the polygons above its
threshold; a flood model's payload is unchanged (no ``output``, a uint8 ``mask``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from affine import Affine
from rasterio.crs import CRS

from geomlops.ml.raster import Raster
from geomlops.model.resolve import ResolvedModel
from geomlops.serving.predictor import Predictor
from geomlops.transformers.postprocess import RasterPrediction, postprocess
from geomlops.transformers.raster_to_vector import payload

REPO = Path(__file__).resolve().parents[2]
FLOOD = json.loads((REPO / "model_packages/flood-water-s2/mlm.json").read_text())
PATCH = FLOOD["properties"]["mlm:input"][0]["input"]["shape"][-1]


def _item(output: dict | None) -> dict:
    item = copy.deepcopy(FLOOD)
    if output is not None:
        item["properties"]["mlm:output"] = [output]
    return item


def _resolved(item: dict) -> ResolvedModel:
    return ResolvedModel(
        name="stand-in", version="1", stage="production", item_id="stand-in-mv1", item=item,
        artifact_uri="s3://nowhere/model",
    )  # fmt: skip


class _FirstBand(torch.nn.Module):
    """One channel: the sigmoid of the first band's z-score; or two logits (±it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 1:
            return torch.sigmoid(x[:, :1])
        return torch.cat([-x[:, :1], x[:, :1]], dim=1)


def _raster() -> Raster:
    io = FLOOD["properties"]["mlm:input"][0]
    mean = np.array([s["mean"] for s in io["value_scaling"]], dtype="float32")
    std = np.array([s["stddev"] for s in io["value_scaling"]], dtype="float32")
    data = np.repeat(mean[:, None, None], PATCH * PATCH, axis=1).reshape(-1, PATCH, PATCH)
    data = data.copy()
    data[0, :, : PATCH // 2] += 2 * std[0]  # left half: z = 2 in the first band
    data[0, :, PATCH // 2 :] -= 2 * std[0]  # right half: z = -2
    data[:, :4, :] = np.nan  # no data along the top
    return Raster(data, CRS.from_epsg(32630), Affine(10, 0, 500000, 0, -10, 4400000))


def test_a_probability_model_answers_its_values_and_kind() -> None:
    result = {
        "shape": [-1, 1, PATCH, PATCH],
        "dim_order": ["batch", "channel", "height", "width"],
        "data_type": "float32",
    }
    output = {
        "name": "water-probability",
        "tasks": ["semantic-segmentation"],
        "result": result,
        "classification:classes": [{"value": 1, "name": "water"}],
        "geomlops:threshold": 0.5,
    }
    predictor = Predictor(
        _resolved(_item(output)), _FirstBand(1), device=torch.device("cpu"), overlap=0,
        batch_size=2,
    )  # fmt: skip
    answer = predictor.predict(_raster())
    assert "mask" not in answer and answer["output"]["kind"] == "probability"
    decoded = payload.decode(json.loads(json.dumps(answer)))
    values = decoded.mask
    assert values.dtype == np.float32 and np.isnan(values[:4]).all()
    sigmoid_2 = 1 / (1 + np.exp(-2.0))
    assert np.allclose(values[4:, : PATCH // 2], sigmoid_2, atol=1e-5)  # not softmax's 1.0
    assert np.allclose(values[4:, PATCH // 2 :], 1 - sigmoid_2, atol=1e-5)
    processed = postprocess(decoded.spec, RasterPrediction(values, decoded.transform, decoded.crs))
    (water,) = processed.polygons
    assert water.name == "water" and water.area_m2 > 0
    assert processed.stats["above_threshold_pixels"] == (PATCH - 4) * (PATCH // 2)


def test_a_flood_payload_is_unchanged() -> None:
    predictor = Predictor(
        _resolved(_item(None)), _FirstBand(2), device=torch.device("cpu"), overlap=0,
        batch_size=2, with_probabilities=False,
    )  # fmt: skip
    answer = predictor.predict(_raster())
    assert set(answer) == {"mask", "transform", "crs", "nodata", "classes"}
    mask = payload.decode(answer).mask
    assert mask.dtype == np.uint8 and (mask[:4] == 255).all()
    assert (mask[4:, : PATCH // 2] == 1).all() and (mask[4:, PATCH // 2 :] == 0).all()
