"""A pipeline's SeldonDeployment and the message its mask model hands the model.

The manifest is checked against the SeldonDeployment CRD's schema; the local router walks
the same graph. The gate message and the model's masking run here on a generated GeoTIFF
with a stand-in torch model (the components themselves need the serving environment: the
stack test ``tests/workflows/test_pipeline_stack.py`` runs them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rasterio.crs import CRS
from rasterio.transform import from_origin
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.ml.raster import MASK_NODATA, Raster
from geomlops.model.io import ModelIO
from geomlops.model.pipeline import load_pipeline
from geomlops.serving.gate import check_grid, gated_message, split_gated
from geomlops.serving.inputs import InputRejected
from geomlops.serving.manifest import (
    MASK_CLASS,
    MODEL_CLASS,
    graph_nodes,
    pipeline_deployment,
    schema_problems,
)
from geomlops.serving.predictor import Predictor
from geomlops.settings import get_settings
from geomlops.transformers.raster_to_vector import payload

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "model_packages" / "flood-water-s2" / "pipelines" / "clear-sky.yaml"
runner = CliRunner()

needs_schema = pytest.mark.skipif(
    get_settings().serving.seldon_schema is None,
    reason="SeldonDeployment schema not present (set GEOMLOPS_SERVING_SELDON_SCHEMA)",
)


@needs_schema
def test_pipeline_graph_is_mask_model_then_model_then_transformer() -> None:
    manifest = pipeline_deployment(load_pipeline(EXAMPLE))
    assert schema_problems(manifest) == []
    graph = manifest["spec"]["predictors"][0]["graph"]
    walk = [(n["name"], n["type"]) for n in graph_nodes(graph)]
    assert walk == [
        ("raster-to-vector", "OUTPUT_TRANSFORMER"),
        ("mask", "MODEL"),
        ("model", "MODEL"),
    ]
    mask, model = graph_nodes(graph)[1:]
    params = {p["name"]: p["value"] for p in mask["parameters"]}
    assert params == {"model_name": "cloud-s2", "output": "cloud-probability", "drop": "above"}
    assert {p["name"]: p["value"] for p in model["parameters"]} == {"model_name": "flood-water-s2"}
    spec = manifest["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    classes = {c["name"]: {e["value"] for e in c["env"]} for c in spec["containers"]}
    assert MASK_CLASS in classes["mask"] and MODEL_CLASS in classes["model"]
    assert manifest["metadata"]["name"] == "flood-water-s2-clear-sky"
    assert manifest["metadata"]["labels"]["geomlops/mask-model"] == "cloud-s2"


@needs_schema
def test_pinned_versions_and_threshold_reach_the_nodes(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "pipeline: p\nmodel: flood-water-s2\nversion: 4\n"
        "mask: {model: cloud-s2, version: 2, threshold: 0.25}\n"
    )
    graph = pipeline_deployment(load_pipeline(path))["spec"]["predictors"][0]["graph"]
    mask, model = graph_nodes(graph)[1:]
    assert {"name": "model_version", "value": "2", "type": "STRING"} in mask["parameters"]
    assert {"name": "threshold", "value": "0.25", "type": "FLOAT"} in mask["parameters"]
    assert {"name": "model_version", "value": "4", "type": "STRING"} in model["parameters"]


@needs_schema
def test_cli_prints_the_pipeline_manifest_and_refuses_a_bad_spec(tmp_path: Path) -> None:
    printed = runner.invoke(app, ["serve", "manifest", "--pipeline", str(EXAMPLE), "--json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == pipeline_deployment(load_pipeline(EXAMPLE))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"pipeline": "p", "model": "a", "mask": {"modle": "b"}}))
    refused = runner.invoke(app, ["serve", "manifest", "--pipeline", str(bad)])
    assert refused.exit_code == 2
    assert "mask.modle" in refused.output and "mask.model" in refused.output
    both = runner.invoke(app, ["serve", "manifest", "flood-water-s2", "--pipeline", str(EXAMPLE)])
    assert both.exit_code == 2


def _raster(size: int = 32) -> Raster:
    rows, cols = np.mgrid[0:size, 0:size]
    data = np.stack([cols.astype("float32"), rows.astype("float32")])
    return Raster(data, CRS.from_epsg(4326), from_origin(-0.78, 38.12, 0.0001, 0.0001))


def _predictor(item_io: ModelIO, model: torch.nn.Module) -> Predictor:
    predictor = Predictor.__new__(Predictor)
    predictor.spec, predictor.model = item_io, model
    predictor.device, predictor.overlap = torch.device("cpu"), 4
    predictor.batch_size, predictor.with_probabilities = 4, False
    return predictor


class _Water(torch.nn.Module):
    """Class 1 (water) everywhere: every pixel the gate leaves is water."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(x[:, :1])
        return torch.cat([-ones, ones], dim=1)


def test_the_gate_travels_with_the_request_and_masks_the_model_s_answer() -> None:
    raster = _raster()
    masked = np.zeros((32, 32), dtype=bool)
    masked[:, 20:] = True  # "cloud" over the east
    request = {"binData": "AAAA", "meta": {"tags": {"client": "x"}}}
    message = {"jsonData": gated_message(request, raster, masked)}
    inner, gate = split_gated(message)
    assert inner == {"binData": "AAAA"}  # the image as it came, without meta
    assert gate is not None and (gate == masked).all()
    check_grid(gate, raster)
    with pytest.raises(InputRejected, match=r"jsonData\.gate"):
        check_grid(gate[:16], raster)
    assert split_gated(request) == (request, None)  # a client's own request: no gate

    io = ModelIO(("A", "B"), (0.0, 0.0), (1.0, 1.0), 32, ())
    answer = payload.decode(_predictor(io, _Water()).predict(raster, gate))
    assert (answer.mask[:, 20:] == MASK_NODATA).all()
    assert (answer.mask[:, :20] == 1).all()


def test_a_malformed_gate_is_a_400_naming_it() -> None:
    with pytest.raises(InputRejected, match=r"jsonData\.gate"):
        split_gated({"jsonData": {"request": {"binData": "AAAA"}, "gate": {"mask": 1}}})
