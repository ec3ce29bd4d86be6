"""How to feed a model version and read its answer: the one reader of MLM inputs and outputs.

Batch inference and serving load a model version they know only by its catalog item: the
package folder (``package.yaml``) is not at hand where they run. Everything needed to turn a
raster into model input and read the model's output is in ``mlm:input[0]`` and
``mlm:output[0]``: bands by name, z-score statistics, patch size, classes, and the output's
kind (:mod:`geomlops.model.kinds`: class mask, probability, continuous value, chip class),
which chooses the post-processor. The
raster-to-vector transformer names features by the output's classes; registration compares
an ``mlm.json`` with ``package.yaml``. All of them read those fields here, so they cannot
read them differently.

A segmentation model's MLM item lists its classes under ``classification:classes`` in each
``mlm:output``: objects with an integer ``value``, a ``name`` (optional in the
classification extension v1.1, which requires ``description`` instead) and, from v2.0, a
``nodata`` flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from geomlops.errors import ValidationFailed
from geomlops.model.kinds import (
    CLASSES_KEY,
    OUTPUT_KEY,
    OutputKind,
    OutputSpec,
    output_kind,
    output_problems,
    read_output,
)

INPUT_KEY = "mlm:input"

__all__ = [
    "CLASSES_KEY",
    "INPUT_KEY",
    "OUTPUT_KEY",
    "ModelIO",
    "OutputClass",
    "OutputKind",
    "OutputSpec",
    "band_names",
    "class_pairs",
    "output_kind",
    "output_problems",
    "parse_classes",
    "read_output",
]


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="ignore"))
class OutputClass:
    """One class of a model output: the mask value and what it means.

    ``OutputClass(1, "water")`` builds one; :func:`parse_classes` reads them from MLM.
    """

    value: int = Field(description="The pixel value in the mask.")
    name: str = Field(default="", description="Short machine-friendly name, e.g. `water`.")
    description: str = ""
    nodata: bool = Field(
        default=False,
        description="The value marks pixels without a prediction (classification v2.0).",
    )

    @property
    def label(self) -> str:
        """The name written into features: ``name``, else ``description``, else the value."""
        return self.name or self.description or str(self.value)


_CLASS = TypeAdapter(OutputClass)


def parse_classes(classes: Iterable[Any] | Mapping[str, Any] | None) -> list[OutputClass]:
    """Read classes given as MLM ``classification:classes`` (or an object holding that key).

    Accepts a list of mappings or :class:`OutputClass` objects, or a mapping such as an
    ``mlm:output`` entry that has a ``classification:classes`` list. ``None`` gives an empty
    list (features are then named by value). Duplicate values are refused, because a
    feature could not say which name is meant.
    """
    if classes is None:
        return []
    if isinstance(classes, Mapping):
        if CLASSES_KEY not in classes:
            raise ValidationFailed(
                f"classes: a mapping was given without a {CLASSES_KEY!r} list",
                problems=[f"keys present: {sorted(classes)}"],
            )
        classes = classes[CLASSES_KEY]
    if isinstance(classes, str | bytes) or not isinstance(classes, Iterable):
        raise ValidationFailed(f"classes: expected a list of {{name, value}}, got {classes!r}")
    parsed: list[OutputClass] = []
    problems: list[str] = []
    first_index: dict[int, int] = {}
    for index, item in enumerate(classes):
        try:
            parsed_item = item if isinstance(item, OutputClass) else _CLASS.validate_python(item)
        except ValidationError as error:
            for detail in error.errors():
                where = ".".join(str(part) for part in detail["loc"]) or "item"
                problems.append(f"classes[{index}].{where}: {detail['msg']}")
            continue
        if parsed_item.value in first_index:
            problems.append(
                f"classes[{index}].value: {parsed_item.value} repeats "
                f"classes[{first_index[parsed_item.value]}]"
            )
        first_index.setdefault(parsed_item.value, index)
        parsed.append(parsed_item)
    if problems:
        raise ValidationFailed("classes are not valid MLM classification classes", problems)
    return parsed


# --- lenient views, for comparing a template with package.yaml ----------------------------
def band_names(mlm_input: Mapping[str, Any]) -> list[Any]:
    """The band names of one ``mlm:input`` entry, as written (MLM allows a name or ``{name}``).

    Lenient: a band object without a name gives None, so a comparison names the difference
    instead of failing; :meth:`ModelIO.from_item` is the strict reading.
    """
    bands = mlm_input.get("bands")
    return [
        b if isinstance(b, str) else (b.get("name") if isinstance(b, Mapping) else b)
        for b in (bands if isinstance(bands, list) else [])
    ]


def class_pairs(mlm_output: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{value, name}]`` of one ``mlm:output`` entry's classes, as written (lenient)."""
    classes = mlm_output.get(CLASSES_KEY)
    return [
        {"value": c.get("value"), "name": c.get("name")}
        for c in (classes if isinstance(classes, list) else [])
        if isinstance(c, Mapping)
    ]


# --- the strict reading inference needs ---------------------------------------------------
@dataclass(frozen=True)
class ModelIO:
    """The parts of an MLM item that say how to feed the model and read its answer."""

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    stddev: tuple[float, ...]
    patch_size: int
    classes: tuple[OutputClass, ...]
    nodata: float | None = None
    """A band value that means "no data" (``properties.bands[].nodata``), when recorded."""
    output: OutputSpec | None = None
    """What ``mlm:output[0]`` is (:func:`~geomlops.model.kinds.read_output`); None reads as a
    class mask of :attr:`classes`, what every model was before output kinds existed."""

    @property
    def class_names(self) -> list[str]:
        """Class names in channel order."""
        return [c.name for c in self.classes]

    @property
    def output_spec(self) -> OutputSpec:
        """The output's kind and post-processing options (a class mask when not recorded)."""
        if self.output is not None:
            return self.output
        return OutputSpec(
            OutputKind.CLASS_MASK,
            classes=tuple({"value": c.value, "name": c.name} for c in self.classes),
        )

    @property
    def kind(self) -> OutputKind:
        """The kind of the model's output: what post-processes it."""
        return self.output_spec.kind

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ModelIO:
        """Read and check ``mlm:input[0]`` and ``mlm:output[0]``; problems name the field."""
        props = item.get("properties", {})
        where = f"model item {item.get('id', '?')!r}"
        try:
            given = props[INPUT_KEY][0]
            output = props[OUTPUT_KEY][0]
            bands = tuple(b if isinstance(b, str) else str(b["name"]) for b in given["bands"])
            scaling = given["value_scaling"]
            shape = given["input"]["shape"]
            patch_size = int(shape[-1])
            # Inference names every channel, so a class needs a name here (MLM does not).
            # A continuous output has no classes (its kind is checked below).
            declared = [
                OutputClass(int(c["value"]), str(c["name"])) for c in output.get(CLASSES_KEY, [])
            ]
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise ValidationFailed(
                f"{where}: its MLM fields lack what inference needs ({error!r})",
                hint="mlm:input[0] needs bands, input.shape and value_scaling; mlm:output[0] "
                "needs classification:classes",
            ) from None
        classes = tuple(parse_classes(declared))
        spec = read_output(output, f"{where}: {OUTPUT_KEY}[0]")
        if int(shape[-2]) != patch_size or patch_size <= 0:
            raise ValidationFailed(f"{where}: mlm:input[0].input.shape {shape} is not square")
        if len(scaling) != len(bands) or any(
            not isinstance(s, dict) or s.get("type") != "z-score" or not s.get("stddev")
            for s in scaling
        ):
            raise ValidationFailed(
                f"{where}: mlm:input[0].value_scaling must hold one z-score entry with a "
                f"non-zero stddev per band ({len(bands)})",
                hint="run `python -m geomlops.ml.scaling PACKAGE_DIR --write` and retrain",
            )
        recorded = {b.get("nodata") for b in props.get("bands", []) if isinstance(b, dict)}
        nodata = next(iter(recorded)) if len(recorded) == 1 else None  # one value for all bands
        return cls(
            bands=bands,
            mean=tuple(float(s["mean"]) for s in scaling),
            stddev=tuple(float(s["stddev"]) for s in scaling),
            patch_size=patch_size,
            classes=classes,
            nodata=None if nodata is None else float(nodata),
            output=spec,
        )
