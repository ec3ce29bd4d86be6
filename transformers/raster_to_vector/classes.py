"""The output classes a mask's values stand for, read from a model's MLM output.

A segmentation model's MLM item lists its classes under ``classification:classes`` in each
``mlm:output``: objects with an integer ``value``, a ``name`` (optional in the
classification extension v1.1, which requires ``description`` instead) and, from v2.0, a
``nodata`` flag. Vectorised features carry the class name and value so a GeoJSON file is
readable without the model's catalogue item beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geomlops.errors import ValidationFailed

CLASSES_KEY = "classification:classes"


class OutputClass(BaseModel):
    """One class of a model output: the mask value and what it means."""

    model_config = ConfigDict(frozen=True, extra="ignore")

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
            parsed_item = (
                item if isinstance(item, OutputClass) else OutputClass.model_validate(item)
            )
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
