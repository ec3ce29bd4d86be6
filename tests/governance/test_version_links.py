"""Version links after promotions and rollbacks read older -> newer, whatever the order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from geomlops.audit import Action, AuditEntry
from geomlops.catalog.client import CatalogClient
from geomlops.governance.reconcile import Reconciler, decision_tags
from geomlops.governance.state import desired_state

MODEL = "flood-water-s2"


@pytest.fixture
def reconciler() -> Iterator[Reconciler]:
    # Only builds hrefs from the catalog's address: nothing is requested.
    with CatalogClient("http://catalog.test") as catalog:
        yield Reconciler(MODEL, None, catalog)


def _item(version: str) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": f"{MODEL}-mv{version}",
        "properties": {"geomlops:stage": "candidate"},
        "links": [],
    }


def _links(item: dict[str, Any]) -> dict[str, str]:
    return {
        link["rel"]: link["href"].rsplit("-mv", 1)[-1]
        for link in item["links"]
        if link["rel"].endswith("-version")
    }


def _decide(*decisions: tuple[Action, str]) -> Any:
    return desired_state(AuditEntry("alice", action, MODEL, v) for action, v in decisions)


def test_after_a_rollback_links_still_point_from_older_to_newer(reconciler: Reconciler) -> None:
    desired = _decide((Action.PROMOTE, "1"), (Action.PROMOTE, "2"), (Action.ROLLBACK, "1"))
    one = reconciler.expected_item(_item("1"), "1", desired)
    two = reconciler.expected_item(_item("2"), "2", desired)
    assert one["properties"]["geomlops:stage"] == "production"
    assert two["properties"]["geomlops:stage"] == "deprecated"
    # Version 1 comes before 2: 2 is not its predecessor, and 1 is not 2's successor.
    assert _links(one) == {"successor-version": "2"}
    assert _links(two) == {"predecessor-version": "1", "latest-version": "1"}


def test_plain_promotions_and_rejected_versions(reconciler: Reconciler) -> None:
    desired = _decide(
        (Action.PROMOTE, "1"), (Action.REJECT, "2"), (Action.PROMOTE, "3"), (Action.PROMOTE, "4")
    )
    items = {v: reconciler.expected_item(_item(v), v, desired) for v in ("1", "2", "3", "4")}
    assert _links(items["1"]) == {"successor-version": "3", "latest-version": "4"}
    assert _links(items["2"]) == {}  # rejected: never released, not in the chain
    assert _links(items["3"]) == {
        "predecessor-version": "1",
        "successor-version": "4",
        "latest-version": "4",
    }
    assert _links(items["4"]) == {"predecessor-version": "3"}


def test_rolling_back_past_two_versions(reconciler: Reconciler) -> None:
    desired = _decide(
        (Action.PROMOTE, "1"),
        (Action.PROMOTE, "2"),
        (Action.PROMOTE, "3"),
        (Action.ROLLBACK, "2"),
        (Action.ROLLBACK, "1"),
    )
    links = {v: _links(reconciler.expected_item(_item(v), v, desired)) for v in ("1", "2", "3")}
    assert links["1"] == {"successor-version": "2"}
    assert links["2"] == {
        "predecessor-version": "1",
        "successor-version": "3",
        "latest-version": "1",
    }
    assert links["3"] == {"predecessor-version": "2", "latest-version": "1"}


def test_decision_tags_carry_the_last_decision_about_each_version() -> None:
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    desired = desired_state(
        [
            AuditEntry("alice", Action.PROMOTE, MODEL, "1", reason="IoU 0.81", at=at),
            AuditEntry("bob", Action.REJECT, MODEL, "2", reason="misses the delta", at=at),
            AuditEntry("bob", Action.PROMOTE, MODEL, "3", reason="better", at=at),
        ]
    )
    assert decision_tags("1", desired) == {  # deprecated: keeps the approval it had
        "geomlops.decision": "promote",
        "geomlops.decision_reason": "IoU 0.81",
        "geomlops.decided_by": "alice",
        "geomlops.decided_at": "2026-05-01T12:00:00+00:00",
    }
    assert decision_tags("2", desired)["geomlops.decision"] == "reject"
    assert decision_tags("2", desired)["geomlops.decision_reason"] == "misses the delta"
    assert decision_tags("3", desired)["geomlops.decided_by"] == "bob"
    assert decision_tags("4", desired) == {}  # a candidate: nothing decided
    rolled = desired_state(
        [
            AuditEntry("alice", Action.PROMOTE, MODEL, "1", reason="first", at=at),
            AuditEntry("alice", Action.PROMOTE, MODEL, "2", reason="second", at=at),
            AuditEntry("carol", Action.ROLLBACK, MODEL, "1", reason="false water", at=at),
        ]
    )
    assert decision_tags("1", rolled)["geomlops.decision"] == "rollback"
    assert decision_tags("1", rolled)["geomlops.decision_reason"] == "false water"
    assert decision_tags("2", rolled)["geomlops.decision_reason"] == "second"
