"""Entry points of cloud-s2 (called by MLproject): package, evaluate and run s2cloudless.

A pretrained model has nothing to fit, so ``train`` *packages* it: it logs the LightGBM
booster the s2cloudless wheel ships as an MLflow pyfunc model (``cloud_model.py``), with
``mlm.json`` and this package's ``requirements.txt`` inside (what the platform builds the
model's environment from when it serves or batch-runs it), then evaluates it as every
package's train does. ``evaluate`` measures agreement with the known clear sky of the
held-out block (README.md, "What evaluation means"); ``predict`` writes the probability and
the thresholded mask of a GeoTIFF.

Band selection, the held-out split and normalisation are geomlops.ml's, as for every
package; nothing here imports torch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from geomlops.errors import GeomlopsError, ValidationFailed
from geomlops.ml.data import IGNORE, load_scene
from geomlops.ml.raster import MASK_NODATA, read_bands, write_raster
from geomlops.ml.scaling import normalise
from geomlops.ml.spec import MLM_FILE, ModelPackage, load_package
from geomlops.ml.split import spatial_split
from geomlops.model.properties import THRESHOLD
from geomlops.model.runtimes import ENV_REQUIREMENTS_FILE

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cloud_model import BOOSTER_ARTIFACT, CloudProbability  # noqa: E402

MODEL_ARTIFACT = "model"
METRICS_FILE = "metrics.json"


def booster_file() -> Path:
    """The LightGBM booster inside the installed s2cloudless wheel."""
    import s2cloudless
    from s2cloudless.cloud_detector import MODEL_FILENAME

    path = Path(s2cloudless.__file__).parent / "models" / MODEL_FILENAME
    if not path.is_file():
        raise GeomlopsError(
            f"the s2cloudless wheel holds no booster at {path}",
            hint="install s2cloudless==1.7.3 (requirements.txt): its wheel ships the weights",
        )
    return path


def threshold(package: ModelPackage) -> float:
    """The probability at and above which a pixel is cloud (mlm:output[0] geomlops:threshold)."""
    value = package.mlm["properties"]["mlm:output"][0].get(THRESHOLD)
    if not isinstance(value, int | float) or not 0 < value < 1:
        raise ValidationFailed(
            f"mlm.json: properties.mlm:output[0].{THRESHOLD} is {value!r}, not a number in (0, 1)"
        )
    return float(value)


def reflectance(package: ModelPackage, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bands (C x H x W, NaN = no data) -> (model input, no-data mask), by mlm.json's scaling."""
    missing = np.isnan(data).any(axis=0)
    mean, stddev = package.scaling()
    scaled = normalise(data, mean, stddev)
    scaled[:, missing] = 0.0
    return scaled, missing


def probability_of(model: Any, scaled: np.ndarray, rows: int = 256) -> np.ndarray:
    """H x W cloud probability, a band of ``rows`` rows at a time (bounded memory)."""
    out = np.empty(scaled.shape[1:], dtype="float32")
    for top in range(0, scaled.shape[1], rows):
        block = np.ascontiguousarray(scaled[np.newaxis, :, top : top + rows])
        out[top : top + rows] = np.asarray(model.predict(block))[0, 0]
    return out


def clear_sky_metrics(
    probability: np.ndarray, label: np.ndarray, missing: np.ndarray, cut: float
) -> dict[str, float]:
    """Agreement with the known clear sky: every labelled pixel was seen from above.

    ``val_clear_agreement``: share of labelled pixels the model calls clear (< ``cut``);
    ``val_cloud_fraction``: share of pixels with data it calls cloud;
    ``val_mean_probability``: mean cloud probability over pixels with data.
    """
    labelled = (label != IGNORE) & ~missing
    valid = ~missing
    if not labelled.any():
        raise ValidationFailed("the held-out block has no labelled pixel to evaluate on")
    return {
        "val_clear_agreement": float((probability[labelled] < cut).mean()),
        "val_cloud_fraction": float((probability[valid] >= cut).mean()),
        "val_mean_probability": float(probability[valid].mean()),
    }


def evaluate_model(package: ModelPackage, model: Any, data: str | None) -> dict[str, float]:
    """Metrics of ``model`` on the package's held-out block (its columns logged as a param)."""
    scene = load_scene(package, data)
    split = spatial_split(scene.image.shape[1], package.spec.dataset.holdout, 1)
    block = slice(split.holdout.start, split.holdout.stop)
    scaled, missing = reflectance(package, scene.image.data[:, :, block])
    probability = probability_of(model, scaled)
    mlflow.log_param("holdout_columns", f"{split.holdout.start}-{split.holdout.stop - 1}")
    return clear_sky_metrics(probability, scene.label[:, block], missing, threshold(package))


def _tags(package: ModelPackage) -> None:
    mlflow.set_tags(
        {"geomlops.package": package.spec.name, "geomlops.package_version": package.spec.version}
    )


def _write_metrics(output: str, metrics: dict[str, float]) -> None:
    if output:
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")


def log_pyfunc(package: ModelPackage) -> Any:
    """Log the shipped booster as the pyfunc model ``model``, mlm.json and requirements inside."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    bands = len(package.spec.input.bands)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, bands, -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 1, -1, -1))]),
    )
    requirements = [
        line.split(" #", 1)[0].strip()
        for line in (HERE / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith("geomlops")
    ]
    info = mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=CloudProbability(),
        artifacts={BOOSTER_ARTIFACT: str(booster_file())},
        code_paths=[str(HERE / "cloud_model.py")],
        signature=signature,
        pip_requirements=requirements,
    )
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / MLM_FILE
        copy.write_text(json.dumps(package.mlm, indent=2) + "\n", encoding="utf-8")
        client = mlflow.MlflowClient()
        client.log_model_artifact(info.model_id, str(copy))
        env = Path(folder) / ENV_REQUIREMENTS_FILE
        env.write_text((HERE / "requirements.txt").read_text(encoding="utf-8"), encoding="utf-8")
        client.log_model_artifact(info.model_id, str(env))
    return info


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Package the pretrained booster as the run's model, then evaluate it held out.

    The entry point's parameters are logged by ``mlflow run``; the rest is logged here.
    """
    import s2cloudless

    package = load_package(HERE)
    booster = booster_file()
    digest = hashlib.sha256(booster.read_bytes()).hexdigest()
    with mlflow.start_run():
        _tags(package)
        mlflow.log_params(
            {
                "resolved_device": "cpu", "resolved_data": args.data or "sample-data registry",
                "patch_size": package.spec.input.patch_size,
                "bands": ",".join(package.spec.input.bands),
                "pretrained_source": f"s2cloudless {s2cloudless.__version__}",
                "booster_file": booster.name, "booster_sha256": digest,
            }
        )  # fmt: skip
        info = log_pyfunc(package)
        model = mlflow.pyfunc.load_model(info.model_uri)
        metrics = evaluate_model(package, model, args.data or None)
        mlflow.log_metrics(metrics)
    if args.output:  # the logged model folder (MLmodel, booster, mlm.json), as it was logged
        mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=args.output)
    _write_metrics(args.output, metrics)
    return {"model_uri": info.model_uri, "booster_sha256": digest, **metrics}


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Held-out agreement with the known clear sky of the model at ``--model``."""
    package = load_package(HERE)
    with mlflow.start_run():
        _tags(package)
        mlflow.log_param("resolved_data", args.data or "sample-data registry")
        model = mlflow.pyfunc.load_model(args.model)
        metrics = evaluate_model(package, model, args.data or None)
        mlflow.log_metrics(metrics)
        mlflow.log_dict(
            {"metrics": metrics, "against": "labelled pixels of the held-out block = clear sky"},
            "evaluation/clear_sky_agreement.json",
        )
    _write_metrics(args.output, metrics)
    return metrics


def predict(args: argparse.Namespace) -> dict[str, Any]:
    """Write ``<stem>_probabilities.tif`` (float32, NaN) and ``<stem>_mask.tif`` (uint8, 255)."""
    package = load_package(HERE)
    image = read_bands(args.input, package.spec.input.bands)
    if package.spec.input.nodata is not None:
        image.data[image.data == package.spec.input.nodata] = np.nan
    with mlflow.start_run():
        _tags(package)
        model = mlflow.pyfunc.load_model(args.model)
        scaled, missing = reflectance(package, image.data)
        probability = probability_of(model, scaled)
        probability[missing] = np.nan
        cut = threshold(package)
        mask = (probability >= cut).astype("uint8")
        mask[missing] = MASK_NODATA
        valid = ~missing
        fraction = float(mask[valid].mean()) if valid.any() else 0.0
        mlflow.log_metric("predicted_fraction_cloud", fraction)
    stem = Path(args.input).stem
    out = Path(args.output)
    tags = {
        "model": args.model, "package": package.spec.name,
        "package_version": package.spec.version, "source": args.input,
    }  # fmt: skip
    probabilities = write_raster(
        out / f"{stem}_probabilities.tif", probability, image, nodata=float("nan"),
        descriptions=["cloud"], tags=tags,
    )  # fmt: skip
    masked = write_raster(
        out / f"{stem}_mask.tif", mask, image, nodata=MASK_NODATA, descriptions=["class"],
        tags={**tags, "classes": "1:cloud", "threshold": cut},
    )  # fmt: skip
    return {"mask": str(masked), "probabilities": str(probabilities), "cloud_fraction": fraction}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloud-s2")
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train")
    train_cmd.add_argument("--data", default="")
    train_cmd.add_argument("--output", default="")
    for name in ("epochs", "batch-size", "learning-rate", "stride", "seed"):
        train_cmd.add_argument(f"--{name}", type=float, default=0)
    train_cmd.add_argument("--device", default="auto")
    evaluate_cmd = commands.add_parser("evaluate")
    evaluate_cmd.add_argument("--model", required=True)
    evaluate_cmd.add_argument("--data", default="")
    evaluate_cmd.add_argument("--output", default="")
    evaluate_cmd.add_argument("--device", default="auto")
    predict_cmd = commands.add_parser("predict")
    predict_cmd.add_argument("--model", required=True)
    predict_cmd.add_argument("--input", required=True)
    predict_cmd.add_argument("--output", required=True)
    predict_cmd.add_argument("--overlap", type=float, default=0)
    predict_cmd.add_argument("--device", default="auto")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one entry point; results as JSON on stdout, errors as ``error:``/``hint:``."""
    args = _parser().parse_args(argv)
    action = {"train": train, "evaluate": evaluate, "predict": predict}[args.command]
    try:
        result = action(args)
    except GeomlopsError as error:
        print(f"error: {error.message}", file=sys.stderr)
        for problem in getattr(error, "problems", []) or []:
            print(f"  {problem}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
