"""A run's life beyond one call: a killed executor, background runs, stop, live resume,
timed suspends, and Argo's own example manifests."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from geomlops.errors import ConflictError, ValidationFailed
from geomlops.settings import Settings, StackSettings, WorkflowSettings
from geomlops.workflows.executor import LocalExecutor
from geomlops.workflows.executor.pods import pid_file

MANIFESTS = Path(__file__).parent / "manifests"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        stack=StackSettings(home=tmp_path / "home"),
        workflows=WorkflowSettings(parallelism=2, poll_interval=0.05, kill_grace=1.0),
    )


@pytest.fixture
def executor(settings: Settings) -> LocalExecutor:
    return LocalExecutor(settings)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    (path / "hold").write_text("wait")
    return path


def _until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _node(status: dict[str, Any], display: str) -> dict[str, Any] | None:
    return next((n for n in status["nodes"] if n["displayName"] == display), None)


def _running(executor: LocalExecutor, run: str, display: str) -> bool:
    node = _node(executor.status(run), display)
    return node is not None and node["phase"] == "Running"


def _reap(pid: int) -> None:
    _until(lambda: _gone(pid))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_killed_executor_resumes_without_redoing_completed_steps(executor, workdir):
    run = executor.submit(MANIFESTS / "crash.yaml", {"workdir": str(workdir)})
    executor_pid = executor.start(run)
    _until(lambda: _running(executor, run, "slow") and (workdir / "slow.txt").exists())

    os.kill(executor_pid, signal.SIGKILL)
    _reap(executor_pid)
    # The kernel frees the executor's lock once its last thread is gone.
    status = _until(lambda: (s := executor.status(run))["executor"]["running"] is False and s)
    assert status["phase"] == "Running"
    slow = _node(status, "slow")
    orphan = int(
        pid_file(Path(status["stateDir"]) / "pods" / slow["podName"]).read_text().split()[0]
    )
    assert not _gone(orphan)  # the killed executor left its pod running

    resumed: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: resumed.update(executor.run(run)))
    thread.start()
    # The resumed executor kills the leftover pod first, then runs the step again.
    _until(lambda: (workdir / "slow.txt").read_text().count("start") == 2)
    assert _gone(orphan)
    (workdir / "hold").write_text("go")
    thread.join(timeout=30)

    assert resumed["phase"] == "Succeeded"
    assert (workdir / "first.txt").read_text() == "start\ndone\n"
    assert (workdir / "second.txt").read_text() == "start\ndone\n"
    assert (workdir / "slow.txt").read_text() == "start\nstart\ndone\n"
    slow = _node(resumed, "slow")
    assert slow["restarts"] == 1
    assert "re-run" in slow["message"]
    assert "re-run after the executor was interrupted" in executor.logs(run, "slow")
    assert (workdir / "exit-status.txt").read_text() == "Succeeded"


def test_stop_kills_running_pods_fails_the_run_and_runs_on_exit(executor, workdir):
    run = executor.submit(MANIFESTS / "crash.yaml", {"workdir": str(workdir)})
    executor_pid = executor.start(run)
    _until(lambda: _running(executor, run, "slow") and (workdir / "slow.txt").exists())
    with pytest.raises(ConflictError, match="another executor"):
        executor.run(run)

    status = executor.stop(run)
    _reap(executor_pid)

    assert status["phase"] == "Failed"
    assert status["message"] == "Stopped with strategy 'Stop'"
    assert _node(status, "slow")["phase"] == "Failed"
    assert (workdir / "slow.txt").read_text() == "start\n"
    assert (workdir / "exit-status.txt").read_text() == "Failed"
    with pytest.raises(ConflictError, match="already finished"):
        executor.stop(run)


def test_terminate_skips_the_exit_handler(executor, workdir):
    run = executor.submit(MANIFESTS / "crash.yaml", {"workdir": str(workdir)})
    executor_pid = executor.start(run)
    _until(lambda: _running(executor, run, "slow"))
    status = executor.stop(run, terminate=True)
    _reap(executor_pid)

    assert status["phase"] == "Failed"
    assert status["message"] == "Stopped with strategy 'Terminate'"
    assert not (workdir / "exit-status.txt").exists()


def test_resume_reaches_a_live_executor_through_a_request(executor, workdir):
    manifest = yaml.safe_load((MANIFESTS / "suspend.yaml").read_text())
    manifest["spec"]["templates"][0]["dag"]["tasks"].append(
        {
            "name": "busy",
            "template": "busy",
        }
    )
    manifest["spec"]["templates"].append(
        {
            "name": "busy",
            "container": {
                "image": "busybox",
                "command": [
                    "sh",
                    "-c",
                    'cd "{{workflow.parameters.workdir}}"; '
                    'while [ "$(cat hold)" = wait ]; do sleep 0.05; done',
                ],
            },
        }
    )
    run = executor.submit(manifest, {"workdir": str(workdir)})
    executor_pid = executor.start(run)
    _until(lambda: executor.status(run)["suspended"])

    status = executor.resume(run, node="approve", parameters={"decision": "no"}, wait=False)
    assert status["executor"]["running"] is True  # the background executor takes the request
    _until(lambda: _node(executor.status(run), "release") is not None)
    (workdir / "hold").write_text("go")
    status = executor.wait(run, timeout=30)
    _reap(executor_pid)

    assert status["phase"] == "Succeeded"
    assert (workdir / "notes.txt").read_text() == "built\nno\n"


def test_resume_without_waiting_continues_in_the_background(executor, workdir):
    run = executor.submit(MANIFESTS / "suspend.yaml", {"workdir": str(workdir)})
    assert executor.run(run)["suspended"]

    status = executor.resume(run, parameters={"decision": "yes"}, wait=False)
    assert status["phase"] == "Running"
    status = executor.wait(run, timeout=30)  # not fooled by the request not yet taken

    assert status["phase"] == "Succeeded"
    assert (workdir / "notes.txt").read_text() == "built\nyes\n"
    _until(lambda: not executor.status(run)["executor"]["running"])


def test_suspend_with_a_duration_resumes_by_itself(executor, workdir):
    manifest = yaml.safe_load((MANIFESTS / "suspend.yaml").read_text())
    approve = manifest["spec"]["templates"][1]
    approve["suspend"] = {"duration": "0.3"}
    approve["outputs"]["parameters"][0]["valueFrom"]["default"] = "yes"
    started = time.monotonic()
    status = executor.run(executor.submit(manifest, {"workdir": str(workdir)}))

    assert status["phase"] == "Succeeded"
    assert time.monotonic() - started >= 0.3
    assert (workdir / "notes.txt").read_text() == "built\nyes\n"


def test_background_run_and_wait(executor, workdir):
    (workdir / "hold").write_text("go")
    run = executor.submit(MANIFESTS / "crash.yaml", {"workdir": str(workdir)})
    executor_pid = executor.start(run)
    status = executor.wait(run, timeout=60)
    _reap(executor_pid)
    assert status["phase"] == "Succeeded"
    assert executor.run(run)["phase"] == "Succeeded"  # running a finished run changes nothing
    assert (workdir / "first.txt").read_text() == "start\ndone\n"


# --- Argo's own examples ------------------------------------------------------------------


@pytest.fixture
def examples(settings: Settings) -> Path:
    directory = settings.workflows.argo_schema_dir
    if directory is None or not (directory / "examples").is_dir():
        pytest.skip("Argo examples not present (set GEOMLOPS_WORKFLOWS_ARGO_SCHEMA_DIR)")
    return directory / "examples"


def test_argo_hello_world_and_dag_diamond_examples_run(executor, examples):
    status = executor.run(executor.submit(examples / "hello-world.yaml"))
    assert status["phase"] == "Succeeded"
    assert executor.logs(status["name"], status["name"]) == "hello world\n"

    status = executor.run(executor.submit(examples / "dag-diamond.yaml"))
    assert status["phase"] == "Succeeded"
    assert {
        n["displayName"]: n["outputs"]["result"] for n in status["nodes"] if n["type"] == "Pod"
    } == {
        "A": "A",
        "B": "B",
        "C": "C",
        "D": "D",
    }


def test_argo_daemon_example_is_rejected_with_reasons(executor, examples):
    with pytest.raises(ValidationFailed) as caught:
        executor.submit(examples / "daemon-nginx.yaml")
    problems = "\n".join(caught.value.problems)
    assert "spec.templates[1].daemon: daemoned steps are not supported" in problems
    assert "spec.templates[1].container.readinessProbe: not supported" in problems
    assert (
        "spec.templates[1].container.command: missing: the entrypoint of image 'nginx:1.13'"
        in problems
    )
    assert "{{steps.nginx-server.ip}} is not supported" in problems


def test_argo_workflow_template_examples(executor, examples):
    path = examples / "workflow-template-templates.yaml"
    with pytest.raises(ValidationFailed, match="holds 5 documents"):
        executor.submit(path)
    documents = {d["metadata"]["name"]: d for d in yaml.safe_load_all(path.read_text())}

    status = executor.run(
        executor.submit(
            documents["workflow-template-print-message"], {"message": "from a template"}
        )
    )
    assert status["phase"] == "Succeeded"
    assert status["name"].startswith("workflow-template-print-message-")
    assert executor.logs(status["name"]).endswith("from a template\n")

    status = executor.run(executor.submit(documents["workflow-template-submittable"]))
    assert status["phase"] == "Succeeded"
    assert executor.logs(status["name"], status["name"]) == "hello world\n"

    with pytest.raises(ValidationFailed, match="library of templates"):
        executor.submit(documents["workflow-template-random-fail-template"])
    with pytest.raises(ValidationFailed) as caught:
        executor.submit(documents["workflow-template-inner-steps"])
    assert any("templateRef is not supported" in p for p in caught.value.problems)
