"""`geomlops workflows …` through Hera against the local Argo API (the real one, not a fake).

The app is the one the stack's `argo` service runs (`create_app`), served in-process on a
free loopback port; the CLI reaches it exactly as it reaches a cluster's Argo server.
Credentials are the catalog's keys, so these tests need the stack.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from geomlops.catalog.client import configured_api_key
from geomlops.cli.main import app
from geomlops.settings import get_settings

MANIFESTS = Path(__file__).parent / "manifests"
NAMESPACE = "flood-team"  # as the `argo` fixture sets it
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
runner = CliRunner()

HELD = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: held-}
spec:
  entrypoint: main
  onExit: cleanup
  arguments: {parameters: [{name: workdir}]}
  templates:
  - name: main
    container:
      image: busybox
      command: [sh, -c, 'while test -f "{{workflow.parameters.workdir}}/hold"; do sleep 0.1; done']
  - name: cleanup
    container:
      image: busybox
      command: [sh, -c, 'echo "{{workflow.status}}" > "{{workflow.parameters.workdir}}/exit.txt"']
"""

FLAKY = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: flaky-}
spec:
  entrypoint: main
  arguments: {parameters: [{name: workdir}]}
  templates:
  - name: main
    steps:
    - - {name: first, template: count}
    - - {name: flaky, template: flaky}
  - name: count
    container:
      image: busybox
      command: [sh, -c, 'echo ran >> "{{workflow.parameters.workdir}}/first.txt"']
  - name: flaky
    container:
      image: busybox
      command: [sh, -c, 'if test -f "{{workflow.parameters.workdir}}/ok"; then echo fine; else
        touch "{{workflow.parameters.workdir}}/ok"; echo broken; exit 1; fi']
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder the test manifests write to; runs kept apart from other tests' runs."""
    monkeypatch.setenv("GEOMLOPS_WORKFLOWS_STATE_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("GEOMLOPS_WORKFLOWS_POLL_INTERVAL", "0.05")
    monkeypatch.setenv("GEOMLOPS_WORKFLOWS_KILL_GRACE", "1")
    get_settings.cache_clear()
    path = tmp_path / "work"
    path.mkdir()
    return path


def _manifest(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"m-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    return path


def _cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _status(run: str) -> dict[str, Any]:
    result = _cli("workflows", "status", run, "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def _until(condition: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _api(argo_url: str, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
    token = key or configured_api_key(get_settings())
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, f"{argo_url}{path}", headers=headers, timeout=30, **kw)


# --- without a server: refused before any request --------------------------------------------


def test_submitter_comes_from_the_credential_not_the_command_line() -> None:
    result = _cli(
        "workflows", "submit", "geomlops-train",
        "-p", "package=flood-water-s2", "-p", "dataset=x", "-p", "submitted-by=someone",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "submitted-by is set from your credential" in result.stderr


def test_unknown_template_is_refused_before_any_request() -> None:
    result = _cli("workflows", "submit", "geomlops-nope")
    assert result.exit_code == 1
    assert "geomlops-train" in result.stderr


# --- against the local Argo API ---------------------------------------------------------------


@pytest.mark.stack
def test_suspend_list_resume_logs(argo: str, workdir: Path, tmp_path: Path) -> None:
    manifest = MANIFESTS / "suspend.yaml"
    result = _cli("workflows", "submit", "--file", str(manifest), "-p", f"workdir={workdir}")
    assert result.exit_code == 2, result.output
    run = result.stdout.strip()
    assert f"geomlops workflows resume {run}" in result.stderr
    assert "build" in result.stderr  # progress lines while waiting
    status = _status(run)
    assert status["suspended"] and status["phase"] == "Running"
    assert status["namespace"] == NAMESPACE
    assert status["submittedBy"] == "admin"
    assert RFC3339.match(status["createdAt"])

    # list: times as RFC 3339 text, not a Python repr of Hera's model.
    listed = _cli("workflows", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (entry,) = [r for r in json.loads(listed.stdout) if r["name"] == run]
    assert RFC3339.match(entry["createdAt"]), entry
    assert entry["suspended"] is True
    table = _cli("workflows", "list")
    assert entry["createdAt"] in table.stdout and "datetime" not in table.stdout

    resumed = _cli("workflows", "resume", run, "-p", "decision=yes")
    assert resumed.exit_code == 0, resumed.output
    assert (workdir / "notes.txt").read_text() == "built\nyes\n"
    final = _status(run)
    assert final["phase"] == "Succeeded" and RFC3339.match(final["finishedAt"])

    logs = _cli("workflows", "logs", run)
    assert logs.exit_code == 0, logs.output
    assert logs.stdout.count("--- ") == 2  # build and release, each with a header
    one = _cli("workflows", "logs", run, "--node", "build")
    assert one.exit_code == 0 and not one.stdout.startswith("---")
    missing = _cli("workflows", "logs", run, "--node", "nope")
    assert missing.exit_code == 1 and "no node 'nope'" in missing.stderr


@pytest.mark.stack
def test_resume_refuses_a_bad_output(argo: str, workdir: Path) -> None:
    manifest = MANIFESTS / "suspend.yaml"
    result = _cli("workflows", "submit", "--file", str(manifest), "-p", f"workdir={workdir}")
    assert result.exit_code == 2, result.output
    run = result.stdout.strip()
    bad = _cli("workflows", "resume", run, "-p", "decision=maybe")
    assert bad.exit_code == 1
    assert "maybe" in bad.stderr
    assert _status(run)["suspended"]
    _cli("workflows", "stop", run, "--terminate")


def _held(tmp_path: Path, workdir: Path) -> str:
    (workdir / "hold").write_text("wait")
    manifest = _manifest(tmp_path, HELD)
    result = _cli(
        "workflows", "submit", "--file", str(manifest), "-p", f"workdir={workdir}", "--no-wait"
    )
    assert result.exit_code == 0, result.output
    run = result.stdout.strip()
    _until(
        lambda: any(n["phase"] == "Running" and n["type"] == "Pod" for n in _status(run)["nodes"])
    )
    return run


@pytest.mark.stack
def test_stop_runs_the_exit_handler(argo: str, workdir: Path, tmp_path: Path) -> None:
    run = _held(tmp_path, workdir)
    stopped = _cli("workflows", "stop", run, "--reason", "wrong dataset")
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.strip() == f"{run}: Failed"
    assert (workdir / "exit.txt").read_text().strip() == "Failed"
    status = _status(run)
    assert status["message"] == "wrong dataset"
    assert any(n["name"] == f"{run}.onExit" for n in status["nodes"])


@pytest.mark.stack
def test_terminate_skips_the_exit_handler(argo: str, workdir: Path, tmp_path: Path) -> None:
    """`--terminate` is sent as Argo's terminate (it used to go out as a plain stop)."""
    run = _held(tmp_path, workdir)
    stopped = _cli("workflows", "stop", run, "--terminate")
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.strip() == f"{run}: Failed"
    status = _status(run)
    assert not any(".onExit" in n["name"] for n in status["nodes"])
    assert not (workdir / "exit.txt").exists()
    again = _cli("workflows", "stop", run)
    assert again.exit_code == 1 and "completed" in again.stderr


@pytest.mark.stack
def test_failed_run_exits_one_then_retry_reruns_only_the_failure(
    argo: str, workdir: Path, tmp_path: Path
) -> None:
    manifest = _manifest(tmp_path, FLAKY)
    result = _cli("workflows", "submit", "--file", str(manifest), "-p", f"workdir={workdir}")
    assert result.exit_code == 1, result.output
    run = result.stdout.strip()
    assert "Failed" in result.stderr and "flaky" in result.stderr
    assert f"geomlops workflows logs {run} --node flaky" in result.stderr
    assert _cli("workflows", "logs", run, "--node", "flaky").stdout == "broken\n"

    retried = _cli("workflows", "retry", run)
    assert retried.exit_code == 0, retried.output
    assert _status(run)["phase"] == "Succeeded"
    assert (workdir / "first.txt").read_text() == "ran\n"  # the succeeded step was kept
    assert _cli("workflows", "logs", run, "--node", "flaky").stdout == "fine\n"
    again = _cli("workflows", "retry", run)
    assert again.exit_code == 1 and "Succeeded" in again.stderr


@pytest.mark.stack
def test_submit_template_by_name_records_the_submitter(argo: str, workdir: Path) -> None:
    """The installed WorkflowTemplate runs; who submitted comes from the key in use."""
    result = _cli(
        "workflows", "submit", "geomlops-train",
        "-p", "package=no-such-package", "-p", "dataset=sen1floods11@v1",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    status = _status(result.stdout.strip())
    assert status["workflowTemplate"] == "geomlops-train"
    assert status["parameters"]["submitted-by"] == "admin"
    assert status["parameters"]["package"] == "no-such-package"
    failed = [n for n in status["nodes"] if n["type"] == "Pod" and n["phase"] == "Failed"]
    assert failed and failed[0]["displayName"].startswith("resolve")


@pytest.mark.stack
def test_api_answers_in_argo_shapes(argo: str, workdir: Path) -> None:
    """Paths, bodies and errors as Argo Server's; the Workflow object valid in v3.7 and v4."""
    import jsonschema

    submitted = _api(
        argo, "POST", f"/api/v1/workflows/{NAMESPACE}/submit",
        json={
            "namespace": NAMESPACE, "resourceKind": "WorkflowTemplate",
            "resourceName": "geomlops-train",
            "submitOptions": {"parameters": ["package=x", "dataset=y", "submitted-by=mallory"]},
        },
    )  # fmt: skip
    assert submitted.status_code == 403 and submitted.json()["code"] == 7
    assert "mallory" in submitted.json()["message"]

    created = _api(
        argo, "POST", f"/api/v1/workflows/{NAMESPACE}",
        json={"workflow": {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": "shape-"},
            "spec": {"entrypoint": "main", "templates": [
                {"name": "main", "container": {"image": "busybox", "command": ["true"]}}]},
        }},
    )  # fmt: skip
    assert created.status_code == 200, created.text
    name = created.json()["metadata"]["name"]
    _until(lambda: _status(name)["phase"] == "Succeeded")
    workflow = _api(argo, "GET", f"/api/v1/workflows/{NAMESPACE}/{name}").json()
    assert workflow["metadata"]["labels"]["workflows.argoproj.io/creator"] == "admin"
    assert workflow["status"]["phase"] == "Succeeded"
    assert RFC3339.match(workflow["metadata"]["creationTimestamp"])
    schemas = get_settings().workflows.argo_schema_dir
    assert schemas is not None, "the Argo schemas are needed (../shared/data/schemas)"
    for version in ("3.7.18", "4.1.2"):
        schema = json.loads((schemas / f"schema-v{version}.json").read_text())
        root = {
            "$schema": schema["$schema"],
            "definitions": schema["definitions"],
            "$ref": "#/definitions/io.argoproj.workflow.v1alpha1.Workflow",
        }
        jsonschema.validators.validator_for(root)(root).validate(workflow)

    lines = _api(argo, "GET", f"/api/v1/workflows/{NAMESPACE}/{name}/log").text.splitlines()
    assert all("result" in json.loads(line) for line in lines)
    other = _api(argo, "GET", f"/api/v1/workflows/another-namespace/{name}")
    assert other.status_code == 404 and other.json()["code"] == 5
    anonymous = httpx.get(f"{argo}/api/v1/workflows/{NAMESPACE}", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == 16


@pytest.mark.stack
def test_a_key_without_the_role_cannot_submit(
    argo: str, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geomlops.catalog.db import pgstac_connection
    from geomlops.catalog.keys import create_key

    with pgstac_connection() as conn:
        key, _ = create_key(conn, f"reader-{uuid.uuid4().hex[:6]}", ["approver"])
    monkeypatch.setenv("GEOMLOPS_API_KEY", key)
    get_settings.cache_clear()
    manifest = _manifest(tmp_path, HELD)
    result = _cli("workflows", "submit", "--file", str(manifest), "-p", f"workdir={workdir}")
    assert result.exit_code == 1
    assert "writer" in result.stderr


@pytest.mark.stack
def test_wrong_token_is_an_auth_error(argo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOMLOPS_ARGO_TOKEN", "wrong")
    get_settings.cache_clear()
    result = _cli("workflows", "list")
    assert result.exit_code == 1
    assert "credential refused" in result.stderr
    assert "GEOMLOPS_ARGO_TOKEN" in result.stderr
