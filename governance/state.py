"""What the audit log says a model's versions should be, and what MLflow and STAC say.

The audit log is the record. :func:`desired_state` replays it; :func:`observed_state` reads
the MLflow alias and tags and the STAC items. Promotion, rejection and rollback only append
a decision; :mod:`geomlops.governance.reconcile` then makes MLflow and STAC agree with the
log. So a process killed half-way through applying a decision leaves a state the next
command can tell apart from the record and finish (roll forward), never guess at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from geomlops.audit import Action, AuditEntry
from geomlops.model.stages import Stage


@dataclass(frozen=True)
class Approval:
    """Who put a version into production, when and why."""

    version: str
    approver: str
    at: datetime | None
    reason: str | None
    predecessor: str | None
    action: Action


@dataclass
class DesiredState:
    """A model's versions as the audit log's decisions leave them."""

    production: Approval | None = None
    deprecated: dict[str, str] = field(default_factory=dict)
    """Deprecated version → the version that replaced it."""
    rejected: dict[str, AuditEntry] = field(default_factory=dict)
    history: list[Approval] = field(default_factory=list)
    """Every approval, oldest first (what rollback walks back through)."""

    def stage_of(self, version: str) -> Stage | None:
        """The stage the record gives ``version`` (None: the record says nothing)."""
        if self.production and self.production.version == version:
            return Stage.PRODUCTION
        if version in self.rejected:
            return Stage.REJECTED
        if version in self.deprecated:
            return Stage.DEPRECATED
        return None


def desired_state(entries: Iterable[AuditEntry]) -> DesiredState:
    """Replay a model's decisions, oldest first."""
    state = DesiredState()
    for entry in entries:
        if entry.version is None:
            continue
        if entry.action in (Action.PROMOTE, Action.ROLLBACK):
            previous = state.production.version if state.production else None
            if previous is not None and previous != entry.version:
                state.deprecated[previous] = entry.version
            state.deprecated.pop(entry.version, None)
            approval = Approval(
                version=entry.version,
                approver=entry.actor,
                at=entry.at,
                reason=entry.reason,
                predecessor=previous,
                action=entry.action,
            )
            state.production = approval
            state.history.append(approval)
        elif entry.action == Action.REJECT:
            state.rejected[entry.version] = entry
    return state
