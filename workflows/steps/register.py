"""The register step: an MLflow model version and its ``candidate`` item in ``models``.

Both or neither: the model version is created first (MLflow assigns the number the item's id
carries), then the item; if the item cannot be written the model version is deleted again,
so a failed run never leaves a model anyone could promote. Both carry the full lineage:
dataset name, version, checksum and git revision; package commit; image; workflow; runs.
A retried step finds the model version it created before (by its workflow tag) and reuses it.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from geomlops import objects
from geomlops.connections import Connections, get_connections
from geomlops.errors import GeomlopsError
from geomlops.model import properties as prop
from geomlops.model.ids import MODELS_COLLECTION, model_item_id
from geomlops.model.runtimes import artifact_type, model_href
from geomlops.model.stages import STAGE_TAG
from geomlops.settings import Settings, get_settings
from geomlops.workflows.steps.config import TrainRunConfig
from geomlops.workflows.steps.params import as_numbers
from geomlops.workflows.steps.train import (
    CANDIDATE,
    STAGE,
    StepFailed,
    _cached,
    _catalog,
    _lineage_tags,
    _record,
    logged_model_id,
    package_dir,
)

log = logging.getLogger(__name__)


def register_step(config_uri: str, settings: Settings | None = None) -> dict[str, Any]:
    """Create (or find) the model version, then write its candidate item."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    settings = settings or get_settings()
    conn = get_connections(settings)
    config = TrainRunConfig.load(conn, config_uri)
    if (done := _cached(conn, config, "register")) is not None:
        return done
    trained = objects.read_json(conn, config.uri("train.json"))
    evaluated = objects.read_json(conn, config.uri("evaluate.json"))
    client = MlflowClient(conn.mlflow_tracking_uri)
    name = config.package.name
    tags = {
        **_lineage_tags(config),
        "geomlops.train_run_id": trained["run_id"],
        "geomlops.evaluate_run_id": evaluated["run_id"],
        STAGE_TAG: CANDIDATE,
        **({"geomlops.trained_by": config.submitted_by} if config.submitted_by else {}),
    }
    try:
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, tags={"geomlops.package": name})
        existing = client.search_model_versions(
            f"name = '{name}' and tags.`geomlops.workflow` = '{config.workflow}'"
        )
        # The logged model itself (``models:/m-…``), not the run's artifact folder: then
        # the version's files are the model's (MLmodel, weights, mlm.json) and
        # `models:/NAME/N` loads with every MLflow flavour and client.
        model_id = trained.get("model_id") or logged_model_id(client, trained["run_id"])
        version = (
            existing[0]
            if existing
            else client.create_model_version(
                name,
                f"models:/{model_id}",
                run_id=trained["run_id"],
                tags=tags,
                model_id=model_id,
            )
        )
        artifact_uri = str(client.get_logged_model(model_id).artifact_location)
    except MlflowException as exc:
        raise StepFailed(f"MLflow refused the model version of {name}: {exc}") from exc
    try:
        item = candidate_item(config, settings, conn, trained, evaluated, str(version.version),
                              artifact_uri)  # fmt: skip
        from geomlops.catalog.collections import MODELS

        with _catalog(settings) as catalog:
            catalog.upsert_item(item, MODELS)
    except BaseException:
        log.error(
            "catalog write failed: deleting MLflow model version %s %s", name, version.version
        )
        try:
            client.delete_model_version(name, str(version.version))
        except MlflowException as exc:  # pragma: no cover - the original error is reported
            log.error("could not delete model version %s: %s", version.version, exc)
        raise
    _audit_training(settings, config, name, str(version.version), trained, evaluated)
    result = {
        "registered_model": name,
        "model_version": str(version.version),
        "item_id": item["id"],
        "stage": CANDIDATE,
    }
    _record(conn, config, "register", result)
    return result


def _audit_training(
    settings: Settings,
    config: TrainRunConfig,
    model: str,
    version: str,
    trained: dict[str, Any],
    evaluated: dict[str, Any],
) -> None:
    """Append the training run to the audit trail, once even if the step is retried."""
    from geomlops import audit
    from geomlops.audit import Action, AuditEntry
    from geomlops.catalog.db import pgstac_connection

    with pgstac_connection(settings) as db:
        for entry in audit.entries(db, model, version):
            if entry.action == Action.TRAIN and entry.details.get("workflow") == config.workflow:
                return
        audit.append(
            db,
            AuditEntry(
                config.submitted_by or "unknown",
                Action.TRAIN,
                model,
                version,
                details={
                    "workflow": config.workflow,
                    "dataset": config.dataset.tag,
                    "dataset_md5": config.dataset.md5,
                    "git_commit": config.package.git_commit,
                    "image": config.package.image,
                    "train_run_id": trained["run_id"],
                    "evaluate_run_id": evaluated["run_id"],
                    "metrics": {
                        k: v
                        for k, v in evaluated.get("metrics", {}).items()
                        if k.startswith("val_")
                    },
                },
            ),
        )


def approved_step(config_uri: str, settings: Settings | None = None) -> dict[str, Any]:
    """Succeed once the run's model version has been promoted; fail if it was not.

    Resuming the workflow is not itself an approval: the decision, with who took it and
    why, is made by `geomlops promote` (which `geomlops workflows resume --reason` calls)
    and recorded in the audit log; this step only checks the outcome.
    """
    from geomlops.catalog.collections import MODELS
    from geomlops.model.stages import STAGE_PROPERTY, Stage

    settings = settings or get_settings()
    conn = get_connections(settings)
    config = TrainRunConfig.load(conn, config_uri)
    registered = objects.read_json(conn, config.uri("register.json"))
    with _catalog(settings) as catalog:
        item = catalog.get_item_dict(MODELS, registered["item_id"])
    props = item["properties"]
    stage = props.get(STAGE_PROPERTY)
    label = f"{registered['registered_model']} version {registered['model_version']}"
    if stage in (Stage.PRODUCTION, Stage.DEPRECATED):
        return {
            "item_id": item["id"],
            "stage": stage,
            "approved_by": props.get(prop.APPROVED_BY),
        }
    if stage == Stage.REJECTED:
        raise StepFailed(
            f"{label} was rejected by {props.get(prop.REJECTED_BY)}: "
            f"{props.get(prop.REJECTION_REASON)}"
        )
    raise StepFailed(
        f"{label} is {stage}: resuming does not approve it. An approver runs "
        f"`geomlops workflows resume {config.workflow} --reason …` or `geomlops promote "
        f"{registered['registered_model']} {registered['model_version']} --reason …`"
    )


def rejected_step(config_uri: str, settings: Settings | None = None) -> dict[str, Any]:
    """Succeed once the run's model version has been rejected; fail if it was not.

    The branch a run takes when resumed with ``decision=rejected`` (what `geomlops reject`
    does): the run then ends Succeeded at this step, which says who rejected the version and
    why, because a rejection is a decision taken, not a failure of the run. Resumed so by
    anyone while the version is not rejected, the step fails and says what it is instead.
    """
    from geomlops.catalog.collections import MODELS
    from geomlops.model.stages import STAGE_PROPERTY, Stage

    settings = settings or get_settings()
    conn = get_connections(settings)
    config = TrainRunConfig.load(conn, config_uri)
    registered = objects.read_json(conn, config.uri("register.json"))
    with _catalog(settings) as catalog:
        item = catalog.get_item_dict(MODELS, registered["item_id"])
    props = item["properties"]
    stage = props.get(STAGE_PROPERTY)
    label = f"{registered['registered_model']} version {registered['model_version']}"
    if stage != Stage.REJECTED:
        raise StepFailed(
            f"{label} is {stage}, not rejected: the run was resumed as rejected, but no "
            "approver rejected it",
            hint=f"an approver runs `geomlops reject {registered['registered_model']} "
            f"{registered['model_version']} --reason …`",
        )
    log.info("%s was rejected by %s: %s", label, props.get(prop.REJECTED_BY),
             props.get(prop.REJECTION_REASON))  # fmt: skip
    return {
        "item_id": item["id"],
        "stage": stage,
        "rejected_by": props.get(prop.REJECTED_BY),
        "reason": props.get(prop.REJECTION_REASON),
    }


def _mlm_template(model_uri: str, config: TrainRunConfig, settings: Settings) -> dict[str, Any]:
    """``mlm.json`` as the train run logged it inside the model, else the package's own."""
    import mlflow

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{model_uri.rstrip('/')}/mlm.json", dst_path=tmp
            )
            return json.loads(Path(path).read_text())
    except (OSError, mlflow.exceptions.MlflowException):
        log.info("the model at %s holds no mlm.json; using the package's", model_uri)
    return json.loads((package_dir(config, settings) / "mlm.json").read_text())


def candidate_item(
    config: TrainRunConfig,
    settings: Settings,
    conn: Connections,
    trained: dict[str, Any],
    evaluated: dict[str, Any],
    model_version: str,
    artifact_uri: str,
) -> dict[str, Any]:
    """The model version's item: the package's MLM template plus lineage and stage.

    ``artifact_uri`` is the logged model's folder (MLmodel, ``data/model.pt2``, mlm.json).
    """
    from geomlops.catalog.collections import DATASETS
    from geomlops.catalog.extensions import VERSION_SCHEMA

    item = copy.deepcopy(_mlm_template(artifact_uri, config, settings))
    item["id"] = model_item_id(config.package.name, model_version)
    item["collection"] = MODELS_COLLECTION
    if VERSION_SCHEMA not in item.setdefault("stac_extensions", []):
        item["stac_extensions"].append(VERSION_SCHEMA)
    props = item["properties"]
    if props.get("datetime") is None and not (
        props.get("start_datetime") and props.get("end_datetime")
    ):
        props["datetime"] = datetime.now(UTC).isoformat()
    metrics = {k: v for k, v in evaluated.get("metrics", {}).items() if k.startswith("val_")}
    if config.submitted_by:
        props[prop.TRAINED_BY] = config.submitted_by
    if "params" in trained:  # what the entry point received, not the package's defaults
        props["mlm:hyperparameters"] = {
            **(props.get("mlm:hyperparameters") or {}),
            **as_numbers(trained["params"]),
        }
    props.update(
        {
            "version": model_version,
            STAGE: CANDIDATE,
            prop.PACKAGE: config.package.name,
            prop.PACKAGE_VERSION: config.package.version,
            prop.PACKAGE_ITEM: config.package.item_id,
            prop.GIT_COMMIT: config.package.git_commit,
            prop.GIT_URL: config.package.git_url,
            prop.PACKAGE_PATH: config.package.path,
            prop.IMAGE: config.package.image,
            prop.DATASET: config.dataset.name,
            prop.DATASET_VERSION: f"v{config.dataset.number}",
            prop.DATASET_MD5: config.dataset.md5,
            prop.DATASET_GIT_REV: config.dataset.git_rev,
            prop.WORKFLOW: config.workflow,
            prop.MLFLOW_MODEL: config.package.name,
            prop.MLFLOW_MODEL_VERSION: model_version,
            prop.MLFLOW_RUN_ID: trained["run_id"],
            prop.EVALUATE_RUN_ID: evaluated["run_id"],
            prop.METRICS: metrics,
        }
    )
    model_asset = next(
        (a for a in item.get("assets", {}).values() if "mlm:model" in a.get("roles", [])), None
    )
    if model_asset is None:
        raise GeomlopsError(f"the MLM template of {config.package.name} has no mlm:model asset")
    model_asset["href"] = model_href(artifact_uri, artifact_type(item))
    for asset in item.get("assets", {}).values():
        if "mlm:source_code" in asset.get("roles", []):
            asset["href"] = config.package.source
    stac = conn.stac_url.rstrip("/")
    mlflow_ui = conn.mlflow_tracking_uri.rstrip("/")
    item["links"] = [
        link for link in item.get("links", []) if link.get("rel") not in ("self", "collection")
    ] + [
        {
            "rel": "derived_from",
            "href": f"{stac}/collections/{DATASETS}/items/{quote(config.dataset.item_id)}",
            "type": "application/geo+json",
            "title": f"Training dataset {config.dataset.tag}",
        },
        {
            "rel": "derived_from",
            "href": f"{stac}/collections/{MODELS_COLLECTION}/items/{quote(config.package.item_id)}",
            "type": "application/geo+json",
            "title": f"Model package {config.package.name} {config.package.version}",
        },
        {
            "rel": "via",
            "href": f"{mlflow_ui}/#/experiments/{trained['experiment_id']}"
            f"/runs/{trained['run_id']}",
            "type": "text/html",
            "title": "MLflow training run",
        },
    ]
    return item
