"""`geomlops-train` end to end on the local stack, through the local executor.

The package is registered as `geomlops package register` does, the Sen1Floods11 chip added
as a DVC dataset; then the workflow trains, evaluates, registers and waits for approval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from geomlops.catalog.client import CatalogClient
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.datasets import DatasetRegistry
from geomlops.datasets.registry import staged
from geomlops.registration.register import register_package
from geomlops.settings import get_settings

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PACKAGE = "flood-water-s2"
runner = CliRunner()


@pytest.fixture(scope="module")
def registered(stack: Connections) -> str:
    """The S2 package registered, Sen1Floods11 added as a dataset; returns the dataset tag."""
    register_package(REPO / "model_packages" / PACKAGE, git_url=str(REPO))
    sample = get_settings().sample_data.sample_data
    assert sample is not None, "the Sen1Floods11 sample is needed (GEOMLOPS_SAMPLE_DATA)"
    with staged([sample / "imagery" / "sen1floods11"], sample) as root:
        version, _ = DatasetRegistry().add(root, "sen1floods11", description="Sen1Floods11 chip")
    return version.tag


def _submit(*params: str) -> Any:
    args = ["workflows", "submit", "geomlops-train", "-p", f"package={PACKAGE}"]
    for param in params:
        args += ["-p", param]
    return runner.invoke(app, args)


def _versions(conn: Connections) -> list[Any]:
    return MlflowClient(conn.mlflow_tracking_uri).search_model_versions(f"name = '{PACKAGE}'")


def _status(run: str) -> dict[str, Any]:
    result = runner.invoke(app, ["workflows", "status", run, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_ends_suspended_with_candidate(registered: str, stack: Connections) -> None:
    result = _submit(f"dataset={registered}", "epochs=1", "device=cpu")
    assert result.exit_code == 2, result.output
    run = result.stdout.strip()
    assert f"geomlops workflows resume {run}" in result.stderr
    status = _status(run)
    phases = {n["displayName"]: n["phase"] for n in status["nodes"] if n["type"] == "Pod"}
    assert set(phases.values()) == {"Succeeded"}
    assert {"resolve", "materialise", "train", "evaluate", "register"} <= {
        name.split("(")[0] for name in phases
    }

    (version,) = [v for v in _versions(stack) if v.tags.get("geomlops.workflow") == run]
    dataset = DatasetRegistry().resolve(registered)
    assert version.tags["geomlops.dataset"] == "sen1floods11"
    assert version.tags["geomlops.dataset_version"] == f"v{dataset.number}"
    assert version.tags["geomlops.dataset_md5"] == dataset.md5
    # The run pins the package as registered (whichever test registered it first).
    with CatalogClient.from_settings() as catalog:
        package = catalog.get_item_dict("models", f"{PACKAGE}-0.1.0")["properties"]
    assert version.tags["geomlops.package_git_commit"] == package["geomlops:git_commit"]
    assert version.tags["geomlops.image"] == package["geomlops:image"]
    assert version.tags["geomlops.train_run_id"] == version.run_id
    assert version.tags["geomlops.stage"] == "candidate"

    with CatalogClient.from_settings() as catalog:
        item = catalog.get_item_dict("models", f"{PACKAGE}-mv{version.version}")
    props = item["properties"]
    assert props["geomlops:stage"] == "candidate"
    assert props["geomlops:mlflow_run_id"] == version.run_id
    assert props["geomlops:dataset_md5"] == dataset.md5
    assert props["geomlops:workflow"] == run
    assert props["geomlops:metrics"]["val_iou_water"] > 0
    rels = {(link["rel"], link["href"].rsplit("/", 1)[-1]) for link in item["links"]}
    assert ("derived_from", dataset.item_id) in rels
    assert ("derived_from", f"{PACKAGE}-0.1.0") in rels
    assert any(rel == "via" and href == version.run_id for rel, href in rels)
    # The version is the logged model itself: its files hold the weights the item points at.
    assert version.source.startswith("models:/m-"), version.source
    model_id = version.source.removeprefix("models:/")
    logged = MlflowClient(stack.mlflow_tracking_uri).get_logged_model(model_id)
    assert logged.source_run_id == version.run_id
    assert item["assets"]["model"]["href"] == f"{logged.artifact_location}/data/model.pt2"

    # A step run again (a resumed or retried pod) returns its recorded result, doing nothing.
    config = _step_config(run)
    again = runner.invoke(app, ["train-step", "register", "--config", config])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["model_version"] == str(version.version)
    assert len([v for v in _versions(stack) if v.tags.get("geomlops.workflow") == run]) == 1

    # Who submitted is who trained: taken from the credential (here the admin key).
    assert props["geomlops:trained_by"] == "admin"
    assert version.tags["geomlops.trained_by"] == "admin"
    # Resuming approves the candidate, so it needs a reason (and another identity: see
    # tests/governance/test_governance.py); without one nothing happens and the run stays suspended.
    resumed = runner.invoke(app, ["workflows", "resume", run])
    assert resumed.exit_code == 2, resumed.output
    assert "--reason" in resumed.stderr
    assert _status(run)["suspended"]

    # Resumed from the Argo UI instead, nothing is decided: the run goes on to `approved`,
    # whose pod runs this command. It fails, and says how an approver decides.
    ui_resumed = runner.invoke(app, ["train-step", "approved", "--config", config])
    assert ui_resumed.exit_code != 0
    assert "geomlops promote" in ui_resumed.stderr + ui_resumed.stdout
    assert "resuming does not approve it" in ui_resumed.stderr + ui_resumed.stdout


def _step_config(run: str) -> str:
    """Where resolve saved the run's config (the template's run folder)."""
    return f"s3://{get_settings().s3.bucket_mlflow}/workflow-runs/{run}/config.json"


def test_unknown_dataset_version_fails_at_resolve(registered: str, stack: Connections) -> None:
    before = len(_versions(stack))
    result = _submit("dataset=sen1floods11@v99", "epochs=1")
    assert result.exit_code == 1, result.output
    run = result.stdout.strip()
    failed = [n for n in _status(run)["nodes"] if n["type"] == "Pod" and n["phase"] == "Failed"]
    assert failed and all(n["displayName"].startswith("resolve") for n in failed)
    logs = runner.invoke(app, ["workflows", "logs", run]).stdout
    assert "has no version v99" in logs
    assert len(_versions(stack)) == before


def test_failing_train_registers_nothing(registered: str, stack: Connections) -> None:
    before = len(_versions(stack))
    result = _submit(f"dataset={registered}", "epochs=1", "device=no-such-device")
    assert result.exit_code == 1, result.output
    run = result.stdout.strip()
    nodes = {n["displayName"]: n["phase"] for n in _status(run)["nodes"] if n["type"] == "Pod"}
    assert nodes.get("train") == "Failed"
    client = MlflowClient(stack.mlflow_tracking_uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`geomlops.workflow` = '{run}'",
    )
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not any(name.startswith("register") for name in nodes)
    assert "train" in result.stderr
    assert len(_versions(stack)) == before
    with CatalogClient.from_settings() as catalog:
        found = catalog.iter_search(
            collections=["models"],
            filter={"op": "=", "args": [{"property": "geomlops:workflow"}, run]},
        )
        assert list(found) == []
