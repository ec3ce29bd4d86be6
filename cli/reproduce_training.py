"""Reproduce a model version: retrain it from its recorded inputs, compare its metrics.

:func:`reproduce_model_version` is what `geomlops reproduce NAME/VERSION` runs (the verb
itself, which also reproduces predictions, dispatches here for model versions). It reads
the version's record (catalog item and MLflow train run), takes the package folder from the
recorded commit (``git archive`` of this checkout's repository: not the working tree, which
may have moved on), checks out the recorded dataset version with DVC verified against its
recorded checksum, runs the package's ``train`` entry point with the recorded
hyperparameters and seed in an MLflow run of its own (experiment ``geomlops-reproduce``,
tagged with the version it reproduces; nothing is registered), and compares the held-out
metrics within the tolerance (:mod:`geomlops.governance.reproduce_training`).
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

import typer
from rich.console import Console
from rich.table import Table

from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.package_source import PackageSource, checkout

if TYPE_CHECKING:
    from geomlops.governance.reproduce_training import RecordedTraining, Reproduction
    from geomlops.settings import Settings

EXPERIMENT = "geomlops-reproduce"
"""MLflow experiment of reproduction runs, apart from the training runs they check."""
err = Console(stderr=True, highlight=False)


def reproduce_model_version(
    ref: str,
    *,
    tolerance: float | None = None,
    device: str = "auto",
    as_json: bool = False,
    settings: Settings | None = None,
) -> int:
    """Retrain model version ``ref`` (``NAME/N``, ``models:/NAME/N``, ``NAME-mvN``) and report.

    Prints each metric, recorded vs reproduced, with pass/fail; returns the exit code:
    0 when every metric agrees within ``tolerance``, 1 otherwise or on an error.
    """
    from geomlops.governance.reproduce_training import DEFAULT_TOLERANCE, reproduction
    from geomlops.settings import get_settings

    settings = settings or get_settings()
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    try:
        recorded, source = _recorded(ref, settings)
        with tempfile.TemporaryDirectory(prefix="geomlops-reproduce-") as tmp:
            package = (
                checkout(source, settings.stack.home)
                if source is not None
                else _package_at_commit(recorded, Path(tmp) / "package")
            )
            metrics, run_id = _retrain(recorded, package, Path(tmp), device, settings)
        found = reproduction(recorded, metrics, tolerance)
    except GeomlopsError as exc:
        err.print(f"[red]error:[/] cannot reproduce {ref}: {exc}")
        if exc.hint:
            err.print(f"[yellow]hint:[/] {exc.hint}")
        return 1
    _print(found, run_id, as_json)
    return 0 if found.ok else 1


def _recorded(ref: str, settings: Settings) -> tuple[RecordedTraining, PackageSource | None]:
    """What the version records, and its package's git source when it records one.

    Versions trained since packages record their repository are checked out from it (the
    one rule of :mod:`geomlops.package_source`); older ones from this checkout's history.
    """
    from mlflow.exceptions import MlflowException

    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.collections import MODELS
    from geomlops.connections import get_connections
    from geomlops.governance.reproduce_training import RecordedTraining, parse_version_ref
    from geomlops.model import properties as prop
    from geomlops.model.ids import model_item_id

    name, version = parse_version_ref(ref)
    with CatalogClient.from_settings(settings) as catalog:
        item = catalog.get_item_dict(MODELS, model_item_id(name, version))
    run_id = (item.get("properties") or {}).get(prop.MLFLOW_RUN_ID)
    params: dict[str, str] = {}
    if run_id:
        try:
            params = dict(get_connections(settings).mlflow_client().get_run(run_id).data.params)
        except MlflowException as exc:
            raise NotFoundError(f"the train run {run_id} of {name} {version}: {exc}") from None
    recorded = RecordedTraining.from_record(item, params)
    props = item.get("properties") or {}
    source = (
        PackageSource(
            str(props[prop.GIT_URL]), recorded.git_commit, str(props.get(prop.PACKAGE_PATH) or "")
        )
        if props.get(prop.GIT_URL)
        else None
    )
    return recorded, source


def _package_at_commit(recorded: RecordedTraining, dest: Path) -> Path:
    """The package folder as it was at the recorded commit, extracted into ``dest``."""
    from geomlops.settings.base import REPO_ROOT

    top = _git(REPO_ROOT, "rev-parse", "--show-toplevel").decode().strip()
    commit = recorded.git_commit
    try:
        _git(Path(top), "cat-file", "-e", f"{commit}^{{commit}}")
    except GeomlopsError:
        raise NotFoundError(
            f"commit {commit} of {recorded.package} is not in the repository at {top}",
            hint="fetch it (`git fetch origin`), then reproduce again",
        ) from None
    relative = _package_path(recorded, Path(top))
    archive = _git(Path(top), "archive", "--format=tar", commit, "--", relative)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    folder = dest / relative
    if not (folder / "MLproject").is_file():
        raise NotFoundError(f"commit {commit[:12]} has no MLproject in {relative}")
    return folder


def _package_path(recorded: RecordedTraining, top: Path) -> str:
    """Where the package lies in the repository: from its source link, else by convention."""
    marker = f"/tree/{recorded.git_commit}/"
    if marker in recorded.source:
        return recorded.source.split(marker, 1)[1].strip("/")
    parsed = urlparse(recorded.source)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        if path.is_relative_to(top):
            return path.relative_to(top).as_posix()
    return f"model_packages/{recorded.package}"


def _git(repo: Path, *args: str) -> bytes:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    if done.returncode != 0:
        raise GeomlopsError(f"git {' '.join(args[:2])}: {done.stderr.decode().strip()}")
    return done.stdout


def _retrain(
    recorded: RecordedTraining, package: Path, tmp: Path, device: str, settings: Settings
) -> tuple[dict[str, float], str]:
    """Train from the recorded inputs; the held-out metrics and the MLflow run's id."""
    from geomlops.connections import get_connections
    from geomlops.datasets.materialise import materialise
    from geomlops.datasets.refs import DatasetRef, item_id_for
    from geomlops.datasets.registry import DatasetRegistry
    from geomlops.workflows.steps.config import (
        DatasetPin,
        PackagePin,
        TrainParams,
        TrainRunConfig,
    )
    from geomlops.workflows.steps.params import entry_point_defaults
    from geomlops.workflows.steps.train import run_entry_point

    ref = DatasetRef(recorded.dataset, recorded.dataset_version)
    version = DatasetRegistry(settings).resolve(ref)
    data = tmp / "data"
    materialise(ref, data, settings=settings, expected_md5=recorded.dataset_md5)
    declared = set(entry_point_defaults(package))
    params = recorded.train_parameters(declared)
    workflow = f"reproduce-{recorded.item_id}-{uuid.uuid4().hex[:6]}"
    config = TrainRunConfig(
        workflow=workflow,
        run_uri=f"s3://{settings.s3.bucket_mlflow}/reproductions/{workflow}",
        package=PackagePin(
            name=recorded.package,
            version=recorded.package_version,
            git_commit=recorded.git_commit,
            image="",
            source=recorded.source,
            item_id=recorded.item_id,
        ),
        dataset=DatasetPin(
            name=version.name,
            number=version.number,
            tag=version.tag,
            git_rev=version.git_rev,
            md5=version.md5,
            repo_url=version.repo_url,
            item_id=item_id_for(version.name, version.number),
        ),
        train=TrainParams(device=device),
        experiment=EXPERIMENT,
    )
    err.print(f"retraining {recorded.item_id} at {recorded.git_commit[:12]} on {version.tag}")
    err.print(f"  with {json.dumps(params, sort_keys=True)}")
    run_id, _ = run_entry_point(
        config,
        settings,
        "train",
        {"data": str(data), **params, "device": device},
        {"geomlops.reproduces": recorded.item_id},
        package,
    )
    metrics = get_connections(settings).mlflow_client().get_run(run_id).data.metrics
    return dict(metrics), run_id


def _print(found: Reproduction, run_id: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({**found.as_dict(), "reproduction_run_id": run_id}, indent=2))
        return
    table = Table(title=f"reproduction of {found.recorded.item_id} (MLflow run {run_id})")
    for column in ("metric", "recorded", "reproduced", "|difference|", "tolerance", "result"):
        table.add_column(column)
    for c in found.comparisons:
        table.add_row(
            c.name,
            f"{c.recorded:.4f}",
            "—" if c.reproduced is None else f"{c.reproduced:.4f}",
            "—" if c.difference is None else f"{c.difference:.4f}",
            f"{c.tolerance:g}",
            "[green]pass[/]" if c.ok else "[red]FAIL[/]",
        )
    Console(highlight=False).print(table)
    for warning in found.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    verdict = "reproduced" if found.ok else "NOT reproduced"
    Console(highlight=False).print(
        f"{found.recorded.item_id}: {verdict} within {found.tolerance:g}"
    )
