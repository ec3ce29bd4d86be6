"""Jobs as OGC API - Processes shows them: statusInfo, the job list, results.

A job is a batch-inference workflow run. Its status is the run's phase; its progress and
task counts (total/succeeded/failed/waiting, Geospatial Studio's names) are the run's tiles
as counted from its S3 folder, so they stay true across retries and resumes. Results are
links a browser or QGIS opens over http through the gateway (COG with range requests,
GeoJSON), beside the STAC items that carry the lineage.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from geomlops.catalog.collections import PREDICTIONS
from geomlops.gateway.assets import asset_path
from geomlops.gateway.errors import NO_SUCH_JOB, RESULT_NOT_READY, OgcError
from geomlops.gateway.processes import BATCH_INFERENCE, COG, GEOJSON
from geomlops.gateway.runner import argo_progress, ogc_status

RESULTS_REL = "http://www.opengis.net/def/rel/ogc/1.0/results"
JSON = "application/json"


def asset_url(base: str, collection: str, item: str, asset: str) -> str:
    """The gateway's http href of an item's asset (range requests served)."""
    return base + asset_path(collection, item, asset)


def no_such_job(job_id: str) -> OgcError:
    """The OGC ``no-such-job`` exception."""
    return OgcError(404, "NoSuchJob", f"no job {job_id!r} (GET /jobs lists them)", NO_SUCH_JOB)


def _links(base: str, job_id: str, status: str) -> list[dict[str, str]]:
    links = [{"href": f"{base}/jobs/{job_id}", "rel": "self", "type": JSON, "title": "job status"}]
    if status == "successful":
        links.append({"href": f"{base}/jobs/{job_id}/results", "rel": RESULTS_REL, "type": JSON})
    return links


def _times(run: dict[str, Any]) -> dict[str, str]:
    names = {"created": "createdAt", "started": "startedAt", "finished": "finishedAt"}
    return {ogc: str(run[argo]) for ogc, argo in names.items() if run.get(argo)}


def tasks(summary: dict[str, Any]) -> dict[str, int]:
    """The run's task counts under short names (zero before the plan exists)."""
    counts = summary.get("tasks") or {}
    return {
        "total": int(counts.get("tasks_count_total", 0)),
        "succeeded": int(counts.get("tasks_count_success", 0)),
        "failed": int(counts.get("tasks_count_failed", 0)),
        "waiting": int(counts.get("tasks_count_waiting", 0)),
    }


def status_info(
    base: str, run: dict[str, Any], summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The statusInfo of a run; with its summary, progress comes from its tiles."""
    status = ogc_status(run["phase"], run.get("message") or "")
    info: dict[str, Any] = {
        "processID": BATCH_INFERENCE,
        "type": "process",
        "jobID": run["name"],
        "status": status,
        **_times(run),
    }
    if run.get("message"):
        info["message"] = run["message"]
    if summary is not None:
        counts = tasks(summary)
        info["tasks"] = counts
        done = counts["succeeded"] / counts["total"] if counts["total"] else 0.0
        # Tiles are most of the work; publishing is the rest, so 100 means published.
        info["progress"] = 100 if status == "successful" else min(99, round(95 * done))
        info["outsideRegion"] = bool(summary.get("outside_region"))
    else:
        progress = 100 if status == "successful" else argo_progress(run.get("progress"))
        if progress is not None:
            info["progress"] = progress
    info["links"] = _links(base, run["name"], status)
    return info


def results(base: str, run: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The results document of a successful run (404 ``result-not-ready`` otherwise)."""
    status = ogc_status(run["phase"], run.get("message") or "")
    published = summary.get("published")
    if status in ("accepted", "running") or (status == "successful" and not published):
        raise OgcError(
            404,
            "ResultNotReady",
            f"job {run['name']!r} is {status}; poll /jobs/{run['name']} until it is successful",
            RESULT_NOT_READY,
        )
    if status != "successful" or not published:
        raise OgcError(
            500,
            "JobFailed",
            f"job {run['name']!r} is {status}: {run.get('message') or 'no outputs published'}",
        )
    plan = summary["run"]
    masks = [
        {
            "href": asset_url(base, PREDICTIONS, item_id, "mask"),
            "rel": "item",
            "type": COG,
            "title": f"class mask of {item_id}",
        }
        for item_id in published["items"]
        if item_id != plan
    ]
    items = [
        {"href": f"{base}/collections/{PREDICTIONS}/items/{quote(i, safe='')}", "type": GEOJSON}
        for i in published["items"]
    ]
    return {
        "polygons": {
            "href": asset_url(base, PREDICTIONS, plan, "vectors"),
            "rel": "item",
            "type": GEOJSON,
            "title": f"polygons of run {plan}",
        },
        "masks": masks,
        "items": items,
    }
