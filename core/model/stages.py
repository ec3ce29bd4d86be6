"""The life stages of a model version, and where each is recorded.

One list, used by registration, training, promotion, serving and batch inference alike. A
version is ``registered`` (a package, no weights), ``candidate`` (trained and evaluated,
awaiting a human), ``production`` (approved; the MLflow alias points at it), ``rejected`` (a
human said no; never used again) or ``deprecated`` (was production, replaced; kept with all
its history).
"""

from __future__ import annotations

from enum import StrEnum

from geomlops.model import properties

STAGE_PROPERTY = properties.STAGE
"""The STAC property of a model item that holds its stage."""

STAGE_TAG = "geomlops.stage"
"""The MLflow model version tag that mirrors the stage."""

PRODUCTION_ALIAS = "production"
"""The MLflow alias serving and batch inference follow (``models:/NAME@production``)."""


class Stage(StrEnum):
    """Where a model version is in its life."""

    REGISTERED = "registered"
    CANDIDATE = "candidate"
    PRODUCTION = "production"
    REJECTED = "rejected"
    DEPRECATED = "deprecated"
