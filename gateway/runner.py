"""Jobs are workflow runs: submitted, followed and stopped through the one Argo API client.

The same runner as ``geomlops infer``: :class:`geomlops.workflows.argo.ArgoServer` speaks to
``GEOMLOPS_ARGO_SERVER`` on a cluster, else to the local stack's ``argo`` service, and the
request is checked by the same code (:mod:`geomlops.workflows.inference.request`). A job's id
is the run's name; its task counts are the run's tiles, counted from its S3 folder.

Calls go out as the caller: their credential becomes the Argo token, so the Argo API checks
it again and labels the run with their name. On a cluster whose Argo server takes its own
token (``GEOMLOPS_ARGO_TOKEN``), that token is used instead, the gateway having checked the
caller's role itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from geomlops.errors import NotFoundError
from geomlops.settings import Settings
from geomlops.workflows.argo import TEMPLATE_LABEL, ArgoServer
from geomlops.workflows.inference.progress import run_summary
from geomlops.workflows.inference.request import CheckedRequest, prepare
from geomlops.workflows.templates.infer import INFER

DISMISSED = "dismissed through the gateway"
"""Start of the stop message of a dismissed job: how a stopped run reads as ``dismissed``."""
PHASES = {
    "Pending": "accepted",
    "Running": "running",
    "Succeeded": "successful",
    "Failed": "failed",
    "Error": "failed",
}


class Runner:
    """The workflow client as one caller sees it."""

    def __init__(self, settings: Settings, token: str) -> None:
        if settings.argo.token is None:
            argo = settings.argo.model_copy(update={"token": SecretStr(token)})
            settings = settings.model_copy(update={"argo": argo})
        self.settings = settings
        self.server = ArgoServer(settings)

    def submit_batch_inference(
        self,
        *,
        model: str,
        version: str | None,
        aoi: Any,
        datetime: str,
        allow_outside_region: bool,
    ) -> tuple[str, CheckedRequest]:
        """Check the request, upload its AOI and submit the run; its name and the check."""
        checked = prepare(
            model=model,
            version=version,
            aoi=aoi,
            datetime=datetime,
            allow_outside_region=allow_outside_region,
            settings=self.settings,
        )
        return self.server.submit_template(INFER, checked.parameters), checked

    def run(self, name: str) -> dict[str, Any]:
        """The run's status (NotFoundError unless it is a batch-inference run)."""
        status = self.server.status(name)
        if status.get("workflowTemplate") != INFER:
            raise NotFoundError(f"no batch-inference job {name!r}")
        return status

    def runs(self) -> list[dict[str, Any]]:
        """Every batch-inference run, newest first (those of ``geomlops infer`` too)."""
        server = self.server
        listed = server._call(
            "list jobs",
            server.service.list_workflows,
            label_selector=f"{TEMPLATE_LABEL}={INFER}",
        )
        runs = []
        for item in listed.items or []:
            data = item.model_dump(by_alias=True, exclude_none=True, mode="json")
            metadata, status = data.get("metadata") or {}, data.get("status") or {}
            runs.append(
                {
                    "name": metadata.get("name"),
                    "phase": status.get("phase") or "Pending",
                    "message": status.get("message") or "",
                    "createdAt": metadata.get("creationTimestamp"),
                    "startedAt": status.get("startedAt"),
                    "finishedAt": status.get("finishedAt"),
                    "progress": status.get("progress"),
                }
            )
        runs.sort(key=lambda r: r.get("createdAt") or "", reverse=True)
        return runs

    def summary(self, run: dict[str, Any]) -> dict[str, Any]:
        """Task counts and published outputs of the run's plan (a resumed run's original)."""
        plan = (run.get("parameters") or {}).get("resume-from") or run["name"]
        return run_summary(plan, self.settings)

    def dismiss(self, name: str, who: str) -> dict[str, Any]:
        """Stop the run (its pods are killed, nothing is published); its status after."""
        run = self.run(name)
        if run["phase"] in ("Succeeded", "Failed", "Error"):
            return run
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.server.stop(name, reason=f"{DISMISSED} by {who} at {stamp}")


def ogc_status(phase: str, message: str) -> str:
    """The OGC status code of an Argo phase (a run stopped by dismissal: ``dismissed``)."""
    if phase in ("Failed", "Error") and message.startswith(DISMISSED):
        return "dismissed"
    return PHASES.get(phase, "running")


def argo_progress(progress: str | None) -> int | None:
    """Argo's ``done/total`` pod progress as a percentage, when it says."""
    try:
        done, total = (int(p) for p in (progress or "").split("/"))
    except ValueError:
        return None
    return round(100 * done / total) if total else None
