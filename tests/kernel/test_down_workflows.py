"""`geomlops down` and running workflows: refused while one works, stopped cleanly with --force.

No services are needed: `down` looks at the local executor's runs before the services, and
a run here is a real background executor driving a real process.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.settings import get_settings
from geomlops.workflows.executor import LocalExecutor

runner = CliRunner()

SLEEPER: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Workflow",
    "metadata": {"generateName": "sleeper-"},
    "spec": {
        "entrypoint": "main",
        "templates": [
            {
                "name": "main",
                "container": {"image": "busybox", "command": ["sh", "-c", "sleep 300"]},
            }
        ],
    },
}


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="geomlops-down-"))
    monkeypatch.setenv("GEOMLOPS_HOME", str(path))
    monkeypatch.setenv("GEOMLOPS_WORKFLOWS_POLL_INTERVAL", "0.1")
    monkeypatch.setenv("GEOMLOPS_WORKFLOWS_KILL_GRACE", "2")
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()
    shutil.rmtree(path, ignore_errors=True)


def _running(executor: LocalExecutor, name: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = executor.status(name)
        pods = [n for n in status["nodes"] if n["type"] == "Pod" and n["phase"] == "Running"]
        if pods and status["executor"]["running"]:
            return status
        time.sleep(0.2)
    raise AssertionError(f"{name} never ran: {executor.status(name)}")


def test_down_refuses_while_a_workflow_runs_and_force_stops_it(home: Path) -> None:
    executor = LocalExecutor(get_settings())
    name = executor.submit(SLEEPER)
    executor.start(name)
    status = _running(executor, name)
    driver = status["executor"]["pid"]

    refused = runner.invoke(app, ["down"])
    assert refused.exit_code == 1, refused.output
    assert name in refused.stderr and "--force" in refused.stderr
    assert executor.status(name)["phase"] == "Running"  # nothing was touched

    began = time.monotonic()
    forced = runner.invoke(app, ["down", "--force"])
    assert forced.exit_code == 0, forced.output
    assert f"{name}: stopped" in forced.stderr
    final = executor.status(name)
    assert final["phase"] == "Failed"
    assert "geomlops down --force" in final["message"]
    assert time.monotonic() - began < 30
    # Its executor and its pod are gone: nothing keeps working on a stack that is down.
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(driver).wait(timeout=10)
    assert not psutil.pid_exists(driver) or psutil.Process(driver).status() == "zombie"

    # A finished run no longer holds `down` back.
    again = runner.invoke(app, ["down"])
    assert again.exit_code == 0, again.output
