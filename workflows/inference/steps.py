"""The steps of ``geomlops-batch-inference``, each one function behind one ``infer-step`` call.

plan → predict (one pod per shard, fanned out) → publish → process (the run's generic
processors, if it asked for any); ``report`` is the exit handler and
records the final task counts whatever happened. Every step reads the plan saved in S3.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from geomlops import objects
from geomlops.connections import get_connections
from geomlops.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    GeomlopsError,
    NotFoundError,
    ValidationFailed,
)
from geomlops.ml.runtime import LoadedModel, load_model
from geomlops.settings import Settings, get_settings
from geomlops.workflows.inference.config import InferenceRunConfig, ShardPlan
from geomlops.workflows.inference.planner import Plan, plan, resume_plan
from geomlops.workflows.inference.progress import write_report
from geomlops.workflows.inference.tilestore import S3TileSink
from geomlops.workflows.inference.worker import MaskJob, ShardJob, run_shard

log = logging.getLogger(__name__)


class ShardFailed(GeomlopsError):
    """Some tiles of a shard still failed after their retries."""


USER_ERRORS = (NotFoundError, ValidationFailed, ConflictError, AuthError, ConfigError)
"""Planning errors that retrying cannot fix: the request itself is wrong (no imagery for the
dates, an unknown model or version, an AOI outside the model's region, a bad setting).
Anything else (a service briefly away) is worth the template's retries."""


def record_plan_error(
    error: GeomlopsError, *, run: str, outputs: Path | None, settings: Settings
) -> None:
    """Say why planning refused the request, where the run's status is read, and exit so.

    The message goes into the run's folder (``geomlops infer status`` shows it) and into
    the termination message file under ``outputs`` (Argo's node message); the exit code
    tells the template's retry strategy not to try again.
    """
    from geomlops.workflows.inference.progress import plan_error_uri
    from geomlops.workflows.templates.parts import NOT_RETRYABLE, TERMINATION_LOG

    said = error.message + (f" (hint: {error.hint})" if error.hint else "")
    problems = list(getattr(error, "problems", []))
    try:
        objects.write_json(
            get_connections(settings),
            plan_error_uri(settings.s3.bucket_predictions, run),
            {"error": error.message, "hint": error.hint, "problems": problems},
        )
    except GeomlopsError as store_error:  # the object store is away: the log still says it
        log.warning("could not record the plan error in the run folder: %s", store_error)
    if outputs is not None:
        outputs.mkdir(parents=True, exist_ok=True)
        (outputs / TERMINATION_LOG).write_text(said, encoding="utf-8")
    error.exit_code = NOT_RETRYABLE


def plan_step(
    *,
    workflow: str,
    model: str,
    version: str,
    aoi: str,
    datetime: str,
    allow_outside_region: bool,
    resume_from: str,
    outputs: Path | None,
    scenes: str = "",
    pipeline: str = "",
    settings: Settings | None = None,
    processor: str = "",
    processor_params: str = "{}",
) -> Plan:
    """Plan the run (or reload the plan of ``resume_from``); write the Argo outputs.

    ``scenes``: comma-separated imagery item ids the run is pinned to ("" = all found).
    ``processor``: comma-separated generic processors (``NAME[@VERSION]``) to run after
    publishing, with ``processor_params`` (a JSON object of strings) as their ``-p`` values.
    ``pipeline``: s3:// URI of a pipeline spec whose mask model gates the model ("" = none).
    A user error (:data:`USER_ERRORS`) is recorded (:func:`record_plan_error`) and raised
    with the exit code that stops the template's retries.
    """
    settings = settings or get_settings()
    try:
        if resume_from:
            result = resume_plan(resume_from, settings)
        else:
            from geomlops.workflows.inference.processing import pin_processors

            pins = pin_processors(
                [p.strip() for p in processor.split(",") if p.strip()],
                _params_json(processor_params),
                settings,
            )
            result = plan(
                workflow=workflow,
                model=model,
                version=version or None,
                aoi_uri=aoi,
                datetime=datetime,
                allow_outside_region=allow_outside_region,
                pinned_scenes=[s.strip() for s in scenes.split(",") if s.strip()] or None,
                pipeline_uri=pipeline,
                settings=settings,
                processors=pins,
            )
    except USER_ERRORS as error:
        record_plan_error(error, run=workflow, outputs=outputs, settings=settings)
        raise
    if outputs is not None:
        outputs.mkdir(parents=True, exist_ok=True)
        (outputs / "config").write_text(result.config_uri)
        (outputs / "shards").write_text(json.dumps([str(s) for s in result.shards]))
        (outputs / "image").write_text(result.config.model.image)
    return result


def _params_json(text: str) -> dict[str, str]:
    """The ``processor-params`` parameter: a JSON object of KEY: VALUE strings."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise ValidationFailed(f"processor-params {text!r} is not JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValidationFailed(f"processor-params {text!r} is not a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _load_model(config: InferenceRunConfig, settings: Settings) -> tuple[LoadedModel, Any]:
    pin = config.model
    return load_registered_model(pin.name, pin.artifact_uri, pin.runtime, config.device, settings)


def _load_mask_model(config: InferenceRunConfig, settings: Settings) -> LoadedModel | None:
    """A pipeline's mask model, loaded the one way every model is (None without one)."""
    if config.mask is None:
        return None
    pin = config.mask.model
    model, _ = load_registered_model(
        pin.name, pin.artifact_uri, pin.runtime, config.device, settings
    )
    return model


def load_registered_model(
    name: str, artifact_uri: str, runtime: str, device_name: str, settings: Settings
) -> tuple[LoadedModel, Any]:
    """A registered model version's MLflow model folder loaded, and the torch device it uses.

    How batch inference loads the model it predicts with: the platform's one loading
    function (:func:`geomlops.ml.runtime.load_model`, as serving), in process for a
    ``torch.export`` program, in the package's environment for a pyfunc model. The gateway's
    review of a version loads it the same way, so the review shows what batch inference
    would predict.
    """
    import torch

    model = load_model(name, artifact_uri, runtime, settings, device=device_name)
    device = getattr(model, "torch_device", None) or torch.device("cpu")
    return model, device


def predict_step(config_uri: str, shard: int, settings: Settings | None = None) -> dict[str, Any]:
    """Predict the shard's missing tiles; ShardFailed (after the rest) if any tile fails."""
    settings = settings or get_settings()
    conn = get_connections(settings)
    config = InferenceRunConfig.load(conn, config_uri)
    shard_plan = ShardPlan.load(conn, config.shard_uri(shard))
    sink = S3TileSink(conn, config)
    model, device = _load_model(config, settings)
    mask_model = _load_mask_model(config, settings)
    job = ShardJob(
        shard=shard,
        tiles=shard_plan.tiles,
        scenes={s.item_id: s for s in config.scenes},
        io=config.model.io(),
        overlap=config.overlap,
        batch_size=config.batch_size,
        tile_retries=config.tile_retries,
        aoi=config.request.aoi,
        pod=f"{socket.gethostname()}:{os.getpid()}",
        mask=None if config.mask is None else MaskJob(config.mask.model.io(), config.mask.rule()),
    )
    log.info("shard %d: %d tile(s) on %s (%s)", shard, len(job.tiles), model.device, model.runtime)
    try:
        result = run_shard(
            job,
            model,
            sink,
            device=device,
            conn=conn,
            mask_model=mask_model,
            on_tile=lambda tile: log.info("shard %d: tile %s done", shard, tile),
        )
    finally:
        model.close()
        if mask_model is not None:
            mask_model.close()
    summary = {
        "shard": shard,
        "tiles": len(job.tiles),
        "done": len(result.done),
        "skipped": len(result.skipped),
        "failed": result.failed,
        "seconds": round(result.seconds, 3),
        "model_seconds": round(result.model_seconds, 3),
        "mask_seconds": round(result.mask_seconds, 3),
    }
    if result.failed:
        objects.write_json(conn, config.failed_uri(shard), {"shard": shard, "tiles": result.failed})
        for tile, why in sorted(result.failed.items()):
            log.error("shard %d: tile %s failed: %s", shard, tile, why)
        raise ShardFailed(
            f"shard {shard}: {len(result.failed)} of {len(job.tiles)} tile(s) failed: "
            f"{', '.join(sorted(result.failed))}",
            hint="done tiles are kept; a retry or `geomlops infer resume RUN` redoes the rest",
        )
    return summary


def publish_step(config_uri: str, workflow_run: str, settings: Settings | None = None) -> dict:
    """Publish the run's outputs and items (refused while a tile is missing)."""
    from geomlops.workflows.inference.publish import publish

    return publish(config_uri, workflow_run=workflow_run, settings=settings)


def process_step(
    config_uri: str, outputs: Path | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Run the run's generic processors on its published outputs (none: nothing to do)."""
    from geomlops.workflows.inference.processing import process_step as run_processors

    return run_processors(config_uri, outputs=outputs, settings=settings)


def report_step(
    workflow: str, status: str, resume_from: str, settings: Settings | None = None
) -> dict:
    """Record the run's final counts (the exit handler: runs whatever happened)."""
    from geomlops.workflows.inference.progress import config_uri

    settings = settings or get_settings()
    conn = get_connections(settings)
    run = resume_from or workflow
    uri = config_uri(settings.s3.bucket_predictions, run)
    if not objects.exists(conn, uri):
        log.warning("run %s has no plan (planning failed): nothing to report", run)
        return {"run": run, "workflow_phase": status, "status": "FAILED", "planned": False}
    return write_report(conn, InferenceRunConfig.load(conn, uri), status)
