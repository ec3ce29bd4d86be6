"""Governance that cannot be bypassed (issue 19, items 1, 2, 6 and 7), tried as an attacker.

Every attack goes the way an attacker would send it: real HTTP to the real STAC API with a
writer's key, the real `geomlops` CLI with a key in ``GEOMLOPS_API_KEY``, files read under
the real stack's state directory. Each is shown refused, and the platform's own paths
(training's candidate POST, promote, reject, reconcile --repair) are shown still to work.

Candidates are made the cheap way, with what the training workflow's register step writes:
an MLflow model version (tagged with the package it was trained from), the audit log's
``train`` entry naming the submitter, and the candidate item POSTed with a writer's key.
Version 1 evaluated at ``val_iou_water`` 0.65, under the S2 package's 0.7 gate; version 2
at 0.8.
"""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from geomlops import audit
from geomlops.audit import Action, AuditEntry
from geomlops.catalog.client import CatalogClient, configured_api_key
from geomlops.catalog.db import pgstac_connection
from geomlops.catalog.keys import create_key, list_keys, revoke_key
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.model import properties as prop
from geomlops.model.ids import model_item_id
from geomlops.model.stages import STAGE_TAG
from geomlops.registration.register import register_package
from geomlops.settings import get_settings
from geomlops.stack.state import StatePaths

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PACKAGE = "flood-water-s2"
PACKAGE_DIR = REPO / "model_packages" / PACKAGE
runner = CliRunner()


def _key(name: str, *roles: str) -> tuple[str, str]:
    name = f"{name}-{uuid.uuid4().hex[:6]}"
    with pgstac_connection() as conn:
        key, _ = create_key(conn, name, roles)
    return name, key


@pytest.fixture(scope="module")
def people(stack: Connections) -> dict[str, tuple[str, str]]:
    """(name, key) of: a trainer who also approves, an approver, a writer, an admin."""
    return {
        "trainer": _key("sec-trainer", "writer", "approver"),
        "alice": _key("sec-alice", "approver"),
        "mallory": _key("sec-mallory", "writer"),
        "root": _key("sec-root", "admin"),
    }


@pytest.fixture(autouse=True)
def _settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _as(monkeypatch: pytest.MonkeyPatch, key: str | None) -> None:
    if key is None:
        monkeypatch.delenv("GEOMLOPS_API_KEY", raising=False)
    else:
        monkeypatch.setenv("GEOMLOPS_API_KEY", key)
    get_settings.cache_clear()


def _candidate_item(model: str, version: str, evaluate_run: str, trainer: str) -> dict[str, Any]:
    """The item the register step writes: the package's mlm.json plus lineage and stage."""
    item = json.loads((PACKAGE_DIR / "mlm.json").read_text())
    package_version = item["properties"]["version"]
    item["id"] = model_item_id(model, version)
    item["collection"] = "models"
    # A valid STAC item names its collection by a link too (the client adds the catalog's own;
    # the raw writes below send this one).
    item.setdefault("links", []).append(
        {"rel": "collection", "href": "../../collections/models", "type": "application/json"}
    )
    item["assets"]["model"]["href"] = f"s3://mlflow/{model}/{version}/model.pt2"
    item["assets"]["source_code"]["href"] = "https://example.org/flood-water-s2/main.py"
    props = item["properties"]
    props.update(
        {
            "version": version,
            prop.STAGE: "candidate",
            prop.TRAINED_BY: trainer,
            prop.PACKAGE: PACKAGE,
            prop.PACKAGE_VERSION: package_version,
            prop.MLFLOW_MODEL: model,
            prop.MLFLOW_MODEL_VERSION: version,
            prop.EVALUATE_RUN_ID: evaluate_run,
        }
    )
    return item


@pytest.fixture(scope="module")
def model(stack: Connections, people: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A model with two candidates trained by `trainer` (0.65 and 0.8 against a 0.7 gate)."""
    register_package(PACKAGE_DIR, git_url=str(REPO))  # as every module does: the first wins
    name = f"sec-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(stack.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("security-tests")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("security-tests")
    )
    client.create_registered_model(name)
    trainer_name, trainer_key = people["trainer"]
    versions = {}
    for iou in (0.65, 0.8):
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "val_iou_water", iou)
        client.set_terminated(run.info.run_id)
        mv = client.create_model_version(
            name,
            f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            tags={
                "geomlops.package": PACKAGE,
                "geomlops.package_version": "0.1.0",
                "geomlops.evaluate_run_id": run.info.run_id,
                STAGE_TAG: "candidate",
                "geomlops.trained_by": trainer_name,
            },
        )
        version = str(mv.version)
        with pgstac_connection() as conn:
            audit.append(
                conn,
                AuditEntry(
                    trainer_name,
                    Action.TRAIN,
                    name,
                    version,
                    details={
                        "evaluate_run_id": run.info.run_id,
                        "metrics": {"val_iou_water": iou},
                    },
                ),
            )
        # Training's own path: a writer POSTs the candidate, stage and trainer included.
        with CatalogClient(stack.stac_url, trainer_key) as catalog:
            assert (
                catalog.upsert_item(
                    _candidate_item(name, version, run.info.run_id, trainer_name), "models"
                )
                == "created"
            )
        versions[iou] = version
    return {"name": name, "low": versions[0.65], "high": versions[0.8]}


def _http(stack: Connections, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.stac_url, headers={"X-API-Key": key}, timeout=30)


def _item_path(model: dict[str, Any], version: str) -> str:
    return f"/collections/models/items/{model_item_id(model['name'], version)}"


def _props(stack: Connections, model: dict[str, Any], version: str) -> dict[str, Any]:
    response = httpx.get(stack.stac_url + _item_path(model, version), timeout=30)
    response.raise_for_status()
    return response.json()["properties"]


def _alias(stack: Connections, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(
            MlflowClient(stack.mlflow_tracking_uri)
            .get_model_version_by_alias(name, "production")
            .version
        )
    except MlflowException:
        return None


def _refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 403, (response.status_code, response.text)
    body = response.json()
    assert body["code"] == "Forbidden"
    for word in words:
        assert word in body["description"], body


# --- item 1: a trainer approving their own model below its gate -----------------------------
def test_a_trainer_cannot_rewrite_who_trained_it_or_its_gate(
    stack: Connections,
    model: dict[str, Any],
    people: dict[str, tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    low = model["low"]
    path = _item_path(model, low)
    low_gate = {"val_iou_water": {"min": 0.5}}
    tamper = {"properties": {prop.TRAINED_BY: "someone-else", prop.GATES: low_gate}}
    with _http(stack, people["trainer"][1]) as trainer:
        _refused(trainer.patch(path, json=tamper), prop.TRAINED_BY, "cannot be changed")
        _refused(
            trainer.patch(
                path,
                json=[{"op": "replace", "path": f"/properties/{prop.GATES}", "value": low_gate}],
                headers={"Content-Type": "application/json-patch+json"},
            ),
            prop.GATES,
        )
        whole = trainer.get(path).json()
        whole["properties"][prop.TRAINED_BY] = "someone-else"
        _refused(trainer.put(path, json=whole), prop.TRAINED_BY)
    props = _props(stack, model, low)
    assert props[prop.TRAINED_BY] == people["trainer"][0]
    assert props[prop.GATES] == {"val_iou_water": {"min": 0.7}}

    # Say the item was edited anyway (an administrator's key, a database session): the
    # decision does not believe it. The trainer is whom the audit log's train entry names,
    # and the gate is the registered package's.
    with _http(stack, people["root"][1]) as root:
        assert root.patch(path, json=tamper).status_code == 200
    assert _props(stack, model, low)[prop.TRAINED_BY] == "someone-else"
    _as(monkeypatch, people["trainer"][1])
    own = runner.invoke(app, ["promote", model["name"], low, "--reason", "looks fine to me"])
    assert own.exit_code == 1, own.output
    assert "cannot also approve it" in own.stderr
    _as(monkeypatch, people["alice"][1])
    below = runner.invoke(app, ["promote", model["name"], low, "--reason", "gate says 0.5"])
    assert below.exit_code == 1, below.output
    assert "does not meet its evaluation gates" in below.stderr
    assert "below the gate's minimum 0.7" in below.stderr
    assert _alias(stack, model["name"]) is None
    assert _props(stack, model, low)[prop.STAGE] == "candidate"


# --- item 2: a stage set directly --------------------------------------------------------------
def test_a_writer_cannot_set_a_stage_create_a_decided_item_or_delete(
    stack: Connections, model: dict[str, Any], people: dict[str, tuple[str, str]]
) -> None:
    high = model["high"]
    path = _item_path(model, high)
    with _http(stack, people["mallory"][1]) as mallory:
        _refused(
            mallory.patch(path, json={"properties": {prop.STAGE: "production"}}),
            prop.STAGE,
            "not an approver",
        )
        whole = mallory.get(path).json()
        whole["properties"][prop.STAGE] = "production"
        _refused(mallory.put(path, json=whole), prop.STAGE)
        fresh = _candidate_item(model["name"], "99", "none", "mallory")
        fresh["properties"][prop.STAGE] = "production"
        _refused(mallory.post("/collections/models/items", json=fresh), "production")
        fresh["properties"][prop.STAGE] = "candidate"
        fresh["properties"][prop.APPROVED_BY] = "alice"
        _refused(mallory.post("/collections/models/items", json=fresh), prop.APPROVED_BY)
        fresh["properties"].pop(prop.APPROVED_BY)
        fresh["properties"][prop.STAGE] = "production"
        batch = {"type": "FeatureCollection", "features": [fresh]}
        _refused(mallory.post("/collections/models/items", json=batch), "production")
        _refused(
            mallory.post(
                "/collections/models/bulk_items",
                json={"items": {fresh["id"]: fresh}, "method": "upsert"},
            ),
            "administrator",
        )
        _refused(mallory.delete(path), "administrator")
        _refused(mallory.delete("/collections/models"), "administrator")
        assert mallory.get(_item_path(model, "99")).status_code == 404
    # An approver's key does not set a stage directly either: not without a decision.
    with _http(stack, people["alice"][1]) as alice:
        _refused(
            alice.patch(path, json={"properties": {prop.STAGE: "production"}}),
            "audit log",
        )
    assert _props(stack, model, high)[prop.STAGE] == "candidate"
    assert _alias(stack, model["name"]) is None


def test_reconcile_checks_versions_without_decisions_and_decisions_still_apply(
    stack: Connections,
    model: dict[str, Any],
    people: dict[str, tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, low, high = model["name"], model["low"], model["high"]
    # A stage changed behind governance's back (an administrator's key): nothing in the
    # log decided it, and reconcile says so although the model has no decision at all.
    with _http(stack, people["root"][1]) as root:
        response = root.patch(
            _item_path(model, high), json={"properties": {prop.STAGE: "production"}}
        )
        assert response.status_code == 200
    _as(monkeypatch, people["alice"][1])
    report = runner.invoke(app, ["reconcile", name])
    assert report.exit_code == 1, report.output
    assert f"STAC item {model_item_id(name, high)}" in report.stdout
    assert "candidate" in report.stdout
    repaired = runner.invoke(app, ["reconcile", name, "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert _props(stack, model, high)[prop.STAGE] == "candidate"

    # The platform's own path: an approver who did not train it promotes the version that
    # meets its gate, and rejects the other; the guard lets the recorded decisions through.
    promoted = runner.invoke(app, ["promote", name, high, "--reason", "IoU 0.80 above 0.7"])
    assert promoted.exit_code == 0, promoted.output
    assert _alias(stack, name) == high
    props = _props(stack, model, high)
    assert props[prop.STAGE] == "production"
    assert props[prop.APPROVED_BY] == people["alice"][0]
    rejected = runner.invoke(app, ["reject", name, low, "--reason", "IoU 0.65 below 0.7"])
    assert rejected.exit_code == 0, rejected.output
    assert _props(stack, model, low)[prop.STAGE] == "rejected"
    clean = runner.invoke(app, ["reconcile", name])
    assert clean.exit_code == 0, clean.output
    assert "agree" in clean.stdout


# --- item 6: key management ---------------------------------------------------------------------
def test_key_management_needs_an_administrator_key(
    stack: Connections, people: dict[str, tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def active() -> set[str]:
        with pgstac_connection() as conn:
            return {k.name for k in list_keys(conn)}

    evil = f"sec-evil-{uuid.uuid4().hex[:6]}"
    gone_name, gone_key = _key("sec-gone", "writer")
    with pgstac_connection() as conn:
        revoke_key(conn, gone_name)
    for key, message in (
        (people["mallory"][1], "needs the admin role"),
        (people["alice"][1], "needs the admin role"),
        (gone_key, "unknown or revoked"),
        ("gml_not-a-key-at-all", "unknown or revoked"),
    ):
        _as(monkeypatch, key)
        made = runner.invoke(app, ["keys", "create", evil, "--role", "admin"])
        assert made.exit_code == 1, made.output
        assert message in made.stderr
        revoked = runner.invoke(app, ["keys", "revoke", people["alice"][0]])
        assert revoked.exit_code == 1 and message in revoked.stderr
        listed = runner.invoke(app, ["keys", "list"])
        assert listed.exit_code == 1 and message in listed.stderr
    assert evil not in active() and people["alice"][0] in active()

    # An administrator's key may; and without GEOMLOPS_API_KEY the local stack's
    # administrator key (made by `geomlops up`, the bootstrap path) is the one in use.
    _as(monkeypatch, people["root"][1])
    made = runner.invoke(app, ["keys", "create", evil, "--role", "writer"])
    assert made.exit_code == 0, made.output
    _as(monkeypatch, None)
    assert configured_api_key(get_settings()) is not None
    assert runner.invoke(app, ["keys", "revoke", evil]).exit_code == 0
    assert evil not in active()


# --- item 7: secrets and private files -------------------------------------------------------
def test_logs_and_data_are_private_and_hold_no_password(stack: Connections) -> None:
    """Logs 0600 in a 0700 directory; S3 volumes 0600 in 0700 directories; no password.

    ``logs/`` and the state directory may carry a group *execute* bit: there it is the mask
    of the ACL entry that lets PostgreSQL's own user pass through to its log, not a right
    to list or read anything. SeaweedFS writes its ``.vif`` files (volume metadata, no
    data) 0644 whatever the umask; the 0700 directory above them keeps everyone else out.
    """
    paths = StatePaths(get_settings().stack.home)
    password = json.loads((paths.secrets_dir / "postgres.json").read_text())["password"]
    logs = sorted(paths.logs_dir.glob("*.log"))
    assert {p.name for p in logs} >= {"mlflow.log", "postgres.log", "s3.log", "stac.log"}
    s3 = paths.service_dir("s3")
    volumes = [p for p in s3.rglob("*") if p.is_file() and p.suffix != ".vif"]
    assert any(p.suffix == ".dat" for p in volumes), "SeaweedFS wrote no volume files"
    s3_dirs = [s3, *(p for p in s3.rglob("*") if p.is_dir())]

    def exposed(files: list[Path], allowed: int) -> list[str]:
        return [
            f"{p} {stat.filemode(p.stat().st_mode)}"
            for p in files
            if p.stat().st_mode & 0o077 & ~allowed
        ]

    assert not exposed([*logs, *volumes, *s3_dirs, paths.secrets_dir], 0)
    assert not exposed([paths.home, paths.logs_dir], 0o010)
    for log in logs:
        assert password not in log.read_text(errors="replace"), log


# --- item 3: the production alias needs a credential; serving follows the governed record -------
def test_mlflow_refuses_an_unauthenticated_alias_move_and_resolution_ignores_the_alias(
    stack: Connections,
    model: dict[str, Any],
    people: dict[str, tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from geomlops.model.registry import RestRegistry
    from geomlops.model.resolve import resolve_model

    name, low, high = model["name"], model["low"], model["high"]
    _as(monkeypatch, people["alice"][1])
    if _props(stack, model, high)[prop.STAGE] != "production":
        promoted = runner.invoke(app, ["promote", name, high, "--reason", "IoU 0.80 above 0.7"])
        assert promoted.exit_code == 0, promoted.output
    assert _alias(stack, name) == high

    # Without a credential MLflow answers 401 to the alias move, and to reads as well.
    api = stack.mlflow_tracking_uri.rstrip("/") + "/api/2.0/mlflow"
    moved = httpx.post(
        f"{api}/registered-models/alias",
        json={"name": name, "alias": "production", "version": low},
        timeout=30,
    )
    assert moved.status_code == 401, moved.text
    assert httpx.get(f"{api}/registered-models/get", params={"name": name}).status_code == 401
    wrong = httpx.post(
        f"{api}/registered-models/alias",
        json={"name": name, "alias": "production", "version": low},
        auth=(get_settings().mlflow.username, "not-the-password"),
        timeout=30,
    )
    assert wrong.status_code == 401, wrong.text
    assert _alias(stack, name) == high
    # The platform's own clients authenticate with the account from settings: the secret
    # is in GEOMLOPS_HOME (0600), never in a service's command line.
    paths = StatePaths(get_settings().stack.home)
    secret_file = paths.secrets_dir / "mlflow.json"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    password = json.loads(secret_file.read_text())["password"]
    for pid_file in paths.run_dir.glob("*.pid"):
        cmdline = Path(f"/proc/{pid_file.read_text().strip()}/cmdline")
        if cmdline.exists():
            assert password not in cmdline.read_text(), pid_file

    # Someone holding MLflow's credential moves the alias behind governance's back: serving's
    # resolution (over MLflow's REST API, as the serving environment asks) still answers
    # with the governed production, and reconcile reports the disagreement.
    stack.mlflow_client().set_registered_model_alias(name, "production", low)
    assert _alias(stack, name) == low
    for registry in (None, RestRegistry.from_settings()):
        resolved = resolve_model(name, registry=registry)
        assert (resolved.version, resolved.stage) == (high, "production")
    report = runner.invoke(app, ["reconcile", name])
    assert report.exit_code == 1, report.output
    assert f"MLflow alias {name}@production" in report.stdout
    repaired = runner.invoke(app, ["reconcile", name, "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert _alias(stack, name) == high


# --- item 5: the platform's database role, and a deleted audit tail -----------------------------
def test_the_platform_role_cannot_bypass_the_audit_guards(stack: Connections) -> None:
    """The app role is no superuser, owns nothing of the catalog, and may only append."""
    import psycopg

    with pgstac_connection() as conn:
        user, superuser = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert (user, superuser) == (get_settings().db.app_user, False)
        owned = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = current_user"
        ).fetchone()[0]
        assert owned == 0
    for statement, message in (
        ("SET session_replication_role = replica", "permission denied"),
        ("SET LOCAL session_replication_role = replica", "permission denied"),
        ("ALTER TABLE geomlops.audit_log DISABLE TRIGGER ALL", "must be owner"),
        ("ALTER TABLE geomlops.audit_log DISABLE TRIGGER audit_log_no_update_delete", "owner"),
        ("DROP TRIGGER audit_log_no_update_delete ON geomlops.audit_log", "must be owner"),
        ("DELETE FROM geomlops.audit_log WHERE id > 0", "permission denied"),
        ("TRUNCATE geomlops.audit_log", "permission denied"),
        ("UPDATE geomlops.audit_log SET reason = 'x'", "permission denied"),
        ("ALTER ROLE CURRENT_USER SUPERUSER", "superuser"),
    ):
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege, match=message),
            pgstac_connection() as conn,
        ):
            conn.execute(statement)


def test_verify_detects_a_tail_deleted_by_the_owner(stack: Connections) -> None:
    """The owner can still delete rows (a superuser); the anchors outside the database see it."""
    model = f"sec-tail-{uuid.uuid4().hex[:6]}"
    with pgstac_connection() as conn:
        appended = [
            audit.append(conn, AuditEntry("alice", Action.REJECT, model, str(v), reason="low"))
            for v in (1, 2)
        ]
    intact = runner.invoke(app, ["audit", "--verify"])
    assert intact.exit_code == 0, intact.output

    columns = "id, at, actor, action, model, version, reason, details, prev_hash, hash"
    with pgstac_connection(owner=True) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        tail = conn.execute(
            f"DELETE FROM geomlops.audit_log WHERE model = %s RETURNING {columns}",  # noqa: S608
            (model,),
        ).fetchall()
    assert len(tail) == 2
    try:
        with pgstac_connection() as conn:
            assert audit.check_chain(conn).problems  # what remains is a valid, shorter chain
        broken = runner.invoke(app, ["audit", "--verify"])
        assert broken.exit_code == 1, broken.output
        assert "chain BROKEN" in broken.stderr
        assert f"entry {appended[-1].id} is missing" in broken.stderr
        assert "tail was deleted" in broken.stderr
    finally:  # put the tail back, so the chain is whole for the rest of the session
        with pgstac_connection(owner=True) as conn:
            conn.execute("SET LOCAL session_replication_role = replica")
            for row in tail:
                conn.execute(
                    f"INSERT INTO geomlops.audit_log ({columns}) OVERRIDING SYSTEM VALUE "  # noqa: S608
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
                    (*row[:7], json.dumps(row[7]), *row[8:]),
                )
    assert runner.invoke(app, ["audit", "--verify"]).exit_code == 0
