"""A training step runs the package in its own environment, and never leaves its run RUNNING.

The steps run against the real stack (S3 holds the run's config, MLflow the runs) on a tiny
package whose `train` entry point only sleeps, so no test waits for a model to train.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from geomlops import objects
from geomlops.connections import Connections
from geomlops.model.tracking import experiment_name
from geomlops.package_env import package_env
from geomlops.settings import get_settings
from geomlops.workflows.steps.config import DatasetPin, PackagePin, TrainParams, TrainRunConfig
from geomlops.workflows.steps.train import ENVIRONMENT_TAG, StepFailed, train_step
from geomlops.workflows.templates.train import run_uri

pytestmark = [pytest.mark.stack]
SLEEPER = "sleeper"
MLPROJECT = """name: sleeper
entry_points:
  train:
    parameters:
      data: {type: string, default: ""}
      epochs: {type: float, default: 1}
      device: {type: string, default: auto}
    command: python -c "import time; time.sleep(300)"
"""


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _pushed(root: Path, name: str, files: dict[str, str]) -> tuple[str, str]:
    """Package ``name`` (``files``) committed and pushed to a bare repository: URL, commit."""
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", "--bare", "-b", "main", "origin.git")
    work = root / "work"
    package = work / name
    package.mkdir(parents=True)
    for filename, text in files.items():
        (package / filename).write_text(text)
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", "-A")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@geomlops.invalid", "commit", "-qm", "s")
    _git(work, "push", "-q", str(root / "origin.git"), "main")
    return str(root / "origin.git"), _git(work, "rev-parse", "HEAD")


@pytest.fixture
def source(tmp_path: Path) -> tuple[str, str]:
    """The package ``sleeper`` 0.0.1 committed and pushed to a bare repository: URL, commit.

    What a registration records; the steps check the package out from it.
    """
    return _pushed(
        tmp_path,
        SLEEPER,
        {
            "package.yaml": f"name: {SLEEPER}\nversion: 0.0.1\n",
            "MLproject": MLPROJECT,
            "requirements.txt": "geomlops\n",  # its own environment: the SDK
        },
    )


def _config(
    stack: Connections, version: str, source: tuple[str, str], name: str = SLEEPER
) -> TrainRunConfig:
    """A saved run config for ``sleeper`` ``version``, its dataset already materialised."""
    workflow = f"geomlops-train-test-{uuid.uuid4().hex[:8]}"
    settings = get_settings()
    config = TrainRunConfig(
        workflow=workflow,
        run_uri=run_uri(settings, workflow),
        package=PackagePin(
            name=name, version=version, git_commit=source[1], image=f"{name}:0",
            source=source[0], git_url=source[0], path=name, item_id=f"{name}-{version}",
        ),
        dataset=DatasetPin(
            name="none", number=1, tag="none@v1", git_rev="0" * 40, md5="0" * 32,
            repo_url="file:///dev/null", item_id="none-v1",
        ),
        train=TrainParams(device="cpu"),
        experiment=experiment_name(SLEEPER),
    )  # fmt: skip
    config.save(stack)
    objects.write_json(stack, config.uri("materialise.json"), {"data_uri": config.data_uri})
    return config


def _runs(stack: Connections, workflow: str) -> list[str]:
    client = MlflowClient(stack.mlflow_tracking_uri)
    found = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`geomlops.workflow` = '{workflow}'",
    )
    return [r.info.status for r in found]


def test_a_step_that_fails_before_training_leaves_no_running_run(
    stack: Connections, source: tuple[str, str]
) -> None:
    config = _config(stack, "9.9.9", source)  # the commit holds 0.0.1: the step refuses it
    with pytest.raises(StepFailed, match=r"resolved version 9\.9\.9"):
        train_step(config.uri("config.json"))
    assert "RUNNING" not in _runs(stack, config.workflow)


def test_a_stopped_step_marks_its_run_killed(stack: Connections, source: tuple[str, str]) -> None:
    """SIGTERM to the pod's process group (what stopping a workflow does) ends the run."""
    config = _config(stack, "0.0.1", source)
    step = subprocess.Popen(
        [str(Path(sys.executable).parent / "geomlops"), "train-step", "train",
         "--config", config.uri("config.json")],
        env=dict(os.environ),
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 900  # the first run builds the package's environment
        while _runs(stack, config.workflow) != ["RUNNING"]:
            assert step.poll() is None, "the step ended before its entry point ran"
            assert time.monotonic() < deadline, "the step's MLflow run never started"
            time.sleep(0.5)
        time.sleep(3)  # `mlflow run` starts the entry point
        os.killpg(step.pid, signal.SIGTERM)
        assert step.wait(timeout=60) != 0
    finally:
        if step.poll() is None:
            os.killpg(step.pid, signal.SIGKILL)
    assert _runs(stack, config.workflow) == ["KILLED"]


RECORDER_MLPROJECT = """name: recorder
entry_points:
  train:
    parameters:
      data: {type: string, default: ""}
      epochs: {type: float, default: 1}
      device: {type: string, default: auto}
    command: >-
      python -c "import sys, mlflow; mlflow.start_run();
      mlflow.set_tag('geomlops.interpreter', sys.executable); mlflow.end_run()"
"""


def test_the_train_step_runs_the_package_in_its_own_environment(
    stack: Connections, tmp_path: Path
) -> None:
    """The entry point's interpreter is the package's environment's, not the platform's."""
    files = {
        "package.yaml": "name: recorder\nversion: 0.0.1\n",
        "MLproject": RECORDER_MLPROJECT,
        "requirements.txt": "geomlops\n",
    }
    recorded = _pushed(tmp_path, "recorder", files)
    config = _config(stack, "0.0.1", recorded, name="recorder")
    # It logs no model, so the step fails after its entry point ran, and says why.
    with pytest.raises(StepFailed, match="logged no MLflow model"):
        train_step(config.uri("config.json"))
    environment = package_env(tmp_path / "work" / "recorder", get_settings())
    assert environment.path.parent == get_settings().training.env_cache
    client = MlflowClient(stack.mlflow_tracking_uri)
    (run,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`geomlops.workflow` = '{config.workflow}'",
    )
    assert run.data.tags[ENVIRONMENT_TAG] == str(environment.path)
    assert run.data.tags["geomlops.interpreter"] == str(environment.python)
    assert run.data.tags["geomlops.interpreter"] != sys.executable
