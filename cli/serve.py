"""``geomlops serve``: online inference with a Seldon graph, locally or as a manifest.

``geomlops serve MODEL`` runs the graph on this machine in the foreground;
``geomlops serve manifest MODEL`` prints the SeldonDeployment a cluster runs. Both come
from :func:`geomlops.serving.manifest.seldon_deployment`, so they cannot differ.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from geomlops.cli.groups import DefaultRunGroup
from geomlops.cli.options import ModelArg, ModelVersionOption

console = Console(stderr=True, highlight=False)

app = typer.Typer(
    cls=DefaultRunGroup,
    no_args_is_help=True,
    help="Online inference: run a model's Seldon graph locally, or print its manifest.\n\n"
    "Examples:\n\n"
    "  geomlops serve flood-water-s2 --port 9000\n\n"
    "  geomlops serve manifest flood-water-s2 > flood-water-s2.yaml",
)


@app.command("run", hidden=True)
def run(
    model: ModelArg,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Router port; default: a free one.")
    ] = None,
    version: ModelVersionOption = None,
) -> None:
    r"""Run MODEL's graph on 127.0.0.1 until interrupted (Ctrl-C).

    Starts the model component and the raster-to-vector transformer as Seldon
    microservices, and a router speaking the Seldon protocol at /api/v1.0/predictions.
    Prints one JSON line with the URL on stdout when ready.

    Examples:
        geomlops serve flood-water-s2
        curl -s localhost:PORT/api/v1.0/predictions -H 'content-type: application/json' \\
             -d '{"jsonData": {"url": "s3://imagery/scene.tif"}}'
    """
    from geomlops.serving.local import serve_foreground
    from geomlops.serving.manifest import seldon_deployment
    from geomlops.settings import get_settings
    from geomlops.stack.state import StatePaths

    settings = get_settings()
    manifest = seldon_deployment(model, version=version, settings=settings)
    log_dir = StatePaths(settings.stack.home).logs_dir / "serving" / manifest["metadata"]["name"]

    def ready(url: str) -> None:
        sys.stdout.write(json.dumps({"url": url, "model": model, "logs": str(log_dir)}) + "\n")
        sys.stdout.flush()
        console.print(f"serving {model} at {url}/api/v1.0/predictions (Ctrl-C stops)")

    serve_foreground(manifest, port=port, log_dir=log_dir, settings=settings, on_ready=ready)


@app.command("manifest")
def manifest(
    model: ModelArg,
    version: ModelVersionOption = None,
    output_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print the SeldonDeployment serving MODEL (validated against the CRD schema).

    Images, resources, GPUs and the credentials Secret come from the GEOMLOPS_SERVING_*
    settings; the Secret is referenced by name, never copied.

    Examples:
        geomlops serve manifest flood-water-s2 | kubectl apply -f -
        GEOMLOPS_SERVING_GPUS=1 geomlops serve manifest flood-water-s2 --json
    """
    import yaml

    from geomlops.serving.manifest import seldon_deployment
    from geomlops.settings import get_settings

    document = seldon_deployment(model, version=version, settings=get_settings())
    if output_json:
        typer.echo(json.dumps(document, indent=2))
    else:
        typer.echo(yaml.safe_dump(document, sort_keys=False), nl=False)
