"""Reproducing a model version: what was recorded, and whether a retraining agrees with it.

A model version is reproducible when retraining it from its recorded inputs (package
commit, dataset version and checksum, hyperparameters and seed) gives the same held-out
metrics, within a stated tolerance. Floating-point reductions on another machine, another
thread count or a GPU differ in their last bits and, through training, in the metrics' third
decimal; the tolerance says how much is accepted, and every metric is reported with both
values so a reader judges for themselves. This module reads the record and compares; the
CLI (``geomlops.cli.reproduce_training``) does the retraining.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from geomlops.errors import ValidationFailed
from geomlops.model import properties as prop
from geomlops.model.ids import parse_model_item_id

DEFAULT_TOLERANCE = 0.02
"""Largest accepted absolute difference of a metric (IoU, accuracy: fractions in 0..1)."""
COMPARED_PREFIX = "val_"
"""Metrics on the held-out block: what the version was evaluated (and gated) on."""


def parse_version_ref(ref: str) -> tuple[str, str]:
    """``NAME/N``, ``NAME@N``, ``models:/NAME/N`` or the item id ``NAME-mvN`` -> (NAME, N)."""
    text = ref.strip().removeprefix("models:/")
    name, sep, version = text.rpartition("@") if "@" in text else text.rpartition("/")
    if sep and name and version.isdigit():
        return name, version
    try:
        return parse_model_item_id(text)
    except ValidationFailed:
        raise ValidationFailed(
            f"{ref!r} names no model version",
            hint="give NAME/VERSION (flood-water-s2/3), NAME@VERSION, models:/NAME/VERSION or the "
            "item id "
            "(flood-water-s2-mv3)",
        ) from None


@dataclass(frozen=True)
class RecordedTraining:
    """What a model version's catalog item and MLflow run say it was trained from."""

    item_id: str
    package: str
    package_version: str
    git_commit: str
    git_dirty: bool
    source: str
    dataset: str
    dataset_version: int
    dataset_md5: str
    train_run_id: str
    params: dict[str, str]
    """The ``train`` entry point's hyperparameters (seed included), as MLflow recorded them."""
    metrics: dict[str, float]

    @classmethod
    def from_record(cls, item: dict[str, Any], run_params: dict[str, str]) -> RecordedTraining:
        """From the version's item and its train run's MLflow params; names what is missing."""
        props = item.get("properties") or {}
        needed = (
            prop.PACKAGE, prop.PACKAGE_VERSION, prop.GIT_COMMIT, prop.DATASET,
            prop.DATASET_VERSION, prop.DATASET_MD5, prop.MLFLOW_RUN_ID,
        )  # fmt: skip
        missing = [key for key in needed if not props.get(key)]
        if missing:
            raise ValidationFailed(
                f"{item.get('id')} does not record what it was trained from, so it cannot be "
                "reproduced",
                problems=[f"properties.{key} is missing" for key in missing],
            )
        sources = [
            a["href"]
            for a in (item.get("assets") or {}).values()
            if "mlm:source_code" in a.get("roles", [])
        ]
        hyper = props.get("mlm:hyperparameters") or {}
        return cls(
            item_id=str(item["id"]),
            package=str(props[prop.PACKAGE]),
            package_version=str(props[prop.PACKAGE_VERSION]),
            git_commit=str(props[prop.GIT_COMMIT]),
            git_dirty=bool(props.get(prop.GIT_DIRTY)),
            source=sources[0] if sources else "",
            dataset=str(props[prop.DATASET]),
            dataset_version=int(str(props[prop.DATASET_VERSION]).lstrip("v")),
            dataset_md5=str(props[prop.DATASET_MD5]),
            train_run_id=str(props[prop.MLFLOW_RUN_ID]),
            params={
                **{k: str(v) for k, v in hyper.items()},
                **{k: v for k, v in run_params.items() if k in hyper},
            },
            metrics={
                k: float(v)
                for k, v in (props.get(prop.METRICS) or {}).items()
                if k.startswith(COMPARED_PREFIX)
            },
        )

    def train_parameters(self, declared: set[str]) -> dict[str, str]:
        """The recorded values of the parameters the package's ``train`` declares."""
        return {k: v for k, v in sorted(self.params.items()) if k in declared}


@dataclass(frozen=True)
class MetricComparison:
    """One metric, as recorded and as reproduced."""

    name: str
    recorded: float
    reproduced: float | None
    tolerance: float

    @property
    def difference(self) -> float | None:
        if self.reproduced is None or math.isnan(self.reproduced):
            return None
        return abs(self.reproduced - self.recorded)

    @property
    def ok(self) -> bool:
        return self.difference is not None and self.difference <= self.tolerance


@dataclass
class Reproduction:
    """The outcome: every metric compared, and anything that makes the retraining differ."""

    recorded: RecordedTraining
    tolerance: float
    comparisons: list[MetricComparison] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.comparisons) and all(c.ok for c in self.comparisons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.recorded.item_id,
            "recorded": asdict(self.recorded),
            "tolerance": self.tolerance,
            "metrics": [
                {**asdict(c), "difference": c.difference, "ok": c.ok} for c in self.comparisons
            ],
            "warnings": self.warnings,
            "ok": self.ok,
        }


def compare_metrics(
    recorded: dict[str, float], reproduced: dict[str, float], tolerance: float
) -> list[MetricComparison]:
    """Each recorded metric against its reproduction (missing there: not reproduced)."""
    if tolerance < 0 or math.isnan(tolerance):
        raise ValidationFailed(f"tolerance {tolerance} must be a number >= 0")
    return [
        MetricComparison(name, value, reproduced.get(name), tolerance)
        for name, value in sorted(recorded.items())
        if not math.isnan(value)
    ]


def reproduction(
    recorded: RecordedTraining,
    reproduced_metrics: dict[str, float],
    tolerance: float = DEFAULT_TOLERANCE,
    warnings: list[str] | None = None,
) -> Reproduction:
    """Compare a retraining's held-out metrics with the recorded ones."""
    found = Reproduction(recorded, tolerance, warnings=list(warnings or []))
    found.comparisons = compare_metrics(recorded.metrics, reproduced_metrics, tolerance)
    if not found.comparisons:
        found.warnings.append(f"{recorded.item_id} records no held-out metrics to compare")
    if recorded.git_dirty:
        found.warnings.append(
            f"the package was registered with uncommitted changes; commit "
            f"{recorded.git_commit[:12]} is not exactly what trained"
        )
    return found
