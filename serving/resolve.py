"""Which model version serves: the ``production`` one, unless a version is asked for by number.

Serving and batch inference use the version an approver promoted (DESIGN.md §6.3): MLflow's
alias ``production`` (``models:/NAME@production``). This module is the one function that
turns a model name into that version and the places its artifacts are kept, so the model
component, ``geomlops serve`` and (later) the promotion issue's "production by default"
helper agree on it; the promotion issue may replace :func:`resolve_model`, keeping its
signature and :class:`ResolvedModel`.

It speaks MLflow's REST API (``/api/2.0/mlflow/...``) with ``requests`` instead of importing
``mlflow``, because it also runs inside the serving environment, whose Seldon pins (protobuf
3, Flask 2, NumPy 1) leave no room for the MLflow client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from geomlops.connections import get_connections
from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.settings import Settings, get_settings
from geomlops.workflows.steps.register import model_item_id

PRODUCTION_ALIAS = "production"
MODEL_FILE = "data/model.pt2"
"""The ``torch.export`` program inside the MLflow model folder (model_packages/README.md §6)."""
MLM_FILE = "mlm.json"
"""The MLM item template the train run logged in its model folder (``model/mlm.json``)."""
_TIMEOUT = 30


@dataclass(frozen=True)
class ResolvedModel:
    """One registered model version and where its serving artifacts are."""

    name: str
    version: str
    stac_item_id: str
    """Its item in the catalog's ``models`` collection (every answer names it)."""
    artifact_uri: str
    """The MLflow model folder (``s3://…``), holding :data:`MODEL_FILE`."""
    mlm_item: dict[str, Any] = field(repr=False)
    """The MLM item the model was trained with: bands, normalisation, classes."""
    alias: str | None = None
    """``production`` when resolved through the alias; None when asked for by version."""

    @property
    def model_file_uri(self) -> str:
        """URI of the exported program."""
        return f"{self.artifact_uri.rstrip('/')}/{MODEL_FILE}"


Resolver = Callable[[str, "str | None"], ResolvedModel]
"""What the model component is given: ``resolve(name, version) -> ResolvedModel``."""


class NoProductionVersion(NotFoundError):
    """The model has no version with the ``production`` alias (nothing was promoted yet)."""


class _MlflowRest:
    """The few MLflow REST calls resolution needs, errors translated at this boundary."""

    def __init__(self, tracking_uri: str) -> None:
        if not tracking_uri.startswith(("http://", "https://")):
            raise GeomlopsError(
                f"MLflow tracking URI {tracking_uri!r} is not a server",
                hint="serving resolves models through the MLflow server; run `geomlops up` or "
                "set GEOMLOPS_MLFLOW_TRACKING_URI to its http(s) URL",
            )
        self.base = tracking_uri.rstrip("/") + "/api/2.0/mlflow"

    def get(self, path: str, **params: str) -> dict[str, Any] | None:
        """The JSON answer, or None when MLflow says the resource does not exist."""
        try:
            response = requests.get(f"{self.base}/{path}", params=params, timeout=_TIMEOUT)
        except requests.RequestException as error:
            raise GeomlopsError(
                f"MLflow at {self.base} cannot be reached: {error}",
                hint="is the stack running? (`geomlops status`)",
            ) from None
        if response.status_code == 404 or (
            # MLflow answers a missing model or version with RESOURCE_DOES_NOT_EXIST, and a
            # missing alias with INVALID_PARAMETER_VALUE "... alias production not found."
            response.status_code == 400
            and ("RESOURCE_DOES_NOT_EXIST" in response.text or "not found" in response.text)
        ):
            return None
        if not response.ok:
            raise GeomlopsError(f"MLflow {path} answered {response.status_code}: {response.text}")
        return response.json()


def resolve_model(
    name: str, version: str | None = None, *, settings: Settings | None = None
) -> ResolvedModel:
    """The version of ``name`` to serve: ``production``, or ``version`` when one is given.

    Without ``version`` only the version carrying the ``production`` alias is returned; a
    model without one raises :class:`NoProductionVersion` (candidates are never served by
    default). Asking for a number serves that version whatever its stage, which is how an
    operator deliberately tries a candidate.
    """
    settings = settings or get_settings()
    mlflow = _MlflowRest(get_connections(settings).mlflow_tracking_uri)
    if version is None:
        found = mlflow.get("registered-models/alias", name=name, alias=PRODUCTION_ALIAS)
        if found is None:
            if mlflow.get("registered-models/get", name=name) is None:
                raise NotFoundError(
                    f"model {name!r} is not registered in MLflow",
                    hint="register its package (`geomlops package register`) and train it",
                )
            raise NoProductionVersion(
                f"model {name!r} has no production version (no version has the alias "
                f"{PRODUCTION_ALIAS!r})",
                hint=f"promote a trained version (`geomlops promote {name} VERSION`), or ask "
                "for a version explicitly",
            )
        model_version = found["model_version"]
    else:
        found = mlflow.get("model-versions/get", name=name, version=str(version))
        if found is None:
            raise NotFoundError(f"model {name!r} has no version {version}")
        model_version = found["model_version"]
    number = str(model_version["version"])
    download = mlflow.get("model-versions/get-download-uri", name=name, version=number)
    if download is None:
        raise NotFoundError(f"MLflow has no artifact location for {name} version {number}")
    artifact_uri = _storage_uri(mlflow, download["artifact_uri"])
    return ResolvedModel(
        name=name,
        version=number,
        stac_item_id=model_item_id(name, number),
        artifact_uri=artifact_uri,
        mlm_item=_read_mlm(mlflow, model_version, settings),
        alias=PRODUCTION_ALIAS if version is None else None,
    )


def _storage_uri(mlflow: _MlflowRest, uri: str) -> str:
    """Where the files of a model version's source are (``s3://…``, ``mlflow-artifacts:/…``).

    A version registered from ``runs:/RUN/model`` keeps that as its source. Since MLflow 3 a
    model logged in a run is a *logged model* stored apart from the run's artifacts
    (``models:/m-…``), found among the run's outputs by its name; with MLflow 2 it is the
    run's artifact folder of that name.
    """
    if uri.startswith("models:/m-"):
        return _logged_model_uri(mlflow, uri.removeprefix("models:/"))
    if not uri.startswith("runs:/"):
        return uri
    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    run = mlflow.get("runs/get", run_id=run_id)
    if run is None:
        raise NotFoundError(f"the run {run_id} of model source {uri} does not exist")
    for output in (run["run"].get("outputs") or {}).get("model_outputs", []):
        found = mlflow.get(f"logged-models/{output['model_id']}")
        if found is not None and found["model"]["info"].get("name") == path:
            return found["model"]["info"]["artifact_uri"]
    return f"{run['run']['info']['artifact_uri'].rstrip('/')}/{path}"


def _logged_model_uri(mlflow: _MlflowRest, model_id: str) -> str:
    found = mlflow.get(f"logged-models/{model_id}")
    if found is None:
        raise NotFoundError(f"MLflow has no logged model {model_id}")
    return found["model"]["info"]["artifact_uri"]


def _read_mlm(
    mlflow: _MlflowRest, model_version: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    """``mlm.json`` as the train entry point logged it: the run's ``<model folder>/mlm.json``.

    (With MLflow 3 that is beside the run's artifacts, not inside the logged model.)
    """
    from geomlops.serving.artifacts import read_object

    label = f"model {model_version.get('name')} version {model_version.get('version')}"
    run_id = model_version.get("run_id")
    run = mlflow.get("runs/get", run_id=run_id) if run_id else None
    if run is None:
        raise NotFoundError(f"{label} has no training run, so no {MLM_FILE}")
    source = str(model_version.get("source", ""))
    folder = source.split("/", 2)[2] if source.startswith("runs:/") else "model"
    uri = f"{run['run']['info']['artifact_uri'].rstrip('/')}/{folder}/{MLM_FILE}"
    data = read_object(uri, settings=settings, missing_ok=True)
    if data is None:
        raise NotFoundError(
            f"{label} has no {MLM_FILE} at {uri}",
            hint="train it with the package's train entry point, which logs model/mlm.json",
        )
    return json.loads(data)
