"""`geomlops workflows render|submit|list|status|logs|resume|stop|retry`.

Every verb talks to an Argo Server API through Hera (:class:`ArgoServer`): the one at
``GEOMLOPS_ARGO_SERVER`` on a cluster, else the local stack's ``argo`` service, where the
local executor runs the very manifest ``render`` writes. ``submit`` waits until the run ends
or suspends: exit 0 Succeeded, 2 suspended (the resume command is printed), 1 Failed/Error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from geomlops.cli.options import (
    JsonOption,
    NoWaitOption,
    ParameterOption,
    RunArg,
    RunReasonOption,
)
from geomlops.errors import NotFoundError, ValidationFailed

if TYPE_CHECKING:
    from geomlops.settings import Settings
    from geomlops.workflows.argo import ArgoServer

app = typer.Typer(
    name="workflows",
    help="Render the platform's Argo WorkflowTemplates and run them (Argo server, or the "
    "local stack's).",
    no_args_is_help=True,
)
err = Console(stderr=True, highlight=False)
EXIT_SUSPENDED = 2


def _parameters(values: list[str] | None) -> dict[str, str]:
    parsed = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r} is not k=v", param_hint="-p/--parameter")
        parsed[key] = text
    return parsed


def _backend(settings: Settings | None = None) -> ArgoServer:
    """The Argo API client: the configured server, or the local stack's (one code path)."""
    from geomlops.settings import get_settings
    from geomlops.workflows.argo import ArgoServer

    return ArgoServer(settings or get_settings())


def _progress() -> Any:
    from geomlops.workflows.argo import PolledProgress

    return PolledProgress()


@app.command("render")
def render_command(
    out: Annotated[
        Path | None, typer.Option(help="Write NAME.yaml files here (default: stdout).")
    ] = None,
) -> None:
    """Write the Argo YAML of every WorkflowTemplate.

    Examples:
        geomlops workflows render --out charts/geomlops/files/workflows
        GEOMLOPS_TRAIN_GPUS=0 geomlops workflows render
    """
    import yaml

    from geomlops.workflows.templates import all_templates, render

    manifests = {name: render(t) for name, t in all_templates().items()}
    if out is None:
        typer.echo(yaml.safe_dump_all(manifests.values(), sort_keys=False), nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, manifest in manifests.items():
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        err.print(f"wrote {path}")


@app.command()
def submit(
    template: Annotated[
        str | None, typer.Argument(help="WorkflowTemplate name, e.g. geomlops-train.")
    ] = None,
    parameter: ParameterOption = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", exists=True, dir_okay=False, help="Any Argo manifest."),
    ] = None,
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
) -> None:
    r"""Start a run; wait until it ends (exit 0/1) or suspends (exit 2).

    Examples:
        geomlops workflows submit geomlops-train -p package=flood-water-s2 \
            -p dataset=sen1floods11@v1
        geomlops workflows submit --file my-workflow.yaml -p message=hi --no-wait
    """
    if (template is None) == (file is None):
        raise typer.BadParameter("give a template name or --file, not both", param_hint="TEMPLATE")
    import yaml

    from geomlops.settings import get_settings
    from geomlops.workflows.templates import all_templates

    params = _parameters(parameter)
    settings = get_settings()
    if template is not None:
        templates = all_templates(settings)
        if template not in templates:
            raise NotFoundError(
                f"no WorkflowTemplate named {template!r}",
                hint=f"the platform's templates: {', '.join(sorted(templates))}",
            )
        params = _with_submitter(templates[template], params, settings)
        backend = _backend(settings)
        name = backend.submit_template(template, params)
    else:
        assert file is not None  # noqa: S101 - checked above
        try:
            manifest = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            raise ValidationFailed(f"{file}: not YAML ({exc})") from exc
        if not isinstance(manifest, dict):
            raise ValidationFailed(f"{file}: not an Argo manifest (a YAML mapping)")
        backend = _backend(settings)
        name = backend.submit_manifest(manifest, params)
    err.print(f"submitted [bold]{name}[/]")
    if no_wait:
        typer.echo(json.dumps({"name": name}) if as_json else name)
        return
    _report(backend.wait(name, progress=_progress()), as_json)


SUBMITTER = "submitted-by"


def _with_submitter(template: Any, params: dict[str, str], settings: Settings) -> dict[str, str]:
    """Set the ``submitted-by`` parameter from the credential, never from the command line.

    Who trained a model may not approve it; that rule is only as good as this name, so it
    comes from the identity the catalog sees behind the key in use.
    """
    declared = {p.name for p in (template.arguments or [])}
    if SUBMITTER not in declared:
        return params
    if SUBMITTER in params:
        raise typer.BadParameter(
            f"{SUBMITTER} is set from your credential, not given", param_hint="-p"
        )
    from geomlops.catalog.client import CatalogClient

    with CatalogClient.from_settings(settings) as catalog:
        return {**params, SUBMITTER: catalog.whoami().name}


def _report(status: dict[str, Any], as_json: bool) -> None:
    """Print the outcome and exit with its code."""
    name = status["name"]
    typer.echo(json.dumps(status, indent=2) if as_json else name)
    if status["phase"] == "Succeeded":
        return
    if status.get("suspended"):
        err.print(f"{name} is suspended, waiting for approval. Resume it with:")
        err.print(f"  geomlops workflows resume {name}")
        raise typer.Exit(EXIT_SUSPENDED)
    err.print(f"[red]{name}: {status['phase']}[/] {status.get('message') or ''}")
    failed = [
        n for n in status.get("nodes", []) if n.get("phase") in ("Failed", "Error") and
        n.get("type") == "Pod"
    ]  # fmt: skip
    for node in failed:
        err.print(f"  {node.get('displayName')}: {node.get('message') or ''}")
    if failed:
        err.print(f"  logs: geomlops workflows logs {name} --node {failed[0].get('displayName')}")
    raise typer.Exit(1)


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List runs, newest first.

    Examples:
        geomlops workflows list --json
    """
    runs = _backend().list()
    if as_json:
        typer.echo(json.dumps(runs, indent=2))
        return
    table = Table("run", "phase")
    for column in ("created", "finished"):
        table.add_column(column, no_wrap=True)  # RFC 3339, whole
    table.add_column("message")
    for run in runs:
        phase = run["phase"] + (" (suspended)" if run.get("suspended") else "")
        table.add_row(run["name"], phase, run["createdAt"], run["finishedAt"] or "", run["message"])
    Console().print(table)


@app.command()
def status(run: RunArg, as_json: JsonOption = False) -> None:
    """The phase of a run and of every node.

    Examples:
        geomlops workflows status geomlops-train-x7k2p --json
    """
    data = _backend().status(run)
    tasks = _inference_tasks(data)
    if tasks is not None:
        data["tasks"] = tasks
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    suspended = " (suspended)" if data.get("suspended") else ""
    typer.echo(f"{data['name']}: {data['phase']}{suspended} {data.get('message') or ''}")
    if tasks:
        typer.echo(
            f"  tiles: {tasks['tasks_count_total']} total, {tasks['tasks_count_success']} "
            f"succeeded, {tasks['tasks_count_failed']} failed, {tasks['tasks_count_waiting']} "
            "waiting"
        )
    for node in data.get("nodes", []):
        if node.get("type") in ("Pod", "Suspend", "Retry"):
            typer.echo(f"  {node.get('displayName', ''):24} {node.get('phase', '')}")


def _inference_tasks(data: dict[str, Any]) -> dict[str, Any] | None:
    """Tile counts of a batch-inference run (Geospatial Studio's tasks), else None."""
    from geomlops.workflows.templates.infer import INFER

    if data.get("workflowTemplate") != INFER:
        return None
    from geomlops.settings import get_settings
    from geomlops.workflows.inference.progress import run_summary

    run = (data.get("parameters") or {}).get("resume-from") or data["name"]
    return run_summary(run, get_settings()).get("tasks") or {}


@app.command()
def logs(
    run: RunArg,
    node: Annotated[str | None, typer.Option(help="One step (display name).")] = None,
) -> None:
    """Print the logs of a run's steps (each pod's main container).

    Examples:
        geomlops workflows logs geomlops-train-x7k2p --node train
    """
    typer.echo(_backend().logs(run, node=node), nl=False)


@app.command()
def resume(
    run: RunArg,
    node: Annotated[str | None, typer.Option(help="Resume only this suspended node.")] = None,
    parameter: ParameterOption = None,
    reason: RunReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a suspended run, or a failed one from its failed step; wait for it.

    A `geomlops-train` run waits for approval: resuming it with --reason promotes its model
    version as the identity behind your credential (the same rules as `geomlops promote`),
    then lets the run finish.

    A run that ended Failed or Error (a service it needed died: MLflow, PostgreSQL) resumes
    from its last completed step: those steps are kept and the failed one runs again, as a
    new attempt (as `geomlops workflows retry`). Its earlier attempt's MLflow run, left
    RUNNING when MLflow went away, is ended FAILED by the new attempt.

    Examples:
        geomlops workflows resume geomlops-train-x7k2p --reason "IoU 0.80 on the held-out block"
        geomlops workflows resume geomlops-train-x7k2p   # after it failed: from its failed step
    """
    from geomlops.settings import get_settings
    from geomlops.workflows.templates.train import APPROVE, DECISION
    from geomlops.workflows.training_runs import decision_of_run

    settings = get_settings()
    params = _parameters(parameter)
    backend = _backend(settings)
    current = backend.status(run)
    if current["phase"] in ("Failed", "Error"):
        err.print(
            f"{run} ended {current['phase']} ({current.get('message') or 'no message'}); "
            "resuming from its failed step (completed steps are kept)"
        )
        backend.retry(run)
        current = backend.wait(run, progress=_progress())
        if not (current["suspended"] and (reason or params)):
            _report(current, as_json)
            return
    _approve_training(run, reason, settings)
    decided = decision_of_run(run, settings)
    if decided is not None and (node in (None, APPROVE)):
        # The run takes the branch of the decision taken; the value is set on `approve`,
        # the one node that declares it.
        params.setdefault(DECISION, decided)
        node = APPROVE
    backend.resume(run, node, params)
    _report(backend.wait(run, progress=_progress()), as_json)


@app.command()
def stop(
    run: RunArg,
    terminate: Annotated[bool, typer.Option(help="Skip the exit handler.")] = False,
    reason: RunReasonOption = None,
) -> None:
    """Stop a run: kill its pods, run its exit handler (not with --terminate); it ends Failed.

    A training run whose version was already promoted or rejected is not stopped: it is
    resumed with that decision and ends Succeeded, because it did not fail.

    Examples:
        geomlops workflows stop geomlops-train-x7k2p --reason "wrong dataset"
        geomlops workflows stop geomlops-train-x7k2p --terminate
    """
    from geomlops.settings import get_settings
    from geomlops.workflows.training_runs import decision_of_run, settle_decided_run

    settings = get_settings()
    decided = decision_of_run(run, settings)
    if decided is not None:
        final = settle_decided_run(run, decided, settings)
        if final is not None:
            err.print(f"{run} trained a version that was {decided}: resumed, not stopped")
            typer.echo(f"{final['name']}: {final['phase']}")
            return
    backend = _backend(settings)
    if terminate:
        backend.terminate(run)
    else:
        backend.stop(run, reason)
    data = backend.wait(run, until_finished=True)
    typer.echo(f"{data['name']}: {data['phase']}")


@app.command()
def retry(run: RunArg, as_json: JsonOption = False) -> None:
    """Run a Failed run again from its failed steps (succeeded steps are kept); wait for it.

    Examples:
        geomlops workflows retry geomlops-batch-inference-x7k2p
    """
    backend = _backend()
    backend.retry(run)
    _report(backend.wait(run, progress=_progress()), as_json)


def _approve_training(run: str, reason: str | None, settings: Settings) -> None:
    """If ``run`` is a training run with a registered candidate, promote that candidate."""
    from geomlops import objects
    from geomlops.connections import get_connections
    from geomlops.governance.decisions import Governance
    from geomlops.model.stages import STAGE_PROPERTY, Stage
    from geomlops.workflows.templates.train import run_uri

    conn = get_connections(settings)
    try:
        registered = objects.read_json(conn, f"{run_uri(settings, run)}/register.json")
    except NotFoundError:  # not a training run, or it has not registered a version yet
        return
    model, version = registered["registered_model"], registered["model_version"]
    with Governance(settings) as governance:
        item = governance.catalog.get_item_dict("models", registered["item_id"])
        if item["properties"].get(STAGE_PROPERTY) != Stage.CANDIDATE:
            return
        if not reason:
            raise typer.BadParameter(
                f"resuming {run} approves {model} version {version}: say why with --reason",
                param_hint="--reason",
            )
        outcome = governance.promote(model, version, reason)
    err.print(f"promoted {model} version {version} (by {outcome.actor})")
