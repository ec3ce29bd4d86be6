"""The two flood model packages honour the contract in model_packages/README.md (static checks)."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
from mlflow.projects._project_spec import load_project

from geomlops.catalog.validation import stac_problems
from geomlops.errors import ValidationFailed
from geomlops.ml.scaling import training_statistics
from geomlops.ml.spec import ModelPackage, consistency_problems, load_package, read_spec
from geomlops.registration.contract import ENTRY_POINTS as CONTRACT_PARAMETERS
from geomlops.registration.contract import HYPERPARAMETERS
from geomlops.sample_data import sample_data_root

PACKAGES_DIR = Path(__file__).resolve().parents[2] / "model_packages"
PACKAGES = ["flood-water-s1", "flood-water-s2"]
REQUIRED_FILES = ["MLproject", "Dockerfile", "mlm.json", "package.yaml", "README.md", "main.py"]


@pytest.fixture(params=PACKAGES)
def package(request: pytest.FixtureRequest) -> ModelPackage:
    return load_package(PACKAGES_DIR / request.param)


def test_package_has_every_required_file(package: ModelPackage) -> None:
    missing = [name for name in REQUIRED_FILES if not (package.path / name).is_file()]
    assert missing == []
    assert package.path.name == package.spec.name == package.mlm["id"]


def test_mlproject_declares_the_contract_entry_points(package: ModelPackage) -> None:
    project = load_project(str(package.path))
    assert project.name == package.spec.name
    for entry, wanted in CONTRACT_PARAMETERS.items():
        point = project.get_entry_point(entry)
        declared = {name: param.type for name, param in point.parameters.items()}
        assert {k: declared.get(k) for k in wanted} == wanted, entry
        script = point.command.split()[1]
        assert (package.path / script).is_file()


def test_mlm_hyperparameters_are_the_training_defaults(package: ModelPackage) -> None:
    train = load_project(str(package.path)).get_entry_point("train")
    recorded = package.mlm["properties"]["mlm:hyperparameters"]
    for name in HYPERPARAMETERS:
        assert float(train.parameters[name].default) == float(recorded[name]), name


def test_mlm_json_validates_offline_against_mlm_v1_6(package: ModelPackage) -> None:
    assert (
        "https://stac-extensions.github.io/mlm/v1.6.0/schema.json"
        in (package.mlm["stac_extensions"])
    )
    assert [str(p) for p in stac_problems(package.mlm)] == []


def test_mlm_json_agrees_with_package_yaml(package: ModelPackage) -> None:
    assert consistency_problems(package) == []
    props = package.mlm["properties"]
    assert props["mlm:input"][0]["bands"] == package.spec.input.bands
    classes = props["mlm:output"][0]["classification:classes"]
    assert [c["name"] for c in classes] == package.spec.class_names


def test_recorded_normalisation_is_the_training_block_statistics(package: ModelPackage) -> None:
    if not (sample_data_root() / package.spec.dataset.image).is_file():
        pytest.skip("sample data not present (set GEOMLOPS_SAMPLE_DATA)")
    fresh = training_statistics(package, None)
    recorded = package.mlm_input["value_scaling"]
    for band, new, old in zip(package.spec.input.bands, fresh, recorded, strict=True):
        assert math.isclose(new["mean"], old["mean"], rel_tol=1e-5, abs_tol=1e-5), band
        assert math.isclose(new["stddev"], old["stddev"], rel_tol=1e-5, abs_tol=1e-5), band


def _broken(package: ModelPackage, edit: object) -> list[str]:
    mlm = copy.deepcopy(package.mlm)
    edit(mlm)  # type: ignore[operator]
    broken = ModelPackage(path=package.path, spec=package.spec, mlm=mlm)
    return [f"{p.field}: {p.message}" for p in consistency_problems(broken)]


def test_a_band_the_code_does_not_read_is_reported_by_field(package: ModelPackage) -> None:
    def rename(mlm: dict) -> None:
        mlm["properties"]["mlm:input"][0]["bands"][0] = "B99"

    problems = _broken(package, rename)
    assert len(problems) == 1
    assert problems[0].startswith("properties.mlm:input[0].bands: ")
    assert "B99" in problems[0]


def test_class_mismatch_and_shape_mismatch_are_each_reported(package: ModelPackage) -> None:
    def edit(mlm: dict) -> None:
        mlm["properties"]["mlm:output"][0]["classification:classes"][1]["name"] = "flood"
        mlm["properties"]["mlm:input"][0]["input"]["shape"][2] = 128

    problems = _broken(package, edit)
    fields = sorted(p.split(": ")[0] for p in problems)
    assert fields == [
        "properties.mlm:input[0].input.shape",
        "properties.mlm:output[0].classification:classes",
    ]


def test_missing_statistics_name_the_command_that_records_them(package: ModelPackage) -> None:
    mlm = copy.deepcopy(package.mlm)
    del mlm["properties"]["mlm:input"][0]["value_scaling"]
    problems = consistency_problems(ModelPackage(package.path, package.spec, mlm))
    assert [p.field for p in problems] == ["properties.mlm:input[0].value_scaling"]
    assert "geomlops.ml.scaling" in problems[0].hint


def test_load_package_refuses_an_inconsistent_package(tmp_path: Path) -> None:
    source = PACKAGES_DIR / "flood-water-s1"
    for name in ("package.yaml", "mlm.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    mlm = json.loads((tmp_path / "mlm.json").read_text())
    mlm["properties"]["mlm:input"][0]["bands"] = ["VH", "VV"]
    (tmp_path / "mlm.json").write_text(json.dumps(mlm))
    with pytest.raises(ValidationFailed) as caught:
        load_package(tmp_path)
    assert any("properties.mlm:input[0].bands" in p for p in caught.value.problems)


def test_package_yaml_errors_name_the_field(tmp_path: Path) -> None:
    text = (PACKAGES_DIR / "flood-water-s1" / "package.yaml").read_text()
    (tmp_path / "package.yaml").write_text(text.replace("patch_size: 64", "patch_size: -3"))
    with pytest.raises(ValidationFailed) as caught:
        read_spec(tmp_path)
    assert any(p.startswith("package.yaml: input.patch_size:") for p in caught.value.problems)


def test_package_yaml_is_readable_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from geomlops.ml.spec import load_package; "
        f"load_package(Path({str(PACKAGES_DIR / 'flood-water-s2')!r})); "
        "assert 'torch' not in sys.modules, 'spec imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_evaluate_logs_exactly_the_declared_metrics(package: ModelPackage, tmp_path: Path) -> None:
    """The `evaluate` entry point logs to MLflow the metrics package.yaml declares, exactly.

    Cheap: a one-layer model exported with torch.export stands in for a trained one (the
    names logged do not depend on the weights); the run is tracked in a SQLite store in tmp.
    MLflow runs in subprocesses, as under `mlflow run` (its SQLAlchemy store warns on import),
    and the entry point in the package's own environment (its framework is not in this one).
    """
    import subprocess
    import sys

    import torch

    from geomlops.package_env import package_env
    from geomlops.settings import get_settings

    if not (sample_data_root() / package.spec.dataset.image).is_file():
        pytest.skip("sample data not present (set GEOMLOPS_SAMPLE_DATA)")
    bands, classes = len(package.spec.input.bands), len(package.spec.class_names)
    layer = torch.nn.Conv2d(bands, classes, kernel_size=1)
    with torch.no_grad():  # water where the first band is high: both classes are predicted
        layer.weight.zero_()
        layer.weight[classes - 1, 0] = 1.0
        layer.bias.zero_()
    size = package.spec.input.patch_size
    example = (torch.zeros(2, bands, size, size),)
    batch = torch.export.Dim("batch")  # evaluation feeds batches of any size
    program = torch.export.export(layer.eval(), example, dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "GEOMLOPS_SAMPLE_DATA": str(sample_data_root()),
    }
    model = str(tmp_path / "model.pt2")
    python = str(package_env(package.path, get_settings()).python)
    evaluate = [python, "main.py", "evaluate", "--model", model, "--device", "cpu"]
    done = subprocess.run(
        evaluate, cwd=package.path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    read = (
        "import json, mlflow; [run] = mlflow.search_runs(search_all_experiments=True, "
        "output_format='list'); print(json.dumps(sorted(run.data.metrics)))"
    )
    listed = subprocess.run(
        [sys.executable, "-c", read], env=env, capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert package.spec.metrics is not None
    assert json.loads(listed.stdout) == sorted(package.spec.metrics)
