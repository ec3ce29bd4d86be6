"""Argo Server's wire format, as the local executor answers it.

Labels and annotations, the gRPC-gateway's error shape and status codes, the ``Workflow``
object a run is shown as, and the query-string forms (``name=value`` parameters, label and
node selectors). Kept apart from the routes so what Argo's clients parse is in one place.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from geomlops.errors import (
    AuthError,
    ConflictError,
    GeomlopsError,
    NotFoundError,
    StackNotRunning,
    ValidationFailed,
)
from geomlops.workflows.executor.api import LocalExecutor
from geomlops.workflows.executor.manifest import API_VERSION
from geomlops.workflows.executor.model import iso

ARGO_VERSION = "v3.7.18"
"""The Argo Server version whose API shapes this app answers with."""
CREATOR_LABEL = "workflows.argoproj.io/creator"
TEMPLATE_LABEL = "workflows.argoproj.io/workflow-template"
PHASE_LABEL = "workflows.argoproj.io/phase"
COMPLETED_LABEL = "workflows.argoproj.io/completed"
STATE_DIR_ANNOTATION = "workflows.geomlops.io/state-dir"
"""Where the local run keeps its state and pod files (local runs only)."""
SUBMITTER = "submitted-by"
LOCAL_OUTPUTS = {"/tmp/outputs": "{pod_dir}/outputs"}  # noqa: S108 - container path, mapped
"""Container paths the platform's templates write outputs to, mapped per pod locally."""
PENDING_OUTPUTS = "pending-outputs.json"
"""Output parameters set on suspend nodes (``PUT …/set``) for the next resume."""
WRITER, APPROVER, ADMIN = "writer", "approver", "admin"
WHOAMI_PATH = "/auth/whoami"
AUTH_TIMEOUT = 10.0
SETTLE_TIMEOUT = 15.0
"""Seconds a resume/stop/terminate waits for the run's executor to take it up."""

# gRPC status codes, and the HTTP status grpc-gateway answers each with.
INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED = 3, 5, 6, 7
FAILED_PRECONDITION, ABORTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 9, 10, 13, 14, 16
HTTP_STATUS = {
    INVALID_ARGUMENT: 400,
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    PERMISSION_DENIED: 403,
    FAILED_PRECONDITION: 400,
    ABORTED: 409,
    INTERNAL: 500,
    UNAVAILABLE: 503,
    UNAUTHENTICATED: 401,
}


class ArgoError(Exception):
    """An answer in the gRPC-gateway's error shape."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_response(code: int, message: str) -> JSONResponse:
    """The gRPC-gateway's error body, with the HTTP status it answers ``code`` with."""
    return JSONResponse(
        {"code": code, "message": message, "details": []}, status_code=HTTP_STATUS.get(code, 500)
    )


def code_of(error: GeomlopsError) -> int:
    """The one table from the platform's errors to Argo's."""
    if isinstance(error, NotFoundError):
        return NOT_FOUND
    if isinstance(error, ValidationFailed):
        return INVALID_ARGUMENT
    if isinstance(error, ConflictError):
        return ABORTED
    if isinstance(error, AuthError):
        return UNAUTHENTICATED
    if isinstance(error, StackNotRunning):
        return UNAVAILABLE
    return INTERNAL


def node_status(node: dict[str, Any]) -> dict[str, Any]:
    """A node of the executor's status as Argo's ``NodeStatus``."""
    out: dict[str, Any] = {
        "id": node["id"],
        "name": node["name"],
        "displayName": node["displayName"],
        "type": node["type"],
        "phase": node["phase"],
    }
    for key in ("templateName", "message", "startedAt", "finishedAt", "boundaryID", "inputs"):
        if node.get(key):
            out[key] = node[key]
    if node.get("children"):
        out["children"] = list(node["children"])
    if node.get("outputs"):
        outputs = dict(node["outputs"])
        if "exitCode" in outputs:
            outputs["exitCode"] = str(outputs["exitCode"])
        out["outputs"] = outputs
    if node.get("retries") is not None:
        out["nodeFlag"] = {"retried": True}
    if node.get("restarts"):
        out["failedPodRestarts"] = int(node["restarts"])
    return out


def workflow_object(executor: LocalExecutor, name: str, *, nodes: bool = True) -> dict[str, Any]:
    """The run as Argo's ``Workflow`` object (metadata, spec, status)."""
    state = executor.store.load(name)
    status = executor.status(name)
    source = state.workflow["metadata"]
    labels = {
        **(source.get("labels") or {}),
        PHASE_LABEL: state.phase,
        COMPLETED_LABEL: "true" if state.finished else "false",
    }
    annotations = {
        **(source.get("annotations") or {}),
        STATE_DIR_ANNOTATION: status["stateDir"],
    }
    body: dict[str, Any] = {"phase": state.phase}
    for key in ("message", "startedAt", "finishedAt", "progress"):
        if status.get(key):
            body[key] = status[key]
    if nodes and status["nodes"]:
        body["nodes"] = {n["id"]: node_status(n) for n in status["nodes"]}
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "name": state.name,
            "namespace": state.namespace,
            "uid": state.uid,
            "resourceVersion": str(state.seq),
            "generation": 1,
            "creationTimestamp": iso(state.created_at),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": state.workflow["spec"],
        "status": body,
    }


def parse_parameters(values: list[str] | None) -> dict[str, str]:
    """``name=value`` strings (Argo's ``parameters`` field) as a mapping."""
    parsed = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise ArgoError(INVALID_ARGUMENT, f"parameter {value!r} is not name=value")
        parsed[key] = text
    return parsed


def parse_labels(text: str | None) -> dict[str, str]:
    """A ``key=value,…`` label string as a mapping."""
    labels = {}
    for part in (text or "").split(","):
        if part.strip():
            key, sep, value = part.partition("=")
            if not sep:
                raise ArgoError(INVALID_ARGUMENT, f"label {part!r} is not key=value")
            labels[key.strip()] = value.strip()
    return labels


def parse_node_selector(selector: str | None) -> str | None:
    """The node a ``nodeFieldSelector`` names (``displayName=…``, ``name=…`` or ``id=…``)."""
    if not selector:
        return None
    key, sep, value = selector.partition("=")
    if not sep or key.strip() not in ("displayName", "name", "id") or "," in value:
        raise ArgoError(
            INVALID_ARGUMENT,
            f"nodeFieldSelector {selector!r}: only displayName=, name= or id= of one node is "
            "supported by the local executor",
        )
    return value.strip()
