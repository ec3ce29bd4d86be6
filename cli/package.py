"""`geomlops package validate|register`: check a model package, then register it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from geomlops.cli.options import JsonOption

app = typer.Typer(
    name="package",
    help="Create, validate and register model packages (each in its own git repository).",
    no_args_is_help=True,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# Not `exists=True`: a missing folder is a problem validation reports like any other.
PACKAGE_ARG = typer.Argument(..., help="The package folder, e.g. model_packages/flood-water-s2.")


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="Package name (lower case, digits, dashes).")],
    dest: Annotated[
        Path | None,
        typer.Option(help="Folder to create (must not exist or be empty); default: ./NAME."),
    ] = None,
    framework: Annotated[
        str, typer.Option(help="pytorch (a small U-Net) or terratorch (ResNet-18 + UNet).")
    ] = "pytorch",
    task: Annotated[str, typer.Option(help="The model's task.")] = "semantic-segmentation",
    bands: Annotated[
        str, typer.Option(help="Band descriptions of the input GeoTIFF, in model order.")
    ] = "VV,VH",
    classes: Annotated[
        str, typer.Option(help="Output class names, values 0, 1, … in order.")
    ] = "not_water,water",
    image: Annotated[
        str, typer.Option(help="Training scene, relative to the sample data (or to --data).")
    ] = "imagery/sen1floods11/Spain_7370579_S1Hand.tif",
    label: Annotated[
        str, typer.Option(help="Its label raster (class values; --label-nodata: unlabelled).")
    ] = "imagery/sen1floods11/Spain_7370579_LabelHand.tif",
    label_nodata: Annotated[int, typer.Option(help="No-data value of the labels.")] = -1,
    patch_size: Annotated[int, typer.Option(help="Model input side, pixels.")] = 64,
    data: Annotated[
        str | None,
        typer.Option(help="Folder holding --image and --label; default: the sample data."),
    ] = None,
) -> None:
    """Write a complete model package that validates and trains on the sample data as written.

    The defaults make a water segmentation of Sentinel-1 VV/VH backscatter on the sample
    scene. The package depends only on the platform's SDK (requirements.txt), builds FROM the
    platform's base image (Dockerfile, build context = the package folder), and is meant to
    be its own git repository: `git init`, commit, add a remote, then `geomlops package
    register .`.

    Examples:
        geomlops package new lake-water
        geomlops package new lake-water-tt --framework terratorch --dest ../lake-water-tt
    """
    from geomlops.registration.scaffold import PackageChoices, write_package

    choices = PackageChoices(
        name=name,
        framework=framework,
        task=task,
        bands=tuple(b.strip() for b in bands.split(",") if b.strip()),
        classes=tuple(c.strip() for c in classes.split(",") if c.strip()),
        image=image,
        label=label,
        label_nodata=label_nodata,
        patch_size=patch_size,
    )
    problems = choices.problems()
    if problems:
        raise typer.BadParameter("; ".join(problems))
    folder = dest if dest is not None else Path(name)
    written = write_package(choices, folder, data)
    for note in choices.notes:
        err.print(f"[yellow]note:[/] {note}")
    for path in written:
        typer.echo(str(folder / path))
    err.print(
        f"next: cd {folder} && git init -b main && git add -A && git commit -m '{name}' && "
        "git remote add origin URL && git push -u origin main && geomlops package validate . "
        "&& geomlops package register ."
    )


@app.command()
def validate(path: Path = PACKAGE_ARG, as_json: JsonOption = False) -> None:
    """Check a package against the contract; list every problem with file, place and hint.

    Checks the folder, required files, sizes and links, package.yaml, mlm.json (offline,
    MLM v1.6.0), their agreement (bands, classes, shapes), MLproject (entry points, typed
    parameters, the files commands run) and the Dockerfile. Exit 1 if there is a problem.

    Examples:
        geomlops package validate model_packages/flood-water-s2
        geomlops package validate model_packages/flood-water-s1 --json
    """
    from geomlops.registration.problems import validation_error
    from geomlops.registration.validate import validate_package

    result = validate_package(path)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "package": str(path),
                    "valid": result.ok,
                    "problems": [p.as_dict() for p in result.problems],
                },
                indent=2,
            )
        )
    if result.problems:
        raise validation_error(path, result.problems)
    if not as_json:
        typer.echo(f"valid: {path} ({result.name} {result.spec.version if result.spec else ''})")


@app.command()
def register(
    path: Path = PACKAGE_ARG,
    image: str | None = typer.Option(
        None,
        "--image",
        help="Container image of the package, ideally by digest (ghcr.io/o/p@sha256:...); "
        "default: the tag CI pushes, <GEOMLOPS_REGISTRATION_IMAGE_REPOSITORY>/<name>:<sha>.",
    ),
    git_sha: str | None = typer.Option(
        None, "--git-sha", help="Commit the package comes from; default: HEAD of its repository."
    ),
    git_url: str | None = typer.Option(
        None,
        "--git-url",
        help="Repository the commit is pushed to, which training clones outside the "
        "package's image; default: the repository's remote `origin`.",
    ),
    as_json: JsonOption = False,
) -> None:
    r"""Validate, then create the MLflow registered model and the `registered` catalog item.

    The package's folder must be in a git repository with a remote: what is recorded is that
    repository's URL, the commit and the package's folder in it (never a local path of this
    machine), from which training checks the package out wherever it runs without its image.
    Idempotent: the same content registered again changes nothing. The same name and version
    with different content is refused (raise the version instead). Needs a writer key
    (GEOMLOPS_API_KEY, or the local stack's administrator key).

    Examples:
        geomlops package register model_packages/flood-water-s2
        geomlops package register model_packages/flood-water-s1 \
            --image ghcr.io/acme/flood-water-s1@sha256:0123... --git-sha "$GITHUB_SHA"
        geomlops package register . --git-url https://github.com/acme/lake-ice.git
    """
    from geomlops.registration.register import SHA_PATTERN, register_package

    if git_sha is not None and not SHA_PATTERN.match(git_sha):
        raise typer.BadParameter(
            "not a git commit hash (hex, 7 to 64 digits)", param_hint="--git-sha"
        )
    result = register_package(path, image=image, git_sha=git_sha, git_url=git_url)
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}")
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    for line in result.summary():
        typer.echo(line)
