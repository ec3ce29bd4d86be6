"""The model registry, spoken two ways: the MLflow client, or MLflow's REST API.

Resolution (:mod:`geomlops.model.resolve`) asks the registry a handful of questions: which
version carries an alias, does a version exist, where are its files. The main environment
answers them with MLflow's Python client (:class:`MlflowClientRegistry`); the serving
environment, whose Seldon pins (protobuf 3, Flask 2, NumPy 1) leave no room for that client,
answers them with plain HTTP against ``/api/2.0/mlflow/...`` (:class:`RestRegistry`). Both
translate MLflow's answers into the same small records, so one rule gives one answer
whichever transport carried it. ``mlflow`` is imported only inside the client transport.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from geomlops.connections import get_connections
from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.settings import Settings, get_settings

_TIMEOUT = 30


@dataclass(frozen=True)
class VersionRecord:
    """One registered model version, as the registry records it."""

    name: str
    version: str
    source: str
    """Where it was registered from: ``runs:/RUN/PATH``, ``models:/m-…`` or a storage URI."""
    run_id: str | None


@dataclass(frozen=True)
class RunRecord:
    """The parts of a run that locate a model logged in it."""

    artifact_uri: str
    logged_model_ids: tuple[str, ...]
    """MLflow 3 logged models among the run's outputs."""


@dataclass(frozen=True)
class LoggedModelRecord:
    """An MLflow 3 logged model: its name in the run and where its files are."""

    name: str
    artifact_uri: str


class Registry(Protocol):
    """What resolution asks the registry; None means "does not exist"."""

    where: str
    """The registry's address, for messages."""

    def has_model(self, name: str) -> bool: ...

    def version_by_alias(self, name: str, alias: str) -> VersionRecord | None: ...

    def version(self, name: str, version: str) -> VersionRecord | None: ...

    def download_uri(self, name: str, version: str) -> str | None: ...

    def run(self, run_id: str) -> RunRecord | None: ...

    def logged_model(self, model_id: str) -> LoggedModelRecord | None: ...


def default_registry(settings: Settings | None = None) -> Registry:
    """The MLflow client where it is installed (the main environment), else plain REST."""
    if importlib.util.find_spec("mlflow") is not None:
        return MlflowClientRegistry.from_settings(settings)
    return RestRegistry.from_settings(settings)


# --- plain REST -----------------------------------------------------------------------------
class RestRegistry:
    """The registry over MLflow's REST API with ``requests``; errors translated here."""

    def __init__(self, tracking_uri: str, auth: tuple[str, str] | None = None) -> None:
        if not tracking_uri.startswith(("http://", "https://")):
            raise GeomlopsError(
                f"MLflow tracking URI {tracking_uri!r} is not a server",
                hint="serving resolves models through the MLflow server; run `geomlops up` or "
                "set GEOMLOPS_MLFLOW_TRACKING_URI to its http(s) URL",
            )
        self.where = tracking_uri.rstrip("/")
        self.base = self.where + "/api/2.0/mlflow"
        self.auth = auth
        """MLflow's basic-auth credential (the platform's account), sent with every request."""

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RestRegistry:
        connections = get_connections(settings or get_settings())
        return cls(connections.mlflow_tracking_uri, connections.mlflow_auth())

    def get(self, path: str, **params: str) -> dict[str, Any] | None:
        """The JSON answer, or None when MLflow says the resource does not exist."""
        try:
            response = requests.get(
                f"{self.base}/{path}", params=params, auth=self.auth, timeout=_TIMEOUT
            )
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

    @staticmethod
    def _version(found: dict[str, Any] | None) -> VersionRecord | None:
        if found is None:
            return None
        mv = found["model_version"]
        return VersionRecord(
            name=str(mv["name"]),
            version=str(mv["version"]),
            source=str(mv.get("source") or ""),
            run_id=mv.get("run_id") or None,
        )

    def has_model(self, name: str) -> bool:
        return self.get("registered-models/get", name=name) is not None

    def version_by_alias(self, name: str, alias: str) -> VersionRecord | None:
        return self._version(self.get("registered-models/alias", name=name, alias=alias))

    def version(self, name: str, version: str) -> VersionRecord | None:
        return self._version(self.get("model-versions/get", name=name, version=version))

    def download_uri(self, name: str, version: str) -> str | None:
        found = self.get("model-versions/get-download-uri", name=name, version=version)
        return None if found is None else str(found["artifact_uri"])

    def run(self, run_id: str) -> RunRecord | None:
        found = self.get("runs/get", run_id=run_id)
        if found is None:
            return None
        outputs = (found["run"].get("outputs") or {}).get("model_outputs", [])
        return RunRecord(
            artifact_uri=str(found["run"]["info"]["artifact_uri"]),
            logged_model_ids=tuple(str(o["model_id"]) for o in outputs),
        )

    def logged_model(self, model_id: str) -> LoggedModelRecord | None:
        found = self.get(f"logged-models/{model_id}")
        if found is None:
            return None
        info = found["model"]["info"]
        return LoggedModelRecord(name=str(info.get("name")), artifact_uri=str(info["artifact_uri"]))


# --- the MLflow client ----------------------------------------------------------------------
class MlflowClientRegistry:
    """The registry through ``mlflow.tracking.MlflowClient`` (the main environment)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.where = str(getattr(client, "tracking_uri", "MLflow"))

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> MlflowClientRegistry:
        return cls(get_connections(settings or get_settings()).mlflow_client())

    def _call(self, what: str, call: Any, *args: str) -> Any:
        """``call(*args)``; None when MLflow says it does not exist, other errors translated."""
        from mlflow.exceptions import MlflowException

        try:
            return call(*args)
        except MlflowException as error:
            # The same two answers RestRegistry.get reads as "does not exist".
            if error.error_code == "RESOURCE_DOES_NOT_EXIST" or (
                error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in error.message
            ):
                return None
            raise GeomlopsError(f"MLflow {what} at {self.where} failed: {error.message}") from None

    @staticmethod
    def _version(mv: Any) -> VersionRecord | None:
        if mv is None:
            return None
        return VersionRecord(
            name=str(mv.name),
            version=str(mv.version),
            source=str(mv.source or ""),
            run_id=mv.run_id or None,
        )

    def has_model(self, name: str) -> bool:
        found = self._call("get_registered_model", self.client.get_registered_model, name)
        return found is not None

    def version_by_alias(self, name: str, alias: str) -> VersionRecord | None:
        found = self._call(
            "get_model_version_by_alias", self.client.get_model_version_by_alias, name, alias
        )
        return self._version(found)

    def version(self, name: str, version: str) -> VersionRecord | None:
        found = self._call("get_model_version", self.client.get_model_version, name, version)
        return self._version(found)

    def download_uri(self, name: str, version: str) -> str | None:
        found = self._call(
            "get_model_version_download_uri",
            self.client.get_model_version_download_uri,
            name,
            version,
        )
        return None if found is None else str(found)

    def run(self, run_id: str) -> RunRecord | None:
        found = self._call("get_run", self.client.get_run, run_id)
        if found is None:
            return None
        outputs = getattr(found, "outputs", None)
        return RunRecord(
            artifact_uri=str(found.info.artifact_uri),
            logged_model_ids=tuple(
                str(o.model_id) for o in (outputs.model_outputs if outputs else None) or []
            ),
        )

    def logged_model(self, model_id: str) -> LoggedModelRecord | None:
        found = self._call("get_logged_model", self.client.get_logged_model, model_id)
        if found is None:
            return None
        return LoggedModelRecord(name=str(found.name), artifact_uri=str(found.artifact_location))


# --- where a version's files are ----------------------------------------------------------
def storage_uri(registry: Registry, uri: str) -> str:
    """Where the files of a model version's source are (``s3://…``, ``mlflow-artifacts:/…``).

    A version registered from ``runs:/RUN/model`` keeps that as its source. Since MLflow 3 a
    model logged in a run is a *logged model* stored apart from the run's artifacts
    (``models:/m-…``), found among the run's outputs by its name; with MLflow 2 it is the
    run's artifact folder of that name.
    """
    if uri.startswith("models:/m-"):
        model_id = uri.removeprefix("models:/")
        logged = registry.logged_model(model_id)
        if logged is None:
            raise NotFoundError(f"MLflow has no logged model {model_id}")
        return logged.artifact_uri
    if not uri.startswith("runs:/"):
        return uri
    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    run = registry.run(run_id)
    if run is None:
        raise NotFoundError(f"the run {run_id} of model source {uri} does not exist")
    for model_id in run.logged_model_ids:
        logged = registry.logged_model(model_id)
        if logged is not None and logged.name == path:
            return logged.artifact_uri
    return f"{run.artifact_uri.rstrip('/')}/{path}"
