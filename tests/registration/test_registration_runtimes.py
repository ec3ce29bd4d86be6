"""Validation knows the model runtimes: a pyfunc probability package passes, and a model
asset whose ``mlm:artifact_type`` the platform cannot run is refused naming the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from geomlops.errors import ValidationFailed
from geomlops.model.io import ModelIO
from geomlops.model.kinds import OutputKind
from geomlops.model.runtimes import MLFLOW_PYFUNC, artifact_type, model_folder, model_href
from geomlops.registration.validate import validate_package

PACKAGES = Path(__file__).resolve().parents[2] / "model_packages"


def _copy(tmp_path: Path, name: str = "cloud-s2") -> Path:
    target = tmp_path / name
    shutil.copytree(PACKAGES / name, target, ignore=shutil.ignore_patterns("mlruns", "__pycache__"))
    return target


def _edit_mlm(package: Path, edit: object) -> None:
    mlm = json.loads((package / "mlm.json").read_text())
    edit(mlm)  # type: ignore[operator]
    (package / "mlm.json").write_text(json.dumps(mlm))


def test_the_lightgbm_probability_package_validates() -> None:
    result = validate_package(PACKAGES / "cloud-s2")
    assert result.ok, [str(p) for p in result.problems]


def test_an_artifact_type_without_a_runtime_is_refused_naming_the_field(tmp_path: Path) -> None:
    package = _copy(tmp_path)
    _edit_mlm(package, lambda m: m["assets"]["model"].update({"mlm:artifact_type": "onnx"}))
    problems = [str(p) for p in validate_package(package).problems]
    (problem,) = [p for p in problems if "mlm:artifact_type" in p]
    assert problem.startswith("mlm.json: $.assets.model.mlm:artifact_type: is 'onnx'")
    assert "torch.export.save" in problem and "mlflow.pyfunc" in problem


def test_a_probability_output_keeps_its_channel_rules(tmp_path: Path) -> None:
    package = _copy(tmp_path)

    def two_channels(mlm: dict) -> None:
        output = mlm["properties"]["mlm:output"][0]
        output["result"]["shape"][1] = 2
        output["result"]["dim_order"] = ["batch", "bands", "height", "width"]

    _edit_mlm(package, two_channels)
    problems = [str(p) for p in validate_package(package).problems]
    assert any("mlm:output[0].result.shape" in p for p in problems)
    assert any("mlm:output[0].result.dim_order" in p for p in problems)


def test_runtime_and_model_folder_are_read_from_the_item() -> None:
    item = json.loads((PACKAGES / "cloud-s2" / "mlm.json").read_text())
    assert artifact_type(item) == MLFLOW_PYFUNC
    item["assets"]["model"]["href"] = model_href("s3://mlflow/m-1/artifacts", MLFLOW_PYFUNC)
    assert model_folder(item) == "s3://mlflow/m-1/artifacts"
    flood = json.loads((PACKAGES / "flood-water-s2" / "mlm.json").read_text())
    flood["assets"]["model"]["href"] = model_href("s3://mlflow/m-2/artifacts/", "torch.export.save")
    assert flood["assets"]["model"]["href"] == "s3://mlflow/m-2/artifacts/data/model.pt2"
    assert model_folder(flood) == "s3://mlflow/m-2/artifacts"
    del item["assets"]["model"]["mlm:artifact_type"]
    with pytest.raises(ValidationFailed, match=r"assets.model.mlm:artifact_type is None"):
        artifact_type(item)


def test_cloud_s2_reads_as_a_probability_output_with_its_threshold() -> None:
    io = ModelIO.from_item(json.loads((PACKAGES / "cloud-s2" / "mlm.json").read_text()))
    assert io.kind is OutputKind.PROBABILITY
    assert io.output_spec.threshold == 0.4
