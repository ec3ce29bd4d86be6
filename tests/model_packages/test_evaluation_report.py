"""What evaluate shows an approver in MLflow: the picture and the confusion matrix it logs.

The report is checked on generated arrays, and through the SDK's ``evaluate`` itself: a
fixed model (no training) on a generated scene laid out as ``flood-water-s1`` declares it,
logged to an MLflow SQLite store in a temporary folder.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from matplotlib import image as mpimg
from mlflow.tracking import MlflowClient
from rasterio.transform import from_origin

from geomlops.ml.data import IGNORE
from geomlops.ml.metrics import confusion, segmentation_metrics
from geomlops.ml.report import (
    CONFUSION_CSV,
    CONFUSION_JSON,
    CONFUSION_PNG,
    PREDICTION_PNG,
    REPORT_DIR,
    EvaluatedBlock,
    write_report,
)
from geomlops.ml.runner import evaluate
from geomlops.ml.spec import load_package

S1_PACKAGE = Path(__file__).resolve().parents[2] / "model_packages" / "flood-water-s1"
NAMES = ["not_water", "water", "cloud"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _block(bands: list[str], seed: int = 0) -> EvaluatedBlock:
    rng = np.random.default_rng(seed)
    image = rng.normal(0.1, 0.05, (len(bands), 40, 24)).astype("float32")
    image[:, 3, 4] = np.nan
    label = rng.integers(0, 3, (40, 24))
    label[:5] = IGNORE
    prediction = np.where(rng.random((40, 24)) < 0.7, label, rng.integers(0, 3, (40, 24)))
    prediction[label == IGNORE] = 0
    return EvaluatedBlock(image, label, prediction, bands, NAMES)


def _is_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.std() > 0, f"{path} is blank"
    return pixels.shape[0], pixels.shape[1]


def _check_matrix(folder: Path, names: list[str], metrics: dict[str, float]) -> np.ndarray:
    """The JSON and CSV agree, name the classes, and reproduce every logged IoU."""
    document = json.loads((folder / CONFUSION_JSON).read_text())
    assert document["classes"] == names
    assert (document["rows"], document["columns"]) == ("label", "prediction")
    matrix = np.array(document["matrix"])
    assert matrix.shape == (len(names), len(names))
    assert document["pixels"] == int(matrix.sum())
    with (folder / CONFUSION_CSV).open(newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0][1:] == names and [r[0] for r in rows[1:]] == names
    assert np.array([[int(v) for v in r[1:]] for r in rows[1:]]).tolist() == matrix.tolist()
    for index, name in enumerate(names):
        tp = matrix[index, index]
        union = matrix[index].sum() + matrix[:, index].sum() - tp
        assert tp / union == pytest.approx(metrics[f"val_iou_{name}"]), name
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["val_accuracy"])
    return matrix


@pytest.mark.parametrize("bands", [["B2", "B3", "B4", "B8"], ["VV", "VH"]])
def test_report_files_are_pictures_and_the_matrix_of_the_metrics(
    bands: list[str], tmp_path: Path
) -> None:
    block = _block(bands)
    matrix = confusion(block.prediction, block.label, len(NAMES))
    written = write_report(block, matrix, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        [PREDICTION_PNG, CONFUSION_PNG, CONFUSION_JSON, CONFUSION_CSV]
    )
    height, width = _is_png(tmp_path / PREDICTION_PNG)
    assert height > 0 and width > 2 * height / 3  # three panels side by side
    _is_png(tmp_path / CONFUSION_PNG)
    metrics = segmentation_metrics(block.prediction, block.label, NAMES)
    counted = _check_matrix(tmp_path, NAMES, metrics)
    assert counted.sum() == (block.label != IGNORE).sum()  # ignored pixels are not counted


def _write(path: Path, bands: dict[str, np.ndarray], dtype: str, nodata: float) -> None:
    first = next(iter(bands.values()))
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=first.shape[1],
        height=first.shape[0],
        count=len(bands),
        dtype=dtype,
        crs="EPSG:32630",
        transform=from_origin(400_000, 4_500_000, 10, 10),
        nodata=nodata,
    ) as dst:
        for index, (name, data) in enumerate(bands.items(), start=1):
            dst.write(data.astype(dtype), index)
            dst.set_band_description(index, name)


class DarkIsWater(torch.nn.Module):
    """Water where (normalised) VV backscatter is low: a real model without training."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[1, 0] = -3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.slow
# MLflow's SQLite store (the in-process tracking store here) asks SQLAlchemy 2.1 for its
# deprecated `noload` strategy: inside MLflow, not ours; the platform's server is separate.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_evaluate_logs_the_report_to_its_mlflow_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = load_package(S1_PACKAGE)
    rng = np.random.default_rng(7)
    vv = rng.normal(-12, 4, (96, 256)).astype("float32")
    vh = rng.normal(-20, 4, (96, 256)).astype("float32")
    label = (vv < package.scaling()[0][0]).astype("int16")
    label[rng.random(label.shape) < 0.1] ^= 1  # the model is wrong on about a tenth
    label[:4] = -1  # label no data
    data = tmp_path / "data"
    _write(data / package.spec.dataset.image, {"VV": vv, "VH": vh}, "float32", float("nan"))
    _write(data / package.spec.dataset.label, {"label": label}, "int16", -1)
    model_file = tmp_path / "model.pt2"
    program = torch.export.export(
        DarkIsWater().eval(),
        (torch.zeros(2, 2, 64, 64),),
        dynamic_shapes=({0: torch.export.Dim.AUTO},),
    )
    torch.export.save(program, str(model_file))

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("report", artifact_location=str(tmp_path / "art"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
    metrics = evaluate(
        package, model_uri=str(model_file), data=str(data), output=None, device_name="cpu"
    )

    (run,) = client.search_runs([experiment])
    assert run.data.metrics["val_iou_water"] == pytest.approx(metrics["val_iou_water"])
    listed = {a.path for a in client.list_artifacts(run.info.run_id, REPORT_DIR)}
    names = (PREDICTION_PNG, CONFUSION_PNG, CONFUSION_JSON, CONFUSION_CSV)
    assert listed == {f"{REPORT_DIR}/{n}" for n in names}
    folder = Path(client.download_artifacts(run.info.run_id, REPORT_DIR, str(tmp_path / "got")))
    _is_png(folder / PREDICTION_PNG)
    _is_png(folder / CONFUSION_PNG)
    matrix = _check_matrix(folder, package.spec.class_names, run.data.metrics)
    holdout = run.data.params["holdout_columns"].split(":")
    columns = slice(int(holdout[0]), int(holdout[1]))
    assert matrix.sum() == (label[:, columns] != -1).sum()
