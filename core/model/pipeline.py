"""A composed pipeline: one model's output masks another's, declared once in a small spec.

The flood model's water is only worth stating where the sky is clear, and whether it is
clear is another model's answer (cloud-s2's ``cloud-probability``). A pipeline spec names
the two and how one gates the other::

    pipeline: flood-clear-sky        # a name (a DNS label: it names the SeldonDeployment)
    model: flood-water-s2            # the primary model: its classes are the answer
    version: "3"                     # optional; production unless given
    mask:
      model: cloud-s2                # the model whose output masks the primary's
      version: null                  # optional; production unless given
      output: cloud-probability      # which of its mlm:output (default: its first)
      threshold: 0.4                 # default: the output's geomlops:threshold
      drop: above                    # `above`: value >= threshold is masked; `below`: <

The same document drives the Seldon graph (:mod:`geomlops.serving.manifest`: MODEL(mask)
→ MODEL(primary) → the output transformer) and batch inference (the plan pins both
versions; the shard worker runs both on every tile window), so they cannot disagree. Each
model resolves by the platform's one rule (:mod:`.resolve`) and reads its own bands of the
same scene by name; masked pixels become no data in the primary's mask.

Here: reading and checking the spec (every problem names the file and the field) and
:class:`MaskRule`, which turns the mask model's per-pixel output into "masked or not"; it
lives in the kernel because serving and batch inference both apply it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from geomlops.errors import ValidationFailed
from geomlops.model import properties as prop
from geomlops.model.io import CLASSES_KEY, OUTPUT_KEY

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _version_text(value: object) -> object:
    """YAML reads ``version: 3`` as a number; a version is text (``"3"``)."""
    if isinstance(value, bool):
        return value  # refused by the str type: true/false is no version
    return str(value) if isinstance(value, int) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MaskSpec(_Strict):
    """The model whose output masks the primary model's answer, and how."""

    model: str = Field(min_length=1, description="Registered model name, e.g. cloud-s2.")
    version: str | None = Field(default=None, description="Version; production unless given.")
    output: str | None = Field(
        default=None, description="Name of its mlm:output whose value gates; default its first."
    )
    threshold: float | None = Field(
        default=None, description="Gate value; default the output's geomlops:threshold."
    )
    drop: Literal["above", "below"] = Field(
        default="above",
        description="`above`: pixels whose value >= threshold are masked; `below`: < threshold.",
    )

    _version = field_validator("version", mode="before")(_version_text)


class PipelineSpec(_Strict):
    """A primary model gated by a mask model (see the module docstring)."""

    pipeline: str = Field(description="The pipeline's name (a DNS label, at most 63).")
    model: str = Field(min_length=1, description="The primary model: its classes answer.")
    version: str | None = Field(default=None, description="Version; production unless given.")
    mask: MaskSpec

    _version = field_validator("version", mode="before")(_version_text)

    @field_validator("pipeline")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _NAME.match(value) or len(value) > 63:
            raise ValueError("must be lowercase letters, digits and '-' (at most 63)")
        return value

    @field_validator("mask")
    @classmethod
    def _other_model(cls, value: MaskSpec, info: Any) -> MaskSpec:
        if value.model == info.data.get("model"):
            raise ValueError("the mask model must be another model than the primary one")
        return value


def parse_pipeline(document: object, where: str) -> PipelineSpec:
    """Check a pipeline spec (already parsed); ValidationFailed names each field at fault."""
    if not isinstance(document, Mapping):
        raise ValidationFailed(
            f"{where}: a pipeline spec is a mapping with pipeline, model and mask",
            hint="see geomlops.model.pipeline for an example",
        )
    try:
        return PipelineSpec.model_validate(dict(document))
    except ValidationError as error:
        problems = [
            f"{where}: {'.'.join(str(p) for p in d['loc']) or '(root)'}: {d['msg']}"
            for d in error.errors()
        ]
        raise ValidationFailed(f"{where} is not a valid pipeline spec", problems) from None


def load_pipeline(path: Path) -> PipelineSpec:
    """Read and check the pipeline spec in the YAML (or JSON) file ``path``."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValidationFailed(f"{path}: cannot read the pipeline spec ({error})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValidationFailed(f"{path}: not YAML ({error})") from None
    return parse_pipeline(document, str(path))


@dataclass(frozen=True)
class MaskRule:
    """Which pixels the mask model's output masks: ``channel`` compared with ``threshold``."""

    output: str
    channel: int
    threshold: float
    drop: str = "above"

    def masked(self, values: np.ndarray) -> np.ndarray:
        """Boolean (H x W, True = masked) from the mask model's output (K x H x W).

        A pixel whose value is NaN (the mask model could not see it) is masked: nobody
        said it is clear.
        """
        value = values[self.channel]
        with np.errstate(invalid="ignore"):
            hit = value >= self.threshold if self.drop == "above" else value < self.threshold
        return hit | np.isnan(value)

    def describe(self) -> str:
        """Words for lineage and logs, e.g. ``cloud-probability >= 0.4``."""
        return f"{self.output} {'>=' if self.drop == 'above' else '<'} {self.threshold:g}"


def mask_rule(spec: MaskSpec, item: Mapping[str, Any]) -> MaskRule:
    """The rule ``spec`` means for the mask model version whose catalog item is ``item``.

    Problems name the spec field (``mask.output``, ``mask.threshold``) and what the item
    offers instead.
    """
    outputs = (item.get("properties") or {}).get(OUTPUT_KEY) or []
    where = f"model item {item.get('id', '?')!r}"
    if not isinstance(outputs, list) or not outputs:
        raise ValidationFailed(f"pipeline mask.model: {where} declares no {OUTPUT_KEY}")
    names = [str(o.get("name")) for o in outputs if isinstance(o, Mapping)]
    if spec.output is None:
        index = 0
    elif spec.output in names:
        index = names.index(spec.output)
    else:
        raise ValidationFailed(
            f"pipeline mask.output: {where} has no output {spec.output!r}",
            hint=f"its outputs: {', '.join(names) or '(none named)'}",
        )
    output = outputs[index]
    threshold = spec.threshold
    if threshold is None:
        threshold = output.get(prop.THRESHOLD)
    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        raise ValidationFailed(
            f"pipeline mask.threshold: not given, and output {names[index]!r} of {where} "
            f"declares no {prop.THRESHOLD}",
            hint="give mask.threshold in the pipeline spec",
        )
    classes = output.get(CLASSES_KEY) or []
    result = output.get("result") or {}
    shape = result.get("shape") or []
    dims = result.get("dim_order") or []
    axis = next((dims.index(d) for d in ("channel", "class") if d in dims), None)
    declared = shape[axis] if axis is not None and len(shape) == len(dims) else None
    channels = declared if isinstance(declared, int) and declared > 0 else len(classes) or 1
    if channels != 1:
        raise ValidationFailed(
            f"pipeline mask.output: output {names[index]!r} of {where} has {channels} channels; "
            "a mask is read from a one-channel output (a probability or a continuous value)",
        )
    return MaskRule(output=names[index], channel=0, threshold=float(threshold), drop=spec.drop)
