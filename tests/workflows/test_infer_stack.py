"""`geomlops infer` end to end on the local stack, through the local executor.

The S2 flood model is trained through `geomlops-train` by one identity and promoted by
another; the Sen1Floods11 chip is ingested with `geomlops imagery add`. Then: a run over the
chip's AOI publishes a valid COG, GeoJSON and prediction items with full lineage and is
compared with the hand label; an AOI in Austria is refused, then flagged; a shard killed
mid-run leaves the run Failed with nothing published, and `resume` completes exactly the
missing tiles.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate
from typer.testing import CliRunner

from geomlops import objects
from geomlops.catalog.client import CatalogClient
from geomlops.catalog.db import pgstac_connection
from geomlops.catalog.keys import create_key
from geomlops.cli.demo import demo_aoi
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.datasets import DatasetRegistry
from geomlops.datasets.registry import staged
from geomlops.governance.decisions import Governance
from geomlops.registration.register import register_package
from geomlops.settings import get_settings
from geomlops.workflows.inference.config import InferenceRunConfig
from geomlops.workflows.inference.progress import config_uri, done_tiles, shard_plans
from geomlops.workflows.inference.storage import get_file, list_keys
from geomlops.workflows.templates.train import run_uri

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "flood-water-s2"
CHIP = "imagery/sen1floods11/Spain_7370579_S2Hand.tif"
LABEL = "imagery/sen1floods11/Spain_7370579_LabelHand.tif"
AUSTRIA = "imagery/sentinel2_ftw_austria/inference-img.tif"
runner = CliRunner()


def _key(name: str, *roles: str) -> str:
    with pgstac_connection() as conn:
        key, _ = create_key(conn, f"{name}-{uuid.uuid4().hex[:6]}", roles)
    return key


def _sample(path: str) -> Path:
    root = get_settings().sample_data.sample_data
    assert root is not None, "the sample data is needed (GEOMLOPS_SAMPLE_DATA)"
    return root / path


@pytest.fixture(scope="module")
def production(stack: Connections) -> str:
    """A production version of the S2 model: trained by one identity, promoted by another."""
    register_package(REPO / "model_packages" / MODEL, git_sha="cd" * 20)
    sample = _sample("")
    with staged([sample / "imagery" / "sen1floods11"], sample) as root:
        dataset, _ = DatasetRegistry().add(root, "sen1floods11", description="Sen1Floods11 chip")
    mp = pytest.MonkeyPatch()
    mp.setenv("GEOMLOPS_API_KEY", _key("infer-trainer", "writer"))
    get_settings.cache_clear()
    result = runner.invoke(
        app,
        [
            "workflows", "submit", "geomlops-train", "-p", f"package={MODEL}",
            "-p", f"dataset={dataset.tag}", "-p", "epochs=8", "-p", "device=cpu",
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    run = result.stdout.strip()
    registered = objects.read_json(stack, f"{run_uri(get_settings(), run)}/register.json")
    mp.setenv("GEOMLOPS_API_KEY", _key("infer-approver", "approver"))
    get_settings.cache_clear()
    with Governance(get_settings()) as governance:
        governance.promote(MODEL, registered["model_version"], "gate met (inference tests)")
    mp.undo()
    get_settings.cache_clear()
    return f"{MODEL}-mv{registered['model_version']}"


@pytest.fixture(scope="module")
def spain(stack: Connections, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chip ingested as a scene; returns the AOI file covering it."""
    chip = _sample(CHIP)
    result = runner.invoke(app, ["imagery", "add", str(chip), "--datetime", "2019-09-18T10:50:00Z"])
    assert result.exit_code == 0, result.output
    aoi = tmp_path_factory.mktemp("aoi") / "spain.geojson"
    aoi.write_text(json.dumps(demo_aoi(chip)))
    return aoi


@pytest.fixture(autouse=True)
def _through_the_local_api(argo: str) -> None:
    """Runs go to the in-process Argo API, so their pods see the `GEOMLOPS_INFER_*` set here."""


@pytest.fixture
def small_tiles(monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> None:
    """64 px tiles in shards of 4: a 512 px chip becomes 64 tiles in 16 shards."""
    monkeypatch.setenv("GEOMLOPS_INFER_TILE_PATCHES", "1")
    monkeypatch.setenv("GEOMLOPS_INFER_MIN_TILES_PER_SHARD", "4")
    monkeypatch.setenv("GEOMLOPS_INFER_MAX_SHARDS", "16")
    get_settings.cache_clear()


def _infer(*args: str) -> Any:
    result = runner.invoke(app, ["infer", MODEL, *args, "--json"])
    if result.exit_code != 0 and "submitted" in result.stderr:
        run = result.stderr.split("submitted", 1)[1].split()[0]
        logs = runner.invoke(app, ["workflows", "logs", run]).stdout
        print(f"--- logs of {run}\n{logs[-6000:]}")  # shown when the test fails
    return result


def _item(item_id: str) -> dict[str, Any]:
    with CatalogClient.from_settings() as catalog:
        return catalog.get_item_dict("predictions", item_id)


def _links(item: dict[str, Any], rel: str) -> set[str]:
    return {link["href"].rsplit("/", 1)[-1] for link in item["links"] if link["rel"] == rel}


def test_infer_over_the_chip(
    production: str, spain: Path, stack: Connections, tmp_path: Path
) -> None:
    result = _infer(
        "--aoi", str(spain), "--datetime", "2019-09-01/2019-09-30",
        "--reference", str(_sample(LABEL)),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    run = summary["run"]
    assert summary["status"] == "COMPLETED"
    counts = summary["tasks"]
    assert counts["tasks_count_success"] == counts["tasks_count_total"] >= 1
    assert counts["tasks_count_failed"] == counts["tasks_count_waiting"] == 0

    published = summary["published"]
    (mask_uri,) = published["masks"]
    mask = get_file(stack, mask_uri, tmp_path / "mask.tif")
    assert cog_validate(str(mask), quiet=True)[0]
    with rasterio.open(mask) as src, rasterio.open(_sample(CHIP)) as chip:
        assert src.crs == chip.crs and src.shape == chip.shape
        values = set(np.unique(src.read(1)).tolist())
    assert values <= {0, 1, 255} and 1 in values
    geojson = json.loads(get_file(stack, published["vectors"], tmp_path / "v.geojson").read_text())
    (water,) = [f for f in geojson["features"] if f["properties"]["class_name"] == "water"]
    assert water["properties"]["area_m2"] > 0 and water["properties"]["outside_region"] is False

    # Water IoU against the hand label is reported (the model passed its 0.7 gate on it).
    (metrics,) = summary["reference"].values()
    assert metrics["ref_iou_water"] > 0.5, metrics

    scene_item = _item(f"{run}-Spain_7370579_S2Hand")
    run_item = _item(run)
    for item in (scene_item, run_item):
        assert _links(item, "derived_from") == {production, "Spain_7370579_S2Hand"}
        props = item["properties"]
        assert props["geomlops:workflow"] == run
        assert props["geomlops:outside_region"] is False
        assert {"geomlops", "torch", "gdal"} <= set(props["processing:software"])
    stats = scene_item["properties"]["geomlops:stats"]
    assert 0 < stats["water_area_km2"] < 30  # the chip is about 5 x 5 km
    assert run_item["assets"]["vectors"]["href"] == published["vectors"]

    lineage = runner.invoke(app, ["lineage", run, "--json"])
    assert lineage.exit_code == 0, lineage.output
    tree = json.loads(lineage.stdout)
    kinds = {child["kind"] for child in tree["children"]}
    assert {"model version", "scene", "workflow run", "output"} <= kinds
    model = next(c for c in tree["children"] if c["kind"] == "model version")
    assert model["label"] == production and model["facts"]["stage"] == "production"


def _austrian_scene(folder: Path) -> Path:
    """The chip's 13 bands, placed where the Austrian sample scene is (UTM 33N)."""
    with rasterio.open(_sample(AUSTRIA)) as austria:
        transform, crs = austria.transform, austria.crs
        height, width = austria.height, austria.width
    with rasterio.open(_sample(CHIP)) as chip:
        data = chip.read(window=((0, min(height, 512)), (0, min(width, 512))))
        names = chip.descriptions
    path = folder / "austria_s2.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=13,
        dtype=data.dtype, crs=crs, transform=from_origin(transform.c, transform.f, 10, 10),
        nodata=0,
    ) as dst:  # fmt: skip
        dst.write(data)
        for index, name in enumerate(names, start=1):
            dst.set_band_description(index, name)
    return path


def test_aoi_outside_the_model_region(production: str, stack: Connections, tmp_path: Path) -> None:
    scene = _austrian_scene(tmp_path)
    added = runner.invoke(app, ["imagery", "add", str(scene), "--datetime", "2021-06-01T10:00:00Z"])
    assert added.exit_code == 0, added.output
    aoi = tmp_path / "austria.geojson"
    aoi.write_text(json.dumps(_footprint(scene)))
    args = ["--aoi", str(aoi), "--datetime", "2021-06-01/2021-06-02"]

    refused = _infer(*args)
    assert refused.exit_code == 1
    assert "outside the region" in refused.stderr and "--allow-outside-region" in refused.stderr
    assert refused.stdout == ""  # nothing was submitted

    flagged = _infer(*args, "--allow-outside-region")
    assert flagged.exit_code == 0, flagged.output
    summary = json.loads(flagged.stdout)
    assert summary["outside_region"] is True and summary["published"]["outside_region"] is True
    for item_id in summary["published"]["items"]:
        props = _item(item_id)["properties"]
        assert props["geomlops:outside_region"] is True
        assert props["geomlops:outside_fraction"] == 1.0


def _footprint(path: Path) -> dict[str, Any]:
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping

    with rasterio.open(path) as src:
        geometry = transform_geom(src.crs, "EPSG:4326", mapping(box(*src.bounds)))
    return {"type": "Feature", "properties": {}, "geometry": geometry}


def _shard_pid(run: str, shard: int) -> int | None:
    """The pid of the predict pod of ``shard`` while it runs (the executor's pid file)."""
    status = runner.invoke(app, ["workflows", "status", run, "--json"])
    state = json.loads(status.stdout)
    for node in state["nodes"]:
        if node.get("type") == "Pod" and node["displayName"].startswith(f"predict({shard}:"):
            pid_file = Path(state["stateDir"]) / "pods" / node.get("podName", "?") / "pid"
            if pid_file.is_file():
                return int(pid_file.read_text().split()[0])
    return None


def test_killed_shard_then_resume(
    production: str, spain: Path, stack: Connections, small_tiles: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("GEOMLOPS_INFER_SHARD_RETRIES", "0")  # a killed shard stays failed
    monkeypatch.setenv("GEOMLOPS_INFER_BATCH_SIZE", "1")
    get_settings.cache_clear()
    started = _infer("--aoi", str(spain), "--datetime", "2019-09-01/2019-09-30", "--no-wait")
    assert started.exit_code == 0, started.output
    run = json.loads(started.stdout)["name"]
    bucket = get_settings().s3.bucket_predictions
    config = _wait_for(lambda: _config(stack, bucket, run), "the plan")
    assert config.shard_count == 16 and config.tile_count == 64
    first = shard_plans(stack, config)[0]
    first_ids = {t.id for t in first.tiles}

    # Kill shard 0's pod once it has finished some (not all) of its tiles.
    pid = _wait_for(lambda: _shard_pid(run, 0), "shard 0 to start")
    _wait_for(lambda: bool(done_tiles(stack, config) & first_ids), "shard 0's first tile", 0.02)
    os.killpg(pid, signal.SIGKILL)
    final = _wait_for(lambda: _finished(run), "the run to end")
    assert final["phase"] == "Failed"

    done_before = done_tiles(stack, config)
    assert 0 < len(done_before & first_ids) < len(first_ids), "kill came too late or too early"
    status = json.loads(runner.invoke(app, ["infer", "status", run, "--json"]).stdout)
    assert status["status"] != "COMPLETED" and status["published"] is None
    assert status["tasks"]["tasks_count_waiting"] == 64 - len(done_before)
    assert 0 in status["tasks"]["shards_incomplete"]
    report = objects.read_json(stack, config.uri("report.json"))
    assert report["status"] == "FAILED" and "withheld" in report["note"]
    with CatalogClient.from_settings() as catalog:  # partial outputs are not published
        assert list(catalog.iter_search(collections=["predictions"], ids=[run])) == []
    records_before = {
        t: objects.read_json(stack, config.tile_record_uri(t))["pod"] for t in done_before
    }

    resumed = runner.invoke(app, ["infer", "resume", run, "--json"])
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "COMPLETED"
    new_run = summary["workflow"]["name"]
    nodes = json.loads(runner.invoke(app, ["workflows", "status", new_run, "--json"]).stdout)
    predicted = {
        n["displayName"] for n in nodes["nodes"] if n["displayName"].startswith("predict(")
    }
    assert predicted == {"predict(0:0)"}  # only the shard with missing tiles ran again

    # Every planned tile exactly once; tiles done before the kill were not redone.
    keys = [k for k in list_keys(stack, config.uri("tiles/")) if ".tmp-" not in k]
    masks = sorted(k.rsplit("/", 1)[-1][: -len(".tif")] for k in keys if k.endswith(".tif"))
    planned = sorted(t.id for plan in shard_plans(stack, config) for t in plan.tiles)
    assert masks == planned
    for tile, pod in records_before.items():
        assert objects.read_json(stack, config.tile_record_uri(tile))["pod"] == pod
    assert _item(run)["properties"]["geomlops:workflow_runs"] == [run, new_run]


def _config(conn: Connections, bucket: str, run: str) -> InferenceRunConfig | None:
    uri = config_uri(bucket, run)
    return InferenceRunConfig.load(conn, uri) if objects.exists(conn, uri) else None


def _finished(run: str) -> dict[str, Any] | None:
    state = json.loads(runner.invoke(app, ["workflows", "status", run, "--json"]).stdout)
    return state if state["phase"] in ("Succeeded", "Failed", "Error") else None


def _wait_for(probe: Any, what: str, interval: float = 0.2, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
