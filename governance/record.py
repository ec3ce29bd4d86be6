"""What promotion checks, read from where no catalog edit reaches.

A model version's item is the catalog's mirror of the version, and a mirror can be edited:
a writer who could PATCH ``geomlops:trained_by`` or ``geomlops:gates`` on it could approve
their own model below its gate. So the rules read their facts from the records instead:

* who trained the version: the actors of its ``train`` entries in the audit log (appended by
  the training workflow as the identity that submitted the run; the log is append-only);
* how it evaluated: the metrics of the evaluation run that ``train`` entry names (MLflow),
  or the copy in the entry itself if MLflow cannot answer;
* which gates it must meet: those of the registered package it was trained from (the
  package named by the MLflow model version's lineage tags), not the version item's copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from geomlops import audit
from geomlops.audit import Action, AuditEntry
from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import MODELS
from geomlops.errors import ConflictError, NotFoundError, ValidationFailed
from geomlops.governance.gates import check_gates
from geomlops.model import properties as prop
from geomlops.model.ids import model_item_id, package_item_id

PACKAGE_TAG = "geomlops.package"
PACKAGE_VERSION_TAG = "geomlops.package_version"


@dataclass(frozen=True)
class TrainingRecord:
    """A version's ``train`` entries in the audit log (oldest first)."""

    model: str
    version: str
    entries: list[AuditEntry]

    @property
    def trainers(self) -> set[str]:
        """Every identity that submitted a training run recorded for this version."""
        return {e.actor for e in self.entries}

    @property
    def evaluate_run_id(self) -> str | None:
        for entry in reversed(self.entries):
            run = entry.details.get("evaluate_run_id")
            if run:
                return str(run)
        return None

    @property
    def recorded_metrics(self) -> dict[str, float]:
        """The metrics the training entry copied from its evaluation run."""
        for entry in reversed(self.entries):
            metrics = entry.details.get("metrics")
            if isinstance(metrics, dict) and metrics:
                return {str(k): float(v) for k, v in metrics.items()}
        return {}


def training_record(conn: psycopg.Connection, model: str, version: str) -> TrainingRecord:
    """The audit log's training entries for ``model`` ``version``; refused when there are none.

    Without one, nobody can tell who trained the version, so nobody may approve it.
    """
    entries = [e for e in audit.entries(conn, model, version) if e.action == Action.TRAIN]
    if not entries:
        raise ConflictError(
            f"{model} version {version} has no training entry in the audit log, so who "
            "trained it (and may not approve it) is not recorded",
            hint="versions become candidates through `geomlops workflows submit "
            "geomlops-train`, which records the trainer",
        )
    return TrainingRecord(model, version, entries)


def evaluation_metrics(record: TrainingRecord, mlflow: Any) -> dict[str, float]:
    """Metrics of the evaluation run the training record names (its own copy as fallback)."""
    run_id = record.evaluate_run_id
    if run_id and mlflow is not None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(mlflow.get_run(run_id).data.metrics)
        except MlflowException:
            pass
    return record.recorded_metrics


def package_gates(catalog: CatalogClient, mlflow: Any, model: str, version: str) -> dict[str, Any]:
    """The gates declared by the registered package ``model`` ``version`` was trained from.

    The package is the one the MLflow model version's lineage tags name (the version item's
    own package fields as a fallback: they are write-once too). Refused when the package
    declares none: a version nobody can check is not promoted.
    """
    tags: dict[str, str] = dict(mlflow.get_model_version(model, version).tags or {})
    name, package_version = tags.get(PACKAGE_TAG), tags.get(PACKAGE_VERSION_TAG)
    if not (name and package_version):
        props = catalog.get_item_dict(MODELS, model_item_id(model, version))["properties"]
        name, package_version = props.get(prop.PACKAGE), props.get(prop.PACKAGE_VERSION)
    where = f"the registered package {name} {package_version}"
    gates: Any = None
    if name and package_version:
        try:
            package = catalog.get_item_dict(MODELS, package_item_id(name, package_version))
            gates = package["properties"].get(prop.GATES)
        except NotFoundError:
            where += " (not in the catalog)"
    else:
        where = "its MLflow model version (no package recorded)"
    if not isinstance(gates, dict) or not gates:
        raise ValidationFailed(
            f"{model} version {version} has no evaluation gates: none declared by {where}, "
            "so it cannot be checked for promotion",
            hint=f'declare them in the package\'s mlm.json: "{prop.GATES}": '
            '{"val_iou_water": {"min": 0.7}}, and register that package version',
        )
    return gates


def meet_gates(gates: Any, metrics: dict[str, float], model: str, version: str) -> None:
    """Refuse a version whose metrics miss a gate, or that has no gates to check."""
    if not isinstance(gates, dict) or not gates:
        raise ValidationFailed(
            f"{model} declares no evaluation gates, so version {version} cannot be "
            "checked for promotion",
            hint=f'declare them in the package\'s mlm.json: "{prop.GATES}": '
            '{"val_iou_water": {"min": 0.7}}',
        )
    problems = [r.problem for r in check_gates(gates, metrics) if r.problem is not None]
    if problems:
        raise ValidationFailed(
            f"{model} version {version} does not meet its evaluation gates", problems=problems
        )
