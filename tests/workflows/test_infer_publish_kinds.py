"""Batch publishing of a probability output on the local stack, with a stand-in model.

No training: a one-channel model (the sigmoid of the first band's z-score) predicts a
generated UTM scene through the shard worker into the run's S3 folder, as a shard pod
does, and :func:`publish` assembles it. The probability output's kind (a class ``water``,
threshold 0.5) must give a float32 COG with its colour ramp and statistics, zonal statistics
in the scene item equal to NumPy's over the tiles, and polygons of the pixels above the
threshold, in items the catalog accepts.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.warp import transform_geom
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import box, mapping, shape

from geomlops import objects
from geomlops.catalog.client import CatalogClient
from geomlops.connections import Connections
from geomlops.model import properties as prop
from geomlops.model.kinds import OutputKind
from geomlops.settings import get_settings
from geomlops.transformers.postprocess import zonal_statistics
from geomlops.transformers.raster_to_vector import feature, vectorize
from geomlops.workflows.inference.config import (
    ClassPin,
    InferenceRunConfig,
    ModelPin,
    OutputPin,
    RequestPin,
    ScenePin,
    ShardPlan,
)
from geomlops.workflows.inference.planner import scene_tiles
from geomlops.workflows.inference.publish import publish
from geomlops.workflows.inference.storage import get_file
from geomlops.workflows.inference.tilestore import S3TileSink
from geomlops.workflows.inference.worker import ShardJob, run_shard

pytestmark = [pytest.mark.stack]
SIZE = 96
PIXEL = 10.0
ORIGIN = (500000.0, 4400000.0)  # UTM 30N
CRS = "EPSG:32630"


def _sigmoid_model(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x[:, :1])


def _two_logits_model(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([-x[:, :1], x[:, :1]], dim=1)


def _scene(folder: Path) -> ScenePin:
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    a = (100 + 30 * np.sin(rows / 11.0 + 0.3) * np.cos(cols / 7.0 + 0.2)).astype("float32")
    a[:, :4] = 0  # no data
    path = folder / "scene.tif"
    transform = from_origin(*ORIGIN, PIXEL, PIXEL)
    with rasterio.open(
        path, "w", driver="COG", width=SIZE, height=SIZE, count=2, dtype="float32", crs=CRS,
        transform=transform, nodata=0,
    ) as dst:  # fmt: skip
        dst.write(np.stack([a, np.ones_like(a)]))
    return ScenePin(
        item_id=f"t-kinds-scene-{uuid.uuid4().hex[:6]}",
        href=str(path),
        datetime="2020-01-01T00:00:00Z",
        crs=CRS,
        transform=list(transform)[:6],
        width=SIZE,
        height=SIZE,
        band_indexes=[1, 2],
        nodata=0.0,
    )


def _run_and_publish(
    stack: Connections, folder: Path, model: ModelPin, forward: object
) -> tuple[InferenceRunConfig, dict]:
    """Plan a run of ``model`` over the generated scene, predict it as a shard pod, publish."""
    settings = get_settings()
    scene = _scene(folder)
    west, north = ORIGIN
    native = box(west, north - SIZE * PIXEL, west + SIZE * PIXEL, north)
    # inside the scene by a few metres: its edge pixels are outside, by their centres
    aoi = shape(transform_geom(CRS, "EPSG:4326", mapping(native.buffer(-7.0))))
    tiles = scene_tiles(scene, aoi, 32, strip=4)
    workflow = f"t-kinds-{uuid.uuid4().hex[:8]}"
    config = InferenceRunConfig(
        workflow=workflow,
        run_uri=f"s3://{settings.s3.bucket_predictions}/{workflow}",
        model=model,
        request=RequestPin(
            aoi=mapping(aoi), aoi_uri=f"s3://{settings.s3.bucket_predictions}/{workflow}/aoi.json",
            datetime="2020-01-01T00:00:00Z/2020-01-02T00:00:00Z", allow_outside_region=False,
            outside_fraction=0.0,
        ),
        scenes=[scene], tile_size=32, overlap=4, batch_size=4, tile_retries=0, device="cpu",
        tile_count=len(tiles), shard_count=1, vector_skip_values=[0],
    )  # fmt: skip
    uri = config.save(stack)
    objects.write_json(
        stack, config.shard_uri(0), ShardPlan(shard=0, tiles=tiles).model_dump(mode="json")
    )
    job = ShardJob(
        shard=0, tiles=tiles, scenes={scene.item_id: scene}, io=config.model.io(), overlap=4,
        batch_size=4, tile_retries=0, aoi=config.request.aoi,
    )  # fmt: skip
    done = run_shard(job, forward, S3TileSink(stack, config), device=torch.device("cpu"))  # type: ignore[arg-type]
    assert done.failed == {} and len(done.done) == len(tiles)
    return config, publish(uri)


def _pin(name: str, classes: list[ClassPin], output: OutputPin | None) -> ModelPin:
    return ModelPin(
        name=name, version="1", item_id=f"{name}-mv1", model_uri=f"models:/{name}/1",
        stage="production", image="none", bands=["A", "B"], mean=[100.0, 0.0],
        stddev=[10.0, 1.0], patch_size=32, classes=classes, output=output,
    )  # fmt: skip


def test_a_class_mask_publishes_as_it_always_did(stack: Connections, tmp_path: Path) -> None:
    """The flood models' kind: uint8 mask, class polygons, per-class areas, no new fields."""
    classes = [ClassPin(value=0, name="not_water"), ClassPin(value=1, name="water")]
    config, result = _run_and_publish(
        stack, tmp_path, _pin("water-mask", classes, None), _two_logits_model
    )
    local = get_file(stack, result["masks"][0], tmp_path / "mosaic.tif")
    with rasterio.open(local) as src:
        mask, transform, crs = src.read(1), src.transform, src.crs
        assert src.dtypes[0] == "uint8" and src.nodata == 255
        assert src.tags()["classes"] == "0:not_water,1:water"
        assert src.descriptions[0] == "class"
    with CatalogClient.from_settings() as catalog:
        item = catalog.get_item_dict("predictions", f"{config.workflow}-{config.scenes[0].item_id}")
    props = item["properties"]
    assert not {prop.OUTPUT_KIND, prop.ZONAL, prop.THRESHOLD} & set(props)
    assert set(item["assets"]) == {"mask"}
    assert set(item["assets"]["mask"]) == {
        "href", "type", "roles", "title", "file:size", "file:checksum"
    }  # fmt: skip
    assert item["assets"]["mask"]["title"] == "Class mask (255 = no data or cloud)"
    assert "no data (255)" in props["processing:lineage"]
    assert set(props[prop.STATS]) == {
        "not_water_area_km2", "water_area_km2", "nodata_area_km2", "cloud_area_km2",
        "valid_pixels", "tiles", "not_water_fraction", "water_fraction",
    }  # fmt: skip
    assert props[prop.STATS]["valid_pixels"] == int((mask != 255).sum())
    vectors = json.loads(
        get_file(stack, result["vectors"], tmp_path / "vectors.geojson").read_text()
    )
    # raster-to-vector's polygons of the mosaic, as publish drew them before output kinds
    names = [{"value": c.value, "name": c.name} for c in classes]
    direct = vectorize(
        mask, transform, crs, classes=names, nodata=255, options={"skip_values": [0]},
        clip=shape(config.request.aoi),
    )  # fmt: skip
    expected = [feature(p) for p in direct]
    assert [f["geometry"] for f in vectors["features"]] == [f["geometry"] for f in expected]
    assert [
        {k: v for k, v in f["properties"].items() if k in ("class_name", "class_value", "area_m2")}
        for f in vectors["features"]
    ] == [f["properties"] for f in expected]


def test_a_probability_output_publishes_a_float_cog_zonal_statistics_and_polygons(
    stack: Connections, tmp_path: Path
) -> None:
    output = OutputPin(kind=OutputKind.PROBABILITY, threshold=0.5, colormap="magma")
    config, result = _run_and_publish(
        stack, tmp_path, _pin("water-probability", [ClassPin(value=1, name="water")], output),
        _sigmoid_model,
    )  # fmt: skip
    workflow, scene = config.workflow, config.scenes[0]
    [cog_uri] = result["masks"]
    local = get_file(stack, cog_uri, tmp_path / "mosaic.tif")
    with rasterio.open(local) as src:
        values = src.read(1)
        assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
        assert src.descriptions[0] == "probability"
        tags = src.tags()
        assert (tags["output_kind"], tags["colormap"], tags["threshold"]) == (
            "probability", "magma", "0.5"
        )  # fmt: skip
        assert cog_validate(str(local), quiet=True)[0]
        band_tags = src.tags(1)
        pixel_m2 = abs(src.transform.a * src.transform.e)
    valid = np.isfinite(values)
    assert valid.any() and (~valid).any()  # the no-data stripe and the AOI's edge
    assert float(band_tags["STATISTICS_MAXIMUM"]) == pytest.approx(values[valid].max(), abs=1e-5)
    scene_item_id = f"{workflow}-{scene.item_id}"
    with CatalogClient.from_settings() as catalog:
        item = catalog.get_item_dict("predictions", scene_item_id)
        run_item = catalog.get_item_dict("predictions", workflow)
    props = item["properties"]
    assert props[prop.OUTPUT_KIND] == "probability" and props[prop.THRESHOLD] == 0.5
    expected = zonal_statistics(values, pixel_m2, 0.5)
    zonal = props[prop.ZONAL]
    for key in (
        "valid_pixels",
        "mean",
        "min",
        "max",
        "p10",
        "p50",
        "p90",
        "above_threshold_pixels",
    ):
        assert zonal[key] == pytest.approx(expected[key], abs=1e-6), key
    above = int((values[valid] >= 0.5).sum())
    assert zonal["above_threshold_pixels"] == above > 0
    assert zonal["above_threshold_area_m2"] == pytest.approx(above * pixel_m2, rel=2e-3)
    assert props[prop.STATS]["above_threshold_area_km2"] == zonal["above_threshold_area_km2"]
    assert props[prop.STATS]["valid_pixels"] == int(valid.sum())
    asset = item["assets"]["mask"]
    assert asset[prop.COLORMAP] == "magma"
    assert asset["raster:bands"][0]["statistics"]["maximum"] == pytest.approx(
        float(values[valid].max()), abs=1e-5
    )
    assert run_item["properties"][prop.STATS]["above_threshold_area_km2"] == pytest.approx(
        zonal["above_threshold_area_km2"]
    )
    vectors = json.loads(
        get_file(stack, result["vectors"], tmp_path / "vectors.geojson").read_text()
    )
    (feature,) = vectors["features"]
    assert feature["properties"]["class_name"] == "water"
    assert feature["properties"]["scene"] == scene.item_id
    assert feature["properties"]["mean_confidence"] >= 0.5
    assert feature["properties"]["area_m2"] == pytest.approx(above * pixel_m2, rel=0.02)
