"""What a package's ``train`` entry point receives: its MLproject defaults, then overrides.

One precedence rule for every hyperparameter: the value the submitter gave, else the
package's own default in its ``MLproject``. The workflow template has no defaults of its own
(an empty parameter means "the package's"), because a platform default would silently
override the package author's choice while the catalog still described the package's.
The train step passes every value explicitly, so what MLflow records for the run, what the
catalog item records and what the entry point received are one and the same mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from geomlops.errors import ValidationFailed

TRAIN_ENTRY_POINT = "train"
NOT_HYPERPARAMETERS = frozenset({"data", "output", "device"})
"""``train`` parameters that say where and on what it runs, not how it learns."""


def entry_point_defaults(package: Path, entry_point: str = TRAIN_ENTRY_POINT) -> dict[str, str]:
    """Default of every parameter of ``entry_point`` that declares one, as MLflow passes it."""
    path = package / "MLproject"
    try:
        project = yaml.safe_load(path.read_text()) or {}
        declared = project["entry_points"][entry_point].get("parameters") or {}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ValidationFailed(
            f"{path}: cannot read the parameters of entry point {entry_point!r} ({exc})",
            hint="`geomlops package validate` reports what is wrong with the MLproject",
        ) from exc
    defaults = {}
    for name, spec in declared.items():
        if isinstance(spec, dict) and spec.get("default") is not None:
            defaults[str(name)] = _as_text(spec["default"])
    return defaults


def received_hyperparameters(package: Path, overrides: dict[str, str]) -> dict[str, str]:
    """The hyperparameters ``train`` receives: the package's defaults, then ``overrides``.

    An override the entry point does not declare is refused: MLflow would pass it on as an
    extra argument the package never reads, and the record would claim it was used.
    """
    defaults = entry_point_defaults(package)
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValidationFailed(
            f"the package's {TRAIN_ENTRY_POINT!r} entry point declares no "
            f"{', '.join(unknown)} with a default",
            hint=f"its MLproject declares: {', '.join(sorted(defaults))}",
        )
    merged = {**defaults, **overrides}
    return {k: v for k, v in sorted(merged.items()) if k not in NOT_HYPERPARAMETERS}


def as_numbers(params: dict[str, str]) -> dict[str, Any]:
    """``{"epochs": "12", "learning_rate": "0.002"}`` -> ``{"epochs": 12, ...: 0.002}``."""
    return {key: _as_number(value) for key, value in params.items()}


def _as_number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _as_text(value: Any) -> str:
    """A YAML value as MLflow puts it on the command line (``12`` stays ``12``)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
