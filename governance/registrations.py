"""Do MLflow and the catalog agree on what is registered? `reconcile` for plain writes.

No decision records a registration, so the audit log cannot say it is incomplete. Package
registration writes the MLflow registered model first and the catalog item last, undoing
the first if the second fails (:mod:`geomlops.registration.register`). When the undo
cannot run either (PostgreSQL, behind both, died between the two writes) the registered
model is left without its item; a training run can likewise register an MLflow model
version and die before its item is written. This module finds each such half:

* an MLflow registered model whose package item (tag ``geomlops.package_item``) is not in
  the catalog: repaired by deleting the registered model when it holds no versions (the
  registration never completed; `geomlops package register` again does it whole);
* a package item in the catalog with no MLflow registered model: repaired by creating the
  registered model with the tags registration gives it;
* a model version item whose MLflow model version does not exist (the item names weights
  the registry does not have): reported; deleting either side is a person's decision.

(An MLflow model version without its item is the reconciler's: it checks every version the
registry holds.)
"""

from __future__ import annotations

from typing import Any

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import MODELS
from geomlops.governance.reconcile import Difference
from geomlops.model import properties as prop
from geomlops.model.stages import STAGE_PROPERTY, Stage

PACKAGE_ITEM_TAG = "geomlops.package_item"
SOURCE = "the registration"


class RegistrationCheck:
    """Compares (and optionally repairs) one model's registration in MLflow and the catalog."""

    def __init__(self, model: str, mlflow_client: Any, catalog: CatalogClient) -> None:
        self.model = model
        self.mlflow = mlflow_client
        self.catalog = catalog

    def _registered_model(self) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.mlflow.get_registered_model(self.model)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def _items(self, prop_name: str) -> list[dict[str, Any]]:
        """Items of ``models`` whose ``prop_name`` names this model."""
        found = self.catalog.iter_search(
            collections=[MODELS],
            filter={"op": "=", "args": [{"property": prop_name}, self.model]},
        )
        return list(found)

    def package_items(self) -> list[dict[str, Any]]:
        return [
            i
            for i in self._items(prop.PACKAGE)
            if i.get("properties", {}).get(STAGE_PROPERTY) == Stage.REGISTERED.value
        ]

    def run(self, *, repair: bool) -> list[Difference]:
        """Every difference found; with ``repair``, each repairable one is fixed."""
        differences: list[Difference] = []
        registered = self._registered_model()
        packages = self.package_items()
        versions: set[str] = set()
        if registered is not None:
            name = self.model.replace("'", "\\'")
            versions = {
                str(v.version) for v in self.mlflow.search_model_versions(f"name = '{name}'")
            }
            differences += self._package_item_of(registered, packages, versions, repair)
        elif packages:
            differences += self._registered_model_of(packages, repair)
        for item in self._items(prop.MLFLOW_MODEL):
            version = item.get("properties", {}).get(prop.MLFLOW_MODEL_VERSION)
            if version is None or str(version) in versions:
                continue
            differences.append(
                Difference(
                    f"STAC item {MODELS}/{item['id']}",
                    f"an item of {self.model} version {version}",
                    "no such MLflow model version (the item names weights the registry lacks)",
                    source="the model registry",
                )
            )
        return differences

    def _package_item_of(
        self, registered: Any, packages: list[dict[str, Any]], versions: set[str], repair: bool
    ) -> list[Difference]:
        item_id = (registered.tags or {}).get(PACKAGE_ITEM_TAG)
        if not item_id or item_id in {p["id"] for p in packages}:
            return []
        try:
            self.catalog.get_item_dict(MODELS, item_id)
            return []
        except Exception as exc:  # NotFoundError; anything else is the caller's to see
            from geomlops.errors import NotFoundError

            if not isinstance(exc, NotFoundError):
                raise
        difference = Difference(
            f"STAC item {MODELS}/{item_id}",
            "no item",
            f"the package item of MLflow registered model {self.model}"
            + ("" if not versions else f" (which holds versions {', '.join(sorted(versions))})"),
            source=SOURCE,
        )
        if repair and not versions:
            # The registration never completed: nothing was trained from it, and a package
            # without its item cannot be trained. Undo its first half, as register would have.
            self.mlflow.delete_registered_model(self.model)
        return [difference]

    def _registered_model_of(
        self, packages: list[dict[str, Any]], repair: bool
    ) -> list[Difference]:
        from geomlops.registration.register import registration_tags

        newest = max(packages, key=lambda i: _version_key(i["properties"].get("version", "")))
        difference = Difference(
            f"MLflow registered model {self.model}",
            "none",
            f"registered (package item {MODELS}/{newest['id']})",
            source=SOURCE,
        )
        if repair:
            props = newest["properties"]
            description = str(props.get("description") or props.get("title") or "")
            self.mlflow.create_registered_model(
                self.model, tags=registration_tags(newest), description=description
            )
        return [difference]


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in str(text).split("."))
