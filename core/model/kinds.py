"""What a model output is, read from its ``mlm:output`` entry: the one reader of output kinds.

A model's answer is post-processed by what it is, not by what the platform's first model
happened to be: a class mask becomes class polygons, a probability or a continuous value a
float raster with zonal statistics (and polygons above a declared threshold), a chip
classifier's scores labelled footprints. The kind is read from MLM's own fields (``tasks``,
``result.data_type``, ``result.dim_order`` and ``result.shape``, ``classification:classes``)
and three of the platform's (``geomlops:threshold``, ``geomlops:colormap``,
``geomlops:unit``). Registration refuses an output this reader cannot classify, naming the
field, so serving and batch inference never meet one; both read the kind here, so they cannot
read it differently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from geomlops.errors import ValidationFailed
from geomlops.model import properties as prop

OUTPUT_KEY = "mlm:output"
CLASSES_KEY = "classification:classes"
DEFAULT_COLORMAP = "viridis"
"""The colour ramp of a probability or continuous output that declares none."""
ABOVE_THRESHOLD = "above-threshold"
"""The name of a continuous output's threshold mask class (a probability's is its class)."""


class OutputKind(StrEnum):
    """The kinds of model output the platform can post-process (DESIGN.md §11)."""

    CLASS_MASK = "class-mask"
    PROBABILITY = "probability"
    CONTINUOUS = "continuous"
    CHIP_CLASS = "chip-class"

    @property
    def rasterised(self) -> bool:
        """Whether the output is a per-pixel raster (every kind but ``chip-class``)."""
        return self is not OutputKind.CHIP_CLASS

    @property
    def float_raster(self) -> bool:
        """Whether the output is one float value per pixel (probability or continuous)."""
        return self in (OutputKind.PROBABILITY, OutputKind.CONTINUOUS)


KIND_RULES: dict[OutputKind, str] = {
    OutputKind.CLASS_MASK: "tasks semantic-segmentation, >= 2 classification:classes, and "
    "either a float result with a class (or channel) axis of one score per class, or an "
    "integer result without one",
    OutputKind.PROBABILITY: "tasks semantic-segmentation, a float result with one channel and "
    "exactly one class in classification:classes (values in [0, 1])",
    OutputKind.CONTINUOUS: "tasks regression, a float result with one channel and no "
    "classification:classes (optional geomlops:unit)",
    OutputKind.CHIP_CLASS: "tasks classification or scene-classification, a result without "
    "height/width (e.g. [batch, class]) and its classification:classes",
}
"""What each kind requires, as the refusal of an unknown output lists it."""

SEGMENTATION_TASKS = frozenset({"semantic-segmentation", "segmentation"})
CLASSIFICATION_TASKS = frozenset({"classification", "scene-classification"})
REGRESSION_TASKS = frozenset({"regression"})
FLOAT_TYPES = frozenset({"float16", "float32", "float64"})
INTEGER_TYPES = frozenset(
    {"uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"}
)
CLASS_AXES = ("class", "channel")
_COLORMAP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def kinds_text() -> str:
    """The kinds that exist and what each needs, for an error message."""
    return "; ".join(f"{kind.value} ({rule})" for kind, rule in KIND_RULES.items())


@dataclass(frozen=True)
class OutputSpec:
    """One model output as post-processing needs it: its kind and what its processor reads."""

    kind: OutputKind
    name: str = ""
    classes: tuple[Mapping[str, Any], ...] = ()
    """``classification:classes`` as written (``{value, name, ...}``)."""
    threshold: float | None = None
    colormap: str = DEFAULT_COLORMAP
    unit: str | None = None

    @property
    def class_names(self) -> list[str]:
        """Names of the classes, in order (a class without a name is named by its value)."""
        return [str(c.get("name") or c.get("value")) for c in self.classes]

    @property
    def threshold_class(self) -> tuple[int, str]:
        """(value, name) of the threshold mask's class: the probability's class, else 1."""
        if self.kind is OutputKind.PROBABILITY and self.classes:
            first = self.classes[0]
            return int(first.get("value", 1)), str(first.get("name") or ABOVE_THRESHOLD)
        return 1, ABOVE_THRESHOLD


@dataclass(frozen=True)
class _Finding:
    field: str
    message: str


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _classify(output: Any, where: str) -> tuple[OutputKind | None, list[_Finding]]:
    """The kind of ``output`` and, when it has none, what is wrong (field by field)."""
    if not isinstance(output, Mapping):
        return None, [_Finding(where, f"expected an object, got {type(output).__name__}")]
    tasks_value = output.get("tasks")
    tasks = (
        {t for t in tasks_value if isinstance(t, str)} if isinstance(tasks_value, list) else set()
    )
    result = output.get("result")
    if not isinstance(result, Mapping):
        return None, [_Finding(f"{where}.result", "missing: shape, dim_order and data_type")]
    data_type = result.get("data_type")
    dim_order = result.get("dim_order")
    shape = result.get("shape")
    if not isinstance(dim_order, list) or not all(isinstance(d, str) for d in dim_order):
        return None, [_Finding(f"{where}.result.dim_order", "missing or not a list of names")]
    classes = output.get(CLASSES_KEY)
    if classes is None:
        classes = []
    if not isinstance(classes, list) or not all(isinstance(c, Mapping) for c in classes):
        return None, [_Finding(f"{where}.{CLASSES_KEY}", "must be a list of {value, name}")]
    spatial = "height" in dim_order and "width" in dim_order
    axis = next((dim_order.index(a) for a in CLASS_AXES if a in dim_order), None)
    channels: int | None = 1
    if axis is not None:
        size = shape[axis] if isinstance(shape, list) and len(shape) == len(dim_order) else None
        channels = size if isinstance(size, int) and size > 0 else None  # None: not fixed
    is_float, is_int = data_type in FLOAT_TYPES, data_type in INTEGER_TYPES
    type_field = f"{where}.result.data_type"
    if not (is_float or is_int):
        return None, [_Finding(type_field, f"{data_type!r} is not a numeric data type")]
    if tasks & SEGMENTATION_TASKS and spatial:
        if is_float and axis is not None and channels != 1:
            if len(classes) >= 2 and channels in (None, len(classes)):
                return OutputKind.CLASS_MASK, []
            return None, [
                _Finding(
                    f"{where}.{CLASSES_KEY}",
                    f"{len(classes)} class(es) for a result with a class axis of "
                    f"{channels or 'unfixed'} score(s): a class mask needs one class per score "
                    "(at least two)",
                )
            ]
        if is_float:  # one channel
            if len(classes) == 1:
                return OutputKind.PROBABILITY, []
            return None, [
                _Finding(
                    f"{where}.{CLASSES_KEY}",
                    f"a float result with one channel is a probability and needs exactly one "
                    f"class (the thing it is the probability of), got {len(classes)}",
                )
            ]
        if channels == 1 and len(classes) >= 2:
            return OutputKind.CLASS_MASK, []
        if channels != 1:
            return None, [
                _Finding(type_field, f"{data_type!r} with a class axis: scores must be float")
            ]
        return None, [
            _Finding(
                f"{where}.{CLASSES_KEY}",
                f"an integer mask needs at least two classes, got {len(classes)}",
            )
        ]
    if tasks & REGRESSION_TASKS and spatial:
        if not is_float:
            return None, [_Finding(type_field, f"{data_type!r}: a continuous value is float")]
        if channels != 1:
            return None, [
                _Finding(f"{where}.result.dim_order", "a continuous output has one channel")
            ]
        if classes:
            return None, [_Finding(f"{where}.{CLASSES_KEY}", "a continuous output has no classes")]
        return OutputKind.CONTINUOUS, []
    if tasks & CLASSIFICATION_TASKS and not spatial:
        if not classes:
            return None, [_Finding(f"{where}.{CLASSES_KEY}", "a chip classifier needs its classes")]
        return OutputKind.CHIP_CLASS, []
    if tasks & (SEGMENTATION_TASKS | REGRESSION_TASKS):
        return None, [_Finding(f"{where}.result.dim_order", f"{dim_order} has no height and width")]
    if tasks & CLASSIFICATION_TASKS:
        return None, [
            _Finding(
                f"{where}.result.dim_order",
                f"{dim_order} has height and width: a per-pixel class is task "
                "semantic-segmentation",
            )
        ]
    return None, [_Finding(f"{where}.tasks", f"{tasks_value!r} names no task the platform runs")]


def _option_findings(output: Mapping[str, Any], kind: OutputKind, where: str) -> list[_Finding]:
    found: list[_Finding] = []
    if prop.THRESHOLD in output:
        field = f"{where}.{prop.THRESHOLD}"
        value = _number(output[prop.THRESHOLD])
        if not kind.float_raster:
            found.append(
                _Finding(field, f"only a probability or continuous output has one ({kind})")
            )
        elif value is None:
            found.append(_Finding(field, f"{output[prop.THRESHOLD]!r} is not a finite number"))
        elif kind is OutputKind.PROBABILITY and not 0.0 <= value <= 1.0:
            found.append(_Finding(field, f"{value} is outside [0, 1], a probability's range"))
    colormap = output.get(prop.COLORMAP)
    if colormap is not None and not (isinstance(colormap, str) and _COLORMAP_NAME.match(colormap)):
        found.append(
            _Finding(f"{where}.{prop.COLORMAP}", f"{colormap!r} is not a ramp name (e.g. viridis)")
        )
    unit = output.get(prop.UNIT)
    if unit is not None and not isinstance(unit, str):
        found.append(_Finding(f"{where}.{prop.UNIT}", f"{unit!r} is not text"))
    return found


def output_problems(outputs: Any, where: str = OUTPUT_KEY) -> list[tuple[str, str]]:
    """(field, message) of every ``mlm:output`` entry the platform cannot post-process.

    ``outputs`` is the ``mlm:output`` list; an empty answer means every entry has a kind.
    Each message ends with the kinds that exist, so a contributor sees what would work.
    """
    if not isinstance(outputs, list) or not outputs:
        return [(where, "must list at least one output")]
    problems: list[tuple[str, str]] = []
    for index, output in enumerate(outputs):
        at = f"{where}[{index}]"
        kind, found = _classify(output, at)
        if kind is not None:
            found = _option_findings(output, kind, at)
        problems += [(f.field, f.message) for f in found]
    return problems


def output_kind(mlm_output: Mapping[str, Any], where: str = f"{OUTPUT_KEY}[0]") -> OutputKind:
    """The kind of one ``mlm:output`` entry; :class:`ValidationFailed` naming the field if none."""
    return read_output(mlm_output, where).kind


def read_output(mlm_output: Mapping[str, Any], where: str = f"{OUTPUT_KEY}[0]") -> OutputSpec:
    """The :class:`OutputSpec` of one ``mlm:output`` entry, or :class:`ValidationFailed`."""
    kind, found = _classify(mlm_output, where)
    if kind is not None:
        found = _option_findings(mlm_output, kind, where)
    if kind is None or found:
        first = found[0]
        raise ValidationFailed(
            f"{first.field}: {first.message}: not an output the platform can post-process",
            problems=[f"{f.field}: {f.message}" for f in found],
            hint=f"the output kinds that exist: {kinds_text()}",
        )
    threshold = _number(mlm_output.get(prop.THRESHOLD))
    unit = mlm_output.get(prop.UNIT)
    return OutputSpec(
        kind=kind,
        name=str(mlm_output.get("name") or ""),
        classes=tuple(dict(c) for c in mlm_output.get(CLASSES_KEY) or ()),
        threshold=threshold,
        colormap=str(mlm_output.get(prop.COLORMAP) or DEFAULT_COLORMAP),
        unit=unit if isinstance(unit, str) else None,
    )


def refusal_message(field: str, message: str) -> str:
    """One refusal line: the field, what is wrong, and the kinds that exist."""
    return f"{field}: {message}; the output kinds that exist: {kinds_text()}"
