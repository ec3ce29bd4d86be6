"""The names of the metrics evaluation logs, built in one place.

Promotion gates (``geomlops:gates`` in ``mlm.json``), the ``metrics`` a package declares in
``package.yaml`` and the values :func:`geomlops.ml.metrics.segmentation_metrics` computes
all use these names; the validator checks the first two against each other and against the
classes without importing numpy or torch, so the rules live here rather than beside the
arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence

EVALUATION_PREFIX = "val"
"""Prefix of the held-out metrics that ``train`` and ``evaluate`` log and gates read."""

OVERALL = ("accuracy", "miou")
"""Metrics over all classes: ``<prefix>_accuracy``, ``<prefix>_miou``."""

PER_CLASS = ("iou", "f1")
"""Metrics of one class: ``<prefix>_iou_<class>``, ``<prefix>_f1_<class>``."""


def overall_metric(kind: str, prefix: str = EVALUATION_PREFIX) -> str:
    """``val_miou``: a metric over all classes."""
    return f"{prefix}_{kind}"


def class_metric(kind: str, class_name: str, prefix: str = EVALUATION_PREFIX) -> str:
    """``val_iou_water``: a metric of one class, named after the class."""
    return f"{prefix}_{kind}_{class_name}"


def metric_names(class_names: Sequence[str], prefix: str = EVALUATION_PREFIX) -> list[str]:
    """Every metric a segmentation evaluation logs for these classes, in logging order."""
    names = [overall_metric(kind, prefix) for kind in OVERALL]
    for name in class_names:
        names += [class_metric(kind, name, prefix) for kind in PER_CLASS]
    return names


def metric_class(metric: str, prefix: str = EVALUATION_PREFIX) -> str | None:
    """The class a per-class metric is named after (``val_iou_water`` -> ``water``), or None.

    None for a metric of all classes or one this naming does not cover.
    """
    for kind in PER_CLASS:
        head = class_metric(kind, "", prefix)
        if metric.startswith(head) and len(metric) > len(head):
            return metric[len(head) :]
    return None
