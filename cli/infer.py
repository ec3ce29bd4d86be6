"""`geomlops infer MODEL …`, `geomlops infer status|resume RUN`, and the `infer-step` pod commands.

``infer`` checks the request here first (AOI readable, date range well formed, model
resolvable, AOI inside the model's region unless allowed), uploads the AOI, submits the
``geomlops-batch-inference`` WorkflowTemplate to the Argo API (a cluster's, or the local
stack's) and, unless ``--no-wait``, waits and prints the task counts and published
outputs. Logs on stderr, results on stdout.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from geomlops.cli.groups import DefaultRunGroup
from geomlops.cli.options import (
    ConfigOption,
    JsonOption,
    ModelArg,
    ModelVersionOption,
    NoWaitOption,
    RunArg,
    WorkflowOption,
)
from geomlops.errors import GeomlopsError, NotFoundError, ValidationFailed

if TYPE_CHECKING:
    from geomlops.settings import Settings

err = Console(stderr=True, highlight=False)


app = typer.Typer(
    cls=DefaultRunGroup,
    no_args_is_help=True,
    help="Batch inference over an area and a date range (geomlops-batch-inference).\n\n"
    "Examples:\n\n"
    "  geomlops infer flood-water-s2 --aoi valencia.geojson --datetime 2019-09-01/2019-09-30\n\n"
    "  geomlops infer status geomlops-batch-inference-x7k2p\n\n"
    "  geomlops infer resume geomlops-batch-inference-x7k2p",
)
step_app = typer.Typer(
    name="infer-step",
    help="Steps of the geomlops-batch-inference workflow (run by its pods; one per step).",
    no_args_is_help=True,
)


def _datetime(text: str) -> str:
    """The request's interval, checked by the one rule the gateway applies too."""
    from geomlops.workflows.inference.request import normalise_interval

    try:
        return normalise_interval(text)
    except ValidationFailed as error:
        detail = "; ".join([error.message, *error.problems])
        raise typer.BadParameter(detail, param_hint="--datetime") from None


def _upload_aoi(path: Path, settings: Settings) -> str:
    """Put the AOI document in S3 under its content hash (the same AOI: the same key)."""
    from geomlops import objects
    from geomlops.connections import get_connections

    document = json.loads(path.read_text(encoding="utf-8"))
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
    uri = f"s3://{settings.s3.bucket_predictions}/_requests/aoi-{digest}.geojson"
    objects.write_json(get_connections(settings), uri, document)
    return uri


@app.command("run", hidden=True)
def run(
    model: ModelArg,
    aoi: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="AOI as GeoJSON (EPSG:4326) polygons."),
    ],
    datetime: Annotated[str, typer.Option(help="START/END of the scenes' acquisition.")],
    version: ModelVersionOption = None,
    allow_outside_region: Annotated[
        bool,
        typer.Option(
            "--allow-outside-region",
            help="Run an AOI beyond the model's region anyway; outputs are flagged.",
        ),
    ] = False,
    reference: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="A label raster: report IoU per class against it."
        ),
    ] = None,
    processor: Annotated[
        list[str] | None,
        typer.Option(
            "--processor",
            help="A generic processor (NAME or NAME@VERSION) to run on the published outputs "
            "as the run's last step; repeatable.",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="KEY=VALUE for the processors' declared parameters; repeatable."
        ),
    ] = None,
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
) -> None:
    r"""Predict MODEL over the scenes covering an AOI in a date range.

    The caller needs the roles the run needs (writer: it publishes prediction items),
    checked before anything is uploaded or submitted. With --processor, each named
    generic processor (`geomlops processor list`) runs on the published COGs and GeoJSON;
    its JSON result is stored with the prediction, and a processor that fails fails the run.

    Examples:
        geomlops infer flood-water-s2 --aoi spain.geojson --datetime 2019-09-01/2019-09-30
        geomlops infer flood-water-s2 --aoi austria.geojson --datetime 2021-01-01/.. \
            --allow-outside-region --json
        geomlops infer flood-water-s2 --aoi spain.geojson --datetime 2019-09-01/2019-09-30 \
            --processor flood-area-by-country -p class_name=water
    """
    from geomlops.settings import get_settings
    from geomlops.workflows.inference.access import check_run_roles
    from geomlops.workflows.inference.aoi import read_aoi
    from geomlops.workflows.inference.planner import check_region, pin_model

    interval = _datetime(datetime)
    geometry = read_aoi(aoi)  # the request's own faults first: they need no service
    settings = get_settings()
    check_run_roles(settings)  # before any work: nothing uploaded, nothing submitted
    _, item = pin_model(model, version, settings)
    fraction = check_region(
        geometry, item, allow_outside_region=allow_outside_region, settings=settings.inference
    )
    if fraction > 0:
        err.print(f"[yellow]{fraction:.0%} of the AOI is outside the model's region[/]")
    processors = _processors(processor or [], param or [], settings)
    params = {
        "model": model,
        "version": version or "",
        "aoi": _upload_aoi(aoi, settings),
        "datetime": interval,
        "allow-outside-region": "true" if allow_outside_region else "false",
        **processors,
    }
    name, status = _submit(params, settings, wait=not no_wait)
    if status is None:
        typer.echo(json.dumps({"name": name}) if as_json else name)
        return
    _finish(name, name, status, reference, as_json, settings)


def _processors(names: list[str], pairs: list[str], settings: Settings) -> dict[str, str]:
    """The run's processor parameters, each processor and parameter checked before submitting.

    Nothing is submitted for an unknown processor or parameter, a value of the wrong type or
    a parameter left without a value: the plan step would refuse the same, minutes later.
    """
    if not names:
        if pairs:
            raise typer.BadParameter("-p is for processors: add --processor NAME", param_hint="-p")
        return {}
    from geomlops.processors import parse_assignments
    from geomlops.workflows.inference.processing import pin_processors

    try:
        given = parse_assignments(pairs, "-p")
    except ValidationFailed as error:
        raise typer.BadParameter(error.message, param_hint="-p") from None
    pin_processors(names, given, settings)
    return {"processor": ",".join(names), "processor-params": json.dumps(given, sort_keys=True)}


@app.command()
def status(
    run: RunArg,
    as_json: JsonOption = False,
) -> None:
    """Status (PLANNING, RUNNING, PUBLISHING, COMPLETED, FAILED) and tile counts of a run.

    The status follows the workflow's phase; a failed run shows why. Exit status: 0 while
    the run is under way or when it has completed, 1 when it has failed.

    Examples:
        geomlops infer status geomlops-batch-inference-x7k2p --json
    """
    from geomlops.settings import get_settings
    from geomlops.workflows.inference.progress import run_summary

    workflow = _workflow_status(run)
    plan_run = (workflow or {}).get("parameters", {}).get("resume-from") or run
    summary = run_summary(plan_run, get_settings(), workflow)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    if summary["status"] == "FAILED":
        raise typer.Exit(1)


@app.command()
def resume(
    run: RunArg,
    reference: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="A label raster to compare with."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run only the tiles RUN is missing, then publish; a new workflow run reuses its plan.

    The caller needs the roles a run needs (writer), checked before anything is submitted.

    Examples:
        geomlops infer resume geomlops-batch-inference-x7k2p
    """
    from geomlops.connections import get_connections
    from geomlops.settings import get_settings
    from geomlops.workflows.inference.access import check_run_roles
    from geomlops.workflows.inference.config import InferenceRunConfig
    from geomlops.workflows.inference.progress import config_uri

    settings = get_settings()
    check_run_roles(settings)  # a resumed run publishes too
    original = _plan_run(run)
    config = InferenceRunConfig.load(
        get_connections(settings), config_uri(settings.s3.bucket_predictions, original)
    )
    params = {
        "model": config.model.name,
        "version": config.model.version,
        "aoi": config.request.aoi_uri,
        "datetime": config.request.datetime,
        "allow-outside-region": "true" if config.request.allow_outside_region else "false",
        "resume-from": original,
    }
    name, state = _submit(params, settings, wait=True)
    assert state is not None  # noqa: S101 - waited
    _finish(name, original, state, reference, as_json, settings)


def _workflow_status(run: str) -> dict[str, Any] | None:
    """The run on the workflow server (phase, message, nodes), or None if it is not there.

    A server that cannot be asked (not running, no credential) leaves the run folder as
    the only witness, as before; the status then says less, never something false.
    """
    from geomlops.cli.workflows import _backend

    try:
        return dict(_backend().status(run))
    except GeomlopsError as exc:
        if not isinstance(exc, NotFoundError):
            err.print(f"[yellow]workflow server not asked:[/] {escape(exc.message)}")
        return None


def _plan_run(run: str) -> str:
    """The run whose plan ``run`` works on: itself, or the run it resumed."""
    try:
        from geomlops.cli.workflows import _backend

        params = _backend().status(run).get("parameters") or {}
    except GeomlopsError:
        return run
    return params.get("resume-from") or run


def _submit(
    params: dict[str, str], settings: Settings, *, wait: bool
) -> tuple[str, dict[str, Any] | None]:
    from geomlops.cli.workflows import _backend, _progress
    from geomlops.workflows.templates.infer import INFER

    backend = _backend(settings)
    name = backend.submit_template(INFER, params)
    err.print(f"submitted [bold]{name}[/]")
    if not wait:
        return name, None
    return name, backend.wait(name, progress=_progress())


def _finish(
    name: str,
    run: str,
    state: dict[str, Any],
    reference: Path | None,
    as_json: bool,
    settings: Settings,
) -> None:
    from geomlops.workflows.inference.progress import run_summary

    summary = run_summary(run, settings, state)
    summary["workflow"] = {"name": name, "phase": state["phase"], "message": state.get("message")}
    if reference is not None and summary.get("published"):
        from geomlops.workflows.inference.compare import compare_published

        summary["reference"] = compare_published(summary["published"], reference, settings)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(name)
        _print_summary(summary)
    if state["phase"] != "Succeeded":
        err.print(f"[red]{name}: {state['phase']}[/] {state.get('message') or ''}")
        err.print(f"  logs: geomlops workflows logs {name}")
        raise typer.Exit(1)


def _print_summary(summary: dict[str, Any]) -> None:
    counts = summary.get("tasks") or {}
    if not summary.get("planned"):
        err.print(f"[bold]{summary['run']}[/] {summary.get('status', '')}: no plan yet")
        if summary.get("error"):
            err.print(f"  [red]{escape(summary['error'])}[/]")
        return
    err.print(
        f"[bold]{summary['run']}[/] {summary.get('status', '')}: tiles "
        f"{counts.get('tasks_count_success', 0)}/{counts.get('tasks_count_total', 0)} done, "
        f"{counts.get('tasks_count_failed', 0)} failed, "
        f"{counts.get('tasks_count_waiting', 0)} waiting "
        f"({counts.get('shards_total', 0)} shards)"
    )
    for shard, tiles in (counts.get("failed") or {}).items():
        for tile, why in tiles.items():
            err.print(f"  [red]shard {shard}[/] tile {tile}: {why}")
    if summary.get("error"):
        err.print(f"  [red]{escape(summary['error'])}[/]")
    published = summary.get("published")
    if published:
        for item_id, outcome in published["items"].items():
            err.print(f"  predictions/{item_id} ({outcome})")
        err.print(f"  polygons: {published['vectors']}")
        for key, value in sorted(published["stats"].items()):
            err.print(f"  {key}: {value}")
        if published.get("outside_region"):
            err.print("  [yellow]flagged: the AOI reaches beyond the model's region[/]")
    elif counts:
        err.print(f"  [yellow]outputs withheld[/]: `geomlops infer resume {summary['run']}`")
    for entry in (summary.get("processing") or {}).get("processors", []):
        state = entry.get("status", "pending")
        colour = "red" if state == "failed" else "green"
        err.print(
            f"  processor {entry['name']} v{entry['version']}: [{colour}]{state}[/]"
            + (f" → {entry['result']}" if entry.get("result") else "")
        )
    for name, metrics in (summary.get("reference") or {}).items():
        err.print(
            f"  vs reference, {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
        )


# --- pod steps ----------------------------------------------------------------------------
def _echo(result: Any) -> None:
    typer.echo(json.dumps(result, sort_keys=True, default=str))


def _flag(text: str, name: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise typer.BadParameter(f"{text!r} is not true or false", param_hint=name)
    return text.lower() == "true"


@step_app.command("plan")
def plan_command(
    workflow: WorkflowOption,
    model: Annotated[str, typer.Option(help="Registered model name.")],
    aoi: Annotated[str, typer.Option(help="s3:// URI of the AOI GeoJSON.")],
    datetime: Annotated[str, typer.Option(help="START/END.")],
    version: Annotated[str, typer.Option(help="Model version; '' = production.")] = "",
    allow_outside_region: Annotated[str, typer.Option(help="true or false.")] = "false",
    resume_from: Annotated[str, typer.Option(help="Run whose plan to reuse.")] = "",
    scenes: Annotated[
        str, typer.Option(help="Comma-separated imagery item ids to use; '' = all found.")
    ] = "",
    processor: Annotated[
        str, typer.Option(help="Comma-separated generic processors to run; '' = none.")
    ] = "",
    processor_params: Annotated[
        str, typer.Option(help="JSON object of the processors' parameters.")
    ] = "{}",
    outputs: Annotated[
        Path | None, typer.Option(help="Write `config`, `shards`, `image` here (Argo outputs).")
    ] = None,
) -> None:
    r"""Resolve the model, check the region, find scenes, cut tiles and shards; save the plan.

    Examples:
        geomlops infer-step plan --workflow i1 --model flood-water-s2 \
            --aoi s3://predictions/_requests/aoi.geojson --datetime 2019-09-01/2019-09-30
    """
    from geomlops.workflows.inference.steps import plan_step

    result = plan_step(
        workflow=workflow,
        model=model,
        version=version,
        aoi=aoi,
        datetime=datetime,
        allow_outside_region=_flag(allow_outside_region, "--allow-outside-region"),
        resume_from=resume_from,
        outputs=outputs,
        scenes=scenes,
        processor=processor,
        processor_params=processor_params,
    )
    _echo({"config": result.config_uri, "shards": result.shards})


@step_app.command("predict")
def predict_command(
    config: ConfigOption,
    shard: Annotated[int, typer.Option(min=0, help="Shard index.")],
) -> None:
    """Predict the shard's missing tiles (exit 1 if a tile still fails after retries).

    Examples:
        geomlops infer-step predict --config s3://predictions/i1/plan/config.json --shard 0
    """
    from geomlops.workflows.inference.steps import predict_step

    _echo(predict_step(config, shard))


@step_app.command("publish")
def publish_command(
    config: ConfigOption,
    workflow_run: Annotated[str, typer.Option(help="The workflow run publishing.")] = "",
) -> None:
    """Mosaic, vectorise and catalog a complete run (refused while tiles are missing).

    Examples:
        geomlops infer-step publish --config s3://predictions/i1/plan/config.json
    """
    from geomlops.workflows.inference.steps import publish_step

    _echo(publish_step(config, workflow_run))


@step_app.command("process")
def process_command(
    config: ConfigOption,
    outputs: Annotated[
        Path | None, typer.Option(help="Write the termination message here (Argo outputs).")
    ] = None,
) -> None:
    """Run the run's generic processors on its published outputs (exit 1 if one fails).

    Examples:
        geomlops infer-step process --config s3://predictions/i1/plan/config.json
    """
    from geomlops.workflows.inference.steps import process_step

    _echo(process_step(config, outputs))


@step_app.command("report")
def report_command(
    workflow: WorkflowOption,
    status: Annotated[str, typer.Option(help="The run's phase ({{workflow.status}}).")],
    resume_from: Annotated[str, typer.Option(help="Run it resumed, if any.")] = "",
) -> None:
    """Record the run's final task counts in its folder (the exit handler).

    Examples:
        geomlops infer-step report --workflow i1 --status Failed
    """
    from geomlops.workflows.inference.steps import report_step

    _echo(report_step(workflow, status, resume_from))
