"""`geomlops serve`: the Seldon graph on the real stack, answering with GeoJSON.

A flood-water-s2 model is trained briefly (4 epochs of the package's own train entry
point, against the stack's MLflow), registered, and given the ``production`` alias directly
with MlflowClient and a catalog item saying so (promotion proper, with its approval rules,
is governance's; resolution only needs the two records to agree). Then the real command
runs in a subprocess, as a person runs it, and is talked to over HTTP.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import rasterio.features
import torch
from shapely.geometry import LinearRing, shape

from geomlops.catalog.client import CatalogClient
from geomlops.connections import Connections
from geomlops.ml.raster import read_bands
from geomlops.model.ids import MODELS_COLLECTION, model_item_id
from geomlops.model.registry import MlflowClientRegistry, RestRegistry
from geomlops.model.resolve import resolve_model
from geomlops.model.stages import STAGE_PROPERTY
from geomlops.package_env import package_env
from geomlops.sample_data import fetch
from geomlops.serving.predictor import Predictor
from geomlops.settings import get_settings
from geomlops.transformers.raster_to_vector import payload, read_mask

REPO = Path(__file__).resolve().parents[2]
CHIP_KEY = "imagery/sen1floods11/Spain_7370579_S2Hand.tif"
LABEL_KEY = "imagery/sen1floods11/Spain_7370579_LabelHand.tif"
PACKAGE = "flood-water-s2"
# The package's model under a registered name of its own: this module records a production
# version behind governance's back, and a version of flood-water-s2 that governance or the
# gateway tests promoted on the same stack would make two (a broken governed record).
MODEL = "serving-flood-s2"
UNPROMOTED = "flood-water-s1"
LIMIT_BYTES = 4_000_000  # the chip is 2.3 MB
LIMIT_PIXELS = 600 * 600  # the chip is 512 x 512

pytestmark = [
    pytest.mark.slow,
    pytest.mark.stack,
    pytest.mark.skipif(
        not (REPO / ".venv-serving" / "bin" / "python").exists(),
        reason=".venv-serving is missing: `make install` builds it",
    ),
]


_REJECTED: dict[str, str] = {}


def _catalog_item(
    client: Any, run_id: str, version: str, stage: str, model: str = MODEL
) -> dict[str, Any]:
    """The version's ``models`` item as the register step writes it: the run's MLM, staged."""
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "model/mlm.json", tmp)
        item = json.loads(Path(path).read_text())
    item["id"] = model_item_id(model, version)
    item["properties"].update({"version": version, STAGE_PROPERTY: stage})
    return item


@pytest.fixture(scope="module")
def promoted(stack: Connections) -> Iterator[str]:
    """Train, register and alias a flood-water-s2 version as production; yields it.

    The alias and the catalog item saying ``production`` are set behind governance's back
    (no audit entry), so both are removed afterwards: modules that run later on the same
    stack must not inherit them. A second version of the same run is registered and
    recorded as rejected (:func:`rejected`).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    # MLflow 3.17 reads a logged model's artifacts (`model/mlm.json` below) through a client
    # it makes with the process's default tracking URI, whatever the one given here.
    mlflow.set_tracking_uri(stack.mlflow_tracking_uri)
    client = MlflowClient(stack.mlflow_tracking_uri)
    experiment = "serving-test"
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment)
    env = {**os.environ, **stack.env(), "MLFLOW_EXPERIMENT_NAME": experiment}
    package = REPO / "model_packages" / PACKAGE
    python = package_env(package, get_settings()).python  # its framework is not in ours
    subprocess.run(
        [str(python), "main.py", "train", "--epochs", "4", "--device", "cpu"],
        cwd=package, env=env, check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (run,) = client.search_runs([experiment_id], max_results=1)
    for name in (MODEL, UNPROMOTED):
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
    tags = {"geomlops.package": PACKAGE}
    version = client.create_model_version(
        MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, tags=tags
    )
    rejected = client.create_model_version(
        MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, tags=tags
    )
    items = [
        _catalog_item(client, run.info.run_id, str(version.version), "production"),
        _catalog_item(client, run.info.run_id, str(rejected.version), "rejected"),
    ]
    with CatalogClient.from_settings() as catalog:
        for item in items:
            catalog.upsert_item(item, MODELS_COLLECTION)
    client.set_registered_model_alias(MODEL, "production", version.version)
    _REJECTED["version"] = str(rejected.version)
    _REJECTED["run_id"] = run.info.run_id
    yield str(version.version)
    client.delete_registered_model_alias(MODEL, "production")
    with CatalogClient.from_settings() as catalog:
        for item in items:
            catalog.delete_item(MODELS_COLLECTION, item["id"])


@pytest.fixture(scope="module")
def rejected(promoted: str) -> str:
    """The version :func:`promoted` registered beside the production one, recorded rejected."""
    return _REJECTED["version"]


class Served:
    """A running `geomlops serve` process and its URL."""

    def __init__(self, model: str, env: dict[str, str], version: str | None = None) -> None:
        self.process = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "geomlops"), "serve", model,
             *(["--version", version] if version else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        line = self.process.stdout.readline()  # one JSON line once ready
        if not line:
            self.process.wait(timeout=30)
            pytest.fail(f"geomlops serve exited: {self.process.stderr.read()}")
        self.url = json.loads(line)["url"]

    def post(self, body: object, **kwargs: object) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v1.0/predictions", json=body, timeout=120, **kwargs)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.process.stdout.close()
        self.process.stderr.close()
        return code


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "GEOMLOPS_SERVING_MAX_INPUT_BYTES": str(LIMIT_BYTES),
        "GEOMLOPS_SERVING_MAX_INPUT_PIXELS": str(LIMIT_PIXELS),
        "GEOMLOPS_SERVING_SKIP_VALUES": "0",
    }


@pytest.fixture(scope="module")
def served(promoted: str) -> Iterator[Served]:
    service = Served(MODEL, _env())
    yield service
    service.stop()


@pytest.fixture(scope="module")
def chip() -> bytes:
    return fetch(CHIP_KEY).read_bytes()


def _water_iou(covered: np.ndarray, label: np.ndarray) -> float:
    valid = label != -1
    water = (label == 1) & valid
    covered = covered & valid
    return float((covered & water).sum() / (covered | water).sum())


def _check_rfc7946(collection: dict) -> None:
    assert collection["type"] == "FeatureCollection"
    for feature in collection["features"]:
        geometry = shape(feature["geometry"])
        assert geometry.is_valid and not geometry.is_empty
        polygons = getattr(geometry, "geoms", [geometry])
        for polygon in polygons:
            assert LinearRing(polygon.exterior.coords).is_ccw  # right-hand rule
            assert all(not LinearRing(r.coords).is_ccw for r in polygon.interiors)
        lon_min, lat_min, lon_max, lat_max = geometry.bounds
        assert -0.79 < lon_min < lon_max < -0.73 and 38.08 < lat_min < lat_max < 38.13


def test_binData_chip_returns_geojson_covering_the_labelled_water(
    served: Served, promoted: str, chip: bytes
) -> None:
    response = served.post({"binData": base64.b64encode(chip).decode()})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["meta"]["tags"] == {
        "model_name": MODEL,
        "model_version": promoted,
        "stac_item_id": f"{MODEL}-mv{promoted}",
        "pinned": False,
    }
    collection = answer["jsonData"]
    _check_rfc7946(collection)
    (water,) = collection["features"]  # not_water (0) is skipped by the settings
    assert water["properties"]["class_name"] == "water"
    assert 0.5 <= water["properties"]["mean_confidence"] <= 1
    label = read_mask(fetch(LABEL_KEY), nodata=-1)
    covered = rasterio.features.rasterize(
        [(shape(water["geometry"]), 1)], out_shape=label.mask.shape, transform=label.transform
    ).astype(bool)
    # The model's own IoU on the chip, computed in-process with the same version.
    predictor = Predictor.load(resolve_model(MODEL), get_settings())
    answer = predictor.predict(read_bands(fetch(CHIP_KEY), predictor.spec.bands))
    model_mask = payload.decode(answer).mask == 1
    model_iou = _water_iou(model_mask, label.mask)
    assert model_iou > 0.5
    assert _water_iou(covered, label.mask) >= model_iou - 0.01


def test_cache_never_serves_another_registry_s_same_version(
    promoted: str, stack: Connections, tmp_path: Path
) -> None:
    """Two registries both have a version 1: each load gets its own weights.

    The cache once kept one file per name and version, so a stack loaded the program another
    stack had cached under the same number and tagged its answers with the wrong model.
    """
    resolved = resolve_model(MODEL)
    other_program = tmp_path / "model.pt2"
    tiny = torch.nn.Conv2d(13, 2, kernel_size=1)
    torch.export.save(torch.export.export(tiny, (torch.zeros(1, 13, 8, 8),)), other_program)
    bucket = get_settings().s3.bucket_mlflow
    stack.s3_client().put_object(
        Bucket=bucket, Key="tests/other-registry/data/model.pt2", Body=other_program.read_bytes()
    )
    other = dataclasses.replace(resolved, artifact_uri=f"s3://{bucket}/tests/other-registry")

    def parameters(predictor: Predictor) -> int:
        return sum(p.numel() for p in predictor.model.module.parameters())  # type: ignore[attr-defined]

    cache = tmp_path / "cache"
    assert parameters(Predictor.load(other, get_settings(), cache_dir=cache)) == 13 * 2 + 2
    ours = Predictor.load(resolved, get_settings(), cache_dir=cache)
    assert parameters(ours) > 1_000_000
    assert len(list(cache.glob(f"{MODEL}-*.pt2"))) == 2


def test_same_request_by_s3_url(served: Served, stack: Connections, chip: bytes) -> None:
    bucket = get_settings().s3.bucket_imagery
    stack.s3_client().put_object(Bucket=bucket, Key="tests/serving/chip.tif", Body=chip)
    by_url = served.post({"jsonData": {"url": f"s3://{bucket}/tests/serving/chip.tif"}})
    inline = served.post({"binData": base64.b64encode(chip).decode()})
    assert by_url.status_code == 200, by_url.text
    assert by_url.json()["jsonData"] == inline.json()["jsonData"]


def _tiff(bands: list[str], size: int = 32, crs: str | None = "EPSG:4326") -> bytes:
    from rasterio.transform import from_origin

    profile = {"driver": "GTiff", "width": size, "height": size, "count": len(bands)}
    profile |= {"dtype": "uint16", "transform": from_origin(-0.78, 38.12, 1e-4, 1e-4)}
    if crs:
        profile["crs"] = crs
    with rasterio.MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(np.ones((len(bands), size, size), dtype="uint16"))
            for index, name in enumerate(bands, start=1):
                dst.set_band_description(index, name)
        return memory.read()


ALL_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


def _b64(data: bytes) -> dict:
    return {"binData": base64.b64encode(data).decode()}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (_b64(b"<html>not an image</html>"), 415, "not a GeoTIFF"),
        (_b64(_tiff(["B2", "B3", "B4"])), 400, "lacks band(s) B1, B5"),
        (_b64(_tiff(ALL_BANDS, crs=None)), 400, "has no CRS"),
        (_b64(_tiff(["B1"], size=700)), 413, "more than the 360000 accepted"),
        (_b64(b"II*\x00" + bytes(LIMIT_BYTES + 10)), 413, "accepted"),
        ({"jsonData": {"url": "http://169.254.169.254/latest/meta-data/"}}, 403, "scheme"),
        ({"jsonData": {"url": "s3://mlflow/1/anything"}}, 403, "bucket 'mlflow'"),
        ({"jsonData": {"url": "https://example.org/scene.tif"}}, 403, "host 'example.org'"),
        ({"jsonData": {"url": "s3://imagery/no/such/scene.tif"}}, 404, "does not exist"),
        ({"strData": "hello"}, 400, "holds no image"),
    ],
)
def test_bad_input_gets_4xx_with_a_message_and_the_service_stays_up(
    served: Served, body: dict, status: int, message: str
) -> None:
    response = served.post(body)
    assert response.status_code == status, response.text
    assert message in response.json()["status"]["info"]
    assert httpx.get(f"{served.url}/ready", timeout=10).json()["ready"] is True


def test_metadata_and_health(served: Served, promoted: str) -> None:
    metadata = httpx.get(f"{served.url}/api/v1.0/metadata", timeout=10).json()
    assert metadata["name"] == MODEL
    assert set(metadata["models"]) == {"raster-to-vector", "model"}
    assert {i["messagetype"] for i in metadata["graphinputs"]} == {"binData", "jsonData"}
    assert httpx.get(f"{served.url}/live", timeout=5).status_code == 200
    component = httpx.get(f"{served.url}/api/v1.0/metadata/model", timeout=10).json()
    assert component["name"] == MODEL


def test_everything_listens_on_loopback_only(served: Served) -> None:
    root = psutil.Process(served.process.pid)
    processes = [root, *root.children(recursive=True)]
    listening = {
        c.laddr.ip
        for p in processes
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {"127.0.0.1"}


def test_a_model_without_production_version_answers_404_and_stays_up(
    promoted: str, chip: bytes
) -> None:
    service = Served(UNPROMOTED, _env())
    try:
        children = psutil.Process(service.process.pid).children(recursive=True)
        assert children  # the components run
        response = service.post(_b64(chip))
        assert response.status_code == 404, response.text
        assert "has no production version" in response.json()["status"]["info"]
        assert httpx.get(f"{service.url}/ready", timeout=10).json()["ready"] is True
    finally:
        assert service.stop() == 0
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_both_registry_transports_resolve_the_served_version_alike(promoted: str) -> None:
    by_client = resolve_model(MODEL, registry=MlflowClientRegistry.from_settings())
    by_rest = resolve_model(MODEL, registry=RestRegistry.from_settings())
    assert by_client == by_rest
    assert (by_client.version, by_client.alias, by_client.stage) == (
        promoted,
        "production",
        "production",
    )
    assert by_client.model_file_uri.endswith("/data/model.pt2")


def test_a_rejected_version_is_never_served(rejected: str, chip: bytes) -> None:
    """Asked for by number, a version an approver rejected is refused (503), not served."""
    service = Served(MODEL, _env(), version=rejected)
    try:
        response = service.post(_b64(chip))
        assert response.status_code == 503, response.text
        assert f"{MODEL} version {rejected} was rejected" in response.json()["status"]["info"]
        assert httpx.get(f"{service.url}/ready", timeout=10).json()["ready"] is True
    finally:
        assert service.stop() == 0


# --- issue 19 item 4: a running `geomlops serve` follows production --------------------------
FOLLOW_SECONDS = 2.0
FOLLOW_BOUND = 90.0
"""Seconds a switch may take: a check every FOLLOW_SECONDS, then resolving (catalog and MLflow
requests) and loading the new version, on two busy cores that also run the requests."""


@pytest.fixture(scope="module")
def governed(promoted: str, stack: Connections) -> dict[str, str]:
    """A model with two candidates governance may promote, both the trained run's weights.

    What the training workflow leaves: MLflow versions tagged with their package, the audit
    log's ``train`` entries (evaluated at 0.8 against the package's 0.7 gate), candidate
    items POSTed with the trainer's writer key. Decisions are then made by the real CLI.
    """
    import uuid

    from mlflow.tracking import MlflowClient

    from geomlops import audit
    from geomlops.audit import Action, AuditEntry
    from geomlops.catalog.db import pgstac_connection
    from geomlops.catalog.keys import create_key
    from geomlops.model import properties as prop
    from geomlops.registration.register import register_package

    package = REPO / "model_packages" / PACKAGE
    register_package(package, git_url=str(REPO))  # its gates; the first registration wins
    package_version = json.loads((package / "mlm.json").read_text())["properties"]["version"]
    run_id = _REJECTED["run_id"]
    client = MlflowClient(stack.mlflow_tracking_uri)
    name = f"follow-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    suffix = uuid.uuid4().hex[:6]
    with pgstac_connection() as conn:
        trainer = (
            f"follow-trainer-{suffix}",
            create_key(conn, f"follow-trainer-{suffix}", ["writer"])[0],
        )
        approver = create_key(conn, f"follow-alice-{suffix}", ["approver"])[0]
    evaluation = client.create_run(client.get_experiment_by_name("serving-test").experiment_id)
    client.log_metric(evaluation.info.run_id, "val_iou_water", 0.8)
    client.set_terminated(evaluation.info.run_id)
    versions = []
    for _ in range(2):
        mv = client.create_model_version(
            name,
            f"runs:/{run_id}/model",
            run_id=run_id,
            tags={"geomlops.package": PACKAGE, "geomlops.package_version": package_version},
        )
        version = str(mv.version)
        with pgstac_connection() as conn:
            audit.append(
                conn,
                AuditEntry(
                    trainer[0],
                    Action.TRAIN,
                    name,
                    version,
                    details={
                        "evaluate_run_id": evaluation.info.run_id,
                        "metrics": {"val_iou_water": 0.8},
                    },
                ),
            )
        item = _catalog_item(client, run_id, version, "candidate", model=name)
        item["properties"].update(
            {
                prop.TRAINED_BY: trainer[0],
                prop.PACKAGE: PACKAGE,
                prop.PACKAGE_VERSION: package_version,
                prop.MLFLOW_MODEL: name,
                prop.MLFLOW_MODEL_VERSION: version,
                prop.EVALUATE_RUN_ID: evaluation.info.run_id,
            }
        )
        with CatalogClient(stack.stac_url, trainer[1]) as catalog:
            catalog.upsert_item(item, MODELS_COLLECTION)
        versions.append(version)
    return {"name": name, "first": versions[0], "second": versions[1], "approver": approver}


def _decide(approver: str, *args: str) -> None:
    from typer.testing import CliRunner

    from geomlops.cli.main import app

    previous = os.environ.get("GEOMLOPS_API_KEY")
    os.environ["GEOMLOPS_API_KEY"] = approver
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        if previous is None:
            os.environ.pop("GEOMLOPS_API_KEY", None)
        else:
            os.environ["GEOMLOPS_API_KEY"] = previous
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output


def _answered_by(service: Served, chip: bytes) -> dict[str, Any]:
    response = service.post(_b64(chip))
    assert response.status_code == 200, response.text
    return response.json()["meta"]["tags"]


def _until(service: Served, chip: bytes, version: str) -> float:
    """Seconds until ``service`` answers with ``version`` (failing past FOLLOW_BOUND)."""
    start = time.monotonic()
    while True:
        tags = _answered_by(service, chip)
        elapsed = time.monotonic() - start
        if tags["model_version"] == version:
            return elapsed
        assert elapsed < FOLLOW_BOUND, (
            f"still version {tags['model_version']} after {elapsed:.0f} s"
        )
        time.sleep(0.5)


def test_serve_follows_promotion_and_rollback_unless_pinned(
    governed: dict[str, str], stack: Connections, chip: bytes
) -> None:
    name, first, second = governed["name"], governed["first"], governed["second"]
    _decide(governed["approver"], "promote", name, first, "--reason", "IoU 0.8 above 0.7")
    env = {**_env(), "GEOMLOPS_SERVING_FOLLOW_SECONDS": str(FOLLOW_SECONDS)}
    following = Served(name, env)
    pinned = Served(name, env, version=first)
    try:
        tags = _answered_by(following, chip)
        assert (tags["model_version"], tags["pinned"]) == (first, False)
        assert _answered_by(pinned, chip)["pinned"] is True

        # The alias moved in MLflow directly (with MLflow's credential) is not followed.
        stack.mlflow_client().set_registered_model_alias(name, "production", second)
        time.sleep(3 * FOLLOW_SECONDS)
        assert _answered_by(following, chip)["model_version"] == first
        stack.mlflow_client().set_registered_model_alias(name, "production", first)

        _decide(governed["approver"], "promote", name, second, "--reason", "IoU 0.8 again")
        promoted_after = _until(following, chip, second)
        _decide(governed["approver"], "rollback", name, "--reason", "back to the first")
        rolled_back_after = _until(following, chip, first)
        print(f"switched after {promoted_after:.1f} s, {rolled_back_after:.1f} s (rollback)")
        # Pinned, it served the version it was started with all along, and says so.
        tags = _answered_by(pinned, chip)
        assert (tags["model_version"], tags["pinned"]) == (first, True)
    finally:
        assert following.stop() == 0
        assert pinned.stop() == 0
