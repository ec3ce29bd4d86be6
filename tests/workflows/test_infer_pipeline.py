"""A composed pipeline in the shard worker, without the stack: the mask model's pixels are
no data in the primary's mask and absent from its polygons.

The scene has bands A and B; the primary model says "water" where A is above its mean, the
stand-in mask model (a one-channel probability, as cloud-s2's) is sure of "cloud" where B is
high, which it is over one known block.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from shapely.geometry import box

from geomlops.ml.raster import MASK_NODATA
from geomlops.ml.runtime import TorchModel
from geomlops.model.io import ModelIO, OutputClass
from geomlops.model.pipeline import MaskRule
from geomlops.transformers.raster_to_vector import vectorize
from geomlops.workflows.inference.config import ScenePin
from geomlops.workflows.inference.planner import scene_tiles
from geomlops.workflows.inference.tilestore import LocalTileSink
from geomlops.workflows.inference.worker import MaskJob, ShardJob, run_shard

HEIGHT, WIDTH = 150, 230
ORIGIN = (10.0, 50.0)
PIXEL = 0.001
CLOUD = (slice(60, 100), slice(150, 200))
PRIMARY = ModelIO(
    bands=("A",),
    mean=(100.0,),
    stddev=(10.0,),
    patch_size=32,
    classes=(OutputClass(0, "land"), OutputClass(1, "water")),
)
MASK = MaskJob(
    io=ModelIO(bands=("B",), mean=(0.0,), stddev=(1.0,), patch_size=16, classes=()),
    rule=MaskRule("cloud-probability", 0, 0.4, "above"),
)


def _water(x: torch.Tensor) -> torch.Tensor:
    """Logits: water where the normalised band A is positive."""
    return torch.stack([-x[:, 0], x[:, 0]], dim=1)


def _cloud(x: torch.Tensor) -> torch.Tensor:
    """A probability (one channel): near 1 where band B is high (5), near 0 where it is 1."""
    return torch.sigmoid(10 * (x[:, :1] - 3))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> ScenePin:
    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    a = (100 + 20 * np.sin(rows / 9.0) * np.cos(cols / 13.0)).astype("float32")
    b = np.ones_like(a)
    b[CLOUD] = 5
    a[CLOUD] = 130  # water under the cloud: the primary alone would claim it
    with rasterio.open(
        path, "w", driver="COG", width=WIDTH, height=HEIGHT, count=2, dtype="float32",
        crs="EPSG:4326", transform=from_origin(*ORIGIN, PIXEL, PIXEL),
    ) as dst:  # fmt: skip
        dst.write(np.stack([a, b]))
    return ScenePin(
        item_id="scene",
        href=str(path),
        datetime="2020-01-01T00:00:00Z",
        crs="EPSG:4326",
        transform=list(from_origin(*ORIGIN, PIXEL, PIXEL))[:6],
        width=WIDTH,
        height=HEIGHT,
        band_indexes=[1],
        mask_band_indexes=[2],
    )


def _job(scene: ScenePin, **kw: Any) -> ShardJob:
    """The shard job over the whole scene: primary model, mask model, no retries."""
    west, north = ORIGIN
    tiles = scene_tiles(scene, box(west, north - HEIGHT * PIXEL, west + WIDTH * PIXEL, north), 64,
                        strip=4)  # fmt: skip
    fields: dict[str, Any] = dict(
        shard=0, tiles=tiles, scenes={"scene": scene}, io=PRIMARY, overlap=8, batch_size=4,
        tile_retries=0, aoi=None, mask=MASK,
    )  # fmt: skip
    return ShardJob(**(fields | kw))


def _run(
    scene: ScenePin, folder: Path, model: object = _water, **kw: object
) -> tuple[np.ndarray, list[dict]]:
    job = _job(scene)
    tiles = job.tiles
    sink = LocalTileSink(folder)
    result = run_shard(job, model, sink, device=torch.device("cpu"), **kw)  # type: ignore[arg-type]
    assert result.failed == {}
    assert result.mask_seconds > 0
    mosaic = np.full((HEIGHT, WIDTH), 7, dtype="uint8")
    for tile in tiles:
        with rasterio.open(sink.mask_path(tile.id)) as src:
            mosaic[tile.row : tile.row + tile.height, tile.col : tile.col + tile.width] = src.read(
                1
            )
    return mosaic, [json.loads(sink.record_path(t.id).read_text()) for t in tiles]


def test_masked_pixels_are_no_data_and_carry_no_polygon(scene: ScenePin, tmp_path: Path) -> None:
    mosaic, records = _run(scene, tmp_path, mask_model=_cloud)
    assert (mosaic[CLOUD] == MASK_NODATA).all()
    outside = np.ones((HEIGHT, WIDTH), dtype=bool)
    outside[CLOUD] = False
    assert (mosaic[outside] != MASK_NODATA).all()  # clear sky: the primary's answer
    assert (mosaic[outside] == 1).any() and (mosaic[outside] == 0).any()
    assert sum(r["masked_pixels"] for r in records) == 40 * 50
    assert sum(r["pixels"]["water"] + r["pixels"]["land"] for r in records) == (
        HEIGHT * WIDTH - 40 * 50
    )

    transform = from_origin(*ORIGIN, PIXEL, PIXEL)
    polygons = vectorize(
        mosaic, transform, "EPSG:4326", classes=[{"value": 1, "name": "water"}],
        nodata=MASK_NODATA, options={"skip_values": [0]},
    )  # fmt: skip
    west, north = ORIGIN
    cloud = box(west + 150 * PIXEL, north - 100 * PIXEL, west + 200 * PIXEL, north - 60 * PIXEL)
    (water,) = polygons
    assert water.name == "water" and water.area_m2 > 0
    assert water.geometry.intersection(cloud.buffer(-PIXEL / 2)).area == 0


class _Module(torch.nn.Module):
    def __init__(self, forward: object) -> None:
        super().__init__()
        self._forward = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)  # type: ignore[operator]


def _exported(forward: object, bands: int) -> TorchModel:
    """``forward`` as the platform loads a registered model: a torch.export program."""
    batch, height, width = (torch.export.Dim(n, min=1, max=4096) for n in ("b", "h", "w"))
    program = torch.export.export(
        _Module(forward),
        (torch.zeros(2, bands, 16, 16),),
        dynamic_shapes={"x": {0: batch, 2: height, 3: width}},
    )
    return TorchModel(program.module(), torch.device("cpu"))


def test_the_same_with_both_models_loaded_as_the_platform_loads_them(
    scene: ScenePin, tmp_path: Path
) -> None:
    """The runtime answers raw scores: a one-channel probability is not made all 1s.

    (It once applied a softmax itself, which turns one channel into 1 everywhere: every
    pixel was masked and a pipeline published no water at all.)
    """
    mosaic, records = _run(
        scene, tmp_path, model=_exported(_water, 1), mask_model=_exported(_cloud, 1)
    )
    outside = np.ones((HEIGHT, WIDTH), dtype=bool)
    outside[CLOUD] = False
    assert (mosaic[CLOUD] == MASK_NODATA).all()
    assert (mosaic[outside] != MASK_NODATA).all()
    assert (mosaic[outside] == 1).any() and (mosaic[outside] == 0).any()
    assert sum(r["masked_pixels"] for r in records) == 40 * 50


def test_without_the_mask_the_primary_claims_water_under_the_cloud(
    scene: ScenePin, tmp_path: Path
) -> None:
    """The control: the same tiles, mask model off (so the test above can fail)."""
    job = _job(scene, mask=None)
    tiles = job.tiles
    sink = LocalTileSink(tmp_path)
    assert run_shard(job, _water, sink, device=torch.device("cpu")).failed == {}
    (tile,) = [
        t for t in tiles if t.row <= 70 < t.row + t.height and t.col <= 160 < t.col + t.width
    ]
    with rasterio.open(sink.mask_path(tile.id)) as src:
        assert src.read(1)[70 - tile.row, 160 - tile.col] == 1


def _broken(x: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("out of memory (deliberate)")


@pytest.mark.parametrize(
    ("model", "mask_model", "step"),
    [(_broken, _cloud, "predict"), (_water, _broken, "mask model")],
)
def test_a_model_that_fails_fails_each_tile_by_name_and_writes_nothing(
    scene: ScenePin, tmp_path: Path, model: object, mask_model: object, step: str
) -> None:
    job = _job(scene, tile_retries=1)
    tiles = job.tiles
    sink = LocalTileSink(tmp_path)
    result = run_shard(job, model, sink, device=torch.device("cpu"), mask_model=mask_model)  # type: ignore[arg-type]
    assert set(result.failed) == {t.id for t in tiles}
    assert all(
        why.startswith(f"{step}: ") and "deliberate" in why for why in result.failed.values()
    )
    assert not [t for t in tiles if sink.mask_path(t.id).exists()]


def test_a_mask_job_without_its_model_is_refused(scene: ScenePin, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mask model"):
        _run(scene, tmp_path)


def test_infer_refuses_a_bad_pipeline_spec_naming_the_field(tmp_path: Path) -> None:
    """Exit 2 before any service is asked: the spec is the request's own fault."""
    from typer.testing import CliRunner

    from geomlops.cli.main import app

    spec = tmp_path / "bad.yaml"
    spec.write_text("pipeline: p\nmodel: a\nmask: {model: b, threshold: high}\n")
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[10.0, 49.9], [10.1, 49.9], [10.1, 50.0], [10.0, 50.0], [10.0, 49.9]]]}))  # fmt: skip
    args = ["infer", "--pipeline", str(spec), "--aoi", str(aoi), "--datetime", "2020-01-01/.."]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "mask.threshold" in result.output and str(spec.name) in result.output
    spec.write_text("pipeline: p\nmodel: a\nmask: {model: b}\n")
    other = CliRunner().invoke(app, ["infer", "c", *args[1:]])
    assert other.exit_code == 2 and "spec's model" in other.output
