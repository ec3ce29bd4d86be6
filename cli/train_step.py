"""`geomlops train-step …`: the commands the ``geomlops-train`` workflow's pods run.

One command per step. ``resolve`` takes the workflow's parameters and prints the URI of the
run's saved config (the step's ``outputs.result``); every other step takes only that URI.
Logs go to stderr, the step's result (JSON) to stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from geomlops.cli.options import ConfigOption, WorkflowOption

app = typer.Typer(
    name="train-step",
    help="Steps of the geomlops-train workflow (run by its pods; one command per step).",
    no_args_is_help=True,
)


_PACKAGE_DEFAULT = "Empty: the package's own default (its MLproject)."


def _print(result: Any) -> None:
    typer.echo(json.dumps(result, sort_keys=True))


@app.command()
def resolve(
    workflow: WorkflowOption,
    run_uri: Annotated[str, typer.Option(help="s3:// folder for the run's documents.")],
    package: Annotated[str, typer.Option(help="Registered model package name.")],
    dataset: Annotated[str, typer.Option(help="Dataset NAME or NAME@vN.")],
    package_version: Annotated[str, typer.Option(help="Package version; '' = newest.")] = "",
    epochs: Annotated[str, typer.Option(help=_PACKAGE_DEFAULT)] = "",
    batch_size: Annotated[str, typer.Option(help=_PACKAGE_DEFAULT)] = "",
    learning_rate: Annotated[str, typer.Option(help=_PACKAGE_DEFAULT)] = "",
    seed: Annotated[str, typer.Option(help=_PACKAGE_DEFAULT)] = "",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    submitted_by: Annotated[
        str, typer.Option(help="Identity that submitted the run (recorded as its trainer).")
    ] = "",
    outputs: Annotated[
        Path | None,
        typer.Option(help="Also write `config` (its URI) and `image` files here (Argo outputs)."),
    ] = None,
) -> None:
    r"""Pin package and dataset versions; save the run's config; print its URI.

    Examples:
        geomlops train-step resolve --workflow t1 --run-uri s3://mlflow/workflow-runs/t1 \
            --package flood-water-s2 --dataset sen1floods11@v1
    """
    from pydantic import ValidationError

    from geomlops.errors import ValidationFailed
    from geomlops.workflows.steps.config import TrainParams
    from geomlops.workflows.steps.train import resolve as resolve_run

    given = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}
    given["seed"] = seed
    try:
        train = TrainParams.model_validate(
            {key: value.strip() for key, value in given.items() if value.strip()}
            | {"device": device}
        )
    except ValidationError as exc:
        raise ValidationFailed(
            "invalid training parameters",
            problems=[f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()],
        ) from None
    uri, image = resolve_run(
        workflow=workflow,
        run_uri=run_uri,
        package=package,
        package_version=package_version or None,
        dataset=dataset,
        submitted_by=submitted_by,
        train=train,
    )
    if outputs is not None:
        outputs.mkdir(parents=True, exist_ok=True)
        (outputs / "config").write_text(uri)
        (outputs / "image").write_text(image)
    typer.echo(uri)


@app.command()
def materialise(config: ConfigOption) -> None:
    """Fetch and verify the dataset version; copy it to the run's folder.

    Examples:
        geomlops train-step materialise --config s3://mlflow/workflow-runs/t1/config.json
    """
    from geomlops.workflows.steps.train import materialise_step

    _print(materialise_step(config))


@app.command()
def train(config: ConfigOption) -> None:
    """Run the package's `train` entry point (mlflow run) on the dataset.

    Examples:
        geomlops train-step train --config s3://mlflow/workflow-runs/t1/config.json
    """
    from geomlops.workflows.steps.train import train_step

    _print(train_step(config))


@app.command()
def evaluate(config: ConfigOption) -> None:
    """Run the package's `evaluate` entry point on the held-out block.

    Examples:
        geomlops train-step evaluate --config s3://mlflow/workflow-runs/t1/config.json
    """
    from geomlops.workflows.steps.train import evaluate_step

    _print(evaluate_step(config))


@app.command()
def register(config: ConfigOption) -> None:
    """Create the MLflow model version and its candidate item in `models`.

    Examples:
        geomlops train-step register --config s3://mlflow/workflow-runs/t1/config.json
    """
    from geomlops.workflows.steps.register import register_step

    _print(register_step(config))


@app.command()
def approved(config: ConfigOption) -> None:
    """Succeed only if the run's model version was promoted (fail if rejected or undecided).

    Examples:
        geomlops train-step approved --config s3://mlflow/workflow-runs/t1/config.json
    """
    from geomlops.workflows.steps.register import approved_step

    _print(approved_step(config))


@app.command()
def rejected(config: ConfigOption) -> None:
    """Succeed only if the run's model version was rejected (the run's `rejected` branch).

    Examples:
        geomlops train-step rejected --config s3://mlflow/workflow-runs/t1/config.json
    """
    from geomlops.workflows.steps.register import rejected_step

    _print(rejected_step(config))
