"""`geomlops infer status` follows the run's phase: no FAILED while the plan step works."""

from __future__ import annotations

from typing import Any

import pytest

from geomlops.workflows.inference.progress import failure_message, run_status

WAITING = {"tasks_count_total": 4, "tasks_count_waiting": 3, "tasks_count_failed": 0}
GAVE_UP = {"tasks_count_total": 4, "tasks_count_waiting": 0, "tasks_count_failed": 2}
ALL_DONE = {"tasks_count_total": 4, "tasks_count_waiting": 0, "tasks_count_failed": 0}


@pytest.mark.parametrize(
    ("planned", "published", "counts", "phase", "expected"),
    [
        # The plan step is still running: nothing is planned yet, and nothing has failed.
        (False, False, {}, "Pending", "PLANNING"),
        (False, False, {}, "Running", "PLANNING"),
        # The plan step failed (no imagery for the dates, say): the run has failed.
        (False, False, {}, "Failed", "FAILED"),
        (False, False, {}, "Error", "FAILED"),
        (False, False, {}, None, "FAILED"),  # unknown to the server and never planned
        (True, False, WAITING, "Running", "RUNNING"),
        # A shard gave up, but the workflow is still retrying it: not over yet.
        (True, False, GAVE_UP, "Running", "RUNNING"),
        (True, False, GAVE_UP, "Failed", "FAILED"),
        (True, False, GAVE_UP, None, "FAILED"),
        (True, False, ALL_DONE, "Running", "PUBLISHING"),
        # Every tile done, yet the workflow ended without publishing (publish failed).
        (True, False, ALL_DONE, "Failed", "FAILED"),
        (True, True, ALL_DONE, "Succeeded", "COMPLETED"),
        (True, True, ALL_DONE, None, "COMPLETED"),
    ],
)
def test_status_follows_the_phase(
    planned: bool, published: bool, counts: dict[str, Any], phase: str | None, expected: str
) -> None:
    assert (
        run_status(planned=planned, published=published, counts=counts, workflow_phase=phase)
        == expected
    )


def test_a_failed_run_says_why_from_its_failed_step() -> None:
    workflow = {
        "phase": "Failed",
        "message": "child 'x.plan' failed",
        "nodes": [
            {"type": "Retry", "phase": "Failed", "message": "No more retries left"},
            {"type": "Pod", "phase": "Succeeded", "message": ""},
            {
                "type": "Pod",
                "phase": "Failed",
                "message": "no imagery scenes intersect the AOI between 2030-01-01 and 2030-02-01",
            },
        ],
    }
    assert failure_message(workflow) == (
        "no imagery scenes intersect the AOI between 2030-01-01 and 2030-02-01"
    )
    assert failure_message({**workflow, "nodes": []}) == "child 'x.plan' failed"
    assert failure_message({**workflow, "phase": "Running"}) is None
    assert failure_message(None) is None


def test_a_refused_plan_is_failed_while_the_exit_handler_still_runs() -> None:
    """The plan step recorded a user error: no retry will come, so the run has failed."""
    assert (
        run_status(
            planned=False, published=False, counts={}, workflow_phase="Running", plan_refused=True
        )
        == "FAILED"
    )
