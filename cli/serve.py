"""``geomlops serve``: online inference with a Seldon graph, locally or as a manifest.

``geomlops serve MODEL`` runs the graph on this machine in the foreground;
``geomlops serve manifest MODEL`` prints the SeldonDeployment a cluster runs. Both come
from :func:`geomlops.serving.manifest.seldon_deployment`, so they cannot differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from geomlops.cli.groups import DefaultRunGroup
from geomlops.cli.options import ModelVersionOption

console = Console(stderr=True, highlight=False)

app = typer.Typer(
    cls=DefaultRunGroup,
    no_args_is_help=True,
    help="Online inference: run a model's Seldon graph locally, or print its manifest.\n\n"
    "Examples:\n\n"
    "  geomlops serve flood-water-s2 --port 9000\n\n"
    "  geomlops serve --pipeline flood-clear-sky.yaml\n\n"
    "  geomlops serve manifest flood-water-s2 > flood-water-s2.yaml",
)

OptionalModelArg = Annotated[
    str | None,
    typer.Argument(help="Registered model name, e.g. flood-water-s2 (or --pipeline)."),
]
PipelineOption = Annotated[
    Path | None,
    typer.Option(
        exists=True,
        dir_okay=False,
        help="A pipeline spec (YAML): its mask model (e.g. cloud-s2) masks its model's answer; "
        "the graph is MODEL(mask) -> MODEL -> raster-to-vector.",
    ),
]


def _manifest(model: str | None, version: str | None, pipeline: Path | None) -> dict[str, Any]:
    """The SeldonDeployment of MODEL, or of the pipeline spec (not both)."""
    from geomlops.errors import ValidationFailed
    from geomlops.model.pipeline import load_pipeline
    from geomlops.serving.manifest import pipeline_deployment, seldon_deployment
    from geomlops.settings import get_settings

    settings = get_settings()
    if pipeline is None:
        if model is None:
            raise typer.BadParameter("give MODEL or --pipeline SPEC", param_hint="MODEL")
        return seldon_deployment(model, version=version, settings=settings)
    if model is not None or version is not None:
        raise typer.BadParameter(
            "a pipeline spec names its models and versions: give --pipeline alone",
            param_hint="MODEL/--version",
        )
    try:
        spec = load_pipeline(pipeline)
    except ValidationFailed as error:
        raise typer.BadParameter(
            "; ".join([error.message, *error.problems]), param_hint="--pipeline"
        ) from None
    return pipeline_deployment(spec, settings=settings)


@app.command("run", hidden=True)
def run(
    model: OptionalModelArg = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Router port; default: a free one.")
    ] = None,
    version: ModelVersionOption = None,
    pipeline: PipelineOption = None,
) -> None:
    r"""Run MODEL's graph (or a pipeline's) on 127.0.0.1 until interrupted (Ctrl-C).

    Starts the model component and the raster-to-vector transformer as Seldon
    microservices (with --pipeline, the mask model's component before the model's), and a
    router speaking the Seldon protocol at /api/v1.0/predictions. Prints one JSON line with
    the URL on stdout when ready. Every answer's meta.tags name the versions that answered.

    Examples:
        geomlops serve flood-water-s2
        geomlops serve --pipeline flood-clear-sky.yaml
        curl -s localhost:PORT/api/v1.0/predictions -H 'content-type: application/json' \\
             -d '{"jsonData": {"url": "s3://imagery/scene.tif"}}'
    """
    from geomlops.serving.local import serve_foreground
    from geomlops.settings import get_settings
    from geomlops.stack.state import StatePaths

    settings = get_settings()
    manifest = _manifest(model, version, pipeline)
    model = manifest["metadata"]["name"]
    log_dir = StatePaths(settings.stack.home).logs_dir / "serving" / manifest["metadata"]["name"]

    def ready(url: str) -> None:
        sys.stdout.write(json.dumps({"url": url, "model": model, "logs": str(log_dir)}) + "\n")
        sys.stdout.flush()
        console.print(f"serving {model} at {url}/api/v1.0/predictions (Ctrl-C stops)")

    serve_foreground(manifest, port=port, log_dir=log_dir, settings=settings, on_ready=ready)


@app.command("manifest")
def manifest(
    model: OptionalModelArg = None,
    version: ModelVersionOption = None,
    pipeline: PipelineOption = None,
    output_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print the SeldonDeployment serving MODEL or a pipeline (validated against the schema).

    Images, resources, GPUs and the credentials Secret come from the GEOMLOPS_SERVING_*
    settings; the Secret is referenced by name, never copied.

    Examples:
        geomlops serve manifest flood-water-s2 | kubectl apply -f -
        GEOMLOPS_SERVING_GPUS=1 geomlops serve manifest flood-water-s2 --json
        geomlops serve manifest --pipeline flood-clear-sky.yaml
    """
    import yaml

    document = _manifest(model, version, pipeline)
    if output_json:
        typer.echo(json.dumps(document, indent=2))
    else:
        typer.echo(yaml.safe_dump(document, sort_keys=False), nl=False)
