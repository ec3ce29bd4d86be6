"""Segmentation metrics with the names every package logs to MLflow.

Names are ``<prefix>_<metric>_<class name>`` (``val_iou_water``, ``val_f1_not_water``) plus
``<prefix>_miou`` and ``<prefix>_accuracy``; promotion gates and the catalog read them by
these names, so they are built by :mod:`geomlops.ml.metric_names` only.
"""

from __future__ import annotations

import numpy as np

from geomlops.ml.data import IGNORE
from geomlops.ml.metric_names import class_metric, overall_metric


def confusion(prediction: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix (rows = truth, columns = prediction), skipping ``IGNORE`` pixels."""
    valid = target != IGNORE
    index = target[valid].astype("int64") * n_classes + prediction[valid].astype("int64")
    return np.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def segmentation_metrics(
    prediction: np.ndarray, target: np.ndarray, class_names: list[str], prefix: str = "val"
) -> dict[str, float]:
    """IoU and F1 per class, mean IoU and pixel accuracy over the labelled pixels.

    A class absent from both truth and prediction has an undefined IoU; it is reported as
    NaN rather than 1.0 so it cannot flatter a model.
    """
    return confusion_metrics(confusion(prediction, target, len(class_names)), class_names, prefix)


def confusion_metrics(
    confusion_matrix: np.ndarray, class_names: list[str], prefix: str = "val"
) -> dict[str, float]:
    """:func:`segmentation_metrics` from a confusion matrix (rows = truth, columns = prediction).

    Evaluation logs the matrix beside the metrics; computing both from one matrix means an
    approver can recompute every IoU from the artifact and get the logged number.
    """
    matrix = np.asarray(confusion_matrix).astype("float64")
    true_positive = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    union = predicted + actual - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
        f1 = np.where(predicted + actual > 0, 2 * true_positive / (predicted + actual), np.nan)
    total = matrix.sum()
    accuracy = float(true_positive.sum() / total) if total else np.nan
    metrics = {overall_metric("accuracy", prefix): accuracy}
    miou = float(np.nanmean(iou)) if not np.isnan(iou).all() else np.nan
    metrics[overall_metric("miou", prefix)] = miou
    for name, class_iou, class_f1 in zip(class_names, iou, f1, strict=True):
        metrics[class_metric("iou", name, prefix)] = float(class_iou)
        metrics[class_metric("f1", name, prefix)] = float(class_f1)
    return metrics
