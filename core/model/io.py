"""How to feed a model version and read its answer: the one reader of MLM inputs and outputs.

Batch inference and serving load a model version they know only by its catalog item: the
package folder (``package.yaml``) is not at hand where they run. Everything needed to turn a
raster into model input and model output into a class mask is in ``mlm:input[0]`` and
``mlm:output[0]``: bands by name, z-score statistics, patch size, classes. The
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
from geomlops.model.properties import THRESHOLD

INPUT_KEY = "mlm:input"
OUTPUT_KEY = "mlm:output"
CLASSES_KEY = "classification:classes"


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
    threshold: float | None = None
    """Set for a probability output (one channel, one class): the probability at and above
    which a pixel is that class (``geomlops:threshold``, 0.5 when not declared); None for
    per-class scores, whose argmax is the class."""

    @property
    def is_probability(self) -> bool:
        """One channel holding the probability of the one class (cloud-s2's output)."""
        return self.threshold is not None

    def mask_classes(self) -> tuple[OutputClass, ...]:
        """The classes of the mask inference writes.

        A probability output's mask has its class where the probability reaches the
        threshold and ``not_<class>`` (the other of 0 and 1) elsewhere.
        """
        if not self.is_probability:
            return self.classes
        (only,) = self.classes
        other = OutputClass(1 if only.value == 0 else 0, f"not_{only.name}")
        return tuple(sorted((other, only), key=lambda c: c.value))

    @property
    def class_names(self) -> list[str]:
        """Class names in channel order."""
        return [c.name for c in self.classes]

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
            declared = [OutputClass(int(c["value"]), str(c["name"])) for c in output[CLASSES_KEY]]
            channels = (output.get("result") or {}).get("shape", [None, None])[1]
            threshold = output.get(THRESHOLD, 0.5)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise ValidationFailed(
                f"{where}: its MLM fields lack what inference needs ({error!r})",
                hint="mlm:input[0] needs bands, input.shape and value_scaling; mlm:output[0] "
                "needs classification:classes",
            ) from None
        classes = tuple(parse_classes(declared))
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
        # A probability output (one channel, one class) is read against its threshold;
        # the output-kind reader of issue 17 part 1 supersedes this test at the merge.
        probability = channels == 1 and len(classes) == 1
        if probability and (not isinstance(threshold, int | float) or not 0 < threshold < 1):
            raise ValidationFailed(
                f"{where}: mlm:output[0].{THRESHOLD} is {threshold!r}, not a number in (0, 1)"
            )
        return cls(
            bands=bands,
            mean=tuple(float(s["mean"]) for s in scaling),
            stddev=tuple(float(s["stddev"]) for s in scaling),
            patch_size=patch_size,
            classes=classes,
            nodata=None if nodata is None else float(nodata),
            threshold=float(threshold) if probability else None,
        )
