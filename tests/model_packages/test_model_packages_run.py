"""`mlflow run` each package end to end: train, predict over the real chip, evaluate.

Each package runs in its own environment (geomlops.package_env), as the train
steps run it: `mlflow run --env-manager local` finds the environment's `python` on PATH.

The tracking store is a SQLite file in a temporary directory (the platform's MLflow server
is reached the same way, through MLFLOW_TRACKING_URI). Training is cut to one epoch over
sparse patches: this checks the contract, not the model's quality (the READMEs record that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geomlops.ml.raster import MASK_NODATA
from geomlops.package_env import package_env
from geomlops.sample_data import sample_data_root
from geomlops.settings import get_settings

PACKAGES_DIR = Path(__file__).resolve().parents[2] / "model_packages"
CHIPS = {
    "flood-water-s1": "imagery/sen1floods11/Spain_7370579_S1Hand.tif",
    "flood-water-s2": "imagery/sen1floods11/Spain_7370579_S2Hand.tif",
}
EXPERIMENT = "contract-test"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for `mlflow run` against a fresh SQLite store with artifacts in tmp."""
    if not (sample_data_root() / CHIPS["flood-water-s1"]).is_file():
        pytest.skip("sample data not present (set GEOMLOPS_SAMPLE_DATA)")
    root = tmp_path_factory.mktemp("mlflow")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "GEOMLOPS_SAMPLE_DATA": str(sample_data_root()),
    }
    _mlflow(
        env,
        "experiments",
        "create",
        "-n",
        EXPERIMENT,
        "--artifact-location",
        str(root / "artifacts"),
    )
    return env


def _in_package_env(env: dict[str, str], package: str) -> dict[str, str]:
    """``env`` with the package's own environment first on PATH (what the train step does)."""
    environment = package_env(PACKAGES_DIR / package, get_settings())
    return {**env, "PATH": f"{environment.bindir}{os.pathsep}{os.environ['PATH']}"}


def _mlflow(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _run(env: dict[str, str], package: str, entry: str, cwd: Path, **params: str) -> dict:
    args = [
        "run",
        str(PACKAGES_DIR / package),
        "-e",
        entry,
        "--env-manager",
        "local",
        "--experiment-name",
        EXPERIMENT,
    ]
    for name, value in params.items():
        args += ["-P", f"{name}={value}"]
    stdout = _mlflow(_in_package_env(env, package), *args, cwd=cwd)
    return json.loads(stdout[stdout.index("{") :])


@pytest.mark.parametrize("package", sorted(CHIPS))
def test_train_predict_evaluate_through_mlflow_run(
    package: str, tracking: dict[str, str], tmp_path: Path
) -> None:
    trained = tmp_path / "trained"
    metrics = _run(
        tracking, package, "train", tmp_path, epochs="1", stride="64", output=str(trained)
    )
    assert 0.0 <= metrics["val_iou_water"] <= 1.0
    assert json.loads((trained / "metrics.json").read_text()) == metrics
    assert (trained / "model" / "MLmodel").is_file()
    assert (trained / "model" / "mlm.json").is_file()

    chip = sample_data_root() / CHIPS[package]
    written = _run(
        tracking,
        package,
        "predict",
        tmp_path,
        model=str(trained / "model"),
        input=str(chip),
        output=str(tmp_path / "predicted"),
    )
    with rasterio.open(chip) as source, rasterio.open(written["mask"]) as mask_file:
        assert mask_file.crs == source.crs
        assert mask_file.transform == source.transform
        assert (mask_file.width, mask_file.height) == (source.width, source.height)
        assert mask_file.dtypes[0] == "uint8"
        assert mask_file.nodata == MASK_NODATA
        mask = mask_file.read(1)
    assert set(np.unique(mask)) <= {0, 1, MASK_NODATA}
    with rasterio.open(written["probabilities"]) as probability_file:
        assert probability_file.count == 2
        assert probability_file.crs == mask_file.crs

    evaluated = _run(tracking, package, "evaluate", tmp_path, model=str(trained / "model"))
    for name, value in metrics.items():
        assert evaluated[name] == pytest.approx(value, abs=1e-3), name


def test_entry_point_refuses_a_scene_without_its_bands(
    tracking: dict[str, str], tmp_path: Path
) -> None:
    package = PACKAGES_DIR / "flood-water-s1"
    result = subprocess.run(
        [
            str(package_env(package, get_settings()).python),
            "main.py",
            "predict",
            "--model",
            str(tmp_path / "absent.pt2"),
            "--input",
            str(sample_data_root() / CHIPS["flood-water-s2"]),
            "--output",
            str(tmp_path / "out"),
        ],
        cwd=package,
        env=tracking,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert "lacks band(s) VV, VH" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "out").exists()
