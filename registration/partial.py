"""Read as much of a ``package.yaml`` as is well typed, so one bad field hides nothing else.

:func:`geomlops.ml.spec.read_spec` refuses a file with any broken rule, which is right for
the entry points. The validator reports those rules too, but it must still compare the rest
of the declaration with ``mlm.json`` and the gates in the same pass: a class renamed to
``Lake`` (against the name pattern) must not hide that ``mlm.json`` still says ``water``
until the next run. Here each field is kept when its *type* is right, constraints aside
(patterns, ranges, orderings are the strict reader's to report); a section whose type is
wrong is left out, and so is the whole declaration when a required section is.
"""

from __future__ import annotations

import typing
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from geomlops.ml.spec import PackageSpec

Model = TypeVar("Model", bound=BaseModel)

_INVALID = object()


def partial_spec(raw: Any) -> PackageSpec | None:
    """``raw`` (parsed YAML) as a spec whose fields are well typed, or None if it cannot be."""
    return _lenient(PackageSpec, raw)


def _lenient(model: type[Model], raw: Any) -> Model | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        pass
    if not isinstance(raw, dict):
        return None
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        value = _lenient_value(info.annotation, raw[name]) if name in raw else _INVALID
        if value is _INVALID:
            if info.is_required():
                return None
            continue  # model_construct fills in the default
        values[name] = value
    return model.model_construct(**values)


def _lenient_value(annotation: Any, raw: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        section = _lenient(annotation, raw)
        return _INVALID if section is None else section
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            if not isinstance(raw, list):
                return _INVALID
            items = [_lenient(item, entry) for entry in raw]
            return _INVALID if any(i is None for i in items) else items
    try:
        return TypeAdapter(annotation).validate_python(raw)
    except ValidationError:
        return _INVALID
