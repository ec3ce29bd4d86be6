"""Naming a dataset version: ``NAME`` (the latest) or ``NAME@vN``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from geomlops.errors import ValidationFailed

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_REF = re.compile(r"^(?P<name>[^@]+)(?:@v(?P<number>[0-9]+))?$")


def check_name(name: str) -> str:
    """``name`` if it can name a dataset (a git tag prefix, a folder and an item id)."""
    if not NAME_PATTERN.match(name):
        raise ValidationFailed(
            f"dataset name {name!r} is not allowed",
            hint="use lower-case letters, digits and '-', starting with a letter",
        )
    return name


@dataclass(frozen=True)
class DatasetRef:
    """A dataset name with an optional version number (``None`` = the latest)."""

    name: str
    number: int | None = None

    @classmethod
    def parse(cls, text: str) -> DatasetRef:
        """Read ``NAME`` or ``NAME@vN``; raises ValidationFailed naming the text."""
        match = _REF.match(text.strip())
        if not match:
            raise ValidationFailed(
                f"{text!r} is not a dataset reference", hint="write NAME or NAME@vN, e.g. s1f@v2"
            )
        number = match["number"]
        if number is not None and int(number) < 1:
            raise ValidationFailed(f"{text!r}: versions start at v1")
        return cls(check_name(match["name"]), int(number) if number is not None else None)

    @property
    def tag(self) -> str:
        """The git tag of this version (only for a pinned version)."""
        if self.number is None:
            raise ValueError("an unpinned reference has no tag")
        return tag_for(self.name, self.number)

    def __str__(self) -> str:
        return self.name if self.number is None else self.tag


def tag_for(name: str, number: int) -> str:
    """The git tag of version ``number`` of ``name``: the one place its format is written."""
    return f"{name}@v{number}"


def item_id_for(name: str, number: int) -> str:
    """The STAC item id of a dataset version in the ``datasets`` collection."""
    return f"{name}-v{number}"
