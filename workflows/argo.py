"""The one workflow client: Argo Server's REST API through Hera's ``WorkflowsService``.

The server is ``GEOMLOPS_ARGO_SERVER`` on a cluster, else the local stack's ``argo`` service
(the local executor answering the same API), so the CLI runs workflows one way everywhere.
A WorkflowTemplate is submitted by name (a cluster has it installed by the Helm chart; the
local service serves the platform's own); a manifest file is created as a Workflow. Status
is reduced to one JSON-ready shape (phase, suspended, nodes, parameters, …) the CLI prints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from geomlops.errors import (
    AuthError,
    ConflictError,
    GeomlopsError,
    NotFoundError,
    StackNotRunning,
    ValidationFailed,
)
from geomlops.settings import Settings, get_settings

FINISHED = ("Succeeded", "Failed", "Error")
TEMPLATE_LABEL = "workflows.argoproj.io/workflow-template"
CREATOR_LABEL = "workflows.argoproj.io/creator"
STATE_DIR_ANNOTATION = "workflows.geomlops.io/state-dir"
Progress = Callable[[dict[str, Any], dict[str, Any] | None], None]
"""Called with each polled status and the one before it (None at first)."""


def _translate(exc: Exception, what: str, server: str) -> GeomlopsError:
    from hera.exceptions import HeraException

    text = str(exc)
    name = type(exc).__name__
    if name == "NotFound":
        return NotFoundError(f"{what}: not found on the Argo server ({text})")
    if name in ("Unauthorized", "Forbidden"):
        return AuthError(
            f"{what}: {text}",
            hint="set GEOMLOPS_ARGO_TOKEN (or GEOMLOPS_API_KEY) to a valid token with the role",
        )
    if name == "BadRequest":
        return ValidationFailed(f"{what}: rejected by the Argo server", problems=[text])
    if name == "AlreadyExists":
        return ConflictError(f"{what}: {text}")
    if isinstance(exc, HeraException):
        return GeomlopsError(f"{what}: {text}")
    return StackNotRunning(
        f"{what}: cannot reach the Argo server at {server} ({text})",
        hint="run `geomlops up` (the local `argo` service), or check GEOMLOPS_ARGO_SERVER",
    )


def _timestamp(value: Any) -> str:
    """An Argo time (Hera's ``Time`` model, a datetime, or text) as RFC 3339, or ''."""
    value = getattr(value, "root", value)
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


class ArgoServer:
    """The subset of Argo Server's API the CLI needs, through Hera."""

    def __init__(self, settings: Settings | None = None) -> None:
        from hera.workflows import WorkflowsService

        from geomlops.connections import get_connections

        self.settings = settings or get_settings()
        argo = self.settings.argo
        self.host = get_connections(self.settings).argo_url
        self.namespace = argo.namespace
        self.service = WorkflowsService(
            host=self.host,
            token=self._token(),
            namespace=argo.namespace,
            verify_ssl=argo.verify_ssl,
        )

    def _token(self) -> str | None:
        """``GEOMLOPS_ARGO_TOKEN``, else the platform's API key (what the local API checks)."""
        if self.settings.argo.token is not None:
            return self.settings.argo.token.get_secret_value()
        from geomlops.catalog.client import configured_api_key

        return configured_api_key(self.settings)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import requests

        try:
            return fn(*args, **kwargs)
        except (requests.RequestException, OSError) as exc:
            raise _translate(exc, what, self.host) from exc
        except Exception as exc:  # hera raises its own exception classes per status code
            if type(exc).__module__.startswith("hera"):
                raise _translate(exc, what, self.host) from exc
            raise

    # --- starting runs ----------------------------------------------------------------------

    def submit_template(self, name: str, parameters: dict[str, str]) -> str:
        """Submit the installed WorkflowTemplate ``name``; returns the new run's name."""
        from hera.workflows.models import SubmitOpts, WorkflowSubmitRequest

        request = WorkflowSubmitRequest(
            namespace=self.namespace,
            resource_kind="WorkflowTemplate",
            resource_name=name,
            submit_options=SubmitOpts(parameters=[f"{k}={v}" for k, v in parameters.items()]),
        )
        workflow = self._call(f"submit {name}", self.service.submit_workflow, request)
        return str(workflow.metadata.name)

    def submit_manifest(self, manifest: dict[str, Any], parameters: dict[str, str]) -> str:
        """Create a Workflow from a Workflow manifest, with ``parameters`` set."""
        from hera.workflows.models import Workflow, WorkflowCreateRequest

        manifest = _with_parameters(_as_workflow(manifest), parameters)
        request = WorkflowCreateRequest(namespace=self.namespace, workflow=Workflow(**manifest))
        workflow = self._call("create workflow", self.service.create_workflow, request)
        return str(workflow.metadata.name)

    # --- following runs -----------------------------------------------------------------------

    def workflow(self, name: str) -> dict[str, Any]:
        """The run as the server returns it (Argo's ``Workflow``, as JSON data)."""
        workflow = self._call(f"workflow {name}", self.service.get_workflow, name)
        return dict(workflow.model_dump(by_alias=True, exclude_none=True, mode="json"))

    def status(self, name: str) -> dict[str, Any]:
        """Phase, suspension, nodes and parameters of the run, with Argo's field names."""
        return _summary(self.workflow(name), self.namespace)

    def wait(
        self,
        name: str,
        *,
        timeout: float | None = None,
        progress: Progress | None = None,
        until_finished: bool = False,
    ) -> dict[str, Any]:
        """Poll until the run ends or suspends (or ``timeout`` seconds pass).

        ``until_finished``: a suspended run is waited on too (after a stop, say).
        """
        interval = self.settings.argo.poll_seconds
        deadline = None if timeout is None else time.monotonic() + timeout
        previous = None
        while True:
            status = self.status(name)
            if progress is not None:
                progress(status, previous)
            previous = status
            if status["phase"] in FINISHED or (status["suspended"] and not until_finished):
                return status
            if deadline is not None and time.monotonic() > deadline:
                return status
            time.sleep(interval)

    def resume(
        self, name: str, node: str | None = None, parameters: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Resume suspended nodes (all, or ``node``), first setting their output parameters."""
        from hera.workflows.models import WorkflowResumeRequest, WorkflowSetRequest

        selector = f"displayName={node}" if node else None
        if parameters:
            request = WorkflowSetRequest(
                name=name,
                namespace=self.namespace,
                node_field_selector=selector,
                output_parameters=json.dumps(parameters),
            )
            self._call(f"set outputs of {name}", self.service.set_workflow, name, request)
        resume = WorkflowResumeRequest(
            name=name, namespace=self.namespace, node_field_selector=selector
        )
        self._call(f"resume {name}", self.service.resume_workflow, name, resume)
        return self.status(name)

    def stop(self, name: str, reason: str | None = None) -> dict[str, Any]:
        """Stop: the pods are killed and the exit handler runs; the run ends Failed."""
        from hera.workflows.models import WorkflowStopRequest

        request = WorkflowStopRequest(name=name, namespace=self.namespace, message=reason)
        self._call(f"stop {name}", self.service.stop_workflow, name, request)
        return self.status(name)

    def terminate(self, name: str) -> dict[str, Any]:
        """Terminate: the pods are killed, no exit handler runs; the run ends Failed."""
        from hera.workflows.models import WorkflowTerminateRequest

        request = WorkflowTerminateRequest(name=name, namespace=self.namespace)
        self._call(f"terminate {name}", self.service.terminate_workflow, name, request)
        return self.status(name)

    def retry(self, name: str) -> dict[str, Any]:
        """Run a Failed or Error run again from its failed steps."""
        from hera.workflows.models import WorkflowRetryRequest

        request = WorkflowRetryRequest(name=name, namespace=self.namespace)
        self._call(f"retry {name}", self.service.retry_workflow, name, request)
        return self.status(name)

    def logs(self, name: str, node: str | None = None) -> str:
        """Logs of one node (display name, name, id or pod name; a group: its pods), or all.

        One pod asked for by name prints bare; otherwise each pod's log has a header line.
        """
        status = self.status(name)
        pods = [n for n in status["nodes"] if n.get("type") == "Pod"]
        if node is not None:
            matches = {
                n["id"]
                for n in status["nodes"]
                if node in (n.get("name"), n.get("displayName"), n["id"], n.get("podName"))
            }
            if not matches:
                raise NotFoundError(
                    f"run {name!r} has no node {node!r}",
                    hint="`geomlops workflows status RUN` lists its nodes",
                )
            pods = [p for p in pods if _under(p, matches, status["nodes"])]
        lines = self._log_lines(name)
        parts = []
        for pod in pods:
            text = "".join(f"{line}\n" for line in lines.get(pod.get("podName") or "", []))
            parts.append(
                text
                if node is not None and len(pods) == 1
                else f"--- {pod.get('displayName')} ({pod.get('podName')})\n{text}"
            )
        return "".join(parts)

    def _log_lines(self, name: str) -> dict[str, list[str]]:
        """Every pod's log lines from the streamed ``…/log`` answer (one JSON per line).

        Requested through Hera's session and headers; its ``workflow_logs`` parses one entry
        only, while Argo streams one ``{"result": LogEntry}`` per line.
        """
        import requests
        from hera.exceptions import exception_from_server_response

        url = f"{self.host.rstrip('/')}/api/v1/workflows/{self.namespace}/{name}/log"
        params = {"logOptions.container": "main"}
        try:
            response = self.service.session.get(
                url,
                params=params,
                headers={"Authorization": self.service.token or ""},
                verify=self.service.verify_ssl,
            )
        except (requests.RequestException, OSError) as exc:
            raise _translate(exc, f"logs of {name}", self.host) from exc
        if not response.ok:
            refused = exception_from_server_response(response)
            raise _translate(refused, f"logs of {name}", self.host) from refused
        lines: dict[str, list[str]] = {}
        for raw in response.text.splitlines():
            if not raw.strip():
                continue
            entry = json.loads(raw).get("result") or {}
            lines.setdefault(entry.get("podName") or "", []).append(entry.get("content") or "")
        return lines

    def list(self) -> list[dict[str, Any]]:
        """One summary per run, newest first; times as the server wrote them (RFC 3339)."""
        listed = self._call("list workflows", self.service.list_workflows)
        runs = []
        for item in listed.items or []:
            status = item.status
            phase = (status.phase if status else None) or "Pending"
            runs.append(
                {
                    "name": item.metadata.name,
                    "phase": phase,
                    "suspended": bool(
                        status and status.nodes and phase not in FINISHED
                        and any(
                            n.type == "Suspend" and n.phase == "Running"
                            for n in status.nodes.values()
                        )
                    ),
                    "createdAt": _timestamp(item.metadata.creation_timestamp),
                    "finishedAt": _timestamp(status.finished_at if status else None),
                    "message": (status.message if status else None) or "",
                }
            )  # fmt: skip
        runs.sort(key=lambda r: r["createdAt"], reverse=True)
        return runs


def _under(pod: dict[str, Any], wanted: set[str], nodes: list[dict[str, Any]]) -> bool:
    """Whether ``pod`` is one of ``wanted`` or below one (a retry or group node)."""
    parents = {child: n["id"] for n in nodes for child in n.get("children") or []}
    candidate: str | None = pod["id"]
    seen = set()
    while candidate and candidate not in seen:
        if candidate in wanted:
            return True
        seen.add(candidate)
        candidate = parents.get(candidate)
    return False


def _summary(workflow: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The run's status in the CLI's shape, from Argo's ``Workflow`` object."""
    from geomlops.workflows.executor.model import pod_name

    metadata = workflow.get("metadata") or {}
    status = workflow.get("status") or {}
    name = str(metadata.get("name"))
    phase = status.get("phase") or "Pending"
    nodes = []
    for node in (status.get("nodes") or {}).values():
        node = dict(node)
        node["suspended"] = node.get("type") == "Suspend" and node.get("phase") == "Running"
        if node.get("type") == "Pod":
            # Argo's (v2) pod name, derived as the Argo CLI derives it.
            node["podName"] = pod_name(name, node.get("templateName") or "", node.get("name") or "")
        nodes.append(node)
    suspended = any(n["suspended"] for n in nodes) and phase not in FINISHED
    spec = workflow.get("spec") or {}
    parameters = {
        p["name"]: p.get("value", "")
        for p in (spec.get("arguments") or {}).get("parameters") or []
        if "name" in p
    }
    labels = metadata.get("labels") or {}
    summary: dict[str, Any] = {
        "name": name,
        "uid": metadata.get("uid"),
        "namespace": metadata.get("namespace") or namespace,
        "phase": phase,
        "message": status.get("message") or "",
        "suspended": suspended,
        "createdAt": metadata.get("creationTimestamp"),
        "startedAt": status.get("startedAt"),
        "finishedAt": status.get("finishedAt"),
        "progress": status.get("progress"),
        "parameters": parameters,
        "workflowTemplate": labels.get(TEMPLATE_LABEL)
        or (spec.get("workflowTemplateRef") or {}).get("name"),
        "submittedBy": labels.get(CREATOR_LABEL),
        "nodes": nodes,
    }
    state_dir = (metadata.get("annotations") or {}).get(STATE_DIR_ANNOTATION)
    if state_dir:
        summary["stateDir"] = state_dir
    return summary


class PolledProgress:
    """Prints one line per step that starts, ends or suspends, from successive statuses.

    The local executor's :class:`RichProgress` shows events as they happen in-process; a
    server is only polled, so the changes between two polls are shown, in the same words.
    """

    _KINDS = {
        "Running": "started",
        "Succeeded": "succeeded",
        "Failed": "failed",
        "Error": "error",
        "Skipped": "skipped",
        "Omitted": "omitted",
    }
    _SHOWN = ("Pod", "Suspend", "Retry", "Skipped")

    def __init__(self) -> None:
        from geomlops.workflows.executor.progress import RichProgress

        self.render = RichProgress()

    def __call__(self, status: dict[str, Any], previous: dict[str, Any] | None) -> None:
        from geomlops.workflows.executor.progress import ProgressEvent

        before = {n["id"]: n for n in (previous or {}).get("nodes", [])}
        run = status["name"]
        for node in status["nodes"]:
            if node.get("type") not in self._SHOWN:
                continue
            old = before.get(node["id"])
            if old is not None and old.get("phase") == node.get("phase"):
                continue
            kind = self._KINDS.get(node.get("phase") or "")
            if node.get("type") == "Suspend":
                kind = "suspended" if node.get("phase") == "Running" else "resumed"
            if kind is None:
                continue
            self.render(
                ProgressEvent(
                    run=run,
                    kind=kind,
                    node_name=node.get("name"),
                    display_name=node.get("displayName") or "",
                    node_type=node.get("type"),
                    phase=node.get("phase") or "",
                    message="" if kind in ("suspended", "resumed") else node.get("message") or "",
                )
            )
        changed = previous is None or previous["phase"] != status["phase"]
        if changed and status["phase"] != "Pending":
            self.render(
                ProgressEvent(
                    run=run,
                    kind="run",
                    node_name=None,
                    display_name=run,
                    node_type=None,
                    phase=status["phase"],
                    message=status.get("message") or "",
                )
            )


def _as_workflow(manifest: dict[str, Any]) -> dict[str, Any]:
    """A Workflow running ``manifest``: itself, or a (Cluster)WorkflowTemplate's spec."""
    kind = manifest.get("kind")
    if kind == "Workflow":
        return manifest
    if kind not in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
        raise ValidationFailed(
            f"cannot run a {kind or 'manifest without a kind'}",
            hint="give a Workflow or WorkflowTemplate manifest, or submit a template by name",
        )
    source = manifest.get("metadata") or {}
    name = source.get("name") or source.get("generateName") or "workflow"
    return {
        "apiVersion": manifest.get("apiVersion"),
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{str(name).rstrip('-')}-",
            "labels": dict(source.get("labels") or {}),
            "annotations": dict(source.get("annotations") or {}),
        },
        "spec": manifest.get("spec") or {},
    }


def _with_parameters(manifest: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """A copy of ``manifest`` whose workflow arguments take ``parameters``."""
    import copy

    manifest = copy.deepcopy(manifest)
    arguments = manifest.setdefault("spec", {}).setdefault("arguments", {})
    declared = arguments.setdefault("parameters", [])
    names = {p.get("name") for p in declared}
    unknown = sorted(set(parameters) - names)
    if unknown:
        raise ValidationFailed(
            "unknown workflow parameters",
            problems=[f"-p {k}: not declared by spec.arguments.parameters" for k in unknown],
        )
    for parameter in declared:
        if parameter.get("name") in parameters:
            parameter["value"] = parameters[parameter["name"]]
    return manifest
