"""The logic every package shares (geomlops.ml), on small generated rasters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from geomlops.errors import NotFoundError, ValidationFailed
from geomlops.ml.data import IGNORE
from geomlops.ml.metrics import segmentation_metrics
from geomlops.ml.raster import MASK_NODATA, read_bands, write_raster
from geomlops.ml.runner import predict
from geomlops.ml.scaling import normalise
from geomlops.ml.spec import HoldoutSpec, load_package
from geomlops.ml.split import spatial_split, window_starts
from geomlops.ml.tiling import predict_probabilities

S1_PACKAGE = Path(__file__).resolve().parents[2] / "model_packages" / "flood-water-s1"
TRANSFORM = from_origin(500_000, 5_300_000, 10, 10)


def _write_scene(
    path: Path, bands: dict[str, np.ndarray], *, crs: str | None = "EPSG:32633"
) -> Path:
    first = next(iter(bands.values()))
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=first.shape[1],
        height=first.shape[0],
        count=len(bands),
        dtype="float32",
        crs=crs,
        transform=TRANSFORM,
        nodata=float("nan"),
    ) as dst:
        for index, (name, data) in enumerate(bands.items(), start=1):
            dst.write(data.astype("float32"), index)
            dst.set_band_description(index, name)
    return path


def _seeded(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(-15, 5, shape).astype("float32")


class DarkIsWater(torch.nn.Module):
    """A real (if simple) per-pixel model: water logit rises as VV backscatter falls."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[1, 0] = -3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_bands_are_selected_by_name_not_position(tmp_path: Path) -> None:
    vv, vh = _seeded((8, 8), 1), _seeded((8, 8), 2)
    path = _write_scene(tmp_path / "s.tif", {"VH": vh, "extra": vv * 0, "VV": vv})
    raster = read_bands(path, ["VV", "VH"])
    np.testing.assert_array_equal(raster.data[0], vv)
    np.testing.assert_array_equal(raster.data[1], vh)
    assert raster.crs.to_epsg() == 32633


def test_missing_band_names_file_and_band(tmp_path: Path) -> None:
    path = _write_scene(tmp_path / "vv_only.tif", {"VV": _seeded((8, 8), 1)})
    with pytest.raises(ValidationFailed) as caught:
        read_bands(path, ["VV", "VH"])
    assert str(path) in caught.value.message
    assert "VH" in caught.value.message


def test_raster_without_crs_is_refused(tmp_path: Path) -> None:
    path = _write_scene(tmp_path / "nocrs.tif", {"VV": _seeded((8, 8), 1)}, crs=None)
    with pytest.raises(ValidationFailed, match="has no CRS"):
        read_bands(path, ["VV"])


def test_missing_input_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        read_bands(tmp_path / "absent.tif", ["VV"])


def test_spatial_split_keeps_a_buffer_between_blocks() -> None:
    split = spatial_split(512, HoldoutSpec(fraction=0.25, buffer=16), patch_size=64)
    assert (split.train.start, split.train.stop) == (0, 368)
    assert (split.holdout.start, split.holdout.stop) == (384, 512)
    with pytest.raises(ValidationFailed, match="cannot hold"):
        spatial_split(100, HoldoutSpec(fraction=0.25, buffer=16), patch_size=64)


def test_windows_cover_the_whole_length_with_the_last_at_the_edge() -> None:
    assert window_starts(100, 32, 24) == [0, 24, 48, 68]
    assert window_starts(20, 32, 24) == [0]
    covered = np.zeros(100, bool)
    for start in window_starts(100, 32, 24):
        covered[start : start + 32] = True
    assert covered.all()


@pytest.mark.parametrize("shape", [(50, 70), (20, 20), (64, 64)])
def test_tiled_prediction_equals_whole_scene_prediction(shape: tuple[int, int]) -> None:
    model = DarkIsWater().eval()
    scaled = np.random.default_rng(0).normal(0, 1, (2, *shape)).astype("float32")
    tiled = predict_probabilities(
        model, scaled, patch_size=32, overlap=8, device=torch.device("cpu"), batch_size=3
    )
    with torch.no_grad():
        whole = torch.softmax(model(torch.from_numpy(scaled)[None]), dim=1)[0].numpy()
    assert tiled.shape == (2, *shape)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_normalise_scales_and_zeroes_no_data() -> None:
    bands = np.array([[[10.0, np.nan]], [[0.0, 4.0]]], dtype="float32")
    scaled = normalise(bands, [6.0, 2.0], [2.0, 1.0])
    np.testing.assert_allclose(scaled, [[[2.0, 0.0]], [[-2.0, 2.0]]])


def test_metrics_follow_their_definitions_and_skip_ignored_pixels() -> None:
    target = np.array([1, 1, 1, 0, 0, 0, IGNORE, IGNORE])
    prediction = np.array([1, 1, 0, 0, 0, 1, 1, 0])
    metrics = segmentation_metrics(prediction, target, ["not_water", "water"])
    assert metrics["val_iou_water"] == pytest.approx(2 / 4)  # tp 2, fp 1, fn 1
    assert metrics["val_iou_not_water"] == pytest.approx(2 / 4)
    assert metrics["val_f1_water"] == pytest.approx(2 * 2 / (3 + 3))
    assert metrics["val_accuracy"] == pytest.approx(4 / 6)
    assert metrics["val_miou"] == pytest.approx(0.5)


def test_a_class_absent_everywhere_is_nan_not_perfect() -> None:
    metrics = segmentation_metrics(np.zeros(4), np.zeros(4), ["not_water", "water"])
    assert metrics["val_iou_not_water"] == 1.0
    assert np.isnan(metrics["val_iou_water"])
    assert metrics["val_miou"] == 1.0


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    like = read_bands(_write_scene(tmp_path / "s.tif", {"VV": _seeded((8, 8), 1)}), ["VV"])
    out = tmp_path / "out"
    with pytest.raises(IndexError, match="No such band index: 2"):
        # fails after the pixels are written: one band, two descriptions
        write_raster(
            out / "bad.tif",
            np.zeros((8, 8), "uint8"),
            like,
            nodata=255,
            descriptions=["class", "extra"],
        )
    assert list(out.iterdir()) == []


def test_predict_writes_a_georeferenced_mask_and_probabilities(tmp_path: Path) -> None:
    package = load_package(S1_PACKAGE)
    vv, vh = _seeded((40, 50), 3), _seeded((40, 50), 4)
    vv[5, 7] = np.nan  # no data in one band is no data in the mask
    scene = _write_scene(tmp_path / "scene.tif", {"VH": vh, "VV": vv})
    model_file = tmp_path / "model.pt2"
    batch = torch.export.Dim.AUTO
    program = torch.export.export(
        DarkIsWater().eval(), (torch.zeros(2, 2, 64, 64),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, str(model_file))

    result = predict(
        package,
        model_uri=str(model_file),
        input_path=str(scene),
        output=tmp_path / "out",
        device_name="cpu",
    )

    with rasterio.open(result.mask) as mask_file:
        mask = mask_file.read(1)
        assert mask_file.dtypes[0] == "uint8"
        assert mask_file.nodata == MASK_NODATA
        assert mask_file.crs.to_epsg() == 32633
        assert mask_file.transform == TRANSFORM
        assert mask_file.tags()["package"] == "flood-water-s1"
    assert mask[5, 7] == MASK_NODATA
    valid = np.ones(mask.shape, bool)
    valid[5, 7] = False
    mean = package.scaling()[0][0]
    np.testing.assert_array_equal(mask[valid], (vv[valid] < mean).astype("uint8"))
    with rasterio.open(result.probabilities) as probability_file:
        assert probability_file.descriptions == ("not_water", "water")
        assert probability_file.transform == TRANSFORM
        probabilities = probability_file.read()
    assert np.isnan(probabilities[:, 5, 7]).all()
    np.testing.assert_allclose(probabilities[:, valid].sum(axis=0), 1.0, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "scene_mask.tif",
        "scene_probabilities.tif",
    ]


def test_predict_refuses_a_scene_without_the_model_bands(tmp_path: Path) -> None:
    package = load_package(S1_PACKAGE)
    scene = _write_scene(tmp_path / "vv.tif", {"VV": _seeded((16, 16), 5)})
    with pytest.raises(ValidationFailed, match="lacks band"):
        predict(
            package,
            model_uri=str(tmp_path / "never-loaded.pt2"),
            input_path=str(scene),
            output=tmp_path / "out",
            device_name="cpu",
        )
    assert not (tmp_path / "out").exists()
