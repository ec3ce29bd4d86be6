"""Which model version to use: the one resolution rule of serving, batch inference and governance.

1. Without a version, the version whose catalog item records stage ``production``: the
   governed record, which only governance's decisions write (the catalog's models write
   guard refuses a stage from anyone else). The MLflow alias is a mirror of it and is not
   followed: an alias moved in MLflow directly changes nothing here (``geomlops reconcile``
   reports the disagreement and repairs the alias). No production item means
   :class:`NoProductionVersion` (candidates are never used by default); two mean the
   records are broken (:class:`~geomlops.errors.ConflictError`).
2. With a version, exactly that version, in any stage but one: a ``rejected`` version is
   always refused, because a human said no.
3. The version's catalog item (``models``, :func:`~geomlops.model.ids.model_item_id`) must
   exist, and the version must be registered in MLflow (its files are there).

The registry is asked through either transport (:mod:`geomlops.model.registry`); the
catalog item is read over plain STAC REST, so this module runs in the serving environment
too and imports no other component.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from geomlops.connections import get_connections
from geomlops.errors import AuthError, ConflictError, GeomlopsError, NotFoundError
from geomlops.model.ids import MODELS_COLLECTION, model_item_id
from geomlops.model.registry import Registry, VersionRecord, default_registry, storage_uri
from geomlops.model.runtimes import TORCH_MODEL_FILE, artifact_type
from geomlops.model.stages import PRODUCTION_ALIAS, STAGE_PROPERTY, Stage
from geomlops.settings import Settings, get_settings

MODEL_FILE = TORCH_MODEL_FILE
"""The ``torch.export`` program inside the MLflow model folder (model_packages/README.md §6)."""
_TIMEOUT = 30


class NoProductionVersion(NotFoundError):
    """The model has no version with the ``production`` alias (nothing was promoted yet)."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model version chosen for inference, its catalog item and where its files are."""

    name: str
    version: str
    stage: str
    """The stage its catalog item records (:class:`~geomlops.model.stages.Stage`)."""
    item_id: str
    """Its item in the catalog's ``models`` collection (every prediction names it)."""
    item: dict[str, Any] = field(repr=False)
    """The catalog item: the MLM item it was trained with, plus stage and lineage."""
    artifact_uri: str
    """The MLflow model folder (``s3://…`` or ``mlflow-artifacts:/…``), holding
    :data:`MODEL_FILE`."""
    alias: str | None = None
    """``production`` when resolved through the alias; None when asked for by version."""

    @property
    def model_uri(self) -> str:
        """``models:/NAME/VERSION``: what MLflow loads."""
        return f"models:/{self.name}/{self.version}"

    @property
    def model_file_uri(self) -> str:
        """URI of the exported program serving loads."""
        return f"{self.artifact_uri.rstrip('/')}/{MODEL_FILE}"

    @property
    def runtime(self) -> str:
        """How the version runs (:func:`geomlops.model.runtimes.artifact_type` of its item)."""
        return artifact_type(self.item)

    @property
    def mlm_item(self) -> dict[str, Any]:
        """The MLM item serving and batch inference read (:class:`~geomlops.model.io.ModelIO`).

        The catalog item is the ``mlm.json`` the train run logged, with lineage added, so it
        is the one source of bands, normalisation and classes.
        """
        return self.item

    @property
    def is_production(self) -> bool:
        return self.stage == Stage.PRODUCTION


def resolve_model(
    name: str,
    version: str | int | None = None,
    *,
    settings: Settings | None = None,
    registry: Registry | None = None,
) -> ResolvedModel:
    """The production version of ``name``, or exactly ``version`` when one is given.

    ``registry`` is the transport (default: :func:`~geomlops.model.registry.default_registry`);
    the answer does not depend on it.
    """
    asked_production = version is None
    settings = settings or get_settings()
    registry = registry or default_registry(settings)
    if version is None:
        version = production_version(name, settings, registry)
    found = _registered_version(registry, name, str(version))
    item_id = model_item_id(name, found.version)
    item = read_model_item(item_id, settings)
    if item is None:
        raise NotFoundError(
            f"{name} version {found.version} has no catalog item {item_id}",
            hint="versions get their item from the training workflow's register step; "
            f"`geomlops reconcile {name}` shows what else disagrees",
        )
    props = item.get("properties") or {}
    stage = str(props.get(STAGE_PROPERTY) or "")
    if stage == Stage.REJECTED:
        raise ConflictError(
            f"{name} version {found.version} was rejected and may not be used",
            hint="use the production version (name no version) or another one; "
            f"`geomlops audit {name}` says who rejected it and why",
        )
    download = registry.download_uri(name, found.version)
    if download is None:
        raise NotFoundError(f"MLflow has no artifact location for {name} version {found.version}")
    return ResolvedModel(
        name=name,
        version=found.version,
        stage=stage,
        item_id=item_id,
        item=item,
        artifact_uri=storage_uri(registry, download),
        alias=PRODUCTION_ALIAS if asked_production else None,
    )


def _registered_version(registry: Registry, name: str, version: str) -> VersionRecord:
    """The registry's record of the version asked for; NotFoundError naming why not."""
    found = registry.version(name, version)
    if found is None:
        if not registry.has_model(name):
            raise _not_registered(name)
        raise NotFoundError(f"model {name!r} has no version {version}")
    return found


def production_version(
    name: str, settings: Settings | None = None, registry: Registry | None = None
) -> str:
    """The version of ``name`` the governed record has in production (its catalog item).

    Asked of the catalog (``models`` items ``NAME-mvN`` whose stage is ``production``), not
    of MLflow's alias; ``registry`` only tells "not registered" from "nothing promoted".
    """
    settings = settings or get_settings()
    versions = sorted(
        version
        for item_id, version in _production_items(name, settings)
        if item_id == model_item_id(name, version)
    )
    if len(versions) > 1:
        raise ConflictError(
            f"the catalog has {len(versions)} production versions of {name} "
            f"({', '.join(versions)}): the governed record is broken",
            hint=f"an approver runs `geomlops reconcile {name} --repair`",
        )
    if versions:
        return versions[0]
    registry = registry or default_registry(settings)
    if not registry.has_model(name):
        raise _not_registered(name)
    raise NoProductionVersion(
        f"model {name!r} has no production version (no version was promoted: none has "
        f"stage '{Stage.PRODUCTION.value}' in the catalog)",
        hint=f"an approver promotes a trained version (`geomlops promote {name} VERSION "
        "--reason …`), or ask for a version explicitly (--version)",
    )


def _production_items(name: str, settings: Settings) -> list[tuple[str, str]]:
    """(item id, version) of every ``models`` item of ``name`` recorded as production."""
    stac_url = get_connections(settings).stac_url.rstrip("/")
    body = {
        "collections": [MODELS_COLLECTION],
        "filter-lang": "cql2-json",
        "filter": {
            "op": "and",
            "args": [
                {"op": "like", "args": [{"property": "id"}, f"{_like_escape(name)}-mv%"]},
                {"op": "=", "args": [{"property": STAGE_PROPERTY}, str(Stage.PRODUCTION)]},
            ],
        },
        "fields": {"include": ["id"], "exclude": ["assets", "links", "geometry"]},
        "limit": 100,
    }
    response = _request("POST", f"{stac_url}/search", settings, json=body)
    if not response.ok:
        raise GeomlopsError(
            f"POST {stac_url}/search answered {response.status_code}: {response.text[:500]}"
        )
    found = []
    for feature in response.json().get("features", []):
        item_id = str(feature.get("id", ""))
        prefix = f"{name}-mv"
        if item_id.startswith(prefix) and item_id[len(prefix) :].isdigit():
            found.append((item_id, item_id[len(prefix) :]))
    return found


def _like_escape(text: str) -> str:
    """``text`` as a literal inside a CQL2 ``like`` pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _not_registered(name: str) -> NotFoundError:
    return NotFoundError(
        f"model {name!r} is not registered in MLflow",
        hint="register its package (`geomlops package register`) and train it",
    )


def read_model_item(item_id: str, settings: Settings | None = None) -> dict[str, Any] | None:
    """The item ``item_id`` of ``models`` over plain STAC REST; None when there is none.

    A plain GET (reads may be public); ``GEOMLOPS_API_KEY`` is sent when set, for catalogs
    that require a credential for reads.
    """
    settings = settings or get_settings()
    stac_url = get_connections(settings).stac_url.rstrip("/")
    url = f"{stac_url}/collections/{MODELS_COLLECTION}/items/{quote(item_id, safe='')}"
    response = _request("GET", url, settings)
    if response.status_code == 404:
        return None
    if not response.ok:
        raise GeomlopsError(f"GET {url} answered {response.status_code}: {response.text}")
    return response.json()


def _request(method: str, url: str, settings: Settings, **kwargs: Any) -> requests.Response:
    """A catalog read over plain REST; unreachable and refused reads say what to do.

    ``GEOMLOPS_API_KEY`` is sent when set, for catalogs that require a credential for reads.
    """
    headers = {"Accept": "application/geo+json, application/json"}
    if settings.auth.api_key is not None:
        headers["X-API-Key"] = settings.auth.api_key.get_secret_value()
    try:
        response = requests.request(method, url, headers=headers, timeout=_TIMEOUT, **kwargs)
    except requests.RequestException as error:
        raise GeomlopsError(
            f"the STAC API at {url} cannot be reached: {error}",
            hint="is the stack running? (`geomlops status`, or set GEOMLOPS_STAC_URL)",
        ) from None
    if response.status_code in (401, 403):
        raise AuthError(
            f"{method} {url}: the catalog refused the read ({response.status_code})",
            hint="set GEOMLOPS_API_KEY to a key from `geomlops keys create`",
        )
    return response
