"""Which model version to use: production unless a version is asked for by number.

Serving and batch inference resolve a model through :func:`resolve_model` only, so an
unapproved version is never used by accident: without a version the MLflow alias
``production`` decides, and its catalog item must agree that it is in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import MODELS
from geomlops.connections import get_connections
from geomlops.errors import ConflictError, NotFoundError
from geomlops.governance.stages import PRODUCTION_ALIAS, STAGE_PROPERTY, Stage
from geomlops.settings import Settings, get_settings
from geomlops.workflows.steps.register import model_item_id


@dataclass(frozen=True)
class ResolvedModel:
    """A model version chosen for inference, with where its weights and metadata are."""

    name: str
    version: str
    stage: str
    item_id: str
    item: dict[str, Any]
    model_uri: str
    """``models:/NAME/VERSION``: what MLflow loads."""

    @property
    def is_production(self) -> bool:
        return self.stage == Stage.PRODUCTION


def resolve_model(
    name: str,
    version: str | None = None,
    *,
    settings: Settings | None = None,
    catalog: CatalogClient | None = None,
    mlflow_client: Any = None,
) -> ResolvedModel:
    """The production version of ``name``, or exactly ``version`` when one is given."""
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    if mlflow_client is None:
        mlflow_client = get_connections(settings).mlflow_client()
    if catalog is None:
        with CatalogClient.from_settings(settings) as own:
            return resolve_model(
                name, version, settings=settings, catalog=own, mlflow_client=mlflow_client
            )
    try:
        if version is None:
            mv = mlflow_client.get_model_version_by_alias(name, PRODUCTION_ALIAS)
        else:
            mv = mlflow_client.get_model_version(name, str(version))
    except MlflowException:
        if version is None:
            raise NotFoundError(
                f"{name} has no production version",
                hint=f"an approver promotes one: `geomlops promote {name} VERSION --reason …`"
                " (or ask for a version explicitly with --version)",
            ) from None
        raise NotFoundError(f"{name} has no version {version}") from None
    item_id = model_item_id(name, str(mv.version))
    try:
        item = catalog.get_item_dict(MODELS, item_id)
    except NotFoundError:
        raise NotFoundError(f"{name} version {mv.version} has no catalog item {item_id}") from None
    stage = str(item["properties"].get(STAGE_PROPERTY))
    if version is None and stage != Stage.PRODUCTION:
        raise ConflictError(
            f"MLflow says {name} version {mv.version} is in production, the catalog says "
            f"{stage}: the records disagree",
            hint=f"an approver runs `geomlops reconcile {name} --repair`",
        )
    if stage == Stage.REJECTED:
        raise ConflictError(f"{name} version {mv.version} was rejected and may not be used")
    return ResolvedModel(
        name=name,
        version=str(mv.version),
        stage=stage,
        item_id=item_id,
        item=item,
        model_uri=f"models:/{name}/{mv.version}",
    )
