"""The steps of ``geomlops-train``, each one function behind one ``geomlops train-step`` call.

resolve → materialise → train → evaluate → register (→ suspend, in the manifest). Every step
after ``resolve`` reads the run's saved config (:mod:`.config`) and writes its result as
``<step>.json`` in the run's folder; a step whose result is already there returns it
without doing the work again, so a retried or resumed step never trains or registers twice.

What the catalog must hold for a package (written by ``geomlops package register``): an item
in ``models`` with ``mlm:name`` = the package, ``version``, ``geomlops:stage`` =
``registered``, ``geomlops:git_url``, ``geomlops:git_commit``, ``geomlops:package_path``,
``geomlops:image`` and an asset with role ``mlm:source_code``.

Where a step finds the package (:func:`find_package_dir`, one rule, no setting): in the
package's image when it runs there (a cluster); anywhere else, in a checkout of the recorded
repository at the recorded commit (:mod:`geomlops.package_source`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from geomlops import objects
from geomlops.connections import Connections, get_connections
from geomlops.datasets.materialise import materialise
from geomlops.datasets.refs import DatasetRef, item_id_for
from geomlops.datasets.registry import DatasetRegistry
from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.model import properties as prop
from geomlops.model.stages import STAGE_PROPERTY, Stage
from geomlops.model.tracking import experiment_name
from geomlops.package_env import package_env
from geomlops.package_source import PackageSource, checkout
from geomlops.settings import Settings, get_settings
from geomlops.workflows.steps.config import (
    DatasetPin,
    PackagePin,
    TrainParams,
    TrainRunConfig,
)
from geomlops.workflows.steps.params import received_hyperparameters

log = logging.getLogger(__name__)

STAGE = STAGE_PROPERTY
MODEL_ARTIFACT = "model"
"""Name of the MLflow model a package's ``train`` logs (``geomlops.ml.runner``)."""
ENVIRONMENT_TAG = "geomlops.environment"
"""MLflow run tag: the Python environment the package's entry point ran in (its prefix)."""
REGISTERED = Stage.REGISTERED.value
CANDIDATE = Stage.CANDIDATE.value


class StepFailed(GeomlopsError):
    """A step's own work (a package entry point, a registration) failed."""


# --- shared -------------------------------------------------------------------------------
def _cached(conn: Connections, config: TrainRunConfig, step: str) -> dict[str, Any] | None:
    uri = config.uri(f"{step}.json")
    if objects.exists(conn, uri):
        log.info("%s: already done in this run (%s), not repeated", step, uri)
        return objects.read_json(conn, uri)
    return None


def _record(conn: Connections, config: TrainRunConfig, step: str, result: dict[str, Any]) -> None:
    objects.write_json(conn, config.uri(f"{step}.json"), result)


def _catalog(settings: Settings) -> Any:
    from geomlops.catalog.client import CatalogClient

    return CatalogClient.from_settings(settings)


# --- resolve ------------------------------------------------------------------------------
def find_package(catalog: Any, name: str, version: str | None) -> PackagePin:
    """The registered package ``name`` (its newest version unless ``version``)."""
    from geomlops.catalog.collections import MODELS

    clauses: list[dict[str, Any]] = [
        {"op": "=", "args": [{"property": "mlm:name"}, name]},
        {"op": "=", "args": [{"property": STAGE}, REGISTERED]},
    ]
    if version:
        clauses.append({"op": "=", "args": [{"property": "version"}, version]})
    found = list(catalog.iter_search(collections=[MODELS], filter={"op": "and", "args": clauses}))
    if not found:
        what = f"{name} {version}" if version else name
        raise NotFoundError(
            f"model package {what!r} is not registered in the catalog",
            hint=f"register it first: `geomlops package register model_packages/{name}`",
        )
    item = max(found, key=lambda i: _version_key(i["properties"].get("version", "")))
    props = item["properties"]
    sources = [
        a["href"]
        for a in item.get("assets", {}).values()
        if "mlm:source_code" in a.get("roles", [])
    ]
    missing = [
        key for key in ("version", prop.GIT_COMMIT, prop.GIT_URL, prop.IMAGE) if not props.get(key)
    ]
    if missing or not sources:
        raise GeomlopsError(
            f"catalog item {item['id']!r} of package {name!r} lacks "
            f"{', '.join(missing + ([] if sources else ['a mlm:source_code asset']))}",
            hint="register the package again with `geomlops package register`",
        )
    return PackagePin(
        name=name,
        version=str(props["version"]),
        git_commit=str(props[prop.GIT_COMMIT]),
        image=str(props[prop.IMAGE]),
        source=sources[0],
        git_url=str(props[prop.GIT_URL]),
        path=str(props.get(prop.PACKAGE_PATH) or ""),
        item_id=item["id"],
    )


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in str(text).split("."))


def resolve(
    *,
    workflow: str,
    run_uri: str,
    package: str,
    package_version: str | None,
    dataset: str,
    train: TrainParams,
    submitted_by: str = "",
    settings: Settings | None = None,
) -> tuple[str, str]:
    """Pin the package and dataset, save the run's config; returns its URI and the image."""
    settings = settings or get_settings()
    conn = get_connections(settings)
    with _catalog(settings) as catalog:
        pin = find_package(catalog, package, package_version)
    version = DatasetRegistry(settings).resolve(DatasetRef.parse(dataset))
    config = TrainRunConfig(
        workflow=workflow,
        run_uri=run_uri,
        package=pin,
        dataset=DatasetPin(
            name=version.name,
            number=version.number,
            tag=version.tag,
            git_rev=version.git_rev,
            md5=version.md5,
            repo_url=version.repo_url,
            item_id=item_id_for(version.name, version.number),
        ),
        train=train,
        experiment=experiment_name(pin.name),
        submitted_by=submitted_by,
    )
    return config.save(conn), pin.image


# --- materialise --------------------------------------------------------------------------
def materialise_step(config_uri: str, settings: Settings | None = None) -> dict[str, Any]:
    """Fetch the pinned dataset version, verify it, and put it in the run's folder in S3."""
    settings = settings or get_settings()
    conn = get_connections(settings)
    config = TrainRunConfig.load(conn, config_uri)
    if (done := _cached(conn, config, "materialise")) is not None:
        return done
    pin = config.dataset
    with tempfile.TemporaryDirectory(prefix="geomlops-materialise-") as tmp:
        dest = Path(tmp) / "data"
        materialise(DatasetRef(pin.name, pin.number), dest, settings=settings, expected_md5=pin.md5)
        count = objects.upload_folder(conn, dest, config.data_uri)
    result = {"data_uri": config.data_uri, "files": count, "md5": pin.md5, "tag": pin.tag}
    _record(conn, config, "materialise", result)
    return result


# --- train and evaluate -------------------------------------------------------------------
def package_dir(config: TrainRunConfig, settings: Settings) -> Path:
    """The package's folder: in its image (the contract's WORKDIR), else a checkout."""
    pin = config.package
    source = PackageSource(pin.git_url, pin.git_commit, pin.path) if pin.git_url else None
    return find_package_dir(pin.name, pin.version, pin.image, source, settings)


def _declared(folder: Path) -> dict[str, Any] | None:
    """The ``package.yaml`` of ``folder``, or None when it has none."""
    declared = folder / "package.yaml"
    if not declared.is_file():
        return None
    spec = yaml.safe_load(declared.read_text())
    return spec if isinstance(spec, dict) else {}


def find_package_dir(
    name: str, version: str, image: str, source: PackageSource | None, settings: Settings
) -> Path:
    """The folder of package ``name`` at ``version``: in its image, else its recorded source.

    The one rule for where a package is found, shared by the train steps and the gateway's
    review of a version (which reads the reference scene the package declares): a step that
    runs in the package's image finds it at the image's WORKDIR (``GEOMLOPS_TRAIN_IMAGE_DIR``);
    everywhere else the recorded repository is checked out at the recorded commit under the
    platform home. A folder holding another package or version is refused, not used.
    """
    in_image = Path(settings.training.image_dir)
    spec = _declared(in_image)
    if spec is not None and spec.get("name") == name:
        folder = in_image
    elif source is None:
        raise NotFoundError(
            f"model package {name!r} {version} is not in {in_image} and the catalog records "
            "no git source for it",
            hint=f"run the step in the package's image {image}, or register the package "
            "again from its repository (`geomlops package register`), which records it",
        )
    else:
        folder = checkout(source, settings.stack.home)
        spec = _declared(folder)
        where = f"commit {source.commit[:12]} of {source.url}, folder {source.path or '.'!r},"
        if spec is None or spec.get("name") != name:
            raise StepFailed(
                f"{where} holds no package {name!r} (package.yaml names "
                f"{(spec or {}).get('name')!r})",
                hint="register the package again from its repository",
            )
    if str(spec.get("version")) != version:
        raise StepFailed(
            f"{folder} holds {name} {spec.get('version')}, but the run resolved version {version}",
            hint=f"run the step in the image the run resolved ({image}), or register that "
            "version again from its repository",
        )
    return folder


def _lineage_tags(config: TrainRunConfig) -> dict[str, str]:
    return {
        "geomlops.workflow": config.workflow,
        "geomlops.package": config.package.name,
        "geomlops.package_version": config.package.version,
        "geomlops.package_git_commit": config.package.git_commit,
        "geomlops.image": config.package.image,
        "geomlops.dataset": config.dataset.name,
        "geomlops.dataset_version": f"v{config.dataset.number}",
        "geomlops.dataset_md5": config.dataset.md5,
        "geomlops.dataset_git_rev": config.dataset.git_rev,
    }


@contextmanager
def _stopped_as_exit() -> Iterator[None]:
    """Turn SIGTERM (a stopped workflow, a pod evicted) into SystemExit while a step works.

    Python's default for SIGTERM is to die on the spot, so the step could not close the
    MLflow run it opened, which then read RUNNING forever.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_entry_point(
    config: TrainRunConfig,
    settings: Settings,
    entry_point: str,
    parameters: dict[str, str],
    tags: dict[str, str],
    folder: Path | None = None,
) -> tuple[str, str]:
    """Run an MLproject entry point in an MLflow run created here.

    Returns the run's id and its experiment's id. The run never outlives a failure of this
    step in the RUNNING state: an error marks it FAILED, a stop (SIGTERM) KILLED.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    folder = folder or package_dir(config, settings)  # before the run: no run for nothing
    environment = package_env(folder, settings)  # built (or found) before the run, too
    conn = get_connections(settings)
    env = {**os.environ, **conn.env(), "VIRTUAL_ENV": str(environment.path)}
    # `mlflow run --env-manager local` runs the MLproject's `python main.py …` from PATH:
    # it must be the package's own environment's interpreter (the one with its framework),
    # also when the caller (`geomlops reproduce`, a test) activated another venv.
    env["PATH"] = os.pathsep.join(filter(None, [str(environment.bindir), env.get("PATH", "")]))
    env.pop("PYTHONHOME", None)
    mlflow.set_tracking_uri(conn.mlflow_tracking_uri)
    client = MlflowClient(conn.mlflow_tracking_uri)
    experiment_id = experiment_id_of(client, config.experiment)
    run_name = f"{config.workflow}-{entry_point}"
    end_orphaned_runs(client, experiment_id, config.workflow, run_name)
    run = client.create_run(
        experiment_id,
        tags={**_lineage_tags(config), ENVIRONMENT_TAG: str(environment.path), **tags},
        run_name=run_name,
    )
    command = [
        sys.executable, "-m", "mlflow", "run", str(folder),
        "-e", entry_point,
        "--env-manager", "local",
        "--experiment-id", experiment_id,
        "--run-id", run.info.run_id,
    ]  # fmt: skip
    for key, value in parameters.items():
        command += ["-P", f"{key}={value}"]
    log.info("running %s", " ".join(command))
    try:
        with _stopped_as_exit():
            done = subprocess.run(command, env=env, stdout=_stderr(), check=False)
    except (SystemExit, KeyboardInterrupt):
        _close_run(client, run.info.run_id, "KILLED")
        raise
    except BaseException:
        _close_run(client, run.info.run_id, "FAILED")
        raise
    if done.returncode != 0:
        _close_run(client, run.info.run_id, "FAILED")
        raise StepFailed(
            f"{config.package.name} `{entry_point}` exited with status {done.returncode} "
            f"(MLflow run {run.info.run_id})",
            hint="its output is in this step's log (`geomlops workflows logs RUN`)",
        )
    return run.info.run_id, experiment_id


ORPHAN_TAG = "geomlops.orphaned"
"""Set on an MLflow run a later attempt of its step ended FAILED: why it ended so."""


def end_orphaned_runs(client: Any, experiment_id: str, workflow: str, run_name: str) -> list[str]:
    """End FAILED every run an earlier attempt of this step left RUNNING; their ids.

    An attempt closes its own run on any failure, unless MLflow itself was unreachable
    then (killed, restarting): the run stays RUNNING for ever. One workflow run runs one
    attempt of a step at a time, so when a new attempt starts, a RUNNING run of the same
    workflow and step belongs to a dead one.
    """
    found = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`geomlops.workflow` = '{workflow}' AND attributes.run_name = '{run_name}' "
            "AND attributes.status = 'RUNNING'"
        ),
    )
    ended = []
    for orphan in found:
        run_id = orphan.info.run_id
        client.set_tag(
            run_id,
            ORPHAN_TAG,
            "its attempt died with MLflow unreachable; ended "
            "FAILED by the next attempt of the step",
        )
        client.set_terminated(run_id, "FAILED")
        log.warning("ended MLflow run %s FAILED: an earlier attempt left it RUNNING", run_id)
        ended.append(run_id)
    return ended


def experiment_id_of(client: Any, name: str) -> str:
    """The id of MLflow experiment ``name``, created (or restored, if deleted) when needed.

    Two runs of a new package may both find no experiment and both create it; the loser
    reads the winner's. A deleted experiment cannot hold new runs, so it is restored.
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return str(client.create_experiment(name))
        except MlflowException:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return str(experiment.experiment_id)


def _stderr() -> Any:
    """Where a child's stdout goes: our stderr (this step's stdout is its JSON result).

    A captured stream (pytest's, say) has no file descriptor; then descriptor 2 itself.
    """
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return 2
    return sys.stderr


def _close_run(client: Any, run_id: str, status: str) -> None:
    """End ``run_id`` as ``status`` unless it already ended (the entry point may have)."""
    from mlflow.exceptions import MlflowException

    try:
        if client.get_run(run_id).info.status in ("RUNNING", "SCHEDULED"):
            client.set_terminated(run_id, status)
    except MlflowException as exc:  # pragma: no cover - the step's own error is reported
        log.error("could not mark MLflow run %s %s: %s", run_id, status, exc)


def logged_model_id(client: Any, run_id: str, name: str = MODEL_ARTIFACT) -> str:
    """The id (``m-…``) of the MLflow model ``name`` that run ``run_id`` logged.

    Since MLflow 3 a logged model is stored apart from the run's artifacts; the model
    version is registered from it (``models:/m-…``), so every MLflow client loads it.
    """
    outputs = client.get_run(run_id).outputs
    for output in (outputs.model_outputs if outputs else None) or []:
        if client.get_logged_model(output.model_id).name == name:
            return str(output.model_id)
    raise StepFailed(
        f"the train run {run_id} logged no MLflow model named {name!r}",
        hint="the package's train entry point must log its model with geomlops.ml "
        "(`mlflow.pytorch.log_model(..., name='model')`)",
    )


def train_step(config_uri: str, settings: Settings | None = None) -> dict[str, Any]:
    """``mlflow run <package> -e train`` on the materialised dataset.

    The entry point gets every hyperparameter explicitly: the package's MLproject default
    unless the submitter set it (:mod:`.params`); the result records them as received.
    """
    from mlflow.tracking import MlflowClient

    settings = settings or get_settings()
    conn = get_connections(settings)
    config = TrainRunConfig.load(conn, config_uri)
    if (done := _cached(conn, config, "train")) is not None:
        return done
    materialised = objects.read_json(conn, config.uri("materialise.json"))
    folder = package_dir(config, settings)
    received = received_hyperparameters(folder, config.train.overrides())
    run_id, experiment_id = run_entry_point(
        config,
        settings,
        "train",
        {"data": materialised["data_uri"], **received, "device": config.train.device},
        {},
        folder,
    )
    model_id = logged_model_id(MlflowClient(conn.mlflow_tracking_uri), run_id)
    result = {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "model_id": model_id,
        "model_uri": f"models:/{model_id}",
        "params": received,
    }
    _record(conn, config, "train", result)
    return result


def evaluate_step(config_uri: str, settings: Settings | None = None) -> dict[str, Any]:
    """``mlflow run <package> -e evaluate`` of the trained model on the held-out block."""
    from mlflow.tracking import MlflowClient

    settings = settings or get_settings()
    conn = get_connections(settings)
    config = TrainRunConfig.load(conn, config_uri)
    if (done := _cached(conn, config, "evaluate")) is not None:
        return done
    trained = objects.read_json(conn, config.uri("train.json"))
    materialised = objects.read_json(conn, config.uri("materialise.json"))
    run_id, _ = run_entry_point(
        config,
        settings,
        "evaluate",
        {
            "model": trained["model_uri"],
            "data": materialised["data_uri"],
            "device": config.train.device,
        },
        {"mlflow.parentRunId": trained["run_id"]},
    )
    metrics = MlflowClient(conn.mlflow_tracking_uri).get_run(run_id).data.metrics
    result = {"run_id": run_id, "metrics": dict(sorted(metrics.items()))}
    _record(conn, config, "evaluate", result)
    return result
