"""The id of a model version's catalog item, and the collection it lives in.

Training writes the item, governance decides about it, serving and batch inference read
it, lineage follows links to it: all of them find it by this id, so its format is written
here only.
"""

from __future__ import annotations

import re

from geomlops.errors import ValidationFailed

MODELS_COLLECTION = "models"
"""The catalog collection holding one item per model version (and per package)."""

_VERSION_ID = re.compile(r"^(?P<name>.+)-mv(?P<version>\d+)$")


def model_item_id(name: str, version: str | int) -> str:
    """Id of model ``name`` version ``version``'s item in ``models``: ``NAME-mvVERSION``."""
    return f"{name}-mv{version}"


def package_item_id(name: str, version: str) -> str:
    """Id of a registered package's item in ``models``: ``NAME-VERSION`` (e.g. ``x-0.1.0``).

    Here, not in registration, because promotion reads a version's gates from the item of
    the package it was trained from.
    """
    return f"{name}-{version}"


def parse_model_item_id(item_id: str) -> tuple[str, str]:
    """The (name, version) a model version item id stands for; the inverse of the above."""
    found = _VERSION_ID.match(item_id)
    if found is None:
        raise ValidationFailed(
            f"{item_id!r} is not the id of a model version item",
            hint="model version items are named NAME-mvVERSION, e.g. flood-water-s2-mv3",
        )
    return found["name"], found["version"]
