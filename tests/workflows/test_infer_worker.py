"""Batch inference without the stack: AOI checks, tiling, shards, the shard worker, masks.

The worker runs on a generated scene (two bands and a QA60 cloud band, a no-data stripe)
with a model whose answer is known: class 1 where the first band is above its mean.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.features import geometry_mask
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import Polygon, box, mapping

from geomlops.cli.infer import _datetime
from geomlops.errors import ValidationFailed
from geomlops.model.io import ModelIO, OutputClass
from geomlops.model.kinds import OutputKind, OutputSpec
from geomlops.settings import InferenceSettings
from geomlops.workflows.inference import masks
from geomlops.workflows.inference.aoi import outside_fraction, parse_aoi, read_aoi
from geomlops.workflows.inference.config import CloudBand, ScenePin, Tile
from geomlops.workflows.inference.planner import OutsideRegion, check_region, scene_tiles
from geomlops.workflows.inference.planner import shard_tiles as make_shards
from geomlops.workflows.inference.storage import gdal_env
from geomlops.workflows.inference.tilestore import LocalTileSink
from geomlops.workflows.inference.worker import ShardJob, run_shard

HEIGHT, WIDTH = 150, 230
ORIGIN = (10.0, 50.0)
PIXEL = 0.001
IO = ModelIO(
    bands=("A", "B"),
    mean=(100.0, 0.0),
    stddev=(10.0, 1.0),
    patch_size=32,
    classes=(OutputClass(0, "land"), OutputClass(1, "water")),
)


def _threshold_model(x: torch.Tensor) -> torch.Tensor:
    """Logits: class 1 where the normalised first band is positive."""
    return torch.stack([-x[:, 0], x[:, 0]], dim=1)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScenePin, np.ndarray]:
    """A COG: band A = a smooth field around 100, band B, QA60 with a cloud block; 0 = no data."""
    folder = tmp_path_factory.mktemp("scene")
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    a = (100 + 20 * np.sin(rows / 9.0) * np.cos(cols / 13.0)).astype("float32")
    a[:, :5] = 0  # no-data stripe (nodata = 0)
    b = np.ones_like(a)
    qa = np.zeros_like(a)
    qa[20:40, 100:140] = 1 << 10  # opaque cloud
    path = folder / "scene.tif"
    with rasterio.open(
        path, "w", driver="COG", width=WIDTH, height=HEIGHT, count=3, dtype="float32",
        crs="EPSG:4326", transform=from_origin(*ORIGIN, PIXEL, PIXEL), nodata=0,
    ) as dst:  # fmt: skip
        dst.write(np.stack([a, b, qa]))
        for index, name in enumerate(("A", "B", "QA60"), start=1):
            dst.set_band_description(index, name)
    expected = (a > 100).astype("uint8")
    expected[:, :5] = 255
    expected[20:40, 100:140] = 255
    pin = ScenePin(
        item_id="scene",
        href=str(path),
        datetime="2020-01-01T00:00:00Z",
        crs="EPSG:4326",
        transform=list(from_origin(*ORIGIN, PIXEL, PIXEL))[:6],
        width=WIDTH,
        height=HEIGHT,
        band_indexes=[1, 2],
        nodata=0.0,
        cloud=CloudBand(index=3, kind="qa60"),
    )
    return pin, expected


def _whole_scene_aoi() -> object:
    west, north = ORIGIN
    return box(west, north - HEIGHT * PIXEL, west + WIDTH * PIXEL, north)


def _job(scene: ScenePin, tiles: list[Tile], aoi: dict | None = None, **kw: object) -> ShardJob:
    return ShardJob(
        shard=0,
        tiles=tiles,
        scenes={scene.item_id: scene},
        io=IO,
        overlap=8,
        batch_size=4,
        tile_retries=1,
        aoi=aoi,
        **kw,  # type: ignore[arg-type]
    )


def test_tiles_cover_the_aoi_on_a_stable_grid(scene: tuple[ScenePin, np.ndarray]) -> None:
    pin, _ = scene
    tiles = scene_tiles(pin, _whole_scene_aoi(), 64, strip=4)
    assert len(tiles) == 3 * 4  # ceil(150/64) x ceil(230/64)
    assert sum(t.height * t.width for t in tiles) == HEIGHT * WIDTH
    assert tiles[-1].height == HEIGHT - 128 and tiles[-1].width == WIDTH - 192
    # A small AOI in the middle keeps only the tiles it touches, with the same ids.
    west, north = ORIGIN
    small = box(west + 0.070, north - 0.070, west + 0.075, north - 0.065)
    (only,) = scene_tiles(pin, small, 64, strip=4)
    assert only.id == "scene_r0001_c0001"
    assert only in tiles


def test_tiles_come_in_strips_so_neighbours_share_cached_blocks(
    scene: tuple[ScenePin, np.ndarray],
) -> None:
    pin, _ = scene
    tiles = scene_tiles(pin, _whole_scene_aoi(), 64, strip=2)
    assert [(t.row // 64, t.col // 64) for t in tiles] == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1),
        (0, 2), (0, 3), (1, 2), (1, 3), (2, 2), (2, 3),
    ]  # fmt: skip
    assert sorted(tiles, key=lambda t: t.id) == scene_tiles(pin, _whole_scene_aoi(), 64, strip=9)


def test_gdal_block_cache_is_sized_in_bytes() -> None:
    """rasterio hands an integer GDAL_CACHEMAX to GDAL as bytes: 256 would mean no cache."""
    from rasterio._env import get_gdal_config

    with gdal_env(None):
        assert get_gdal_config("GDAL_CACHEMAX") == InferenceSettings().gdal_cache_mb * 2**20


def test_shards_are_bounded() -> None:
    tiles = [Tile(id=f"t{i}", scene="s", row=0, col=i, height=1, width=1) for i in range(1000)]
    settings = InferenceSettings(max_shards=16, min_tiles_per_shard=4)
    shards = make_shards(tiles, settings)
    assert len(shards) <= 16
    assert [t for s in shards for t in s] == tiles
    assert len(make_shards(tiles[:5], settings)) == 1


def test_worker_streams_tiles_and_masks_nodata_and_cloud(
    scene: tuple[ScenePin, np.ndarray], tmp_path: Path
) -> None:
    pin, expected = scene
    tiles = scene_tiles(pin, _whole_scene_aoi(), 64, strip=4)
    sink = LocalTileSink(tmp_path / "tiles")
    result = run_shard(_job(pin, tiles), _threshold_model, sink, device=torch.device("cpu"))
    assert result.failed == {}
    assert sorted(result.done) == sorted(t.id for t in tiles)
    mosaic = np.full((HEIGHT, WIDTH), 7, dtype="uint8")
    for tile in tiles:
        path = sink.mask_path(tile.id)
        assert cog_validate(str(path), quiet=True)[0]
        with rasterio.open(path) as src:
            assert src.transform.c == pytest.approx(ORIGIN[0] + tile.col * PIXEL)
            assert src.nodata == 255
            mosaic[tile.row : tile.row + tile.height, tile.col : tile.col + tile.width] = src.read(
                1
            )
        record = json.loads(sink.record_path(tile.id).read_text())
        assert record["tile"] == tile.id
    agreement = (mosaic == expected).mean()
    assert agreement > 0.995, agreement  # only pixels exactly at the threshold may differ
    assert (mosaic[:, :5] == 255).all() and (mosaic[20:40, 100:140] == 255).all()
    records = [json.loads(sink.record_path(t.id).read_text()) for t in tiles]
    assert sum(r["cloud_pixels"] for r in records) == 20 * 40
    assert sum(r["nodata_pixels"] for r in records) == HEIGHT * 5

    again = run_shard(_job(pin, tiles), _threshold_model, sink, device=torch.device("cpu"))
    assert again.done == [] and sorted(again.skipped) == sorted(result.done)


def test_pixels_outside_the_aoi_are_no_data_and_not_counted(
    scene: tuple[ScenePin, np.ndarray], tmp_path: Path
) -> None:
    """A slanted AOI over part of the scene: outside it (by pixel centre) no data, uncounted."""
    pin, expected = scene
    west, north = ORIGIN
    aoi = Polygon(
        [(west + 0.002, north - 0.010), (west + 0.150, north - 0.002),
         (west + 0.120, north - 0.140), (west + 0.002, north - 0.100)]
    )  # fmt: skip
    tiles = scene_tiles(pin, aoi, 64, strip=4)
    assert len(tiles) < len(scene_tiles(pin, _whole_scene_aoi(), 64, strip=4))
    sink = LocalTileSink(tmp_path / "tiles")
    job = _job(pin, tiles, aoi=mapping(aoi))
    result = run_shard(job, _threshold_model, sink, device=torch.device("cpu"))
    assert result.failed == {}
    transform = from_origin(*ORIGIN, PIXEL, PIXEL)
    inside = geometry_mask([aoi], out_shape=(HEIGHT, WIDTH), transform=transform, invert=True)
    mosaic = np.full((HEIGHT, WIDTH), 255, dtype="uint8")
    covered = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for tile in tiles:
        with rasterio.open(sink.mask_path(tile.id)) as src:
            core = np.s_[tile.row : tile.row + tile.height, tile.col : tile.col + tile.width]
            mosaic[core] = src.read(1)
            covered[core] = True
    assert covered[inside].all()  # the planned tiles hold the whole AOI
    assert (mosaic[~inside] == 255).all()
    assert ((mosaic == expected) | (mosaic == 255))[inside].mean() > 0.995
    assert (mosaic[inside] == expected[inside]).mean() > 0.995
    records = [json.loads(sink.record_path(t.id).read_text()) for t in tiles]
    water = sum(r["pixels"]["water"] for r in records)
    assert water == int((mosaic == 1).sum())
    assert abs(water - int((expected[inside] == 1).sum())) <= 0.005 * inside.sum()
    cloud = np.zeros((HEIGHT, WIDTH), dtype=bool)
    cloud[20:40, 100:140] = True
    assert sum(r["cloud_pixels"] for r in records) == int((cloud & inside).sum())
    assert sum(r["nodata_pixels"] for r in records) == int(inside[:, :5].sum())


def test_unreadable_scene_fails_its_tiles_after_retries(
    scene: tuple[ScenePin, np.ndarray], tmp_path: Path
) -> None:
    pin, _ = scene
    gone = pin.model_copy(update={"href": str(tmp_path / "missing.tif")})
    tiles = scene_tiles(gone, _whole_scene_aoi(), 64, strip=4)[:2]
    result = run_shard(
        _job(gone, tiles), _threshold_model, LocalTileSink(tmp_path), device=torch.device("cpu")
    )
    assert set(result.failed) == {t.id for t in tiles}
    assert all(why.startswith("read:") for why in result.failed.values())
    assert result.done == []


def test_cloud_layers() -> None:
    scl = np.array([[3, 4, 8], [9, 10, 6]])
    assert masks.cloud_mask("scl", scl).tolist() == [[True, False, True], [True, True, False]]
    qa = np.array([0, 1 << 10, 1 << 11, 1])
    assert masks.cloud_mask("qa60", qa).tolist() == [False, True, True, False]
    fmask = np.array([0b0010, 0b1000, 0b0001, 0b100000])
    assert masks.cloud_mask("fmask", fmask).tolist() == [True, True, False, False]
    assert masks.cloud_kind(["B1", "B2", "QA60"]) == (3, "qa60")
    assert masks.cloud_kind(["B1", "B2"]) is None


def test_aoi_is_checked_and_measured(tmp_path: Path) -> None:
    square = box(0, 0, 1, 1)
    assert outside_fraction(square, mapping(square)) == 0
    assert outside_fraction(square, mapping(box(0, 0, 0.5, 1))) == pytest.approx(0.5, abs=0.01)
    assert outside_fraction(square, None) == 1
    item = {"id": "m-mv1", "geometry": mapping(box(0, 0, 0.5, 1)), "bbox": [0, 0, 0.5, 1]}
    with pytest.raises(OutsideRegion, match="50% of the AOI"):
        check_region(square, item, allow_outside_region=False, settings=InferenceSettings())
    fraction = check_region(square, item, allow_outside_region=True, settings=InferenceSettings())
    assert fraction == pytest.approx(0.5, abs=0.01)

    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "Point", "coordinates": [0, 0]}))
    with pytest.raises(ValidationFailed, match=r"bad\.geojson") as caught:
        read_aoi(bad)
    assert "not a Polygon" in caught.value.problems[0]
    projected = {"type": "Polygon", "coordinates": [[[0, 0], [500000, 0], [0, 400], [0, 0]]]}
    with pytest.raises(ValidationFailed):
        parse_aoi(projected, "x")
    collection = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": mapping(square), "properties": {}}],
    }
    assert parse_aoi(collection, "x").equals(square)


def test_datetime_interval() -> None:
    assert _datetime("2019-09-01/2019-09-30") == "2019-09-01T00:00:00Z/2019-09-30T23:59:59Z"
    assert _datetime("2019-09-18T10:00:00Z/..") == "2019-09-18T10:00:00Z/.."
    for wrong in ("2019-09-01", "yesterday/today", "../.."):
        with pytest.raises(Exception, match="START/END"):
            _datetime(wrong)


PROBABILITY_IO = ModelIO(
    bands=("A", "B"),
    mean=(100.0, 0.0),
    stddev=(10.0, 1.0),
    patch_size=32,
    classes=(OutputClass(1, "water"),),
    output=OutputSpec(
        OutputKind.PROBABILITY, classes=({"value": 1, "name": "water"},), threshold=0.5
    ),
)


def _sigmoid_model(x: torch.Tensor) -> torch.Tensor:
    """One channel: the probability of water, sigmoid of the normalised first band."""
    return torch.sigmoid(x[:, :1])


def test_a_probability_model_writes_float_tiles_with_nan_for_no_data(
    scene: tuple[ScenePin, np.ndarray], tmp_path: Path
) -> None:
    pin, expected = scene
    tiles = scene_tiles(pin, _whole_scene_aoi(), 64, strip=4)
    sink = LocalTileSink(tmp_path / "tiles")
    job = ShardJob(
        shard=0, tiles=tiles, scenes={pin.item_id: pin}, io=PROBABILITY_IO, overlap=8,
        batch_size=4, tile_retries=1, aoi=None,
    )  # fmt: skip
    result = run_shard(job, _sigmoid_model, sink, device=torch.device("cpu"))
    assert result.failed == {}
    mosaic = np.zeros((HEIGHT, WIDTH), dtype="float32")
    for tile in tiles:
        with rasterio.open(sink.mask_path(tile.id)) as src:
            assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
            assert src.descriptions[0] == "probability"
            core = np.s_[tile.row : tile.row + tile.height, tile.col : tile.col + tile.width]
            mosaic[core] = src.read(1)
    assert np.isnan(mosaic[:, :5]).all() and np.isnan(mosaic[20:40, 100:140]).all()
    valid = ~np.isnan(mosaic)
    assert ((mosaic[valid] >= 0) & (mosaic[valid] <= 1)).all()
    # >= 0.5 where the class-mask model says water (a > 100; row 0 is a == 100 exactly, so
    # it is left out), and no softmax made a one-channel answer 1 everywhere
    assert ((mosaic >= 0.5) == (expected == 1))[1:][valid[1:]].mean() > 0.995
    assert 0.3 < (mosaic[valid] >= 0.5).mean() < 0.7
    records = [json.loads(sink.record_path(t.id).read_text()) for t in tiles]
    assert sum(r["pixels"]["valid"] for r in records) == int(valid.sum())
    assert sum(r["nodata_pixels"] for r in records) == HEIGHT * 5
