"""Evaluation gates: the bounds a model's metrics must meet, checked one way everywhere.

A package declares its gates in ``mlm.json`` (``geomlops:gates``: metric -> ``min``/``max``);
promotion refuses a version that misses one, and lineage shows every gate with the value
the version reached, so a reader sees what the approver's check saw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geomlops.model import properties as prop


@dataclass(frozen=True)
class GateResult:
    """One gate, the value measured for it, and whether that value meets it."""

    metric: str
    minimum: float | None
    maximum: float | None
    value: float | None

    def _value(self) -> float | None:
        """The value, or None when it was not measured (missing or NaN)."""
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return None
        return self.value

    @property
    def measured(self) -> float | None:
        """The value, or None when it was not measured (missing or NaN)."""
        return self._value()

    @property
    def met(self) -> bool:
        return self.problem is None

    @property
    def bounds(self) -> str:
        """``>= 0.7``, ``<= 0.2`` or ``in [0.1, 0.9]``."""
        if self.minimum is not None and self.maximum is not None:
            return f"in [{self.minimum}, {self.maximum}]"
        if self.minimum is not None:
            return f">= {self.minimum}"
        return f"<= {self.maximum}"

    @property
    def problem(self) -> str | None:
        """Why the gate is not met, in the words promotion refuses with (None if met)."""
        value = self._value()
        if value is None:
            return f"{self.metric}: not measured by the evaluation run"
        if self.minimum is not None and value < self.minimum:
            return f"{self.metric} = {value:.4f} is below the gate's minimum {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"{self.metric} = {value:.4f} is above the gate's maximum {self.maximum}"
        return None


def check_gates(gates: Mapping[str, Any], metrics: Mapping[str, float]) -> list[GateResult]:
    """Every gate with the metric's value, in metric order."""
    return [
        GateResult(
            metric,
            _number(bounds.get("min")),
            _number(bounds.get("max")),
            metrics.get(metric),
        )
        for metric, bounds in sorted(gates.items())
    ]


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def recorded_metrics(props: Mapping[str, Any], mlflow: Any) -> dict[str, float]:
    """Evaluation metrics from the MLflow evaluation run (the item's copy as a fallback)."""
    run_id = props.get(prop.EVALUATE_RUN_ID)
    if run_id and mlflow is not None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(mlflow.get_run(run_id).data.metrics)
        except MlflowException:
            pass
    return {k: float(v) for k, v in (props.get(prop.METRICS) or {}).items()}
