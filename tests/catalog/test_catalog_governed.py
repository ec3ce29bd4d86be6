"""The `models` write rules on their own (no server): what each identity may change.

The same rules are tried over real HTTP, as an attacker would, in
tests/governance/test_security.py.
"""

from __future__ import annotations

import pytest

from geomlops.audit import Action
from geomlops.catalog.governed import (
    Refused,
    check_change,
    check_new,
    check_recorded,
    recorded_stage,
)
from geomlops.catalog.identity import Identity, Role
from geomlops.model import properties as prop
from geomlops.model.stages import Stage

WRITER = Identity("wendy", frozenset({Role.WRITER}), "api-key")
APPROVER = Identity("alice", frozenset({Role.APPROVER}), "api-key")
CANDIDATE = {prop.STAGE: "candidate", prop.TRAINED_BY: "wendy", prop.GATES: {"m": {"min": 0.7}}}


def test_the_recorded_stage_replays_decisions_like_governance() -> None:
    log = [
        (Action.PROMOTE.value, "1"),
        (Action.REJECT.value, "2"),
        (Action.PROMOTE.value, "3"),
        (Action.ROLLBACK.value, "1"),
    ]
    assert recorded_stage(log, "1") == Stage.PRODUCTION
    assert recorded_stage(log, "2") == Stage.REJECTED
    assert recorded_stage(log, "3") == Stage.DEPRECATED
    assert recorded_stage(log, "4") is None


@pytest.mark.parametrize(
    ("props", "words"),
    [
        ({prop.STAGE: "production"}, "not 'production'"),
        ({prop.STAGE: "deprecated"}, "not 'deprecated'"),
        ({prop.STAGE: "candidate", prop.APPROVED_BY: "alice"}, prop.APPROVED_BY),
        ({prop.REJECTED_BY: "bob"}, prop.REJECTED_BY),
    ],
)
def test_a_new_item_enters_only_as_registration_or_training_write_it(
    props: dict[str, object], words: str
) -> None:
    with pytest.raises(Refused, match=words):
        check_new({"id": "m-mv1", "properties": props})


def test_new_items_as_registration_and_training_write_them_pass() -> None:
    for stage in ("registered", "candidate"):
        check_new({"id": "m-mv1", "properties": {**CANDIDATE, prop.STAGE: stage}})
    check_new({"id": "plain", "properties": {"title": "no stage at all"}})


def test_record_fields_never_change_and_decisions_need_an_approver() -> None:
    for identity in (WRITER, APPROVER):
        for field, value in ((prop.TRAINED_BY, "x"), (prop.GATES, {"m": {"min": 0.1}})):
            with pytest.raises(Refused, match="cannot be changed"):
                check_change(identity, "m-mv1", CANDIDATE, {**CANDIDATE, field: value})
        with pytest.raises(Refused, match="cannot be changed"):
            check_change(identity, "m-mv1", {prop.STAGE: "candidate"}, CANDIDATE)
    with pytest.raises(Refused, match="not an approver"):
        check_change(WRITER, "m-mv1", CANDIDATE, {**CANDIDATE, prop.STAGE: "production"})
    assert check_change(WRITER, "m-mv1", CANDIDATE, {**CANDIDATE, "title": "t"}) == []
    assert check_change(APPROVER, "m-mv1", CANDIDATE, {**CANDIDATE, prop.STAGE: "x"}) == [
        prop.STAGE
    ]


def test_an_approver_sets_only_the_stage_the_audit_log_records() -> None:
    promoted = [(Action.PROMOTE.value, "1")]
    check_recorded("m-mv1", "candidate", "production", promoted)
    check_recorded("m-mv2", "production", "candidate", promoted)  # a repair: undecided
    with pytest.raises(Refused, match="audit log records"):
        check_recorded("m-mv2", "candidate", "production", promoted)
    with pytest.raises(Refused, match="audit log records"):
        check_recorded("m-mv1", "production", "rejected", promoted)
    with pytest.raises(Refused, match="not a model version item"):
        check_recorded("m-0.1.0", "registered", "production", promoted)
