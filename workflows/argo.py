"""Submitting to and following runs on an Argo Workflows server, through Hera's service.

Used when ``GEOMLOPS_ARGO_SERVER`` is set. A WorkflowTemplate is submitted by name (the
cluster has it installed by the Helm chart), so the server runs the definition it holds; a
manifest file is created as a Workflow. Status is reduced to the same shape the local
executor's :meth:`status` returns (phase, suspended, nodes), so the CLI treats both alike.
"""

from __future__ import annotations

import time
from typing import Any

from geomlops.errors import AuthError, GeomlopsError, NotFoundError, ValidationFailed
from geomlops.settings import Settings, get_settings

FINISHED = ("Succeeded", "Failed", "Error")


def _translate(exc: Exception, what: str) -> GeomlopsError:
    from hera.exceptions import HeraException

    text = str(exc)
    name = type(exc).__name__
    if name == "NotFound":
        return NotFoundError(f"{what}: not found on the Argo server ({text})")
    if name in ("Unauthorized", "Forbidden"):
        return AuthError(f"{what}: {text}", hint="set GEOMLOPS_ARGO_TOKEN to a valid token")
    if name == "BadRequest":
        return ValidationFailed(f"{what}: rejected by the Argo server", problems=[text])
    if isinstance(exc, HeraException):
        return GeomlopsError(f"{what}: {text}")
    return GeomlopsError(
        f"{what}: cannot reach the Argo server ({text})", hint="check GEOMLOPS_ARGO_SERVER"
    )


class ArgoServer:
    """The subset of the Argo server API the CLI needs."""

    def __init__(self, settings: Settings | None = None) -> None:
        from hera.workflows import WorkflowsService

        self.settings = settings or get_settings()
        argo = self.settings.argo
        if not argo.server:
            raise GeomlopsError("no Argo server configured", hint="set GEOMLOPS_ARGO_SERVER")
        self.namespace = argo.namespace
        self.service = WorkflowsService(
            host=argo.server,
            token=argo.token.get_secret_value() if argo.token else None,
            namespace=argo.namespace,
            verify_ssl=argo.verify_ssl,
        )

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import requests

        try:
            return fn(*args, **kwargs)
        except (requests.RequestException, OSError) as exc:
            raise _translate(exc, what) from exc
        except Exception as exc:  # hera raises its own exception classes per status code
            if type(exc).__module__.startswith("hera"):
                raise _translate(exc, what) from exc
            raise

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

        if manifest.get("kind") != "Workflow":
            raise ValidationFailed(
                f"an Argo server runs a {manifest.get('kind')} only once it is installed",
                hint="install it (the Helm chart does) and submit it by name",
            )
        manifest = _with_parameters(manifest, parameters)
        request = WorkflowCreateRequest(namespace=self.namespace, workflow=Workflow(**manifest))
        workflow = self._call("create workflow", self.service.create_workflow, request)
        return str(workflow.metadata.name)

    def status(self, name: str) -> dict[str, Any]:
        workflow = self._call(f"workflow {name}", self.service.get_workflow, name)
        data = workflow.model_dump(by_alias=True, exclude_none=True, mode="json")
        status = data.get("status") or {}
        nodes = list((status.get("nodes") or {}).values())
        suspended = any(n.get("type") == "Suspend" and n.get("phase") == "Running" for n in nodes)
        return {
            "name": name,
            "namespace": self.namespace,
            "phase": status.get("phase") or "Pending",
            "message": status.get("message") or "",
            "suspended": suspended and status.get("phase") not in FINISHED,
            "progress": status.get("progress"),
            "nodes": nodes,
        }

    def wait(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the run ends or suspends (or ``timeout`` seconds pass)."""
        interval = self.settings.argo.poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(name)
            if status["phase"] in FINISHED or status["suspended"]:
                return status
            if deadline is not None and time.monotonic() > deadline:
                return status
            time.sleep(interval)

    def resume(self, name: str, node: str | None = None) -> dict[str, Any]:
        from hera.workflows.models import WorkflowResumeRequest

        request = WorkflowResumeRequest(
            name=name,
            namespace=self.namespace,
            node_field_selector=f"displayName={node}" if node else None,
        )
        self._call(f"resume {name}", self.service.resume_workflow, name, request)
        return self.status(name)

    def stop(self, name: str, reason: str | None = None) -> dict[str, Any]:
        from hera.workflows.models import WorkflowStopRequest

        request = WorkflowStopRequest(name=name, namespace=self.namespace, message=reason)
        self._call(f"stop {name}", self.service.stop_workflow, name, request)
        return self.status(name)

    def list(self) -> list[dict[str, Any]]:
        listed = self._call("list workflows", self.service.list_workflows)
        runs = []
        for item in listed.items or []:
            status = item.status
            runs.append(
                {
                    "name": item.metadata.name,
                    "phase": (status.phase if status else None) or "Pending",
                    "createdAt": str(item.metadata.creation_timestamp or ""),
                    "finishedAt": str(status.finished_at or "") if status else "",
                    "message": (status.message if status else None) or "",
                }
            )
        return runs


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
