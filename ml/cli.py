"""The command line the MLproject entry points call: ``train``, ``evaluate``, ``predict``.

A package's ``main.py`` is two lines: build this app with its folder and its
``build_model``, and run it. Options mirror the ``MLproject`` parameters one to one (the
contract in ``model_packages/README.md``). Errors are reported as the platform reports
them everywhere: message and hint on stderr, exit 1 (2 for usage errors, by typer).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from geomlops.errors import GeomlopsError
from geomlops.ml.runner import BuildModel, TrainConfig, evaluate, predict, train
from geomlops.ml.spec import load_package

DataOption = Annotated[
    str,
    typer.Option(help="Data directory or URI prefix; empty = the sample-data registry."),
]
DeviceOption = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")]
T = TypeVar("T")
OverlapOption = Annotated[int, typer.Option(min=0, help="Pixels shared by neighbouring tiles.")]


def _output(value: str) -> Path | None:
    return Path(value).absolute() if value else None


def package_app(package_dir: Path, build_model: BuildModel) -> typer.Typer:
    """The entry-point CLI of the package in ``package_dir`` whose model ``build_model`` makes."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)

    @app.command("train")
    def train_command(
        epochs: Annotated[int, typer.Option(min=1, help="Passes over the patches.")],
        data: DataOption = "",
        output: Annotated[
            str, typer.Option(help="Also write the model folder, mlm.json here.")
        ] = "",
        batch_size: Annotated[int, typer.Option(min=1)] = TrainConfig.batch_size,
        learning_rate: Annotated[float, typer.Option(min=0)] = TrainConfig.learning_rate,
        stride: Annotated[int, typer.Option(min=1, help="Step between patches.")] = (
            TrainConfig.stride
        ),
        overlap: OverlapOption = TrainConfig.overlap,
        seed: int = TrainConfig.seed,
        device: DeviceOption = "auto",
    ) -> None:
        """Train on the training block; log params, metrics and the model to MLflow.

        Examples:
            python main.py train --epochs 8 --device auto
        """
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            stride=stride,
            overlap=overlap,
            seed=seed,
        )
        metrics = _guarded(
            lambda: train(
                load_package(package_dir),
                build_model,
                data=data or None,
                output=_output(output),
                config=config,
                device_name=device,
            )
        )
        typer.echo(json.dumps(metrics, indent=2))

    @app.command("evaluate")
    def evaluate_command(
        model: Annotated[str, typer.Option(help=".pt2 file, MLflow model folder or URI.")],
        data: DataOption = "",
        output: Annotated[str, typer.Option(help="Also write metrics.json here.")] = "",
        overlap: OverlapOption = 16,
        device: DeviceOption = "auto",
    ) -> None:
        """Compute IoU, F1 and accuracy on the held-out block; log them to MLflow.

        Examples:
            python main.py evaluate --model runs:/<run id>/model
        """
        metrics = _guarded(
            lambda: evaluate(
                load_package(package_dir),
                model_uri=model,
                data=data or None,
                output=_output(output),
                device_name=device,
                overlap=overlap,
            )
        )
        typer.echo(json.dumps(metrics, indent=2))

    @app.command("predict")
    def predict_command(
        model: Annotated[str, typer.Option(help=".pt2 file, MLflow model folder or URI.")],
        input: Annotated[str, typer.Option(help="GeoTIFF with the bands mlm:input names.")],
        output: Annotated[str, typer.Option(help="Directory for the mask and probabilities.")],
        overlap: OverlapOption = 16,
        batch_size: Annotated[int, typer.Option(min=1)] = 8,
        device: DeviceOption = "auto",
    ) -> None:
        """Write <stem>_mask.tif (uint8, 255 = no data) and <stem>_probabilities.tif.

        Examples:
            python main.py predict --model runs:/<run id>/model --input scene.tif --output out/
        """
        result = _guarded(
            lambda: predict(
                load_package(package_dir),
                model_uri=model,
                input_path=input,
                output=Path(output).absolute(),
                device_name=device,
                overlap=overlap,
                batch_size=batch_size,
            )
        )
        typer.echo(
            json.dumps({"mask": str(result.mask), "probabilities": str(result.probabilities)})
        )

    return app


def _guarded(action: Callable[[], T]) -> T:
    """Run ``action``; a platform error becomes message + hint on stderr and exit 1."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        return action()
    except GeomlopsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
