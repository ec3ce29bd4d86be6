"""Promote, reject and roll back model versions: the rules, each enforced here only.

A decision is taken by the identity behind the credential in use (never a name typed on
the command line), under a per-model lock so two decisions about one model cannot race.
It is appended to the audit log first, then applied by the reconciler; if applying fails
half-way, the next decision (or `geomlops reconcile`) finishes it from the log.

Rules for promotion:
  * the approver holds the ``approver`` (or ``admin``) role;
  * the approver is not the identity that trained the version (its ``train`` entries in the
    audit log) or that the version item names as trainer or registrar;
  * the version is a ``candidate``;
  * its evaluation metrics (from the MLflow evaluation run its ``train`` entry names) meet
    every gate its registered package declares (``geomlops:gates`` in the package's
    mlm.json, e.g. ``{"val_iou_water": {"min": 0.7}}``), see :mod:`geomlops.governance.record`;
  * the reason is not empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from geomlops import audit
from geomlops.audit import Action, AuditEntry
from geomlops.catalog.collections import MODELS
from geomlops.catalog.db import pgstac_url
from geomlops.catalog.identity import Identity, Role
from geomlops.errors import AuthError, ConflictError, NotFoundError, ValidationFailed
from geomlops.governance.clients import CatalogAndRegistry
from geomlops.governance.reconcile import Difference, Reconciler
from geomlops.governance.record import (
    TrainingRecord,
    evaluation_metrics,
    meet_gates,
    package_gates,
    training_record,
)
from geomlops.governance.registrations import RegistrationCheck
from geomlops.governance.state import DesiredState, desired_state
from geomlops.model import properties as prop
from geomlops.model.ids import model_item_id
from geomlops.model.stages import STAGE_PROPERTY, Stage


@dataclass
class Outcome:
    """What a decision did, for the CLI to print."""

    action: Action
    model: str
    version: str | None
    actor: str
    entry: AuditEntry | None = None
    repaired: list[Difference] = field(default_factory=list)
    applied: list[Difference] = field(default_factory=list)


class Governance(CatalogAndRegistry):
    """Decisions about one platform's models, as one identity."""

    # --- shared machinery ------------------------------------------------------------------
    @contextmanager
    def _model_lock(self, model: str) -> Iterator[psycopg.Connection]:
        """Hold the model's decision lock for the whole decision (released if we die)."""
        conn = psycopg.connect(pgstac_url(self.settings), autocommit=True)
        try:
            key = f"geomlops.decision:{model}"
            got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
            if not got or not got[0]:
                raise ConflictError(
                    f"another decision about {model} is in progress",
                    hint="wait for it to finish, then look at `geomlops audit " + model + "`",
                )
            try:
                yield conn
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
        finally:
            conn.close()

    def _desired(self, conn: psycopg.Connection, model: str) -> DesiredState:
        return desired_state(audit.entries(conn, model))

    def _reconciler(self, model: str) -> Reconciler:
        return Reconciler(model, self.mlflow, self.catalog)

    def _require_model(self, model: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.mlflow.get_registered_model(model)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise  # MLflow unreachable is not "no such model" (the CLI names the service)
            raise NotFoundError(
                f"no registered model named {model!r}",
                hint="list models with `geomlops catalog search --collection models`",
            ) from None

    def _version_item(self, model: str, version: str) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException

        self._require_model(model)
        try:
            self.mlflow.get_model_version(model, version)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise NotFoundError(f"{model} has no version {version!r} in the registry") from None
        try:
            return self.catalog.get_item_dict(MODELS, model_item_id(model, version))
        except NotFoundError:
            raise NotFoundError(
                f"{model} version {version} has no item in the catalog "
                f"({model_item_id(model, version)})",
                hint="versions become candidates through the training workflow",
            ) from None

    @staticmethod
    def _require_role(identity: Identity, action: str) -> None:
        if not identity.has_any(Role.APPROVER):
            raise AuthError(
                f"{identity.name!r} may not {action}: that needs the approver role",
                hint="use the key of an approver (`geomlops keys create NAME --role approver`)",
            )

    @staticmethod
    def _require_reason(reason: str) -> str:
        reason = (reason or "").strip()
        if not reason:
            raise ValidationFailed(
                "a decision needs a reason", hint="say why, e.g. --reason 'IoU 0.80 on Spain'"
            )
        return reason

    def _decide(self, identity: Identity, model: str, check: Any, make_entry: Any) -> Outcome:
        """Lock, repair leftovers, check, record, apply: the shape of every decision."""
        with self._model_lock(model) as conn:
            reconciler = self._reconciler(model)
            repaired = reconciler.run(self._desired(conn, model), repair=True)
            check(conn)
            with conn.transaction():
                entry = audit.append(conn, make_entry(conn))
                if repaired:
                    audit.append(
                        conn,
                        AuditEntry(
                            identity.name,
                            Action.REPAIR,
                            model,
                            details={"fixed": [str(d) for d in repaired]},
                        ),
                    )
            applied = reconciler.run(self._desired(conn, model), repair=True)
        return Outcome(entry.action, model, entry.version, identity.name, entry, repaired, applied)

    # --- the decisions ---------------------------------------------------------------------
    def promote(self, model: str, version: str, reason: str) -> Outcome:
        """Make ``version`` the production version of ``model``."""
        identity = self.catalog.whoami()
        self._require_role(identity, "promote models")
        reason = self._require_reason(reason)
        self._version_item(model, version)

        def check(conn: psycopg.Connection) -> None:
            fresh = self.catalog.get_item_dict(MODELS, model_item_id(model, version))
            props = fresh["properties"]
            stage = props.get(STAGE_PROPERTY)
            if stage != Stage.CANDIDATE:
                raise ConflictError(
                    f"{model} version {version} is {stage or 'of no stage'}, not a candidate",
                    hint="only candidates can be promoted; `geomlops rollback` restores an "
                    "earlier production version",
                )
            record = training_record(conn, model, version)
            self._check_separation(identity, record, props, model, version)
            self._check_gates(record, model, version)

        def entry(conn: psycopg.Connection) -> AuditEntry:
            current = self._desired(conn, model).production
            record = training_record(conn, model, version)
            return AuditEntry(
                identity.name,
                Action.PROMOTE,
                model,
                version,
                reason=reason,
                details={
                    "previous": current.version if current else None,
                    "metrics": evaluation_metrics(record, self.mlflow),
                    "trained_by": sorted(record.trainers)[0] if record.trainers else None,
                },
            )

        return self._decide(identity, model, check, entry)

    def reject(self, model: str, version: str, reason: str) -> Outcome:
        """End a candidate: it can never be promoted."""
        identity = self.catalog.whoami()
        self._require_role(identity, "reject models")
        reason = self._require_reason(reason)
        self._version_item(model, version)

        def check(conn: psycopg.Connection) -> None:
            stage = self.catalog.get_item_dict(MODELS, model_item_id(model, version))[
                "properties"
            ].get(STAGE_PROPERTY)
            if stage != Stage.CANDIDATE:
                raise ConflictError(
                    f"{model} version {version} is {stage or 'of no stage'}, not a candidate",
                    hint="only candidates can be rejected",
                )

        return self._decide(
            identity,
            model,
            check,
            lambda conn: AuditEntry(identity.name, Action.REJECT, model, version, reason=reason),
        )

    def rollback(self, model: str, reason: str) -> Outcome:
        """Put the previous production version back (recorded, and gated by an approver)."""
        identity = self.catalog.whoami()
        self._require_role(identity, "roll back models")
        reason = self._require_reason(reason)
        self._require_model(model)
        target: dict[str, str] = {}

        def check(conn: psycopg.Connection) -> None:
            desired = self._desired(conn, model)
            if desired.production is None:
                raise ConflictError(f"{model} has no production version to roll back from")
            if desired.production.predecessor is None:
                raise ConflictError(
                    f"{model} version {desired.production.version} has no earlier production "
                    "version to roll back to"
                )
            target["from"] = desired.production.version
            target["to"] = desired.production.predecessor

        return self._decide(
            identity,
            model,
            check,
            lambda conn: AuditEntry(
                identity.name,
                Action.ROLLBACK,
                model,
                target["to"],
                reason=reason,
                details={"previous": target["from"]},
            ),
        )

    def _has_registered_model(self, model: str) -> bool:
        try:
            self._require_model(model)
        except NotFoundError:
            return False
        return True

    def models(self) -> list[str]:
        """Every model either side knows of: MLflow's registered models, the package items."""
        names = {m.name for m in self.mlflow.search_registered_models()}
        for item in self.catalog.iter_search(collections=[MODELS]):
            package = item.get("properties", {}).get(prop.PACKAGE)
            if package:
                names.add(str(package))
        return sorted(names)

    def reconcile(self, model: str, *, repair: bool) -> list[Difference]:
        """Differences between the record and MLflow/STAC; fixed when ``repair``.

        The registration is compared first (:mod:`.registrations`): a registered model
        without its package item, or the reverse, is what a registration broken half-way
        leaves, and no decision in the log would reveal it.
        """
        check = RegistrationCheck(model, self.mlflow, self.catalog)
        if not repair:
            found = check.run(repair=False)
            if not self._has_registered_model(model):
                if not found:
                    self._require_model(model)  # the NotFoundError naming the model
                return found
            conn = psycopg.connect(pgstac_url(self.settings))
            with conn:
                desired = self._desired(conn, model)
            return found + self._reconciler(model).run(desired, repair=False)
        identity = self.catalog.whoami()
        self._require_role(identity, "repair model records")
        with self._model_lock(model) as conn:
            fixed = check.run(repair=True)
            if self._has_registered_model(model):
                fixed += self._reconciler(model).run(self._desired(conn, model), repair=True)
            if fixed:
                with conn.transaction():
                    audit.append(
                        conn,
                        AuditEntry(
                            identity.name,
                            Action.REPAIR,
                            model,
                            details={"fixed": [str(d) for d in fixed]},
                        ),
                    )
        return fixed

    # --- rules ------------------------------------------------------------------------------
    # Trainer, metrics and gates come from the records (governance/record.py), never from
    # the version item alone: an item is a mirror anyone with write access once could edit.
    @staticmethod
    def _check_separation(
        identity: Identity,
        record: TrainingRecord,
        props: dict[str, Any],
        model: str,
        version: str,
    ) -> None:
        named = {props.get(prop.TRAINED_BY), props.get(prop.REGISTERED_BY)} - {None}
        if identity.name in record.trainers | named:
            role = (
                "trained"
                if identity.name in record.trainers | {props.get(prop.TRAINED_BY)}
                else "registered"
            )
            raise AuthError(
                f"{identity.name!r} {role} {model} version {version} and cannot also approve it",
                hint="a second person with the approver role must promote it",
            )

    def _check_gates(self, record: TrainingRecord, model: str, version: str) -> None:
        gates = package_gates(self.catalog, self.mlflow, model, version)
        meet_gates(gates, evaluation_metrics(record, self.mlflow), model, version)
