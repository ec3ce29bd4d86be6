"""What an approver looks at in MLflow: the evaluate run's picture and confusion matrix.

Metrics alone do not show *what* a model predicts. The ``evaluate`` entry point therefore
logs, under ``evaluation/`` of its MLflow run, the held-out block it scored as image, label
and prediction side by side, and the confusion matrix it computed the metrics from (as a
picture, and as numbers in JSON and CSV with the class names of ``package.yaml``).

matplotlib (which MLflow itself depends on) draws with the Agg backend, so no display is
needed; it is imported only when a report is written, so importing :mod:`geomlops.ml` costs
nothing more.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geomlops.ml.data import IGNORE

REPORT_DIR = "evaluation"
"""Folder of the evaluate run's artifacts that holds the report."""
PREDICTION_PNG = "prediction_vs_label.png"
CONFUSION_PNG = "confusion_matrix.png"
CONFUSION_JSON = "confusion_matrix.json"
CONFUSION_CSV = "confusion_matrix.csv"

# Band names shown as red, green, blue when a package reads all three (Sentinel-2 and
# plain names); any other input is shown as its first band in grey.
_RGB_BANDS = (("B4", "B3", "B2"), ("B04", "B03", "B02"), ("red", "green", "blue"))
_NO_LABEL_COLOUR = (0.85, 0.85, 0.85)


@dataclass(frozen=True)
class EvaluatedBlock:
    """The held-out block as evaluate scored it.

    ``image`` is bands x rows x columns (NaN = no data), ``label`` the truth with
    ``IGNORE`` where unusable, ``prediction`` the predicted class of every pixel.
    """

    image: np.ndarray
    label: np.ndarray
    prediction: np.ndarray
    bands: list[str]
    class_names: list[str]


def confusion_document(matrix: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """The confusion matrix as JSON: counts of labelled pixels, rows truth, columns prediction."""
    counts = np.asarray(matrix).astype("int64")
    return {
        "classes": list(class_names),
        "rows": "label",
        "columns": "prediction",
        "matrix": counts.tolist(),
        "pixels": int(counts.sum()),
    }


def write_report(block: EvaluatedBlock, matrix: np.ndarray, folder: Path) -> list[Path]:
    """Write the four report files into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    names = block.class_names
    document = confusion_document(matrix, names)
    json_path = folder / CONFUSION_JSON
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    csv_path = folder / CONFUSION_CSV
    with csv_path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["label \\ prediction", *names])
        for name, row in zip(names, document["matrix"], strict=True):
            writer.writerow([name, *row])
    return [
        _prediction_picture(block, folder / PREDICTION_PNG),
        _confusion_picture(np.asarray(document["matrix"]), names, folder / CONFUSION_PNG),
        json_path,
        csv_path,
    ]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _stretch(values: np.ndarray) -> np.ndarray:
    """Scale to 0..1 between the 2nd and 98th percentile of the valid pixels."""
    valid = values[np.isfinite(values)]
    if valid.size == 0:
        return np.zeros_like(values, dtype="float64")
    low, high = np.percentile(valid, (2, 98))
    scaled = (values - low) / (high - low) if high > low else values * 0.0
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0)


def _display_image(image: np.ndarray, bands: list[str]) -> tuple[np.ndarray, str]:
    """An RGB (or grey) array to show, and how it was made."""
    for rgb in _RGB_BANDS:
        if all(b in bands for b in rgb):
            channels = [_stretch(image[bands.index(b)]) for b in rgb]
            return np.dstack(channels), f"image ({', '.join(rgb)})"
    grey = _stretch(image[0])
    return np.dstack([grey, grey, grey]), f"image ({bands[0]})"


def _class_colours(count: int) -> np.ndarray:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return np.array([palette(i % 10)[:3] for i in range(count)])


def _paint(classes: np.ndarray, colours: np.ndarray, missing: np.ndarray) -> np.ndarray:
    painted = colours[np.clip(classes, 0, len(colours) - 1)]
    painted[missing] = _NO_LABEL_COLOUR
    return painted


def _prediction_picture(block: EvaluatedBlock, path: Path) -> Path:
    plt = _pyplot()
    from matplotlib.patches import Patch

    colours = _class_colours(len(block.class_names))
    no_input = np.isnan(block.image).any(axis=0)
    shown, title = _display_image(block.image, block.bands)
    panels = [
        (shown, title),
        (_paint(block.label, colours, block.label == IGNORE), "label"),
        (_paint(block.prediction, colours, no_input), "prediction"),
    ]
    height, width = block.label.shape
    figure, axes = plt.subplots(1, 3, figsize=(12, min(4 * height / max(width, 1), 12) + 1.5))
    for axis, (data, name) in zip(axes, panels, strict=True):
        axis.imshow(data, interpolation="nearest")
        axis.set_title(name)
        axis.set_axis_off()
    legend = [Patch(color=colours[i], label=name) for i, name in enumerate(block.class_names)] + [
        Patch(color=_NO_LABEL_COLOUR, label="no label / no data")
    ]
    figure.legend(handles=legend, loc="lower center", ncol=len(legend), frameon=False)
    figure.suptitle("held-out block: image, label, prediction")
    figure.tight_layout(rect=(0, 0.08, 1, 0.95))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _confusion_picture(matrix: np.ndarray, names: list[str], path: Path) -> Path:
    plt = _pyplot()
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(totals > 0, matrix / totals, 0.0)
    size = 1.2 * len(names) + 3
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(len(names)):
        for column in range(len(names)):
            colour = "white" if share[row, column] > 0.5 else "black"
            axis.text(
                column,
                row,
                f"{matrix[row, column]:,}\n{share[row, column]:.1%}",
                ha="center",
                va="center",
                color=colour,
            )
    axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("prediction")
    axis.set_ylabel("label")
    axis.set_title("confusion matrix (pixels; share of each label)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
