"""The model-version contract every component shares (DESIGN.md §2): part of the kernel.

* :mod:`~geomlops.model.ids`: a model version's catalog item id and collection;
* :mod:`~geomlops.model.stages`: the stages, where each is recorded, the production alias;
* :mod:`~geomlops.model.properties`: every ``geomlops:*`` STAC property name;
* :mod:`~geomlops.model.io`: the one reader of MLM inputs, outputs and classes;
* :mod:`~geomlops.model.kinds`: the kind of a model output (class mask, probability,
  continuous, chip class), which chooses its post-processor;
* :mod:`~geomlops.model.tracking`: a package's MLflow experiment, the decision tags of a version;
* :mod:`~geomlops.model.resolve`: the one rule choosing the version to use, over either
  registry transport (:mod:`~geomlops.model.registry`).

Like the rest of the kernel it imports nothing else of geomlops, and it imports in the
serving environment (no MLflow client there; ``mlflow`` is imported only when used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geomlops.model.ids import MODELS_COLLECTION, model_item_id, parse_model_item_id
from geomlops.model.io import ModelIO, OutputClass, parse_classes
from geomlops.model.kinds import OutputKind, OutputSpec, output_kind, read_output
from geomlops.model.stages import PRODUCTION_ALIAS, STAGE_PROPERTY, STAGE_TAG, Stage

if TYPE_CHECKING:
    from geomlops.model.registry import MlflowClientRegistry, Registry, RestRegistry
    from geomlops.model.resolve import NoProductionVersion, ResolvedModel, resolve_model

# Resolution speaks HTTP and reads settings; a model package importing geomlops.ml (which
# reads MLM fields through geomlops.model.io) should not pay for that, so it loads on use.
_LAZY = {
    "MlflowClientRegistry": "registry",
    "Registry": "registry",
    "RestRegistry": "registry",
    "NoProductionVersion": "resolve",
    "ResolvedModel": "resolve",
    "resolve_model": "resolve",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"geomlops.model.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MODELS_COLLECTION",
    "PRODUCTION_ALIAS",
    "STAGE_PROPERTY",
    "STAGE_TAG",
    "MlflowClientRegistry",
    "ModelIO",
    "NoProductionVersion",
    "OutputClass",
    "OutputKind",
    "OutputSpec",
    "Registry",
    "ResolvedModel",
    "RestRegistry",
    "Stage",
    "model_item_id",
    "output_kind",
    "parse_classes",
    "parse_model_item_id",
    "read_output",
    "resolve_model",
]
