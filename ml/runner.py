"""The ``train``, ``evaluate`` and ``predict`` entry points, for any torch segmentation model.

A package supplies only ``build_model(in_channels, num_classes)``, a module that maps
normalised bands (B x C x H x W) to logits (B x K x H x W). Everything the platform relies
on — which pixels are trained on and which are held out, the normalisation, the metric
names logged to MLflow, the exported model, the georeferenced outputs of ``predict``
— is done here, identically for every package.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from torch import nn

from geomlops.errors import ConfigError, NotFoundError
from geomlops.ml.data import IGNORE, Scene, load_scene
from geomlops.ml.metrics import confusion, confusion_metrics, segmentation_metrics
from geomlops.ml.raster import MASK_NODATA, read_bands, write_raster
from geomlops.ml.report import REPORT_DIR, EvaluatedBlock, write_report
from geomlops.ml.scaling import normalise
from geomlops.ml.spec import MLM_FILE, ModelPackage
from geomlops.ml.split import SpatialSplit, patch_grid, spatial_split
from geomlops.ml.tiling import predict_probabilities
from geomlops.sample_data import sample_data_root

log = logging.getLogger(__name__)

BuildModel = Callable[[int, int], nn.Module]
MODEL_ARTIFACT = "model"
INTERPRETER_TAG = "geomlops.interpreter"
"""MLflow run tag: the Python that ran the entry point (a package runs in its own environment)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (logged as MLflow params).

    A package's defaults live in its ``MLproject`` (and ``mlm:hyperparameters``); these
    are only what a direct caller gets for the rest.
    """

    epochs: int
    batch_size: int = 16
    learning_rate: float = 1e-3
    stride: int = 48
    overlap: int = 16
    seed: int = 0


def select_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; an explicit CUDA request without one fails."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} requested but no CUDA device is available",
            hint="pass --device auto or --device cpu",
        )
    return device


def prepared_scene(
    package: ModelPackage, data: str | None
) -> tuple[Scene, np.ndarray, SpatialSplit]:
    """The scene, its normalised bands and its spatial split."""
    scene = load_scene(package, data)
    mean, stddev = package.scaling()
    scaled = normalise(scene.image.data, mean, stddev)
    split = spatial_split(
        scene.image.shape[1], package.spec.dataset.holdout, package.spec.input.patch_size
    )
    return scene, scaled, split


def training_patches(
    scaled: np.ndarray, label: np.ndarray, split: SpatialSplit, size: int, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping patches of the training block; patches without any label are dropped."""
    height = label.shape[0]
    xs, ys = [], []
    for r, c in patch_grid(height, split.train, size, stride):
        target = label[r : r + size, c : c + size]
        if (target != IGNORE).any():
            xs.append(scaled[:, r : r + size, c : c + size])
            ys.append(target)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def _augment(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and quarter turns: water has no preferred orientation."""
    turns = int(torch.randint(0, 4, (1,), generator=generator))
    x, y = torch.rot90(x, turns, (2, 3)), torch.rot90(y, turns, (1, 2))
    if bool(torch.randint(0, 2, (1,), generator=generator)):
        x, y = torch.flip(x, (3,)), torch.flip(y, (2,))
    return x, y


def predict_block(
    model: Callable[[torch.Tensor], torch.Tensor],
    package: ModelPackage,
    scene: Scene,
    scaled: np.ndarray,
    split: SpatialSplit,
    *,
    overlap: int,
    device: torch.device,
) -> EvaluatedBlock:
    """``model``'s classes on the held-out block, predicted the way ``predict`` does it."""
    block = slice(split.holdout.start, split.holdout.stop)
    probabilities = predict_probabilities(
        model,
        scaled[:, :, block],
        patch_size=package.spec.input.patch_size,
        overlap=overlap,
        device=device,
    )
    return EvaluatedBlock(
        image=scene.image.data[:, :, block],
        label=scene.label[:, block],
        prediction=probabilities.argmax(axis=0),
        bands=list(package.spec.input.bands),
        class_names=package.spec.class_names,
    )


def evaluate_block(
    model: Callable[[torch.Tensor], torch.Tensor],
    package: ModelPackage,
    scene: Scene,
    scaled: np.ndarray,
    split: SpatialSplit,
    *,
    overlap: int,
    device: torch.device,
) -> dict[str, float]:
    """Metrics of ``model`` on the held-out block, predicted the way ``predict`` does it."""
    block = predict_block(model, package, scene, scaled, split, overlap=overlap, device=device)
    return segmentation_metrics(block.prediction, block.label, block.class_names)


def _seed(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)  # seeds code that uses the legacy global state
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _log_new_params(params: dict[str, Any]) -> None:
    """Log ``params`` except those already on the run.

    ``mlflow run`` records the entry point's parameters itself (as typed, e.g. ``6.0``); MLflow
    refuses to change a logged value, so those stay as the caller gave them.
    """
    run = mlflow.active_run()
    logged = run.data.params if run is not None else {}
    mlflow.log_params({k: v for k, v in params.items() if k not in logged})


def _log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: v for k, v in metrics.items() if not np.isnan(v)}, step=step)


def train(
    package: ModelPackage,
    build_model: BuildModel,
    *,
    data: str | None,
    output: Path | None,
    config: TrainConfig,
    device_name: str = "auto",
) -> dict[str, float]:
    """Train on the training block, evaluate on the held-out block, log everything to MLflow.

    Returns the final held-out metrics. The model is logged as the MLflow model ``model`` of
    the run (``torch.export`` program and ``mlm.json``; :func:`_log_model`); with ``output``
    that model folder (``output/model``), ``mlm.json`` and ``metrics.json`` are also written
    there.
    """
    device = select_device(device_name)
    generator = _seed(config.seed)
    scene, scaled, split = prepared_scene(package, data)
    spec = package.spec
    x, y = training_patches(scaled, scene.label, split, spec.input.patch_size, config.stride)
    model = build_model(len(spec.input.bands), len(spec.output.classes)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    steps = config.epochs * -(-len(x) // config.batch_size)
    # Cosine decay: the last epochs make small steps, so the final model (the one logged,
    # no best-epoch picking on the held-out block) does not land on a noisy update.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)

    with mlflow.start_run():
        mlflow.set_tags(
            {
                "geomlops.package": spec.name,
                "geomlops.package_version": spec.version,
                INTERPRETER_TAG: sys.executable,
            }
        )
        _log_new_params(
            {
                **config.__dict__,
                "resolved_device": str(device),
                "resolved_data": data or f"sample-data:{sample_data_root()}",
                "patch_size": spec.input.patch_size,
                "bands": ",".join(spec.input.bands),
                "train_patches": len(x),
                "train_columns": f"{split.train.start}:{split.train.stop}",
                "holdout_columns": f"{split.holdout.start}:{split.holdout.stop}",
            }
        )
        metrics: dict[str, float] = {}
        for epoch in range(config.epochs):
            model.train()
            started, losses = time.perf_counter(), []
            order = torch.randperm(len(x), generator=generator)
            for first in range(0, len(x), config.batch_size):
                index = order[first : first + config.batch_size]
                xb, yb = _augment(x[index], y[index], generator)
                optimiser.zero_grad()
                loss = loss_fn(model(xb.to(device)), yb.to(device))
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(loss.item())
            model.eval()
            metrics = evaluate_block(
                model, package, scene, scaled, split, overlap=config.overlap, device=device
            )
            _log_metrics(
                {
                    "train_loss": float(np.mean(losses)),
                    "epoch_seconds": time.perf_counter() - started,
                    **metrics,
                },
                step=epoch,
            )
            log.info(
                "epoch %d loss %.4f %s", epoch, np.mean(losses), _summary(metrics, spec.class_names)
            )
        _log_metrics(metrics)
        model_uri = _log_model(model, package)
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
            mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=str(output / MODEL_ARTIFACT)
            )
            (output / MLM_FILE).write_text(
                json.dumps(package.mlm, indent=2) + "\n", encoding="utf-8"
            )
            (output / "metrics.json").write_text(
                json.dumps(metrics, indent=2) + "\n", encoding="utf-8"
            )
    return metrics


def _summary(metrics: dict[str, float], class_names: list[str]) -> str:
    return " ".join(f"iou_{n}={metrics[f'val_iou_{n}']:.3f}" for n in class_names)


def _log_model(model: nn.Module, package: ModelPackage) -> str:
    """Log ``model`` as an MLflow model saved with ``torch.export`` (pt2), ``mlm.json`` inside.

    The exported program holds graph and weights, so serving needs neither the package code
    nor terratorch. The example has a batch of 2: MLflow marks the signature's batch
    dimension dynamic, and torch.export keeps a dimension of size 1 static. ``mlm.json`` goes
    into the logged model itself (beside ``MLmodel``), so a model version registered from it
    carries its description: ``models:/NAME/N`` and ``models:/NAME@production`` load with
    every MLflow flavour and client, and the MLM item travels with the weights. Returns the
    logged model's URI (``models:/m-…``).
    """
    size = package.spec.input.patch_size
    example = np.zeros((2, len(package.spec.input.bands), size, size), dtype="float32")
    torch_version = torch.__version__.split("+")[0]
    info = mlflow.pytorch.log_model(
        model.to("cpu").eval(),
        name=MODEL_ARTIFACT,
        serialization_format="pt2",
        input_example=example,
        pip_requirements=[f"torch=={torch_version}"],
    )
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / MLM_FILE
        copy.write_text(json.dumps(package.mlm, indent=2) + "\n", encoding="utf-8")
        mlflow.MlflowClient().log_model_artifact(info.model_id, str(copy))
    return str(info.model_uri)


def load_model(uri: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """A trained model from a ``.pt2`` file, an MLflow model folder or an MLflow model URI."""
    path = Path(uri)
    if path.is_file():
        model = torch.export.load(str(path)).module()
    elif "://" not in uri and ":/" not in uri and not path.exists():
        raise NotFoundError(
            f"model {uri} does not exist",
            hint="pass a .pt2 file (torch.export), an MLflow model folder, or an MLflow model "
            "URI such as runs:/<run id>/model or models:/<name>@production",
        )
    else:
        model = mlflow.pytorch.load_model(uri)
    return model.to(device)


def evaluate(
    package: ModelPackage,
    *,
    model_uri: str,
    data: str | None,
    output: Path | None,
    device_name: str = "auto",
    overlap: int = 16,
) -> dict[str, float]:
    """Held-out metrics of a trained model, logged to MLflow with the same names as train."""
    device = select_device(device_name)
    model = load_model(model_uri, device)
    scene, scaled, split = prepared_scene(package, data)
    block = predict_block(model, package, scene, scaled, split, overlap=overlap, device=device)
    matrix = confusion(block.prediction, block.label, len(block.class_names))
    metrics = confusion_metrics(matrix, block.class_names)
    with mlflow.start_run():
        mlflow.set_tags(
            {
                "geomlops.package": package.spec.name,
                "geomlops.package_version": package.spec.version,
                INTERPRETER_TAG: sys.executable,
            }
        )
        _log_new_params(
            {
                "model": model_uri,
                "resolved_device": str(device),
                "resolved_data": data or f"sample-data:{sample_data_root()}",
                "overlap": overlap,
                "holdout_columns": f"{split.holdout.start}:{split.holdout.stop}",
            }
        )
        _log_metrics(metrics)
        _log_report(block, matrix, output)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def _log_report(block: EvaluatedBlock, matrix: np.ndarray, output: Path | None) -> None:
    """Log the approver's picture and confusion matrix (:mod:`.report`) to the active run.

    With ``output`` they are also kept there (``output/evaluation/``).
    """
    with tempfile.TemporaryDirectory(prefix="geomlops-report-") as tmp:
        folder = (output if output is not None else Path(tmp)) / REPORT_DIR
        for path in write_report(block, matrix, folder):
            mlflow.log_artifact(str(path), artifact_path=REPORT_DIR)


@dataclass(frozen=True)
class Prediction:
    """Where ``predict`` wrote its outputs."""

    mask: Path
    probabilities: Path


def predict(
    package: ModelPackage,
    *,
    model_uri: str,
    input_path: str,
    output: Path,
    device_name: str = "auto",
    overlap: int = 16,
    batch_size: int = 8,
) -> Prediction:
    """Class mask (uint8, 255 = no data) and class probabilities for a GeoTIFF.

    Bands are picked by the names in ``mlm:input``; outputs keep the input's CRS and
    transform and are named after the input: ``<stem>_mask.tif``, ``<stem>_probabilities.tif``.
    """
    device = select_device(device_name)
    bands = [b if isinstance(b, str) else b["name"] for b in package.mlm_input["bands"]]
    raster = read_bands(input_path, bands)  # validates bands and CRS before loading the model
    nodata = package.spec.input.nodata
    if nodata is not None:
        raster.data[raster.data == nodata] = np.nan
    model = load_model(model_uri, device)
    mean, stddev = package.scaling()
    probabilities = predict_probabilities(
        model,
        normalise(raster.data, mean, stddev),
        patch_size=package.spec.input.patch_size,
        overlap=overlap,
        device=device,
        batch_size=batch_size,
    )
    missing = np.isnan(raster.data).any(axis=0)
    mask = probabilities.argmax(axis=0).astype("uint8")
    mask[missing] = MASK_NODATA
    probabilities[:, missing] = np.nan
    stem = Path(input_path).name.rsplit(".", 1)[0]
    tags = {
        "model": model_uri,
        "package": package.spec.name,
        "package_version": package.spec.version,
        "source": input_path,
    }
    names = package.spec.class_names
    result = Prediction(
        mask=write_raster(
            output / f"{stem}_mask.tif",
            mask,
            raster,
            nodata=MASK_NODATA,
            descriptions=["class"],
            tags={**tags, "classes": json.dumps(dict(enumerate(names)))},
        ),
        probabilities=write_raster(
            output / f"{stem}_probabilities.tif",
            probabilities,
            raster,
            nodata=float("nan"),
            descriptions=names,
            tags=tags,
        ),
    )
    if mlflow.active_run() is not None or _inside_mlflow_run():
        with mlflow.start_run():
            _log_new_params(
                {
                    "model": model_uri,
                    "input": input_path,
                    "output": str(output),
                    "resolved_device": str(device),
                }
            )
            valid = mask[mask != MASK_NODATA]
            mlflow.log_metrics(
                {
                    f"predicted_fraction_{n}": float((valid == v).mean()) if valid.size else 0.0
                    for v, n in enumerate(names)
                }
            )
    return result


def _inside_mlflow_run() -> bool:
    """Whether ``mlflow run`` started this process (it passes the run id in the environment).

    Outside one, a standalone ``predict`` logs nothing rather than create a stray ``mlruns``.
    """
    from mlflow.environment_variables import MLFLOW_RUN_ID

    return MLFLOW_RUN_ID.is_set()
