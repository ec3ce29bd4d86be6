"""A training run follows the decision about its model version, however that was taken.

``geomlops-train`` ends suspended at ``approve``. An approver may decide through the run
(`geomlops workflows resume`) or directly (`geomlops promote` / `geomlops reject`); a direct
decision used to leave the run suspended forever, and stopping it then read ``Failed`` for a
version that was in production. Here the run is resumed with the decision instead
(``decision=approved`` ends it Succeeded at ``approved``, ``decision=rejected`` Succeeded at
``rejected``). Governance knows nothing of workflows (DESIGN.md §2), so this wiring is the
CLI's: it reads the decision from the catalog and speaks to Argo through
:class:`~geomlops.workflows.argo.ArgoServer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console

from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.model import properties as prop
from geomlops.model.stages import STAGE_PROPERTY, Stage

if TYPE_CHECKING:
    from geomlops.settings import Settings

err = Console(stderr=True, highlight=False)
DECIDED = {
    Stage.PRODUCTION.value: "approved",
    Stage.DEPRECATED.value: "approved",
    Stage.REJECTED.value: "rejected",
}
"""The ``decision`` a run is resumed with, by the stage its version reached."""


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


def settle_after_decision(model: str, version: str, settings: Settings) -> None:
    """After `promote`/`reject` of ``model`` ``version``: let its training run end with it.

    The decision is already recorded and applied; a run that cannot be reached is reported
    with the command that finishes it, and the decision still stands (exit 0).
    """
    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.collections import MODELS
    from geomlops.model.ids import model_item_id

    with CatalogClient.from_settings(settings) as catalog:
        props = catalog.get_item_dict(MODELS, model_item_id(model, version))["properties"]
    run = props.get(prop.WORKFLOW)
    decision = DECIDED.get(str(props.get(STAGE_PROPERTY)))
    if not run or decision is None:
        return
    try:
        final = settle_decided_run(str(run), decision, settings)
    except NotFoundError:
        return  # the run is gone (deleted, or on another Argo server): nothing waits
    except GeomlopsError as exc:
        err.print(f"[yellow]the training run {run} could not be resumed:[/] {exc}")
        err.print(f"  finish it with: geomlops workflows resume {run} -p {_param(decision)}")
        return
    if final is not None:
        err.print(f"training run {run} resumed as {decision}: {final['phase']}")


def _param(decision: str) -> str:
    from geomlops.workflows.templates.train import DECISION

    return f"{DECISION}={decision}"
