"""A training run follows the decision about its model version, however that was taken.

``geomlops-train`` ends suspended at ``approve``. An approver may decide through the run
(`geomlops workflows resume`), directly (`geomlops promote` / `geomlops reject`) or on the
gateway's review page; a direct decision used to leave the run suspended forever, and
stopping it then read ``Failed`` for a version that was in production. Here the run is
resumed with the decision instead (``decision=approved`` ends it Succeeded at ``approved``,
``decision=rejected`` Succeeded at ``rejected``). Governance knows nothing of workflows
(DESIGN.md §2), so this wiring is the doors' (the CLI and the gateway call the same
function): it reads the decision from the catalog and speaks to Argo through
:class:`~geomlops.workflows.argo.ArgoServer`, as the credential in the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.model import properties as prop
from geomlops.model.stages import STAGE_PROPERTY, Stage

if TYPE_CHECKING:
    from geomlops.settings import Settings

DECIDED = {
    Stage.PRODUCTION.value: "approved",
    Stage.DEPRECATED.value: "approved",
    Stage.REJECTED.value: "rejected",
}
"""The ``decision`` a run is resumed with, by the stage its version reached."""


@dataclass(frozen=True)
class Settled:
    """What became of the training run of a decided version (for a door to report)."""

    run: str
    decision: str
    phase: str | None = None
    """The run's final phase once resumed; None when it was not waiting (nothing to do)."""
    problem: str | None = None
    """Why the run could not be resumed (the decision still stands)."""

    @property
    def resume_command(self) -> str:
        """The command that finishes the run by hand, when it could not be resumed."""
        from geomlops.workflows.templates.train import DECISION

        return f"geomlops workflows resume {self.run} -p {DECISION}={self.decision}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "decision": self.decision,
            "phase": self.phase,
            "problem": self.problem,
            "resume": self.resume_command if self.problem else None,
        }


def decision_of_run(run: str, settings: Settings) -> str | None:
    """``approved``/``rejected`` when ``run`` trained a version that has been decided on.

    None for any other run: not a training run, no version registered yet, or a candidate.
    """
    from geomlops import objects
    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.collections import MODELS
    from geomlops.connections import get_connections
    from geomlops.workflows.templates.train import run_uri

    try:
        registered = objects.read_json(
            get_connections(settings), f"{run_uri(settings, run)}/register.json"
        )
        with CatalogClient.from_settings(settings) as catalog:
            item = catalog.get_item_dict(MODELS, registered["item_id"])
    except NotFoundError:
        return None
    return DECIDED.get(str(item["properties"].get(STAGE_PROPERTY)))


def settle_decided_run(run: str, decision: str, settings: Settings) -> dict[str, Any] | None:
    """Resume ``run`` at its ``approve`` step with ``decision``; its final status.

    None when the run is not waiting there (it was resumed or stopped before).
    """
    from geomlops.workflows.argo import ArgoServer
    from geomlops.workflows.templates.train import APPROVE, DECISION

    backend = ArgoServer(settings)
    status = backend.status(run)
    waiting = [n for n in status["nodes"] if n["suspended"] and n.get("displayName") == APPROVE]
    if not status["suspended"] or not waiting:
        return None
    backend.resume(run, APPROVE, {DECISION: decision})
    return backend.wait(run, until_finished=True)


def settle_run_of(model: str, version: str, settings: Settings) -> Settled | None:
    """After a promotion or rejection of ``model`` ``version``: let its training run end.

    The decision is already recorded and applied; None when the version names no run or is
    undecided, or its run is gone. A run that cannot be reached comes back with a
    ``problem`` (the decision still stands).
    """
    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.collections import MODELS
    from geomlops.model.ids import model_item_id

    with CatalogClient.from_settings(settings) as catalog:
        props = catalog.get_item_dict(MODELS, model_item_id(model, version))["properties"]
    run = props.get(prop.WORKFLOW)
    decision = DECIDED.get(str(props.get(STAGE_PROPERTY)))
    if not run or decision is None:
        return None
    try:
        final = settle_decided_run(str(run), decision, settings)
    except NotFoundError:
        return None  # the run is gone (deleted, or on another Argo server): nothing waits
    except GeomlopsError as exc:
        return Settled(str(run), decision, problem=str(exc))
    return Settled(str(run), decision, phase=None if final is None else str(final["phase"]))
