"""How a model version is run, read from its MLM item: the model asset's ``mlm:artifact_type``.

Two runtimes exist (model_packages/README.md §6):

- ``torch.export.save``: the MLflow model folder holds a ``torch.export`` program
  (``data/model.pt2``) that any environment with torch runs in process, without the
  package's code or framework — the flood models;
- ``mlflow.pyfunc``: the folder is an MLflow pyfunc model whose code needs the package's own
  framework (cloud-s2: s2cloudless and LightGBM). It runs in a subprocess in the package's
  environment (:mod:`geomlops.ml.serve_worker`), built from the copy of the package's
  ``requirements.txt`` the train entry point logs into the model
  (:data:`ENV_REQUIREMENTS_FILE`), as MLflow's own ``env_manager`` serves a model from its
  logged requirements.

Pure reading, no framework: registration, the register step, serving and batch inference
ask here which runtime a version needs and where its files are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from geomlops.errors import ValidationFailed

ARTIFACT_TYPE_KEY = "mlm:artifact_type"
"""The MLM asset field that names how the model's file was written."""
MODEL_ROLE = "mlm:model"
"""Role of the asset that is the model."""

TORCH_EXPORT = "torch.export.save"
"""In process with torch: ``torch.export.load(data/model.pt2).module()``."""
MLFLOW_PYFUNC = "mlflow.pyfunc"
"""In a subprocess in the package's environment: ``mlflow.pyfunc.load_model(folder)``."""
RUNTIMES = (TORCH_EXPORT, MLFLOW_PYFUNC)
"""Every artifact type the platform can run, in the order messages list them."""

TORCH_MODEL_FILE = "data/model.pt2"
"""The ``torch.export`` program inside the MLflow model folder."""
ENV_REQUIREMENTS_FILE = "geomlops-requirements.txt"
"""The package's ``requirements.txt``, copied into a pyfunc model folder by its train entry
point: what the platform builds (or finds) the model's environment from."""


def model_asset(item: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """The (key, asset) with role ``mlm:model`` of an MLM item; None when it has none."""
    for key, asset in (item.get("assets") or {}).items():
        if isinstance(asset, Mapping) and MODEL_ROLE in (asset.get("roles") or []):
            return str(key), asset
    return None


def artifact_type(item: Mapping[str, Any]) -> str:
    """The runtime an MLM item's model needs; a clear error naming the field otherwise."""
    found = model_asset(item)
    where = f"model item {item.get('id', '?')!r}"
    if found is None:
        raise ValidationFailed(
            f"{where}: no asset has the role {MODEL_ROLE!r}",
            hint=f"add the model asset with roles [{MODEL_ROLE!r}] and {ARTIFACT_TYPE_KEY}",
        )
    key, asset = found
    value = asset.get(ARTIFACT_TYPE_KEY)
    if value not in RUNTIMES:
        raise ValidationFailed(
            f"{where}: assets.{key}.{ARTIFACT_TYPE_KEY} is {value!r}, which the platform "
            f"cannot run; the runtimes are {', '.join(RUNTIMES)}",
            hint=f"{TORCH_EXPORT}: a torch.export program; {MLFLOW_PYFUNC}: an MLflow pyfunc "
            "model run in the package's environment",
        )
    return str(value)


def model_href(artifact_uri: str, runtime: str) -> str:
    """Where the model asset of a version points: the program, or the pyfunc model folder."""
    folder = artifact_uri.rstrip("/")
    return f"{folder}/{TORCH_MODEL_FILE}" if runtime == TORCH_EXPORT else folder


def model_folder(item: Mapping[str, Any]) -> str:
    """The MLflow model folder of a version's catalog item.

    Its model asset's href, less the program's path inside the folder for
    ``torch.export.save``.
    """
    runtime = artifact_type(item)
    found = model_asset(item)
    assert found is not None  # noqa: S101 - artifact_type refused an item without one
    href = str(found[1].get("href") or "")
    suffix = f"/{TORCH_MODEL_FILE}"
    if runtime == TORCH_EXPORT and href.endswith(suffix):
        return href[: -len(suffix)]
    return href
