"""A model package's declaration: ``package.yaml`` (what the code reads) and ``mlm.json``.

``package.yaml`` is the one place a package's code declares the bands it reads, the classes
it writes, its patch size and its training data; the package code reads it through
:func:`load_package` instead of repeating those facts. It is plain YAML so the registration
validator can read it without importing torch. ``mlm.json`` describes the same model to the
catalog; :func:`consistency_problems` lists every place the two disagree, and is what both
the entry points (before they run) and ``geomlops package validate`` check.

The normalisation statistics live only in ``mlm.json`` (``mlm:input[0].value_scaling``):
they are computed from the training block by :mod:`geomlops.ml.scaling`, and training,
evaluation and prediction all read them from there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geomlops.errors import ValidationFailed
from geomlops.ml.metric_names import PER_CLASS, class_metric, metric_class, metric_names
from geomlops.model import properties as prop
from geomlops.model.io import band_names, class_pairs

PACKAGE_FILE = "package.yaml"
MLM_FILE = "mlm.json"
DIM_ORDER = ["batch", "bands", "height", "width"]
RESULT_DIM_ORDER = ["batch", "class", "height", "width"]
PROBABILITY_DIM_ORDERS = (RESULT_DIM_ORDER, ["batch", "channel", "height", "width"])
"""A probability output's one channel may be named ``class`` or ``channel`` (MLM allows both)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """The raster a model reads."""

    name: str = Field(description="Name of the input, equal to `mlm:input[0].name`.")
    bands: list[str] = Field(
        min_length=1, description="Band names in model order, as GeoTIFF band descriptions."
    )
    nodata: float | None = Field(
        default=None,
        description="Pixel value that marks a pixel as no data when any band holds it (NaN "
        "always does).",
    )
    patch_size: int = Field(gt=0, description="Height and width of one model input, pixels.")

    @model_validator(mode="after")
    def _unique_bands(self) -> InputSpec:
        if len(set(self.bands)) != len(self.bands):
            raise ValueError(f"input.bands repeats a name: {self.bands}")
        return self


class ClassSpec(_Strict):
    """One output class."""

    value: int = Field(ge=0, lt=255, description="Pixel value in the class mask (255 = nodata).")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Used in metric names.")
    description: str = ""


class OutputSpec(_Strict):
    """The class mask a model writes, or the one class whose probability it writes."""

    name: str = Field(description="Name of the output, equal to `mlm:output[0].name`.")
    classes: list[ClassSpec] = Field(
        min_length=1,
        description="Two or more: one channel of scores per class, values 0..K-1. Exactly "
        "one: a probability output (one channel, e.g. cloud-s2's `cloud`), any value; "
        "mlm.json's geomlops:threshold turns it into that class's mask.",
    )

    @property
    def is_probability(self) -> bool:
        """One class: the output is that class's probability (one channel)."""
        return len(self.classes) == 1

    @model_validator(mode="after")
    def _values_are_channels(self) -> OutputSpec:
        values = [c.value for c in self.classes]
        if len(values) > 1 and values != list(range(len(values))):
            raise ValueError(f"output.classes values must be 0..{len(values) - 1} in order")
        return self


class HoldoutSpec(_Strict):
    """The spatially separate block kept out of training."""

    fraction: float = Field(gt=0, lt=0.5, description="Share of columns, from the right edge.")
    buffer: int = Field(ge=0, description="Columns between the blocks that neither uses.")


class DatasetSpec(_Strict):
    """Where the training data is, relative to the data directory (or the sample registry)."""

    image: str
    label: str
    label_nodata: int = Field(description="Label value that means no data (ignored).")
    holdout: HoldoutSpec


class PackageSpec(_Strict):
    """The content of ``package.yaml``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: str
    input: InputSpec
    output: OutputSpec
    dataset: DatasetSpec
    metrics: list[str] | None = Field(
        default=None,
        description="Every metric the evaluate entry point logs (geomlops.ml.metric_names, "
        "e.g. val_iou_water); promotion gates may name only these. Required when mlm.json "
        "declares gates.",
    )

    @model_validator(mode="after")
    def _unique_metrics(self) -> PackageSpec:
        if self.metrics is not None and len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics repeats a name: {self.metrics}")
        return self

    @property
    def class_names(self) -> list[str]:
        """Class names in channel order."""
        return [c.name for c in self.output.classes]


@dataclass(frozen=True)
class Problem:
    """One inconsistency, located by file and field, with a hint how to fix it."""

    file: str
    field: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.file}: {self.field}: {self.message}{hint}"


@dataclass(frozen=True)
class ModelPackage:
    """A package folder with its parsed declaration and MLM item template."""

    path: Path
    spec: PackageSpec
    mlm: dict[str, Any]

    @property
    def mlm_input(self) -> dict[str, Any]:
        """``mlm:input[0]``; a package has exactly one input (checked on load)."""
        return self.mlm["properties"]["mlm:input"][0]

    def scaling(self) -> tuple[list[float], list[float]]:
        """Per-band (mean, stddev) from ``value_scaling``, in ``input.bands`` order."""
        entries = self.mlm_input.get("value_scaling") or []
        return [float(e["mean"]) for e in entries], [float(e["stddev"]) for e in entries]


def read_spec(path: Path) -> PackageSpec:
    """Parse ``package.yaml``; raise ValidationFailed with every field problem."""
    file = path / PACKAGE_FILE
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationFailed(
            f"{file} is missing", hint="every model package declares itself in package.yaml"
        ) from None
    except yaml.YAMLError as error:
        raise ValidationFailed(f"{file} is not valid YAML: {error}") from None
    try:
        return PackageSpec.model_validate(raw)
    except ValidationError as error:
        problems = [
            f"{PACKAGE_FILE}: {'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
            for e in error.errors()
        ]
        raise ValidationFailed(f"{file} does not match the package contract", problems) from None


def read_mlm(path: Path) -> dict[str, Any]:
    """Parse ``mlm.json`` as JSON (schema validation is the catalog validator's job)."""
    file = path / MLM_FILE
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationFailed(f"{file} is missing") from None
    except json.JSONDecodeError as error:
        raise ValidationFailed(f"{file} is not valid JSON: {error}") from None


def load_package(path: Path | str, *, require_scaling: bool = True) -> ModelPackage:
    """Read a package folder and refuse it unless ``package.yaml`` and ``mlm.json`` agree."""
    path = Path(path).resolve()
    package = ModelPackage(path=path, spec=read_spec(path), mlm=read_mlm(path))
    problems = consistency_problems(package, require_scaling=require_scaling)
    if problems:
        raise ValidationFailed(
            f"model package {path.name}: mlm.json and package.yaml disagree",
            [str(p) for p in problems],
            hint="edit mlm.json to match package.yaml, the declaration the code reads",
        )
    return package


def consistency_problems(package: ModelPackage, *, require_scaling: bool = True) -> list[Problem]:
    """Every disagreement between ``mlm.json`` and ``package.yaml`` (empty when consistent)."""
    spec, mlm = package.spec, package.mlm
    props = mlm.get("properties")
    if not isinstance(props, dict):
        return [Problem(MLM_FILE, "properties", "missing or not an object")]
    problems: list[Problem] = []

    def expect(field: str, actual: Any, wanted: Any, hint: str = "") -> None:
        if actual != wanted:
            problems.append(
                Problem(MLM_FILE, field, f"is {actual!r}, package.yaml says {wanted!r}", hint)
            )

    expect("properties.mlm:name", props.get("mlm:name"), spec.name)
    expect("properties.version", props.get("version"), spec.version)
    inputs, outputs = props.get("mlm:input"), props.get("mlm:output")
    if not (isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], dict)):
        problems.append(Problem(MLM_FILE, "properties.mlm:input", "must hold exactly one input"))
    else:
        problems += _input_problems(spec, inputs[0], props, require_scaling)
    for key, asset in (mlm.get("assets") or {}).items():
        if isinstance(asset, dict) and "mlm:model" in asset.get("roles", []):
            names = [b.get("name") for b in asset.get("bands", []) if isinstance(b, dict)]
            if names != spec.input.bands:
                problems.append(
                    Problem(
                        MLM_FILE,
                        f"assets.{key}.bands",
                        f"names {names!r} differ from package.yaml input.bands "
                        f"{spec.input.bands!r}",
                        "STAC 1.1 allows properties.bands only when an asset lists them too",
                    )
                )
    if not (isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], dict)):
        problems.append(Problem(MLM_FILE, "properties.mlm:output", "must hold exactly one output"))
    else:
        out = outputs[0]
        field = "properties.mlm:output[0]"
        expect(f"{field}.name", out.get("name"), spec.output.name)
        classes = class_pairs(out)
        wanted = [{"value": c.value, "name": c.name} for c in spec.output.classes]
        expect(f"{field}.classification:classes", classes, wanted)
        size = spec.input.patch_size
        result = out.get("result") or {}
        expect(f"{field}.result.shape", result.get("shape"), [-1, len(wanted), size, size])
        if not (spec.output.is_probability and result.get("dim_order") in PROBABILITY_DIM_ORDERS):
            expect(f"{field}.result.dim_order", result.get("dim_order"), RESULT_DIM_ORDER)
    problems += metric_problems(spec, props)
    return problems


def metric_problems(spec: PackageSpec, props: dict[str, Any]) -> list[Problem]:
    """The declared metrics against the classes, and the gates against both.

    A gate on a metric the evaluate entry point never logs can never be met: the candidate
    trains for nothing. Per-class metrics are named after classes, so a class renamed in
    one file shows up here as well as in the class lists.
    """
    problems: list[Problem] = []
    classes = spec.class_names
    declared = spec.metrics
    if declared is not None:
        for index, metric in enumerate(declared):
            named = metric_class(metric)
            if named is not None and named not in classes:
                problems.append(
                    Problem(
                        PACKAGE_FILE,
                        f"metrics[{index}]",
                        f"{metric!r} is named after class {named!r}, which output.classes "
                        f"does not have (classes: {', '.join(classes)})",
                        "per-class metrics are <prefix>_<iou|f1>_<class>; use the class names "
                        "of output.classes",
                    )
                )
        # A kind of per-class metric declared for one class is logged for every class.
        kinds = [k for k in PER_CLASS if any(class_metric(k, c) in declared for c in classes)]
        missing = [class_metric(k, c) for c in classes for k in kinds]
        missing = [m for m in missing if m not in declared]
        if missing:
            problems.append(
                Problem(
                    PACKAGE_FILE,
                    "metrics",
                    f"lacks {', '.join(missing)}: evaluate logs each per-class metric for "
                    "every class of output.classes",
                    f"declare the metrics evaluate logs: {metric_names(classes)}",
                )
            )
    gates = props.get(prop.GATES)
    if not isinstance(gates, dict) or not gates:
        return problems
    if declared is None:
        problems.append(
            Problem(
                PACKAGE_FILE,
                "metrics",
                f"is missing, so nothing says the gates of mlm.json ({', '.join(gates)}) name "
                "metrics the evaluate entry point logs",
                f"declare the metrics evaluate logs: metrics: {metric_names(classes)}",
            )
        )
    for metric in gates:
        reasons = []
        if declared is not None and metric not in declared:
            reasons.append(f"the evaluate entry point does not declare it ({PACKAGE_FILE} metrics)")
        named = metric_class(str(metric))
        if named is not None and named not in classes:
            reasons.append(
                f"its class {named!r} is not among the output classes "
                f"({PACKAGE_FILE} output.classes: {', '.join(classes)})"
            )
        if reasons:
            problems.append(
                Problem(
                    MLM_FILE,
                    f"properties.{prop.GATES}.{metric}",
                    f"gates on {metric!r}, which can never be measured: {'; '.join(reasons)}",
                    "gate on a metric package.yaml declares, named after a class it has",
                )
            )
    return problems


def _input_problems(
    spec: PackageSpec, given: dict[str, Any], props: dict[str, Any], require_scaling: bool
) -> list[Problem]:
    problems: list[Problem] = []
    field = "properties.mlm:input[0]"
    bands = spec.input.bands
    size = spec.input.patch_size

    def expect(name: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(
                Problem(MLM_FILE, f"{field}.{name}", f"is {actual!r}, package.yaml says {wanted!r}")
            )

    expect("name", given.get("name"), spec.input.name)
    names = band_names(given)
    expect("bands", names, bands)
    structure = given.get("input") or {}
    expect("input.shape", structure.get("shape"), [-1, len(bands), size, size])
    expect("input.dim_order", structure.get("dim_order"), DIM_ORDER)
    described = [b.get("name") for b in props.get("bands", []) if isinstance(b, dict)]
    if described != bands:
        problems.append(
            Problem(
                MLM_FILE,
                "properties.bands",
                f"names {described!r} differ from package.yaml input.bands {bands!r}",
                "describe each input band once, in model order",
            )
        )
    scaling = given.get("value_scaling")
    if scaling is None:
        if require_scaling:
            problems.append(
                Problem(
                    MLM_FILE,
                    f"{field}.value_scaling",
                    "missing: the normalisation statistics are not recorded",
                    "run `python -m geomlops.ml.scaling PACKAGE_DIR --write`",
                )
            )
    elif len(scaling) != len(bands) or any(
        not isinstance(s, dict) or s.get("type") != "z-score" or not s.get("stddev")
        for s in scaling
    ):
        problems.append(
            Problem(
                MLM_FILE,
                f"{field}.value_scaling",
                f"must be one z-score entry with non-zero stddev per band ({len(bands)})",
                "run `python -m geomlops.ml.scaling PACKAGE_DIR --write`",
            )
        )
    return problems
