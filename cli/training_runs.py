"""The CLI's report of a training run following a decision (the logic: workflows).

``geomlops promote`` / ``geomlops reject`` resume the training run that waits for the
decision through :func:`geomlops.workflows.training_runs.settle_run_of` (the gateway's
review page calls the same function), and say here what became of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from geomlops.settings import Settings

err = Console(stderr=True, highlight=False)


def settle_after_decision(model: str, version: str, settings: Settings) -> None:
    """After `promote`/`reject` of ``model`` ``version``: let its training run end with it.

    A run that cannot be reached is reported with the command that finishes it, and the
    decision still stands (exit 0).
    """
    from geomlops.workflows.training_runs import settle_run_of

    settled = settle_run_of(model, version, settings)
    if settled is None:
        return
    if settled.problem is not None:
        err.print(
            f"[yellow]the training run {settled.run} could not be resumed:[/] {settled.problem}"
        )
        err.print(f"  finish it with: {settled.resume_command}")
    elif settled.phase is not None:
        err.print(f"training run {settled.run} resumed as {settled.decision}: {settled.phase}")
