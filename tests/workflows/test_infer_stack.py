"""`geomlops infer` end to end on the local stack, through the local executor.

The S2 flood model is trained through `geomlops-train` by one identity and promoted by
another; the Sen1Floods11 chip is ingested with `geomlops imagery add`. Then: a run over the
chip's AOI publishes a valid COG, GeoJSON and prediction items with full lineage and is
compared with the hand label; an AOI in Austria is refused, then flagged; a shard killed
mid-run leaves the run Failed with nothing published, and `resume` completes exactly the
missing tiles.
"""

from __future__ import annotations

import hashlib
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
from rasterio.features import geometry_mask
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from stack_support import (
    SPAIN_CHIP,
    SPAIN_LABEL,
    api_key,
    production_version,
    sample,
    spain_aoi_file,
)
from typer.testing import CliRunner

from geomlops import objects
from geomlops.catalog.client import CatalogClient
from geomlops.cli.demo import demo_corner_aoi
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.settings import get_settings
from geomlops.workflows.inference.config import InferenceRunConfig
from geomlops.workflows.inference.progress import config_uri, done_tiles, shard_plans
from geomlops.workflows.inference.storage import get_file, list_keys, put_file

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "flood-water-s2"
CHIP, LABEL = SPAIN_CHIP, SPAIN_LABEL
AUSTRIA = "imagery/sentinel2_ftw_austria/inference-img.tif"
runner = CliRunner()


@pytest.fixture(scope="module")
def production(stack: Connections) -> str:
    """A production version of the S2 model: trained by one identity, promoted by another."""
    return production_version(stack, MODEL, "infer")


@pytest.fixture(scope="module")
def spain(stack: Connections, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chip ingested as a scene; returns the AOI file covering it."""
    return spain_aoi_file(tmp_path_factory.mktemp("aoi"))


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
        "--reference", str(sample(LABEL)),
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
    aoi = shape(json.loads(spain.read_text())["geometry"])
    with rasterio.open(mask) as src, rasterio.open(sample(CHIP)) as chip:
        # the mask covers the AOI's pixels (the chip less its 2 % margin), within the chip
        assert src.crs == chip.crs and src.transform.a == chip.transform.a
        assert box(*src.bounds).buffer(src.transform.a).contains(aoi)
        assert box(*chip.bounds).contains(box(*src.bounds)) and src.shape < chip.shape
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


def _corner_aoi(chip: Path) -> BaseGeometry:
    """The demo's small AOI: the chip's north-west part, reaching a little beyond it."""
    return shape(demo_corner_aoi(chip)["geometry"])


def _published(stack: Connections, summary: dict[str, Any], folder: Path) -> tuple:
    """(mask array, its transform, polygons, scene item, run item) of a one-scene run."""
    (mask_uri,) = summary["published"]["masks"]
    with rasterio.open(get_file(stack, mask_uri, folder / "mask.tif")) as src:
        mask, transform = src.read(1), src.transform
    vectors = get_file(stack, summary["published"]["vectors"], folder / "v.geojson")
    run = summary["run"]
    scene = _item(f"{run}-Spain_7370579_S2Hand")
    return mask, transform, json.loads(vectors.read_text()), scene, _item(run)


@pytest.fixture(scope="module")
def corner_run(
    production: str, spain: Path, stack: Connections, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The summary of a published run over the demo's small AOI (the chip's corner)."""
    aoi_file = tmp_path_factory.mktemp("corner") / "corner.geojson"
    aoi_file.write_text(json.dumps(demo_corner_aoi(sample(CHIP))))
    result = _infer("--aoi", str(aoi_file), "--datetime", "2019-09-01/2019-09-30")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_small_aoi_bounds_masks_polygons_statistics_and_items(
    corner_run: dict[str, Any], spain: Path, stack: Connections, tmp_path: Path
) -> None:
    chip = sample(CHIP)
    aoi = _corner_aoi(chip)
    whole_run = _infer("--aoi", str(spain), "--datetime", "2019-09-01/2019-09-30")
    assert whole_run.exit_code == 0, whole_run.output
    (tmp_path / "w").mkdir()
    (tmp_path / "s").mkdir()
    whole, whole_t, _, whole_scene, _ = _published(
        stack, json.loads(whole_run.stdout), tmp_path / "w"
    )
    small, small_t, polygons, scene_item, run_item = _published(stack, corner_run, tmp_path / "s")

    # The mask covers the AOI's pixels only: no data outside it (by pixel centre), and
    # inside it the same classes the whole-scene run found there.
    assert small.shape[0] <= 0.51 * 512 + 1 and small.shape[1] <= 0.46 * 512 + 1
    inside = geometry_mask([aoi], out_shape=small.shape, transform=small_t, invert=True)
    assert (small[~inside] == 255).all()
    # Both masks on the chip's grid (each covers its own AOI's pixel bounds only).
    with rasterio.open(chip) as src:
        chip_t, chip_shape = src.transform, src.shape
    on_chip = []
    for mask, transform in ((small, small_t), (whole, whole_t)):
        col, row = (round(v) for v in (~chip_t) * (transform.c, transform.f))
        placed = np.full(chip_shape, 255, dtype="uint8")
        placed[row : row + mask.shape[0], col : col + mask.shape[1]] = mask
        on_chip.append(placed)
    both = (on_chip[0] != 255) & (on_chip[1] != 255)
    assert both.sum() > 0.9 * inside.sum()
    assert (on_chip[0][both] == on_chip[1][both]).mean() > 0.999
    water_pixels = int((small == 1).sum())
    assert 0 < water_pixels < int((whole == 1).sum())

    # Statistics count the AOI's pixels only.
    stats, whole_stats = (
        scene_item["properties"]["geomlops:stats"],
        whole_scene["properties"]["geomlops:stats"],
    )
    assert stats["valid_pixels"] == int((small != 255).sum()) == int(inside.sum())
    assert 0 < stats["water_area_km2"] < whole_stats["water_area_km2"]
    pixel_km2 = stats["water_area_km2"] / water_pixels
    assert stats["not_water_area_km2"] == pytest.approx(
        int((small == 0).sum()) * pixel_km2, rel=1e-3
    )
    assert run_item["properties"]["geomlops:stats"]["water_area_km2"] == stats["water_area_km2"]

    # Polygons end at the AOI (up to the 6 decimals of RFC 7946 coordinates).
    assert polygons["features"]
    fence = aoi.buffer(1e-6)
    for feature in polygons["features"]:
        assert shape(feature["geometry"]).within(fence), feature["properties"]

    # Items: geometry = AOI ∩ the scene's footprint, bbox to match.
    with rasterio.open(chip) as src:
        covered = aoi.intersection(box(*src.bounds))
    for item in (scene_item, run_item):
        geometry = shape(item["geometry"])
        assert geometry.symmetric_difference(covered).area < 1e-3 * covered.area, item["id"]
        assert item["bbox"] == pytest.approx(list(covered.bounds), abs=1e-7)
        assert item["properties"]["geomlops:request_aoi"].startswith("s3://")


def test_reproduce_a_published_prediction(
    corner_run: dict[str, Any], stack: Connections, tmp_path: Path
) -> None:
    run = corner_run["run"]
    result = runner.invoke(app, ["reproduce", run, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["agrees"] and report["prediction"] == run and report["rerun"] != run
    assert report["problems"] == [] and report["versions"] == []  # the same software
    (scene,) = report["pixels"]
    assert scene["scene"] == "Spain_7370579_S2Hand" and scene["identical"] >= 0.99
    assert {"water", "not_water", "no data"} <= set(scene["per_class"])
    assert min(report["polygon_iou"].values()) >= 0.99
    rerun = report["rerun"]
    saved = objects.read_json(
        stack, f"s3://{get_settings().s3.bucket_predictions}/{rerun}/reproduction.json"
    )
    assert saved == report
    original, again = _item(run), _item(rerun)
    assert _links(again, "derived_from") == _links(original, "derived_from")
    assert shape(again["geometry"]).equals(shape(original["geometry"]))

    # A published mask altered afterwards is caught, reproduced from its per-scene item.
    scene_item = _item(f"{run}-Spain_7370579_S2Hand")
    href = scene_item["assets"]["mask"]["href"]
    local = get_file(stack, href, tmp_path / "mask.tif")
    with rasterio.open(local) as src:
        profile, mask = src.profile, src.read(1)
    mask[mask == 1] = 0  # the water is gone
    altered = tmp_path / "altered.tif"
    with rasterio.open(altered, "w", **{**profile, "driver": "GTiff"}) as dst:
        dst.write(mask, 1)
    put_file(stack, altered, href)
    refused = runner.invoke(app, ["reproduce", scene_item["id"], "--json"])
    assert refused.exit_code == 1, refused.output
    failed = json.loads(refused.stdout)
    assert not failed["agrees"] and failed["prediction"] == run
    assert any("class water" in problem for problem in failed["problems"]), failed["problems"]


def test_reproduce_names_what_it_cannot_find(stack: Connections) -> None:
    missing = runner.invoke(app, ["reproduce", "no-such-prediction"])
    assert missing.exit_code == 1 and "no prediction 'no-such-prediction'" in missing.stderr
    bad = runner.invoke(app, ["reproduce", "x", "--min-agreement", "2"])
    assert bad.exit_code == 2 and "--min-agreement" in bad.output


def test_no_imagery_for_the_dates_fails_at_once_and_says_why(production: str, spain: Path) -> None:
    """A user error in planning is not retried, and `infer status` says what it was."""
    from geomlops.workflows.argo import ArgoServer

    failed = _infer("--aoi", str(spain), "--datetime", "2030-01-01/2030-01-31")
    assert failed.exit_code == 1
    run = failed.stderr.split("submitted", 1)[1].split()[0]
    nodes = ArgoServer(get_settings()).status(run)["nodes"]
    plans = [n for n in nodes if n["type"] == "Pod" and n["templateName"] == "plan"]
    assert len(plans) == 1, [n["displayName"] for n in plans]  # one attempt, not three
    assert plans[0]["message"].startswith("Error (exit code 65): no scene of collection")
    retry = next(n for n in nodes if n["type"] == "Retry" and n["templateName"] == "plan")
    assert retry["message"] == "retryStrategy.expression evaluated to false"

    status = runner.invoke(app, ["infer", "status", run])
    assert status.exit_code == 1
    said = " ".join(status.stderr.split())  # as read, whatever the console's wrapping
    assert f"{run} FAILED" in said
    assert "no scene of collection 'imagery'" in said and "intersects the AOI" in said
    assert "widen --datetime" in said  # the fix, too
    as_json = json.loads(runner.invoke(app, ["infer", "status", run, "--json"]).stdout)
    assert as_json["status"] == "FAILED" and "no scene" in as_json["error"]


def test_a_key_without_the_writer_role_is_refused_before_any_work(
    production: str,
    spain: Path,
    stack: Connections,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An approver-only key, even with a workflow token that may submit: refused at once.

    It used to plan and predict for minutes, then fail at publish three times ("needs …
    writer"), and `infer resume` repeated it. Now nothing is uploaded or submitted.
    """
    from geomlops.workflows.argo import ArgoServer

    before = {w["name"] for w in ArgoServer(get_settings()).list()}
    document = {**json.loads(spain.read_text()), "properties": {"case": uuid.uuid4().hex}}
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps(document))
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
    monkeypatch.setenv("GEOMLOPS_ARGO_TOKEN", api_key("infer-submitter", "writer"))
    monkeypatch.setenv("GEOMLOPS_API_KEY", api_key("infer-approver-only", "approver"))
    get_settings.cache_clear()

    started = time.monotonic()
    refused = _infer("--aoi", str(aoi), "--datetime", "2019-09-01/2019-09-30", "--no-wait")
    seconds = time.monotonic() - started
    resumed = runner.invoke(app, ["infer", "resume", "geomlops-batch-inference-any"])

    for result in (refused, resumed):
        said = " ".join(result.stderr.split())
        assert result.exit_code == 1, said
        assert "cannot run batch inference: it needs the writer role" in said
        assert "roles ['approver']" in said and "Nothing was submitted" in said
        assert "submitted geomlops" not in said
    assert seconds < 30  # at once, not after the tiles
    monkeypatch.delenv("GEOMLOPS_ARGO_TOKEN")  # only these: the Argo API fixture's stay set
    monkeypatch.delenv("GEOMLOPS_API_KEY")
    get_settings.cache_clear()
    assert {w["name"] for w in ArgoServer(get_settings()).list()} == before
    bucket = get_settings().s3.bucket_predictions
    assert not objects.exists(stack, f"s3://{bucket}/_requests/aoi-{digest}.geojson")


def _austrian_scene(folder: Path) -> Path:
    """The chip's 13 bands, placed where the Austrian sample scene is (UTM 33N)."""
    with rasterio.open(sample(AUSTRIA)) as austria:
        transform, crs = austria.transform, austria.crs
        height, width = austria.height, austria.width
    with rasterio.open(sample(CHIP)) as chip:
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
