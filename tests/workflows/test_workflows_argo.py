"""`geomlops workflows submit` to an Argo server: the requests Hera's service sends.

A small HTTP server on 127.0.0.1 plays the Argo server's API: it records each request and
answers as Argo does, so these tests check the path, the token, the body and how the CLI
follows the run to its end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.connections import Connections

NAMESPACE = "flood-team"


class FakeArgo:
    """Requests received, and the phase each workflow reports."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.phases: dict[str, list[dict[str, Any]]] = {}


def _handler(state: FakeArgo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            request = {
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "body": body,
            }
            state.requests.append(request)
            return request

        def do_POST(self) -> None:
            request = self._record()
            if request["auth"] != "Bearer s3cret":
                self._reply(401, {"code": 16, "message": "token not valid"})
                return
            if self.path == f"/api/v1/workflows/{NAMESPACE}/submit":
                name = "geomlops-train-abcde"
            elif self.path == f"/api/v1/workflows/{NAMESPACE}":
                name = "hello-xyz"
            else:
                self._reply(404, {"code": 5, "message": "not found"})
                return
            self._reply(200, {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": {}})

        def do_GET(self) -> None:
            self._record()
            name = self.path.split("?")[0].rsplit("/", 1)[-1]
            phases = state.phases.get(name)
            if not phases:
                self._reply(404, {"code": 5, "message": f"workflow {name} not found"})
                return
            status = phases.pop(0) if len(phases) > 1 else phases[0]
            body = {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": {}}
            self._reply(200, {**body, "status": status})

    return Handler


@pytest.fixture
def argo(monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> Iterator[FakeArgo]:
    state = FakeArgo()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("GEOMLOPS_ARGO_SERVER", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("GEOMLOPS_ARGO_TOKEN", "s3cret")
    monkeypatch.setenv("GEOMLOPS_ARGO_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("GEOMLOPS_ARGO_POLL_INTERVAL", "0.05")
    from geomlops.settings import get_settings

    get_settings.cache_clear()
    yield state
    server.shutdown()
    server.server_close()
    get_settings.cache_clear()


SUSPENDED = {
    "phase": "Running",
    "nodes": {
        "n1": {
            "id": "n1",
            "name": "w.train",
            "displayName": "train",
            "type": "Pod",
            "phase": "Succeeded",
        },
        "n2": {
            "id": "n2",
            "name": "w.approve",
            "displayName": "approve",
            "type": "Suspend",
            "phase": "Running",
        },
    },
}


def test_submitter_comes_from_the_credential_not_the_command_line(argo: FakeArgo) -> None:
    result = CliRunner().invoke(
        app,
        [
            "workflows", "submit", "geomlops-train",
            "-p", "package=flood-water-s2", "-p", "dataset=x", "-p", "submitted-by=someone",
        ],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "submitted-by is set from your credential" in result.stderr
    assert argo.requests == []


@pytest.mark.stack
def test_submit_template_sends_name_and_parameters(argo: FakeArgo, stack: Connections) -> None:
    """The platform's catalog says who is submitting (here: the stack's admin key)."""
    argo.phases["geomlops-train-abcde"] = [{"phase": "Running", "nodes": {}}, SUSPENDED]
    result = CliRunner().invoke(
        app,
        [
            "workflows", "submit", "geomlops-train",
            "-p", "package=flood-water-s2", "-p", "dataset=sen1floods11@v1",
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stdout.strip() == "geomlops-train-abcde"
    assert "geomlops workflows resume geomlops-train-abcde" in result.stderr
    submit = argo.requests[0]
    assert submit["method"] == "POST"
    assert submit["path"] == f"/api/v1/workflows/{NAMESPACE}/submit"
    assert submit["auth"] == "Bearer s3cret"
    assert submit["body"] == {
        "namespace": NAMESPACE,
        "resourceKind": "WorkflowTemplate",
        "resourceName": "geomlops-train",
        "submitOptions": {
            "parameters": [
                "package=flood-water-s2",
                "dataset=sen1floods11@v1",
                "submitted-by=admin",
            ]
        },
    }
    polls = [r for r in argo.requests if r["method"] == "GET"]
    assert polls and all(
        r["path"].startswith(f"/api/v1/workflows/{NAMESPACE}/geomlops-train-abcde") for r in polls
    )


def test_submit_file_creates_workflow_with_parameters(argo: FakeArgo, tmp_path: Any) -> None:
    manifest = tmp_path / "hello.yaml"
    manifest.write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {generateName: hello-}\n"
        "spec:\n  entrypoint: main\n  arguments: {parameters: [{name: who, value: x}]}\n"
        "  templates:\n  - name: main\n    container: {image: busybox, command: [echo, hi]}\n"
    )
    argo.phases["hello-xyz"] = [{"phase": "Succeeded", "nodes": {}}]
    result = CliRunner().invoke(
        app, ["workflows", "submit", "--file", str(manifest), "-p", "who=world"]
    )
    assert result.exit_code == 0, result.output
    create = argo.requests[0]
    assert create["path"] == f"/api/v1/workflows/{NAMESPACE}"
    workflow = create["body"]["workflow"]
    assert workflow["metadata"]["generateName"] == "hello-"
    assert workflow["spec"]["arguments"]["parameters"] == [{"name": "who", "value": "world"}]


def test_failed_run_exits_one(argo: FakeArgo) -> None:
    failed = {
        "phase": "Failed",
        "message": "child failed",
        "nodes": {
            "n": {
                "id": "n",
                "name": "w.train",
                "displayName": "train",
                "type": "Pod",
                "phase": "Failed",
            }
        },
    }
    argo.phases["geomlops-train-abcde"] = [failed]
    result = CliRunner().invoke(
        app, ["workflows", "submit", "geomlops-train", "-p", "package=x", "-p", "dataset=y"]
    )
    assert result.exit_code == 1
    assert "Failed" in result.stderr and "train" in result.stderr


def test_wrong_token_is_an_auth_error(argo: FakeArgo, monkeypatch: pytest.MonkeyPatch) -> None:
    from geomlops.settings import get_settings

    monkeypatch.setenv("GEOMLOPS_ARGO_TOKEN", "wrong")
    get_settings.cache_clear()
    result = CliRunner().invoke(
        app, ["workflows", "submit", "geomlops-train", "-p", "package=x", "-p", "dataset=y"]
    )
    assert result.exit_code == 1
    assert "token not valid" in result.stderr
    assert "GEOMLOPS_ARGO_TOKEN" in result.stderr


def test_unknown_template_is_refused_before_any_request(argo: FakeArgo) -> None:
    result = CliRunner().invoke(app, ["workflows", "submit", "geomlops-nope"])
    assert result.exit_code == 1
    assert "geomlops-train" in result.stderr
    assert argo.requests == []
