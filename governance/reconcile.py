"""Make MLflow and the catalog agree with the audit log, or report where they do not.

Every decision is applied by this one routine, and so is every repair: after a crash
between moving the MLflow alias and updating the STAC items, the next governance command
finds the difference here and finishes the decision the log records.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from geomlops.catalog.client import CatalogClient, comparable, without_server_links
from geomlops.catalog.collections import MODELS
from geomlops.errors import NotFoundError
from geomlops.governance.state import DesiredState
from geomlops.model import properties as prop
from geomlops.model.ids import model_item_id
from geomlops.model.stages import PRODUCTION_ALIAS, STAGE_PROPERTY, STAGE_TAG, Stage
from geomlops.model.tracking import (
    DECIDED_AT_TAG,
    DECIDED_BY_TAG,
    DECISION_REASON_TAG,
    DECISION_TAG,
)

VERSION_LINKS = ("latest-version", "predecessor-version", "successor-version")
APPROVAL_PROPERTIES = (
    prop.APPROVED_BY,
    prop.APPROVED_AT,
    prop.APPROVAL_REASON,
    prop.APPROVAL_ACTION,
)


@dataclass(frozen=True)
class Difference:
    """One place where MLflow or the catalog disagrees with the record."""

    where: str
    found: str
    expected: str
    source: str = "the audit log"
    """What says how it should be: the audit log, or the other half of a registration."""

    def __str__(self) -> str:
        return f"{self.where}: found {self.found}, {self.source} says {self.expected}"


class Reconciler:
    """Compares (and optionally repairs) one model against its desired state."""

    def __init__(self, model: str, mlflow_client: Any, catalog: CatalogClient) -> None:
        self.model = model
        self.mlflow = mlflow_client
        self.catalog = catalog

    # --- what the record implies -----------------------------------------------------------
    def _item_href(self, version: str) -> str:
        item_id = model_item_id(self.model, version)
        return f"{self.catalog.stac_url}/collections/{MODELS}/items/{quote(item_id)}"

    def _version_link(self, rel: str, version: str) -> dict[str, str]:
        return {
            "rel": rel,
            "href": self._item_href(version),
            "type": "application/geo+json",
            "title": f"{self.model} version {version}",
        }

    def expected_item(
        self, item: dict[str, Any], version: str, desired: DesiredState
    ) -> dict[str, Any]:
        """``item`` as the record says it should be (a copy).

        A version the log has no decision about is a ``candidate``, as training left it:
        no approval, no rejection, no version links.
        """
        stage = desired.stage_of(version) or Stage.CANDIDATE
        new = copy.deepcopy(without_server_links(item))
        props = new["properties"]
        links = [link for link in new.get("links", []) if link.get("rel") not in VERSION_LINKS]
        for key in (prop.REJECTED_BY, prop.REJECTED_AT, prop.REJECTION_REASON):
            props.pop(key, None)
        if stage is Stage.CANDIDATE:
            for key in APPROVAL_PROPERTIES:
                props.pop(key, None)
        props[STAGE_PROPERTY] = str(stage)
        production = desired.production
        if stage in (Stage.PRODUCTION, Stage.DEPRECATED):
            links += self._released_links(version, desired)
        if stage is Stage.PRODUCTION and production is not None:
            props["deprecated"] = False
            props[prop.APPROVED_BY] = production.approver
            props[prop.APPROVED_AT] = production.at.isoformat() if production.at else None
            props[prop.APPROVAL_REASON] = production.reason
            props[prop.APPROVAL_ACTION] = str(production.action)
        elif stage is Stage.DEPRECATED:
            props["deprecated"] = True
            if production is not None:
                links.append(self._version_link("latest-version", production.version))
        elif stage is Stage.REJECTED:
            entry = desired.rejected[version]
            props[prop.REJECTED_BY] = entry.actor
            props[prop.REJECTED_AT] = entry.at.isoformat() if entry.at else None
            props[prop.REJECTION_REASON] = entry.reason
        new["links"] = links
        return new

    def _released_links(self, version: str, desired: DesiredState) -> list[dict[str, str]]:
        """``predecessor-version``/``successor-version``: the released neighbours by number.

        The version extension's links order versions, older to newer. They are taken from
        the version numbers of the released versions (in production now or before), not
        from the order of approvals: after a rollback from 2 to 1, version 1's successor
        is still 2 and 2's predecessor still 1. Candidates and rejected versions were
        never released, so the chain steps over them. ``latest-version`` (on deprecated
        versions) names the version in production: the one to use instead.
        """
        released = sorted(self._released(desired), key=_version_key)
        at = released.index(version)
        links = []
        if at > 0:
            links.append(self._version_link("predecessor-version", released[at - 1]))
        if at + 1 < len(released):
            links.append(self._version_link("successor-version", released[at + 1]))
        return links

    @staticmethod
    def _released(desired: DesiredState) -> set[str]:
        versions = set(desired.deprecated)
        if desired.production:
            versions.add(desired.production.version)
        return versions

    # --- comparing and repairing -----------------------------------------------------------
    def _alias_version(self) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.mlflow.get_model_version_by_alias(self.model, PRODUCTION_ALIAS).version)
        except MlflowException:
            return None

    def _versions(self, desired: DesiredState) -> set[str]:
        """Every version: those decided about, and every one the registry holds.

        Undecided versions count too: a candidate whose item or tag says ``production``
        without a decision in the log is exactly what this check exists to find.
        """
        name = self.model.replace("'", "\\'")
        registered = {str(v.version) for v in self.mlflow.search_model_versions(f"name = '{name}'")}
        return self._released(desired) | set(desired.rejected) | registered

    def run(self, desired: DesiredState, *, repair: bool) -> list[Difference]:
        """Every difference found; with ``repair``, each is fixed as it is found."""
        differences: list[Difference] = []
        expected_alias = desired.production.version if desired.production else None
        alias = self._alias_version()
        if alias != expected_alias:
            differences.append(
                Difference(
                    f"MLflow alias {self.model}@{PRODUCTION_ALIAS}",
                    f"version {alias}" if alias else "no alias",
                    f"version {expected_alias}" if expected_alias else "no alias",
                )
            )
            if repair:
                if expected_alias is None:
                    self.mlflow.delete_registered_model_alias(self.model, PRODUCTION_ALIAS)
                else:
                    self.mlflow.set_registered_model_alias(
                        self.model, PRODUCTION_ALIAS, expected_alias
                    )
        for version in sorted(self._versions(desired), key=_version_key):
            stage = str(desired.stage_of(version) or Stage.CANDIDATE)
            mv = self.mlflow.get_model_version(self.model, version)
            if mv.tags.get(STAGE_TAG) != stage:
                differences.append(
                    Difference(
                        f"MLflow tag {STAGE_TAG} of {self.model} v{version}",
                        mv.tags.get(STAGE_TAG) or "no tag",
                        stage,
                    )
                )
                if repair:
                    self.mlflow.set_model_version_tag(self.model, version, STAGE_TAG, stage)
            for tag, value in decision_tags(version, desired).items():
                if mv.tags.get(tag) != value:
                    differences.append(
                        Difference(
                            f"MLflow tag {tag} of {self.model} v{version}",
                            repr(mv.tags[tag]) if tag in mv.tags else "no tag",
                            repr(value),
                        )
                    )
                    if repair:
                        self.mlflow.set_model_version_tag(self.model, version, tag, value)
            item_id = model_item_id(self.model, version)
            try:
                item = self.catalog.get_item_dict(MODELS, item_id)
            except NotFoundError:
                differences.append(Difference(f"STAC item {item_id}", "no item", stage))
                continue
            expected = self.expected_item(item, version, desired)
            if comparable(expected) != comparable(item):
                found = item.get("properties", {}).get(STAGE_PROPERTY)
                differences.append(
                    Difference(
                        f"STAC item {item_id}",
                        f"stage {found}" + (" (stale links or approval)" if found == stage else ""),
                        stage,
                    )
                )
                if repair:
                    self.catalog.upsert_item(expected, MODELS)
        return differences


def decision_tags(version: str, desired: DesiredState) -> dict[str, str]:
    """The ``geomlops.decision*`` tags the record gives MLflow model version ``version``.

    The last decision about it: its rejection, or the approval (promotion or rollback) that
    last put it into production, which a deprecated version keeps. Empty for a version the
    record has not decided about (a candidate).
    """
    if version in desired.rejected:
        entry = desired.rejected[version]
        action, actor, at, reason = entry.action, entry.actor, entry.at, entry.reason
    else:
        approvals = [a for a in desired.history if a.version == version]
        if not approvals:
            return {}
        last = approvals[-1]
        action, actor, at, reason = last.action, last.approver, last.at, last.reason
    return {
        DECISION_TAG: str(action),
        DECISION_REASON_TAG: reason or "",
        DECIDED_BY_TAG: actor,
        DECIDED_AT_TAG: at.isoformat() if at else "",
    }


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 30, version)
