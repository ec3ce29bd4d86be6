"""`reproduce_model_version` on the local stack: a version trained through `geomlops-train`
(one epoch, CPU) is retrained from its record and its held-out metrics agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.cli.reproduce_training import EXPERIMENT, reproduce_model_version
from geomlops.connections import Connections
from geomlops.datasets import DatasetRegistry
from geomlops.datasets.registry import staged
from geomlops.registration.register import register_package
from geomlops.settings import get_settings

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PACKAGE = "flood-water-s2"


@pytest.fixture(scope="module")
def trained(stack: Connections) -> str:
    """A version of the S2 package trained for one epoch, seed 5; returns NAME/VERSION."""
    register_package(REPO / "model_packages" / PACKAGE, git_url=str(REPO))
    sample = get_settings().sample_data.sample_data
    assert sample is not None, "the Sen1Floods11 sample is needed (GEOMLOPS_SAMPLE_DATA)"
    with staged([sample / "imagery" / "sen1floods11"], sample) as root:
        dataset, _ = DatasetRegistry().add(root, "sen1floods11", description="Sen1Floods11 chip")
    args = ["workflows", "submit", "geomlops-train", "-p", f"package={PACKAGE}"]
    for param in (f"dataset={dataset.tag}", "epochs=1", "seed=5", "device=cpu"):
        args += ["-p", param]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    run = result.stdout.strip()
    client = MlflowClient(stack.mlflow_tracking_uri)
    (version,) = [
        v
        for v in client.search_model_versions(f"name = '{PACKAGE}'")
        if v.tags.get("geomlops.workflow") == run
    ]
    return f"{PACKAGE}/{version.version}"


def test_a_version_is_retrained_from_its_record_and_agrees(
    trained: str, stack: Connections, capsys: pytest.CaptureFixture[str]
) -> None:
    code = reproduce_model_version(trained, device="cpu", as_json=True)
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["ok"] and report["tolerance"] == 0.02
    names = {m["name"] for m in report["metrics"]}
    assert "val_iou_water" in names and all(n.startswith("val_") for n in names)
    for metric in report["metrics"]:
        assert metric["ok"] and metric["difference"] <= 0.02, metric
    # Retrained with what was recorded: the submitter's epochs and seed, the package's rest.
    run = MlflowClient(stack.mlflow_tracking_uri).get_run(report["reproduction_run_id"])
    assert float(run.data.params["epochs"]) == 1 and float(run.data.params["seed"]) == 5
    assert float(run.data.params["learning_rate"]) == 0.001
    assert run.data.tags["geomlops.reproduces"] == trained.replace("/", "-mv")
    assert run.info.status == "FINISHED"
    experiment = MlflowClient(stack.mlflow_tracking_uri).get_experiment(run.info.experiment_id)
    assert experiment.name == EXPERIMENT


def test_an_unknown_version_is_an_error_with_exit_1(
    stack: Connections, capsys: pytest.CaptureFixture[str]
) -> None:
    assert reproduce_model_version(f"{PACKAGE}/999", device="cpu") == 1
    assert f"cannot reproduce {PACKAGE}/999" in capsys.readouterr().err
