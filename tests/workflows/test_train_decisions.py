"""What `geomlops-train` records, what it registers, and how its runs end, on the local stack.

A copy of the S2 flood package, renamed ``flood-water-lr``, declares its own defaults in its
MLproject (learning rate 0.002, one epoch) that differ from what the workflow template used
to impose (0.001, six epochs), and gates every candidate passes. It is trained through the
workflow (the in-process Argo API); the copy lives in a git repository of its own, pushed to
a bare `origin`, and the steps find it from its registration alone (a checkout of the
recorded commit). Then decided on directly with `geomlops promote` and `geomlops reject`,
and stopped. What an approver finds in MLflow is checked on the way: the package's own
experiment, the evaluate run's picture and confusion matrix, and the decision with its
reason on the model version.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.db import pgstac_connection
from geomlops.catalog.keys import create_key
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.datasets import DatasetRegistry
from geomlops.datasets.registry import staged
from geomlops.governance.decisions import Governance
from geomlops.ml.report import (
    CONFUSION_CSV,
    CONFUSION_JSON,
    CONFUSION_PNG,
    PREDICTION_PNG,
    REPORT_DIR,
)
from geomlops.ml.runner import load_model
from geomlops.model.resolve import resolve_model
from geomlops.model.tracking import (
    DECIDED_AT_TAG,
    DECIDED_BY_TAG,
    DECISION_REASON_TAG,
    DECISION_TAG,
    experiment_name,
)
from geomlops.registration.register import register_package
from geomlops.settings import get_settings

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SOURCE = "flood-water-s2"
PACKAGE = "flood-water-lr"
runner = CliRunner()


def make_package(folder: Path) -> Path:
    """``flood-water-s2`` renamed, with defaults of its own: lr 0.002, 1 epoch, gates at 0."""
    package = folder / PACKAGE
    shutil.copytree(REPO / "model_packages" / SOURCE, package)
    for name in ("MLproject", "package.yaml", "mlm.json"):
        path = package / name
        path.write_text(path.read_text().replace(SOURCE, PACKAGE))
    mlproject = package / "MLproject"
    text = mlproject.read_text()
    for name, old, new in (("learning_rate", "0.001", "0.002"), ("epochs", "12", "1")):
        line = f"{name}: {{type: float, default: {old}}}"
        assert line in text, line
        text = text.replace(line, line.replace(old, new))
    mlproject.write_text(text)
    mlm = json.loads((package / "mlm.json").read_text())
    mlm["properties"]["mlm:hyperparameters"].update(learning_rate=0.002, epochs=1)
    mlm["properties"]["geomlops:gates"] = {"val_iou_water": {"min": 0.0}}
    (package / "mlm.json").write_text(json.dumps(mlm, indent=2))
    return package


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)


@pytest.fixture(scope="module")
def package(stack: Connections, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package copy, committed and pushed to its own `origin`, then registered."""
    root = tmp_path_factory.mktemp("packages")
    _git(root, "init", "-q", "--bare", "-b", "main", "origin.git")
    work = root / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    _git(work, "config", "user.email", "tests@geomlops.invalid")
    _git(work, "config", "user.name", "geomlops tests")
    _git(work, "remote", "add", "origin", str(root / "origin.git"))
    package = make_package(work)
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", PACKAGE)
    _git(work, "push", "-q", "origin", "main")
    register_package(package)
    return package


@pytest.fixture(scope="module")
def dataset(stack: Connections) -> str:
    sample = get_settings().sample_data.sample_data
    assert sample is not None, "the Sen1Floods11 sample is needed (GEOMLOPS_SAMPLE_DATA)"
    with staged([sample / "imagery" / "sen1floods11"], sample) as root:
        version, _ = DatasetRegistry().add(root, "sen1floods11", description="Sen1Floods11 chip")
    return version.tag


@pytest.fixture
def trainable(package: Path, argo: str) -> None:
    """The package is registered and Argo's API answers: nothing else tells pods where it is."""


def _approver() -> str:
    with pgstac_connection() as conn:
        key, _ = create_key(conn, f"approver-{uuid.uuid4().hex[:6]}", ["approver"])
    return key


def _train(dataset: str, *params: str) -> str:
    """Submit a training run (as the admin key); it ends suspended. Returns its name."""
    args = ["workflows", "submit", "geomlops-train", "-p", f"package={PACKAGE}"]
    for param in (f"dataset={dataset}", "device=cpu", *params):
        args += ["-p", param]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    return result.stdout.strip()


def _status(run: str) -> dict[str, Any]:
    result = runner.invoke(app, ["workflows", "status", run, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _version_of(run: str, stack: Connections) -> Any:
    client = MlflowClient(stack.mlflow_tracking_uri)
    (version,) = [
        v
        for v in client.search_model_versions(f"name = '{PACKAGE}'")
        if v.tags.get("geomlops.workflow") == run
    ]
    return version


def _item(version: str) -> dict[str, Any]:
    with CatalogClient.from_settings() as catalog:
        return catalog.get_item_dict("models", f"{PACKAGE}-mv{version}")


def _as(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("GEOMLOPS_API_KEY", key)
    get_settings.cache_clear()


def _steps(run: str) -> dict[str, str]:
    return {
        n["displayName"]: n["phase"]
        for n in _status(run)["nodes"]
        if n["displayName"] in ("approve", "approved", "rejected")
    }


def _assert_decision(client: MlflowClient, version: str, decision: str, reason: str) -> None:
    """The MLflow model version carries the decision, its reason, who and when."""
    tags = client.get_model_version(PACKAGE, version).tags
    assert tags[DECISION_TAG] == decision
    assert tags[DECISION_REASON_TAG] == reason
    assert tags[DECIDED_BY_TAG].startswith("approver-")
    assert datetime.fromisoformat(tags[DECIDED_AT_TAG]).tzinfo is not None


def _assert_evaluation_report(client: MlflowClient, run: Any) -> None:
    """The evaluate run's ``evaluation/`` artifacts: two PNGs and the matrix of its metrics."""
    run_id = run.info.run_id
    listed = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run_id, REPORT_DIR)}
    assert listed == {PREDICTION_PNG, CONFUSION_PNG, CONFUSION_JSON, CONFUSION_CSV}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(client.download_artifacts(run_id, REPORT_DIR, tmp))
        for picture in (PREDICTION_PNG, CONFUSION_PNG):
            assert (folder / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
        document = json.loads((folder / CONFUSION_JSON).read_text())
    assert document["classes"] == ["not_water", "water"]
    matrix = np.array(document["matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == document["pixels"] > 0
    for index, name in enumerate(document["classes"]):
        union = matrix[index].sum() + matrix[:, index].sum() - matrix[index, index]
        iou = matrix[index, index] / union
        assert iou == pytest.approx(run.data.metrics[f"val_iou_{name}"]), name


def test_promoted_run_records_received_parameters_and_loads_everywhere(
    trainable: None, dataset: str, stack: Connections, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _train(dataset, "seed=3")
    version = _version_of(run, stack)
    client = MlflowClient(stack.mlflow_tracking_uri)

    # Defect 2: the package's defaults unless the submitter set a value; the catalog and
    # MLflow record what the entry point received, and the two records agree.
    logged = client.get_run(version.run_id).data.params
    assert float(logged["learning_rate"]) == 0.002  # the package's, not the template's 0.001
    assert float(logged["epochs"]) == 1  # the package's, not the template's 6
    assert float(logged["seed"]) == 3  # the submitter's
    hyper = _item(version.version)["properties"]["mlm:hyperparameters"]
    for name in ("epochs", "batch_size", "learning_rate", "stride", "seed"):
        assert float(hyper[name]) == float(logged[name]), name
    epochs_run = client.get_metric_history(version.run_id, "train_loss")
    assert len(epochs_run) == 1  # and it trained with them

    # Defect 7: a direct promotion lets the waiting run finish Succeeded.
    _as(monkeypatch, _approver())
    promoted = runner.invoke(
        app, ["promote", PACKAGE, str(version.version), "--reason", "test: gates met"]
    )
    assert promoted.exit_code == 0, promoted.output
    assert f"training run {run} resumed as approved: Succeeded" in promoted.stderr
    status = _status(run)
    assert status["phase"] == "Succeeded" and not status["suspended"]
    assert _steps(run) == {"approve": "Succeeded", "approved": "Succeeded", "rejected": "Skipped"}
    _assert_decision(client, str(version.version), "promote", "test: gates met")

    # Issue 16: the package's own experiment holds its train and evaluate runs, and the
    # evaluate run shows an approver the prediction against the label and the confusion
    # matrix its metrics come from.
    evaluate_run = client.get_run(version.tags["geomlops.evaluate_run_id"])
    for run_info in (client.get_run(version.run_id).info, evaluate_run.info):
        assert client.get_experiment(run_info.experiment_id).name == experiment_name(PACKAGE)
    _assert_evaluation_report(client, evaluate_run)

    # Defect 3: the registered version is the logged model, so every MLflow URI loads it.
    mlflow.set_tracking_uri(stack.mlflow_tracking_uri)
    example = np.zeros((2, 13, 64, 64), dtype="float32")
    with warnings.catch_warnings():
        # mlflow.pyfunc's first import infers a signature type of its own from `Any` and
        # warns about it (the message starts with a colour code): inside MLflow, not ours.
        warnings.filterwarnings("ignore", ".*Any type hint is inferred", UserWarning)
        pyfunc = mlflow.pyfunc.load_model(f"models:/{PACKAGE}@production")
    assert np.asarray(pyfunc.predict(example)).shape == (2, 2, 64, 64)
    model = mlflow.pytorch.load_model(f"models:/{PACKAGE}/{version.version}")
    assert tuple(model(torch.from_numpy(example)).shape) == (2, 2, 64, 64)
    # ... as the hint of the package runner says (its evaluate/predict take these URIs) ...
    assert load_model(f"models:/{PACKAGE}@production", torch.device("cpu")) is not None
    # ... and the model carries its MLM description beside the weights serving reads.
    mlm = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(f"models:/{PACKAGE}/{version.version}/mlm.json")
        ).read_text()
    )
    assert mlm["properties"]["mlm:name"] == PACKAGE
    resolved = resolve_model(PACKAGE)
    assert resolved.version == str(version.version)
    assert _item(version.version)["assets"]["model"]["href"] == resolved.model_file_uri
    weights = mlflow.artifacts.download_artifacts(resolved.model_file_uri)
    assert torch.export.load(weights).module() is not None


def test_rejected_run_ends_at_rejected(
    trainable: None, dataset: str, stack: Connections, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _train(dataset)
    version = _version_of(run, stack)
    _as(monkeypatch, _approver())
    rejected = runner.invoke(
        app, ["reject", PACKAGE, str(version.version), "--reason", "test: not good enough"]
    )
    assert rejected.exit_code == 0, rejected.output
    _assert_decision(
        MlflowClient(stack.mlflow_tracking_uri),
        str(version.version),
        "reject",
        "test: not good enough",
    )
    status = _status(run)
    assert status["phase"] == "Succeeded" and not status["suspended"]
    assert _steps(run) == {"approve": "Succeeded", "approved": "Skipped", "rejected": "Succeeded"}
    logs = runner.invoke(app, ["workflows", "logs", run, "--node", "rejected"]).stdout
    assert "test: not good enough" in logs


def test_stopping_a_promoted_run_does_not_read_failed(
    trainable: None, dataset: str, stack: Connections, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decided without the CLI (its run left waiting), then stopped: it ends Succeeded."""
    run = _train(dataset)
    version = _version_of(run, stack)
    _as(monkeypatch, _approver())
    with Governance(get_settings()) as governance:
        governance.promote(PACKAGE, str(version.version), "test: promoted through the API")
    assert _status(run)["suspended"]
    stopped = runner.invoke(app, ["workflows", "stop", run, "--reason", "tidying up"])
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.strip() == f"{run}: Succeeded"
    assert _steps(run)["approved"] == "Succeeded"
