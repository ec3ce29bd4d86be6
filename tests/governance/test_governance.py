"""Human-gated promotion on the local stack: separation of duties, gates, audit, lineage.

Two candidates of the S2 flood model are trained through the real `geomlops-train`
workflow by a `trainer` identity; approvers `alice` and `bob` decide about them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from mlflow.tracking import MlflowClient
from stack_support import api_key
from typer.testing import CliRunner

from geomlops import audit, objects
from geomlops.audit import Action, AuditEntry
from geomlops.catalog.client import CatalogClient
from geomlops.catalog.db import pgstac_connection, pgstac_url
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.datasets import DatasetRegistry
from geomlops.datasets.registry import staged
from geomlops.errors import ConflictError, NotFoundError, ValidationFailed
from geomlops.governance.decisions import Governance
from geomlops.governance.record import meet_gates
from geomlops.model.resolve import resolve_model
from geomlops.registration.register import register_package
from geomlops.settings import get_settings
from geomlops.workflows.templates.train import run_uri

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "flood-water-s2"
runner = CliRunner()


@pytest.fixture(scope="module")
def keys(stack: Connections) -> dict[str, str]:
    """A trainer who is also an approver (so only the separation rule can stop them)."""
    return {
        "trainer": api_key("trainer", "writer", "approver"),
        "alice": api_key("alice", "approver"),
        "bob": api_key("bob", "approver"),
        "carol": api_key("carol", "writer"),
    }


@pytest.fixture(autouse=True)
def _settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo this test's `GEOMLOPS_API_KEY`, then forget the settings read with it."""
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _as(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("GEOMLOPS_API_KEY", key)
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def candidates(keys: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
    """Two candidate versions trained through the workflow by `trainer`."""
    # Registered at this checkout's commit, as every test module does: the first
    # registration of a version wins, so they must agree on what it is.
    register_package(REPO / "model_packages" / MODEL, git_url=str(REPO))
    sample = get_settings().sample_data.sample_data
    assert sample is not None, "the Sen1Floods11 sample is needed (GEOMLOPS_SAMPLE_DATA)"
    with staged([sample / "imagery" / "sen1floods11"], sample) as root:
        dataset, _ = DatasetRegistry().add(root, "sen1floods11", description="Sen1Floods11 chip")
    mp = pytest.MonkeyPatch()
    _as(mp, keys["trainer"])
    # Undone even when the fixture fails or times out: a trainer key left in the
    # environment would submit every later test's runs as the trainer.
    try:
        runs = []
        for epochs in ("8", "8"):
            result = runner.invoke(
                app,
                [
                    "workflows", "submit", "geomlops-train",
                    "-p", f"package={MODEL}", "-p", f"dataset={dataset.tag}",
                    "-p", f"epochs={epochs}", "-p", "device=cpu",
                ],
            )  # fmt: skip
            assert result.exit_code == 2, result.output
            run = result.stdout.strip()
            conn = get_connections_now()
            registered = objects.read_json(conn, f"{run_uri(get_settings(), run)}/register.json")
            runs.append({"run": run, "dataset": dataset, **registered})
    finally:
        mp.undo()
        get_settings.cache_clear()
    yield runs


def get_connections_now() -> Connections:
    from geomlops.connections import get_connections

    return get_connections()


def _item(version: str) -> dict[str, Any]:
    with CatalogClient.from_settings() as catalog:
        return catalog.get_item_dict("models", f"{MODEL}-mv{version}")


def _alias() -> str | None:
    from mlflow.exceptions import MlflowException

    client = MlflowClient(get_connections_now().mlflow_tracking_uri)
    try:
        return str(client.get_model_version_by_alias(MODEL, "production").version)
    except MlflowException:
        return None


def _decisions() -> list[AuditEntry]:
    with pgstac_connection() as conn:
        return [
            e
            for e in audit.entries(conn, MODEL)
            if e.action in (Action.PROMOTE, Action.ROLLBACK, Action.REJECT)
        ]


def test_lifecycle(
    candidates: list[dict[str, Any]], keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = (c["model_version"] for c in candidates)
    assert _item(first)["properties"]["geomlops:trained_by"].startswith("trainer")
    with pgstac_connection() as conn:
        trained = [e for e in audit.entries(conn, MODEL, first) if e.action == Action.TRAIN]
    assert trained and trained[0].actor.startswith("trainer")

    # The session's stack is shared: an earlier test module (the gateway's) may have put
    # a version of this model in production. Decisions here are counted from this point.
    prior, before = _alias(), _decisions()
    # Serving resolves production only; a candidate is served only when named.
    if prior is None:
        with pytest.raises(NotFoundError, match="no production version"):
            resolve_model(MODEL)
    else:
        assert resolve_model(MODEL).version == prior != first
    assert resolve_model(MODEL, first).stage == "candidate"

    # The trainer may not approve their own model, though they hold the approver role.
    _as(monkeypatch, keys["trainer"])
    refused = runner.invoke(app, ["promote", MODEL, first, "--reason", "looks fine to me"])
    assert refused.exit_code == 1
    assert "cannot also approve it" in refused.stderr
    # A writer without the approver role may not either.
    _as(monkeypatch, keys["carol"])
    refused = runner.invoke(app, ["promote", MODEL, first, "--reason", "ok"])
    assert refused.exit_code == 1 and "needs the approver role" in refused.stderr
    # An approver must say why; unknown models and versions are named.
    _as(monkeypatch, keys["alice"])
    for args, message in (
        ([MODEL, first, "--reason", "  "], "needs a reason"),
        (["no-such-model", "1", "--reason", "x"], "no registered model named 'no-such-model'"),
        ([MODEL, "999", "--reason", "x"], "has no version '999'"),
    ):
        refused = runner.invoke(app, ["promote", *args])
        assert refused.exit_code == 1, refused.output
        assert message in refused.stderr
    assert _alias() == prior and _decisions() == before
    assert _item(first)["properties"]["geomlops:stage"] == "candidate"

    # A second identity with the approver role promotes it: alias, item and log agree.
    done = runner.invoke(app, ["promote", MODEL, first, "--reason", "IoU above gate on Spain"])
    assert done.exit_code == 0, done.output
    assert _alias() == first
    props = _item(first)["properties"]
    assert props["geomlops:stage"] == "production" and props["deprecated"] is False
    assert props["geomlops:approved_by"].startswith("alice")
    assert props["geomlops:approval_reason"] == "IoU above gate on Spain"
    (decision,) = _decisions()[len(before) :]
    assert (decision.action, decision.version) == (Action.PROMOTE, first)
    assert decision.actor.startswith("alice")
    assert resolve_model(MODEL).version == first

    # Promoting it again is refused: it is no longer a candidate.
    again = runner.invoke(app, ["promote", MODEL, first, "--reason", "twice"])
    assert again.exit_code == 1 and "not a candidate" in again.stderr

    # The second candidate is approved by resuming its training run, as bob.
    _as(monkeypatch, keys["bob"])
    resumed = runner.invoke(
        app, ["workflows", "resume", candidates[1]["run"], "--reason", "better on the delta"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert _alias() == second
    old = _item(first)
    assert old["properties"]["geomlops:stage"] == "deprecated"
    assert old["properties"]["deprecated"] is True
    links = {link["rel"]: link["href"] for link in old["links"]}
    assert links["latest-version"].endswith(f"{MODEL}-mv{second}")
    new_links = {link["rel"]: link["href"] for link in _item(second)["links"]}
    assert new_links["predecessor-version"].endswith(f"{MODEL}-mv{first}")

    # Rollback puts the first back, recorded and approved.
    rolled = runner.invoke(app, ["rollback", MODEL, "--reason", "false water on solar farms"])
    assert rolled.exit_code == 0, rolled.output
    assert _alias() == first
    assert _item(first)["properties"]["geomlops:stage"] == "production"
    assert _item(second)["properties"]["geomlops:stage"] == "deprecated"
    # The version links still read older -> newer (not the order of approvals).
    first_links = {link["rel"]: link["href"] for link in _item(first)["links"]}
    second_links = {link["rel"]: link["href"] for link in _item(second)["links"]}
    assert first_links["successor-version"].endswith(f"{MODEL}-mv{second}")
    if prior is None:
        assert "predecessor-version" not in first_links
    else:  # the version released before this test's first
        assert first_links["predecessor-version"].endswith(f"{MODEL}-mv{prior}")
    assert second_links["predecessor-version"].endswith(f"{MODEL}-mv{first}")
    assert second_links["latest-version"].endswith(f"{MODEL}-mv{first}")
    assert "successor-version" not in second_links
    assert [(d.action, d.version) for d in _decisions()[len(before) :]] == [
        (Action.PROMOTE, first),
        (Action.PROMOTE, second),
        (Action.ROLLBACK, first),
    ]
    shown = runner.invoke(app, ["audit", MODEL, "--json", "--verify"])
    assert shown.exit_code == 0, shown.output
    assert [e["action"] for e in json.loads(shown.stdout)][-3:] == [
        "promote",
        "promote",
        "rollback",
    ]
    clean = runner.invoke(app, ["reconcile", MODEL])
    assert clean.exit_code == 0, clean.output

    # A crash between moving the alias and updating the catalog: the record says v2 is
    # in production, MLflow agrees, the catalog does not. The next command finds it.
    with pgstac_connection() as conn:
        audit.append(conn, AuditEntry("bob", Action.PROMOTE, MODEL, second, reason="crash test"))
    MlflowClient(get_connections_now().mlflow_tracking_uri).set_registered_model_alias(
        MODEL, "production", second
    )
    report = runner.invoke(app, ["reconcile", MODEL])
    assert report.exit_code == 1
    assert f"STAC item {MODEL}-mv{second}" in report.stdout
    # Until it is repaired, serving keeps the version the catalog's governed stage names.
    assert resolve_model(MODEL).version == first
    repaired = runner.invoke(app, ["reconcile", MODEL, "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert _item(second)["properties"]["geomlops:stage"] == "production"
    assert _item(first)["properties"]["geomlops:stage"] == "deprecated"
    assert runner.invoke(app, ["reconcile", MODEL]).exit_code == 0
    assert resolve_model(MODEL).version == second


def test_concurrent_decisions_are_refused(
    candidates: list[dict[str, Any]], keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, keys["alice"])
    with psycopg.connect(pgstac_url(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"geomlops.decision:{MODEL}",))
        with Governance() as governance, pytest.raises(ConflictError, match="another decision"):
            governance.rollback(MODEL, "racing")


def test_gates_are_enforced() -> None:
    gates = {"val_iou_water": {"min": 0.7}}
    with pytest.raises(ValidationFailed) as failure:
        meet_gates(gates, {"val_iou_water": 0.5}, MODEL, "9")
    assert "below the gate's minimum 0.7" in str(failure.value)
    with pytest.raises(ValidationFailed, match="declares no evaluation gates"):
        meet_gates({}, {"val_iou_water": 0.9}, MODEL, "9")
    with pytest.raises(ValidationFailed) as failure:
        meet_gates(gates, {}, MODEL, "9")
    assert "not measured" in str(failure.value)
    meet_gates(gates, {"val_iou_water": 0.8}, MODEL, "9")


def test_lineage_is_complete_and_reports_a_broken_link(
    candidates: list[dict[str, Any]],
) -> None:
    item_id = candidates[0]["item_id"]
    shown = runner.invoke(app, ["lineage", item_id, "--json"])
    assert shown.exit_code == 0, shown.output
    tree = json.loads(shown.stdout)
    kinds = {child["kind"]: child for child in tree["children"]}
    assert set(kinds) >= {
        "package", "image", "registry", "training run", "evaluation run", "gates", "dataset",
        "decisions",
    }  # fmt: skip
    gates = {g["label"]: g["facts"] for g in kinds["gates"]["children"]}
    assert gates and all(isinstance(f["met"], bool) for f in gates.values()), gates
    assert all(child["ok"] for child in tree["children"]), tree
    # A package registered without CI names its image by tag: shown, with a warning.
    if not kinds["image"]["facts"]["pinned_by_digest"]:
        assert "not pinned by digest" in kinds["image"]["warning"]
        assert "warning: image" in shown.stderr
    assert kinds["dataset"]["facts"]["md5"] == candidates[0]["dataset"].md5
    assert "val_iou_water" in kinds["evaluation run"]["facts"]["metrics"]

    # Someone deletes the dataset's version tag in the dataset repository.
    repo = get_settings().datasets_repo
    tag = candidates[0]["dataset"].tag
    rev = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "-n", "1", tag],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(["git", "-C", str(repo), "tag", "-d", tag], check=True, capture_output=True)
    try:
        broken = runner.invoke(app, ["lineage", item_id])
        assert broken.exit_code == 1
        assert "broken link: dataset" in broken.stderr
        assert "has no version" in broken.stderr or "no dataset named" in broken.stderr
    finally:
        subprocess.run(["git", "-C", str(repo), "tag", tag, rev], check=True, capture_output=True)
