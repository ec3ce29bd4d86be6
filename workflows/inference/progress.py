"""Progress of a batch-inference run, counted from what is in its S3 folder.

Tasks are tiles, counted as Geospatial Studio reports them: total, succeeded (a record
exists), failed (a shard gave up on them and they are still not done), waiting (the rest).
The counts come from the objects themselves, not from a log, so they stay true across
retries, resumes and crashed pods.
"""

from __future__ import annotations

from typing import Any

from geomlops import objects
from geomlops.connections import Connections, get_connections
from geomlops.errors import NotFoundError
from geomlops.settings import Settings
from geomlops.workflows.inference.config import CONFIG, InferenceRunConfig, ShardPlan
from geomlops.workflows.inference.storage import list_keys

REPORT = "report.json"
PUBLISHED = "published.json"
PLAN_ERROR = "plan/error.json"


def done_tiles(conn: Connections, config: InferenceRunConfig) -> set[str]:
    """Ids of the tiles whose record exists."""
    prefix = config.uri("tiles/")
    return {
        uri[len(prefix) : -len(".json")]
        for uri in list_keys(conn, prefix)
        if uri.endswith(".json") and ".tmp-" not in uri
    }


def shard_plans(conn: Connections, config: InferenceRunConfig) -> list[ShardPlan]:
    """Every shard's planned tiles."""
    return [ShardPlan.load(conn, config.shard_uri(i)) for i in range(config.shard_count)]


def missing_by_shard(conn: Connections, config: InferenceRunConfig) -> dict[int, list[str]]:
    """Per shard, the planned tiles without a record."""
    done = done_tiles(conn, config)
    return {
        plan.shard: [t.id for t in plan.tiles if t.id not in done]
        for plan in shard_plans(conn, config)
    }


def failed_tiles(conn: Connections, config: InferenceRunConfig) -> dict[int, dict[str, str]]:
    """Per shard that gave up, its failed tiles and why (from ``shards/*.failed.json``)."""
    failed = {}
    for shard in range(config.shard_count):
        try:
            failed[shard] = objects.read_json(conn, config.failed_uri(shard))["tiles"]
        except NotFoundError:
            continue
    return failed


def task_counts(conn: Connections, config: InferenceRunConfig) -> dict[str, Any]:
    """Tiles total/succeeded/failed/waiting, and the shards still missing tiles."""
    missing = missing_by_shard(conn, config)
    not_done = {tile for tiles in missing.values() for tile in tiles}
    failed = {
        shard: {t: why for t, why in tiles.items() if t in not_done}
        for shard, tiles in failed_tiles(conn, config).items()
    }
    failed = {shard: tiles for shard, tiles in failed.items() if tiles}
    n_failed = sum(len(t) for t in failed.values())
    return {
        "tasks_count_total": config.tile_count,
        "tasks_count_success": config.tile_count - len(not_done),
        "tasks_count_failed": n_failed,
        "tasks_count_waiting": len(not_done) - n_failed,
        "shards_total": config.shard_count,
        "shards_incomplete": sorted(s for s, tiles in missing.items() if tiles),
        "failed": {str(s): tiles for s, tiles in failed.items()},
    }


def config_uri(bucket: str, run: str) -> str:
    """Where a run's plan is (the run named by its planning workflow)."""
    return f"s3://{bucket}/{run}/{CONFIG}"


def plan_error_uri(bucket: str, run: str) -> str:
    """Where the plan step of ``run`` says why it refused the request (a user error)."""
    return f"s3://{bucket}/{run}/{PLAN_ERROR}"


def write_report(conn: Connections, config: InferenceRunConfig, phase: str) -> dict[str, Any]:
    """Record the run's final counts and outcome in ``report.json``; returns it."""
    from geomlops.workflows.inference.processing import processing_outcome

    counts = task_counts(conn, config)
    complete = counts["tasks_count_success"] == counts["tasks_count_total"]
    published = objects.exists(conn, config.uri(PUBLISHED))
    processing = processing_outcome(conn, config)
    processed = processing is None or processing["status"] == "complete"
    report = {
        "run": config.workflow,
        "workflow_phase": phase,
        "status": "COMPLETED" if complete and published and processed else "FAILED",
        "published": published,
        **counts,
    }
    if processing is not None:
        report["processing"] = processing
    if not (complete and published):
        report["note"] = (
            "partial outputs are withheld: no prediction item is published until every tile "
            f"is done; `geomlops infer resume {config.workflow}` runs only the missing tiles"
        )
    objects.write_json(conn, config.uri(REPORT), report)
    return report


#: Workflow phases (Argo's) after which nothing more will happen to a run.
ENDED_PHASES = frozenset({"Succeeded", "Failed", "Error"})


def run_status(
    *,
    planned: bool,
    published: bool,
    counts: dict[str, Any],
    workflow_phase: str | None,
    plan_refused: bool = False,
    processing: str | None = None,
) -> str:
    """The run's status, from its phase and what is in its folder.

    A run that has no plan yet is PLANNING while its workflow runs (not FAILED: its plan
    step may still be working); a run whose workflow ended without publishing is FAILED
    whatever its tiles say; COMPLETED only once its outputs are published. Without a
    workflow phase (the run is not known to the workflow server any more), only what is
    in the folder decides. A plan step that refused the request (``plan_refused``: a user
    error it recorded) has failed the run, even while the exit handler still runs. A run
    that asked for generic processors (``processing``: pending, complete or incomplete) is
    COMPLETED only once they all ran: one that failed fails the run, published or not.
    """
    if published and processing in (None, "complete"):
        return "COMPLETED"
    if published and processing == "pending":
        return "FAILED" if workflow_phase in ENDED_PHASES else "PUBLISHING"
    if published:
        return "FAILED"
    ended = workflow_phase in ENDED_PHASES
    if not planned:
        return "FAILED" if ended or workflow_phase is None or plan_refused else "PLANNING"
    if ended or (workflow_phase is None and counts.get("tasks_count_failed")):
        return "FAILED"
    if counts.get("tasks_count_waiting") or counts.get("tasks_count_failed"):
        return "RUNNING"
    return "PUBLISHING"


def failure_message(workflow: dict[str, Any] | None) -> str | None:
    """Why the workflow failed, from the first failed step that says more than its exit code."""
    if not workflow or workflow.get("phase") not in ("Failed", "Error"):
        return None
    for node in workflow.get("nodes") or []:
        message = node.get("message") or ""
        if node.get("type") == "Pod" and node.get("phase") in ("Failed", "Error") and message:
            return str(message)
    return str(workflow.get("message") or "") or None


def plan_error(conn: Connections, bucket: str, run: str) -> str | None:
    """Why the plan step of ``run`` refused its request (with the fix), or None."""
    try:
        recorded = objects.read_json(conn, plan_error_uri(bucket, run))
    except NotFoundError:
        return None
    lines = [str(recorded.get("error") or "planning failed")]
    lines += [f"  - {problem}" for problem in recorded.get("problems") or []]
    if recorded.get("hint"):
        lines.append(f"hint: {recorded['hint']}")
    return "\n".join(lines)


def run_summary(
    run: str, settings: Settings, workflow: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What ``geomlops infer status`` shows: counts, outcome and published outputs of ``run``.

    ``workflow`` is the run's status on the workflow server (phase, message, nodes), when
    known: the status follows the run's phase, not only the objects it has written.
    """
    conn = get_connections(settings)
    uri = config_uri(settings.s3.bucket_predictions, run)
    phase = workflow.get("phase") if workflow else None
    summary: dict[str, Any] = {"run": run, "workflow_phase": phase}
    try:
        config = InferenceRunConfig.load(conn, uri)
    except NotFoundError:
        refused = plan_error(conn, settings.s3.bucket_predictions, run)
        summary.update(planned=False, tasks={}, published=None)
        summary["status"] = run_status(
            planned=False,
            published=False,
            counts={},
            workflow_phase=phase,
            plan_refused=refused is not None,
        )
        summary["error"] = refused or failure_message(workflow)
        return summary
    summary.update(planned=True, tasks=task_counts(conn, config))
    try:
        summary["published"] = objects.read_json(conn, config.uri(PUBLISHED))
    except NotFoundError:
        summary["published"] = None
    from geomlops.workflows.inference.processing import processing_outcome

    processing = processing_outcome(conn, config)
    summary["status"] = run_status(
        planned=True,
        published=bool(summary["published"]),
        counts=summary["tasks"],
        workflow_phase=phase,
        processing=processing["status"] if processing else None,
    )
    summary["error"] = failure_message(workflow)
    if processing is not None:
        summary["processing"] = processing
        failed = [p for p in processing["processors"] if p.get("status") == "failed"]
        if failed and not summary["error"]:
            summary["error"] = f"processor {failed[0]['name']}: {failed[0].get('error')}"
    summary["outside_region"] = config.outside_region
    summary["skipped_scenes"] = config.skipped_scenes
    return summary
