"""A composed pipeline on the local stack: batch inference and serving, end to end.

Two small torch stand-in models are logged to the stack's MLflow as ``torch.export``
programs, registered, given the ``production`` alias and their catalog items (as
``tests/serving/test_serving.py`` does: promotion proper is governance's):

- ``standin-water`` reads flood-water-s2's 13 bands (its MLM item) and says "water" where
  the normalised green band is above the near-infrared one;
- ``standin-cloud`` outputs a one-channel probability, as cloud-s2 does (the kinds
  contract's ``cloud-probability`` with ``geomlops:threshold`` 0.4): 1 where band B2 (blue)
  is above the chip's 80th percentile, else 0. So the masked pixels are known from the chip.

A pipeline spec names the two; ``geomlops infer --pipeline`` over the Spain chip must
publish a COG whose masked pixels are no data, polygons that leave them out, and items
whose lineage names both versions; ``geomlops serve --pipeline`` answers the same way.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio
import torch
from rasterio.features import geometry_mask
from rasterio.windows import from_bounds
from stack_support import SPAIN_CHIP, sample, spain_aoi_file
from typer.testing import CliRunner

from geomlops.catalog.client import CatalogClient
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.ml.raster import MASK_NODATA
from geomlops.model.ids import MODELS_COLLECTION, model_item_id
from geomlops.model.stages import STAGE_PROPERTY
from geomlops.workflows.inference.storage import get_file

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
WATER, CLOUD = "standin-water", "standin-cloud"
BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
runner = CliRunner()


class _Water(torch.nn.Module):
    """Water where normalised green (B3) exceeds near-infrared (B8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ndwi = x[:, 2:3] - x[:, 7:8]
        return torch.cat([-ndwi, ndwi], dim=1)


class _Cloud(torch.nn.Module):
    """A probability of 1 where the raw blue band exceeds ``threshold``, else 0."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :1] > self.threshold).float()


def _blue_threshold() -> float:
    with rasterio.open(sample(SPAIN_CHIP)) as src:
        blue = src.read(BANDS.index("B2") + 1).astype("float64")
    return float(np.percentile(blue[blue > 0], 80))


def _items() -> tuple[dict[str, Any], dict[str, Any]]:
    """MLM items of the stand-ins: flood-water-s2's for water; cloud-s2's contract for cloud."""
    water = json.loads((REPO / "model_packages/flood-water-s2/mlm.json").read_text())
    cloud = json.loads(json.dumps(water))
    props = cloud["properties"]
    props["mlm:name"] = CLOUD
    props["mlm:input"][0].update(
        bands=["B2"],
        input={"shape": [-1, 1, 64, 64], "dim_order": ["batch", "bands", "height", "width"],
               "data_type": "float32"},
        value_scaling=[{"type": "z-score", "mean": 0.0, "stddev": 1.0}],
    )  # fmt: skip
    props["mlm:output"] = [
        {
            "name": "cloud-probability",
            "tasks": ["semantic-segmentation"],
            "result": {
                "shape": [-1, 1, 64, 64],
                "dim_order": ["batch", "channel", "height", "width"],
                "data_type": "float32",
            },
            "classification:classes": [
                {"value": 1, "name": "cloud", "description": "Cloud (probability)"}
            ],
            "geomlops:threshold": 0.4,
        }
    ]
    water["properties"]["mlm:name"] = WATER
    return water, cloud


def _register(
    stack: Connections, name: str, module: torch.nn.Module, item: dict[str, Any]
) -> tuple[str, str]:
    """Log, register and alias ``module`` as ``name``'s production version; its item id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(stack.mlflow_tracking_uri)
    mlflow.set_experiment("pipeline-test")
    bands = len(item["properties"]["mlm:input"][0]["bands"])
    with mlflow.start_run() as run, warnings.catch_warnings():
        # MLflow reads forward()'s type hints for a signature and warns that a Tensor hint
        # is "Any"; the pt2 program's own signature comes from the input example.
        warnings.filterwarnings("ignore", ".*Any type hint is inferred", UserWarning)
        info = mlflow.pytorch.log_model(
            module.eval(), name="model", serialization_format="pt2",
            input_example=np.zeros((2, bands, 64, 64), dtype="float32"),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )  # fmt: skip
    client = MlflowClient(stack.mlflow_tracking_uri)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = str(
        client.create_model_version(
            name, f"models:/{info.model_id}", run_id=run.info.run_id, model_id=info.model_id
        ).version
    )
    item = json.loads(json.dumps(item))
    item["id"] = model_item_id(name, version)
    item["properties"].update({"version": version, STAGE_PROPERTY: "production"})
    with CatalogClient.from_settings() as catalog:
        catalog.upsert_item(item, MODELS_COLLECTION)
    client.set_registered_model_alias(name, "production", version)
    return version, item["id"]


@pytest.fixture(scope="module")
def models(stack: Connections) -> Iterator[dict[str, Any]]:
    """Both stand-ins in production; the blue threshold the cloud one applies."""
    from mlflow.tracking import MlflowClient

    threshold = _blue_threshold()
    water_item, cloud_item = _items()
    water = _register(stack, WATER, _Water(), water_item)
    cloud = _register(stack, CLOUD, _Cloud(threshold), cloud_item)
    yield {"water": water, "cloud": cloud, "threshold": threshold}
    client = MlflowClient(stack.mlflow_tracking_uri)
    with CatalogClient.from_settings() as catalog:
        for name, (_, item_id) in ((WATER, water), (CLOUD, cloud)):
            client.delete_registered_model_alias(name, "production")
            catalog.delete_item(MODELS_COLLECTION, item_id)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "clear-sky.yaml"
    path.write_text(
        f"pipeline: standin-clear-sky\nmodel: {WATER}\n"
        f"mask:\n  model: {CLOUD}\n  output: cloud-probability\n"
    )
    return path


@pytest.fixture(scope="module")
def spain(stack: Connections, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chip ingested as a scene; returns the AOI file covering it."""
    return spain_aoi_file(tmp_path_factory.mktemp("aoi"))


@pytest.fixture(autouse=True)
def _through_the_local_api(argo: str) -> None:
    """Runs go to the in-process Argo API."""


def _interior(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` whose eight neighbours are in it too (boundaries are shared)."""
    padded = np.pad(mask, 1, constant_values=False)
    out = mask.copy()
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            out &= padded[1 + dr : 1 + dr + mask.shape[0], 1 + dc : 1 + dc + mask.shape[1]]
    return out


def _chip_window(bounds: Any, *bands: str) -> np.ndarray:
    with rasterio.open(sample(SPAIN_CHIP)) as src:
        window = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        return src.read([BANDS.index(b) + 1 for b in bands], window=window).astype("float64")


def _water_pixels(features: list[dict], shape: tuple[int, int], transform: Any) -> np.ndarray:
    water = [f["geometry"] for f in features if f["properties"]["class_name"] == "water"]
    assert water, "the stand-in finds water in the clear part of the chip"
    return geometry_mask(water, out_shape=shape, transform=transform, invert=True)


def test_batch_pipeline_masks_publishes_and_names_both_versions(
    models: dict[str, Any], spec: Path, spain: Path, stack: Connections, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        ["infer", "--pipeline", str(spec), "--aoi", str(spain),
         "--datetime", "2019-09-01/2019-09-30", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "COMPLETED"
    published = summary["published"]
    (mask_uri,) = published["masks"]
    with rasterio.open(get_file(stack, mask_uri, tmp_path / "mask.tif")) as src:
        mask, transform, bounds = src.read(1), src.transform, src.bounds
    blue, green, nir = _chip_window(bounds, "B2", "B3", "B8")
    assert blue.shape == mask.shape
    cloud = blue > models["threshold"]
    core = np.zeros_like(cloud)
    core[2:-2, 2:-2] = True  # away from the AOI's edge (pixel centres decide there)
    assert cloud[core].mean() > 0.05  # the stand-in masks a real part of the chip
    assert (mask[cloud & core] == MASK_NODATA).all()
    clear = ~cloud & core & (blue > 0)
    assert (mask[clear] != MASK_NODATA).all() and (mask[clear] == 1).any()
    # The control: the water model alone would claim water under the "cloud".
    water_item = json.loads((REPO / "model_packages/flood-water-s2/mlm.json").read_text())
    scaling = water_item["properties"]["mlm:input"][0]["value_scaling"]
    z = [(band - scaling[BANDS.index(name)]["mean"]) / scaling[BANDS.index(name)]["stddev"]
         for band, name in ((green, "B3"), (nir, "B8"))]  # fmt: skip
    assert ((z[0] > z[1]) & cloud & core).sum() > 100

    geojson = json.loads(get_file(stack, published["vectors"], tmp_path / "v.geojson").read_text())
    covered = _water_pixels(geojson["features"], mask.shape, transform)
    assert not (covered & _interior(cloud) & core).any()

    run = summary["run"]
    water_version, water_id = models["water"]
    cloud_version, cloud_id = models["cloud"]
    with CatalogClient.from_settings() as catalog:
        item = catalog.get_item_dict("predictions", run)
    derived = {link["href"].rsplit("/", 1)[-1] for link in item["links"]
               if link["rel"] == "derived_from"}  # fmt: skip
    assert {water_id, cloud_id} <= derived
    contributed = item["properties"]["geomlops:models"]
    assert [(m["role"], m["name"], m["version"]) for m in contributed] == [
        ("model", WATER, water_version),
        ("mask", CLOUD, cloud_version),
    ]
    assert contributed[1]["rule"] == "cloud-probability >= 0.4"
    assert item["properties"]["geomlops:stats"]["masked_area_km2"] > 0
    assert CLOUD in item["properties"]["processing:lineage"]

    lineage = runner.invoke(app, ["lineage", run, "--json"])
    tree = json.loads(lineage.stdout)
    versions = {c["label"]: c for c in tree["children"] if c["kind"] == "model version"}
    assert set(versions) == {water_id, cloud_id}
    assert versions[cloud_id]["facts"]["role"] == "mask"


def test_a_model_alone_still_names_one_version_and_masks_nothing(
    models: dict[str, Any], spain: Path, stack: Connections, tmp_path: Path
) -> None:
    """The same primary without --pipeline: one contributing version, no masked area."""
    result = runner.invoke(
        app,
        ["infer", WATER, "--aoi", str(spain), "--datetime", "2019-09-01/2019-09-30", "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    (mask_uri,) = summary["published"]["masks"]
    with rasterio.open(get_file(stack, mask_uri, tmp_path / "mask.tif")) as src:
        mask, bounds = src.read(1), src.bounds
    (blue,) = _chip_window(bounds, "B2")
    cloud = blue > models["threshold"]
    assert (mask[2:-2, 2:-2][cloud[2:-2, 2:-2]] != MASK_NODATA).all()  # nothing masked
    with CatalogClient.from_settings() as catalog:
        item = catalog.get_item_dict("predictions", summary["run"])
    water_version, water_id = models["water"]
    assert [(m["role"], m["version"]) for m in item["properties"]["geomlops:models"]] == [
        ("model", water_version)
    ]
    assert "masked_area_km2" not in item["properties"]["geomlops:stats"]
    tree = json.loads(runner.invoke(app, ["lineage", summary["run"], "--json"]).stdout)
    versions = [c for c in tree["children"] if c["kind"] == "model version"]
    assert [(c["label"], c["ok"]) for c in versions] == [(water_id, True)]


class _Served:
    """A running `geomlops serve --pipeline` process and its URL."""

    def __init__(self, spec: Path) -> None:
        self.process = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "geomlops"), "serve", "--pipeline", str(spec)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ}, text=True,
        )  # fmt: skip
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            self.process.wait(timeout=30)
            pytest.fail(f"geomlops serve exited: {self.process.stderr.read()}")  # type: ignore[union-attr]
        self.url = json.loads(line)["url"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.skipif(
    not (REPO / ".venv-serving" / "bin" / "python").exists(),
    reason=".venv-serving is missing: `make install` builds it",
)
def test_serve_pipeline_answers_only_where_clear_and_names_both_versions(
    models: dict[str, Any], spec: Path
) -> None:
    served = _Served(spec)
    try:
        chip = sample(SPAIN_CHIP).read_bytes()
        body = {"binData": base64.b64encode(chip).decode()}
        response = httpx.post(f"{served.url}/api/v1.0/predictions", json=body, timeout=300)
        assert response.status_code == 200, response.text
        answer = response.json()
        metadata = httpx.get(f"{served.url}/api/v1.0/metadata", timeout=30).json()
    finally:
        served.stop()
    tags = answer["meta"]["tags"]
    assert (tags["model_name"], tags["model_version"]) == (WATER, models["water"][0])
    assert (tags["mask_model_name"], tags["mask_model_version"]) == (CLOUD, models["cloud"][0])
    assert tags["mask_rule"] == "cloud-probability >= 0.4"
    assert set(metadata["models"]) == {"raster-to-vector", "mask", "model"}
    with rasterio.open(sample(SPAIN_CHIP)) as src:
        blue = src.read(BANDS.index("B2") + 1).astype("float64")
        covered = _water_pixels(answer["jsonData"]["features"], blue.shape, src.transform)
    cloud = blue > models["threshold"]
    assert cloud.mean() > 0.05
    assert not (covered & _interior(cloud)).any()
    assert (covered & ~cloud).any()
