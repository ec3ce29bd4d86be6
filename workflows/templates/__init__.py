"""The platform's Argo WorkflowTemplates, defined with Hera (one module each).

:func:`all_templates` is the one list of them: ``geomlops workflows render`` writes each,
the Helm chart installs them, and ``geomlops workflows submit NAME`` finds them here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hera.workflows import WorkflowTemplate

from geomlops.settings import Settings, get_settings
from geomlops.workflows.templates.infer import INFER, infer_template
from geomlops.workflows.templates.train import TRAIN, train_template

BUILDERS: dict[str, Callable[[Settings], WorkflowTemplate]] = {
    TRAIN: train_template,
    INFER: infer_template,
}


def all_templates(settings: Settings | None = None) -> dict[str, WorkflowTemplate]:
    """Every WorkflowTemplate by name, built with ``settings``."""
    settings = settings or get_settings()
    return {name: build(settings) for name, build in BUILDERS.items()}


def render(template: WorkflowTemplate) -> dict[str, Any]:
    """The manifest as plain data, as Argo and the local executor read it."""
    return template.to_dict()
