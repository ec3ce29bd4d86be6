"""`geomlops reproduce PREDICTION | MODEL-VERSION`: recompute from the lineage, and compare.

For a prediction (a ``predictions`` item: a batch run's item or one of its per-scene
items), the lineage its items record is submitted again, through the same
``geomlops-batch-inference`` workflow `geomlops infer` uses: the same model version (so the
same artifact), the same imagery items (pinned by id, not searched again), the same AOI
document and date range. The rerun publishes like any run; then its inputs, the software
its items record, its masks pixel by pixel and its polygons class by class are compared
with the published ones (:mod:`geomlops.governance.reproduce`), and the report is kept in
the rerun's folder as ``reproduction.json``.

A model version (``NAME-mvN``, ``NAME@N``, ``models:/NAME/N``) is retrained instead, by
:func:`geomlops.cli.reproduce_training.reproduce_model_version`.

Exit 0 when everything agrees within the thresholds, 1 when it does not (or the rerun
failed), 2 on a usage error.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from geomlops.cli.options import JsonOption
from geomlops.errors import GeomlopsError, NotFoundError

if TYPE_CHECKING:
    from geomlops.connections import Connections
    from geomlops.governance.reproduce import PixelAgreement, Reproduction, Thresholds
    from geomlops.settings import Settings
    from geomlops.workflows.inference.config import InferenceRunConfig

err = Console(stderr=True, highlight=False)
REPORT = "reproduction.json"
"""The report's name in the rerun's folder."""

_MODEL_VERSION = re.compile(r"^(models:/[^/@]+/\d+|[^/@\s]+[@/]\d+|.+-mv\d+)$")
"""``models:/NAME/N``, ``NAME@N``, ``NAME/N`` or a model version item id ``NAME-mvN``:
the forms :func:`geomlops.governance.reproduce_training.parse_version_ref` reads."""


def is_model_version(ref: str) -> bool:
    """Whether ``ref`` names a model version rather than a prediction."""
    return bool(_MODEL_VERSION.match(ref.strip()))


def reproduce(
    ref: Annotated[
        str,
        typer.Argument(
            help="A prediction item id (a batch run's or a scene's), or a model version "
            "(NAME-mvN, NAME@N, NAME/N, models:/NAME/N)."
        ),
    ],
    min_agreement: Annotated[
        float,
        typer.Option(min=0, max=1, help="Least fraction of identical pixels, per scene and class."),
    ] = 0.99,
    min_iou: Annotated[
        float, typer.Option(min=0, max=1, help="Least IoU of each class's polygons.")
    ] = 0.99,
    allow_version_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-version-mismatch",
            help="Pass although geomlops or torch differ from the recorded versions "
            "(the difference is still reported).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Recompute a prediction (or retrain a model version) from its lineage, and compare.

    A prediction is re-run with the recorded model version, imagery items, AOI and dates;
    the report gives the fraction of identical pixels per class, the IoU of each class's
    polygons and every software version that differs. Exit 1 when below the thresholds or
    when a decisive version (geomlops, torch) differs.

    Examples:
        geomlops reproduce geomlops-batch-inference-x7k2p
        geomlops reproduce geomlops-batch-inference-x7k2p --min-agreement 0.999 --json
        geomlops reproduce flood-water-s2-mv3
    """
    if is_model_version(ref):
        # Retraining is its own module (geomlops.cli.reproduce_training), loaded only here.
        from geomlops.cli.reproduce_training import reproduce_model_version

        raise typer.Exit(reproduce_model_version(ref, as_json=as_json))
    from geomlops.governance.reproduce import Thresholds
    from geomlops.settings import get_settings

    thresholds = Thresholds(min_agreement, min_iou, allow_version_mismatch)
    report = reproduce_prediction(ref, thresholds, get_settings())
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(report.rerun)
        _print(report)
    if not report.agrees:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``reproduce`` to the top-level command."""
    app.command()(reproduce)


# --- the prediction's lineage -------------------------------------------------------------
def _run_item(ref: str, settings: Settings) -> dict[str, Any]:
    """The run item of prediction ``ref`` (itself, or the run of a per-scene item)."""
    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.collections import PREDICTIONS
    from geomlops.model import properties as prop

    with CatalogClient.from_settings(settings) as catalog:
        try:
            item = catalog.get_item_dict(PREDICTIONS, ref)
        except NotFoundError:
            raise NotFoundError(
                f"no prediction {ref!r} in the catalog",
                hint="name a `predictions` item (`geomlops infer` prints its run), or a model "
                "version as NAME-mvN",
            ) from None
        run = item["properties"].get(prop.WORKFLOW)
        if not run:
            raise GeomlopsError(f"prediction {ref!r} records no workflow run: nothing to re-run")
        return item if item["id"] == run else catalog.get_item_dict(PREDICTIONS, run)


def _recorded_plan(conn: Connections, settings: Settings, run: str) -> InferenceRunConfig:
    from geomlops.workflows.inference.config import InferenceRunConfig
    from geomlops.workflows.inference.progress import config_uri

    try:
        return InferenceRunConfig.load(conn, config_uri(settings.s3.bucket_predictions, run))
    except NotFoundError:
        raise NotFoundError(
            f"the plan of run {run!r} is gone from the object store",
            hint="a prediction is reproduced from its run's folder and its items; both must exist",
        ) from None


def _parameters(item: dict[str, Any], plan: InferenceRunConfig) -> dict[str, str]:
    """The batch-inference parameters that recompute the prediction of run item ``item``."""
    from geomlops.model import properties as prop

    props = item["properties"]
    scenes = props.get(prop.SCENES) or [s.item_id for s in plan.scenes]
    return {
        "model": str(props.get(prop.MODEL) or plan.model.name),
        "version": str(props.get(prop.MODEL_VERSION) or plan.model.version),
        "aoi": str(props.get(prop.REQUEST_AOI) or plan.request.aoi_uri),
        "datetime": str(props.get(prop.REQUEST_DATETIME) or plan.request.datetime),
        "allow-outside-region": "true" if plan.request.allow_outside_region else "false",
        "scenes": ",".join(scenes),
    }


def _inputs(plan: InferenceRunConfig) -> dict[str, Any]:
    """What a run was computed from, as :func:`input_differences` compares it."""
    return {
        "model_item": plan.model.item_id,
        "model_artifact": plan.model.model_uri,
        "scenes": sorted(s.item_id for s in plan.scenes),
        "aoi": plan.request.aoi,
        "datetime": plan.request.datetime,
        "tile_size": plan.tile_size,
        "overlap": plan.overlap,
    }


def reproduce_prediction(ref: str, thresholds: Thresholds, settings: Settings) -> Reproduction:
    """Re-run prediction ``ref`` from its lineage and compare; the report is also saved."""
    from geomlops import objects
    from geomlops.cli.infer import _submit
    from geomlops.connections import get_connections
    from geomlops.governance.reproduce import (
        Reproduction,
        input_differences,
        version_differences,
    )
    from geomlops.workflows.inference.progress import run_summary

    conn = get_connections(settings)
    original = _run_item(ref, settings)
    plan = _recorded_plan(conn, settings, original["id"])
    name, state = _submit(_parameters(original, plan), settings, wait=True)
    if state is None or state["phase"] != "Succeeded":
        phase = state["phase"] if state else "unknown"
        raise GeomlopsError(
            f"the rerun {name} ended {phase}: {(state or {}).get('message') or ''}".strip(),
            hint=f"`geomlops workflows logs {name}` shows why",
        )
    summary = run_summary(name, settings)
    rerun_plan = _recorded_plan(conn, settings, name)
    rerun_item = _run_item(name, settings)
    report = Reproduction(original["id"], name, thresholds)
    report.input_problems = input_differences(_inputs(plan), _inputs(rerun_plan))
    report.versions = version_differences(
        original["properties"].get("processing:software") or {},
        rerun_item["properties"].get("processing:software") or {},
    )
    _compare_outputs(settings, conn, report, original, plan, summary["published"])
    objects.write_json(conn, rerun_plan.uri(REPORT), report.as_dict())
    return report


def _compare_outputs(
    settings: Settings,
    conn: Connections,
    report: Reproduction,
    original: dict[str, Any],
    plan: InferenceRunConfig,
    published: dict[str, Any],
) -> None:
    """Fill ``report`` with the pixel and polygon agreement of the two runs' outputs."""
    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.collections import PREDICTIONS
    from geomlops.governance.reproduce import PixelAgreement, polygon_iou
    from geomlops.workflows.inference.publish import item_ids
    from geomlops.workflows.inference.storage import get_file

    classes = {c.value: c.name for c in plan.model.classes}
    rerun_masks = {uri.rsplit("/", 1)[-1][: -len(".tif")]: uri for uri in published["masks"]}
    ids = item_ids(plan)
    with (
        tempfile.TemporaryDirectory(prefix="geomlops-reproduce-") as tmp,
        CatalogClient.from_settings(settings) as cat,
    ):
        folder = Path(tmp)
        for scene in plan.scenes:
            try:
                item = cat.get_item_dict(PREDICTIONS, ids[scene.item_id])
            except NotFoundError:
                continue  # no tile of the AOI fell on this scene: nothing was published
            if scene.item_id not in rerun_masks:
                report.pixels.append(
                    PixelAgreement(scene.item_id, 0, 0.0, {}, problem="the rerun made no mask")
                )
                continue
            ours = get_file(conn, item["assets"]["mask"]["href"], folder / "published.tif")
            theirs = get_file(conn, rerun_masks[scene.item_id], folder / "rerun.tif")
            report.pixels.append(_mask_agreement(scene.item_id, ours, theirs, classes))
        ours = get_file(conn, original["assets"]["vectors"]["href"], folder / "published.json")
        theirs = get_file(conn, published["vectors"], folder / "rerun.json")
        report.polygon_iou = polygon_iou(
            json.loads(ours.read_text())["features"], json.loads(theirs.read_text())["features"]
        )


def _mask_agreement(
    scene: str, published: Path, rerun: Path, classes: dict[int, str]
) -> PixelAgreement:
    """Pixel agreement of two mask COGs on disk (grids must match to compare pixels)."""
    import rasterio

    from geomlops.governance.reproduce import PixelAgreement, compare_masks, compare_values

    with rasterio.open(published) as a, rasterio.open(rerun) as b:
        if a.transform != b.transform or a.crs != b.crs:
            return PixelAgreement(
                scene, a.width * a.height, 0.0, {}, problem="the masks' grids differ"
            )
        if a.dtypes[0].startswith("float"):  # a probability or continuous output
            return compare_values(scene, a.read(1), b.read(1))
        return compare_masks(scene, a.read(1), b.read(1), classes, nodata=int(a.nodata or 255))


def _print(report: Reproduction) -> None:
    for scene in report.pixels:
        if scene.problem:
            err.print(f"  [red]{scene.scene}[/]: {scene.problem}")
            continue
        classes = ", ".join(f"{name} {share:.4%}" for name, share in scene.per_class.items())
        err.print(f"  {scene.scene}: {scene.identical:.4%} identical pixels ({classes})")
    for name, iou in report.polygon_iou.items():
        err.print(f"  polygons {name}: IoU {iou:.4f}")
    for warning in report.warnings:
        err.print(f"  [yellow]version differs[/]: {warning}")
    if report.agrees:
        err.print(f"[green]{report.rerun} reproduces {report.prediction}[/]")
        return
    err.print(f"[red]{report.rerun} does not reproduce {report.prediction}[/]")
    for problem in report.problems:
        err.print(f"  - {problem}", markup=False)
