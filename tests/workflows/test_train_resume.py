"""MLflow killed while a training run trains: the run resumes from its failed step.

A real `geomlops-train` run (flood-water-s2, one epoch, CPU) is submitted; once its train
step has opened its MLflow run, the MLflow server is killed with SIGKILL (its watchdog
paused, so it stays dead). The run fails within a bound; with MLflow back,
`geomlops workflows resume RUN` runs the train step again as a new attempt (the steps
before it are kept) and the run reaches its approval step; the orphaned MLflow run of the
dead attempt is ended FAILED.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_support import kill_service, wait_healthy
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.connections import Connections, get_connections
from geomlops.datasets import DatasetRegistry
from geomlops.datasets.registry import staged
from geomlops.registration.register import register_package
from geomlops.settings import get_settings
from geomlops.stack import supervisor
from geomlops.stack.manager import LocalStack
from geomlops.workflows.argo import ArgoServer
from geomlops.workflows.steps.train import ORPHAN_TAG

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "flood-water-s2"
runner = CliRunner()


@pytest.fixture
def dataset(stack: Connections) -> Iterator[str]:
    register_package(REPO / "model_packages" / MODEL, git_url=str(REPO))
    sample = get_settings().sample_data.sample_data
    assert sample is not None, "the Sen1Floods11 sample is needed (GEOMLOPS_SAMPLE_DATA)"
    with staged([sample / "imagery" / "sen1floods11"], sample) as root:
        found, _ = DatasetRegistry().add(root, "sen1floods11", description="Sen1Floods11 chip")
    yield found.tag


def _train_runs(client: MlflowClient, run: str) -> list[Any]:
    experiment = client.get_experiment_by_name(MODEL)
    if experiment is None:
        return []
    return list(
        client.search_runs(
            [experiment.experiment_id],
            filter_string=(
                f"tags.`geomlops.workflow` = '{run}' AND attributes.run_name = '{run}-train'"
            ),
        )
    )


def _nodes(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Nodes by display name (a step with retries is its Retry node, its pods below it)."""
    return {n["displayName"]: n for n in status["nodes"]}


def test_training_resumes_after_mlflow_comes_back(
    dataset: str, local_stack: LocalStack, paused_watchdog: LocalStack
) -> None:
    submitted = runner.invoke(
        app,
        [
            "workflows", "submit", "geomlops-train", "--no-wait",
            "-p", f"package={MODEL}", "-p", f"dataset={dataset}",
            "-p", "epochs=1", "-p", "device=cpu",
        ],
    )  # fmt: skip
    assert submitted.exit_code == 0, submitted.output
    run = submitted.stdout.strip().split()[-1]
    argo = ArgoServer(get_settings())
    client = get_connections().mlflow_client()

    deadline = time.monotonic() + 600
    while not [r for r in _train_runs(client, run) if r.info.status == "RUNNING"]:
        assert argo.status(run)["phase"] not in ("Failed", "Error", "Succeeded"), argo.status(run)
        assert time.monotonic() < deadline, "the train step never opened its MLflow run"
        time.sleep(1)
    (orphan,) = _train_runs(client, run)
    before = _nodes(argo.status(run))

    kill_service(paused_watchdog, "mlflow")
    began = time.monotonic()
    failed = argo.wait(run, timeout=300)
    took = time.monotonic() - began
    assert failed["phase"] in ("Failed", "Error"), failed
    assert took < 240, f"the run took {took:.0f} s to fail without MLflow"
    print(f"run failed {took:.0f} s after MLflow was killed: {failed['message']}")

    supervisor.ensure(paused_watchdog.ctx)  # MLflow comes back
    wait_healthy(paused_watchdog, timeout=120)
    assert client.get_run(orphan.info.run_id).info.status == "RUNNING"  # as the attempt left it

    resumed = runner.invoke(app, ["workflows", "resume", run, "--json"])
    assert resumed.exit_code in (0, 2), resumed.output
    assert "resuming from its failed step" in resumed.stderr
    final = argo.status(run)
    assert final["suspended"] and final["phase"] == "Running", final
    after = _nodes(final)
    assert after["approve"]["phase"] == "Running"
    # The steps completed before the failure were kept, not run again.
    for step in ("resolve", "materialise"):
        assert after[step]["startedAt"] == before[step]["startedAt"], step
    assert after["register"]["phase"] == "Succeeded"
    # The dead attempt's MLflow run is ended FAILED; the new attempt's run finished.
    ended = client.get_run(orphan.info.run_id)
    assert ended.info.status == "FAILED" and ORPHAN_TAG in ended.data.tags
    statuses = sorted(r.info.status for r in _train_runs(client, run))
    assert statuses == ["FAILED", "FINISHED"], statuses
