"""The audit trail is append-only, ordered, and shows tampering."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from geomlops import audit
from geomlops.audit import Action, AuditEntry
from geomlops.catalog.db import pgstac_connection
from geomlops.connections import Connections

pytestmark = pytest.mark.stack


@pytest.fixture
def model(stack: Connections) -> str:
    return f"audit-test-{uuid.uuid4().hex[:8]}"


def test_entries_are_appended_in_order_and_chained(model: str) -> None:
    with pgstac_connection() as conn:
        first = audit.append(conn, AuditEntry("alice", Action.REGISTER, model, "1"))
        second = audit.append(
            conn,
            AuditEntry("bob", Action.PROMOTE, model, "1", reason="IoU 0.8", details={"iou": 0.8}),
        )
    with pgstac_connection() as conn:
        stored = list(audit.entries(conn, model))
        assert audit.verify(conn) == []
    assert [e.action for e in stored] == [Action.REGISTER, Action.PROMOTE]
    assert stored[1].prev_hash == first.hash
    assert stored[1].hash == second.hash
    assert stored[1].details == {"iou": 0.8} and stored[1].reason == "IoU 0.8"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE geomlops.audit_log SET reason = 'rewritten' WHERE model = %s",
        "DELETE FROM geomlops.audit_log WHERE model = %s",
    ],
)
def test_history_cannot_be_edited_even_by_a_superuser(model: str, statement: str) -> None:
    with pgstac_connection() as conn:
        audit.append(conn, AuditEntry("alice", Action.REGISTER, model, "1", reason="first"))
    # The platform's role has no right to; the owner (a superuser here) is stopped by triggers.
    for owner, message in ((False, "permission denied"), (True, "append-only")):
        refused = pytest.raises(psycopg.errors.InsufficientPrivilege, match=message)
        with refused, pgstac_connection(owner=owner) as conn:
            conn.execute(statement, (model,))
        refused = pytest.raises(psycopg.errors.InsufficientPrivilege, match=message)
        with refused, pgstac_connection(owner=owner) as conn:
            conn.execute("TRUNCATE geomlops.audit_log")
    with pgstac_connection() as conn:
        assert [e.reason for e in audit.entries(conn, model)] == ["first"]


def test_a_failed_decision_leaves_no_entry(model: str) -> None:
    with pytest.raises(RuntimeError), pgstac_connection() as conn:
        audit.append(conn, AuditEntry("alice", Action.PROMOTE, model, "3"))
        raise RuntimeError("the promotion failed after its audit line was written")
    with pgstac_connection() as conn:
        assert list(audit.entries(conn, model)) == []


def test_tampering_outside_the_platform_is_detected(model: str) -> None:
    with pgstac_connection() as conn:
        audit.append(conn, AuditEntry("alice", Action.REJECT, model, "2", reason="poor IoU"))
    # Someone with the owner's access disables the guard and rewrites history by hand.
    with pgstac_connection(owner=True) as conn:
        conn.execute("ALTER TABLE geomlops.audit_log DISABLE TRIGGER audit_log_no_update_delete")
        conn.execute(
            "UPDATE geomlops.audit_log SET reason = 'great IoU' WHERE model = %s", (model,)
        )
        conn.execute("ALTER TABLE geomlops.audit_log ENABLE TRIGGER audit_log_no_update_delete")
        problems = audit.verify(conn)
    assert any("altered" in p for p in problems)

    # Put history back so the chain is whole for the rest of the session.
    with pgstac_connection(owner=True) as conn:
        conn.execute("ALTER TABLE geomlops.audit_log DISABLE TRIGGER audit_log_no_update_delete")
        conn.execute("UPDATE geomlops.audit_log SET reason = 'poor IoU' WHERE model = %s", (model,))
        conn.execute("ALTER TABLE geomlops.audit_log ENABLE TRIGGER audit_log_no_update_delete")
        assert audit.verify(conn) == []


def test_registration_is_audited_once(stack: Connections) -> None:
    from pathlib import Path

    from geomlops.registration.register import register_package

    repo = Path(__file__).resolve().parents[2]
    package = repo / "model_packages" / "flood-water-s1"
    register_package(package, git_url=str(repo))
    register_package(package, git_url=str(repo))  # unchanged: nothing more to record
    with pgstac_connection() as conn:
        registered = [
            e for e in audit.entries(conn, "flood-water-s1") if e.action == Action.REGISTER
        ]
    # Whichever test registered it first (all as admin), exactly once.
    assert len(registered) == 1
    assert registered[0].actor == "admin"
    assert registered[0].details["item"] == "flood-water-s1-0.1.0"


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from geomlops.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_verify_says_intact_or_where_the_chain_breaks(model: str) -> None:
    with pgstac_connection() as conn:
        appended = audit.append(conn, AuditEntry("alice", Action.REJECT, model, "5", reason="a"))
    intact = _cli("audit", model, "--verify")
    assert intact.exit_code == 0, intact.output
    assert "chain intact" in intact.stderr and "entries verified" in intact.stderr

    with pgstac_connection(owner=True) as conn:
        conn.execute("ALTER TABLE geomlops.audit_log DISABLE TRIGGER audit_log_no_update_delete")
        conn.execute("UPDATE geomlops.audit_log SET reason = 'b' WHERE model = %s", (model,))
        conn.execute("ALTER TABLE geomlops.audit_log ENABLE TRIGGER audit_log_no_update_delete")
    try:
        broken = _cli("audit", "--verify", "--json")
        assert broken.exit_code == 1
        assert "chain BROKEN" in broken.stderr
        assert f"first: entry {appended.id}: content does not match its hash" in broken.stderr
        json.loads(broken.stdout)  # the verdict stays off stdout: it is still JSON
    finally:
        with pgstac_connection(owner=True) as conn:
            conn.execute(
                "ALTER TABLE geomlops.audit_log DISABLE TRIGGER audit_log_no_update_delete"
            )
            conn.execute("UPDATE geomlops.audit_log SET reason = 'a' WHERE model = %s", (model,))
            conn.execute("ALTER TABLE geomlops.audit_log ENABLE TRIGGER audit_log_no_update_delete")


def test_package_versions_and_model_versions_are_apart(stack: Connections) -> None:
    from pathlib import Path

    from geomlops.registration.register import register_package

    repo = Path(__file__).resolve().parents[2]
    register_package(repo / "model_packages" / "flood-water-s1", git_url=str(repo))
    shown = _cli("audit", "flood-water-s1", "--json")
    assert shown.exit_code == 0, shown.output
    (registered,) = [e for e in json.loads(shown.stdout) if e["action"] == "register"]
    assert registered["model_version"] is None
    assert registered["package_version"] == "0.1.0"
    assert "version" not in registered  # no column that means two things
    with pgstac_connection() as conn:
        (entry,) = [e for e in audit.entries(conn, "flood-water-s1") if e.action == Action.REGISTER]
    assert entry.version is None  # the column holds model versions only


def test_older_registrations_read_as_package_versions() -> None:
    """Entries written before the fix carry 0.1.0 in `version`; the chain forbids rewriting."""
    legacy = AuditEntry("admin", Action.REGISTER, "m", "0.1.0", details={"item": "m-0.1.0"})
    assert (legacy.model_version, legacy.package_version) == (None, "0.1.0")
    trained = AuditEntry("trainer", Action.TRAIN, "m", "2")
    assert (trained.model_version, trained.package_version) == ("2", None)
    shown = legacy.as_dict()
    assert shown["model_version"] is None and shown["package_version"] == "0.1.0"
