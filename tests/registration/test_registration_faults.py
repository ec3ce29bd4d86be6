"""PostgreSQL killed between the two writes of `package register`.

The registered model is written to MLflow first, the catalog item last. Here PostgreSQL
(behind both) is killed with SIGKILL right before the catalog write, so the item write
fails and so does the rollback of the MLflow model. The command must fail within a bound,
saying what is left and how to repair it; `reconcile` must report the dangling registered
model (it used to say "agree") and `reconcile --repair` must remove it, after which the
registration completes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fault_support import kill_service, wait_healthy
from mlflow.exceptions import MlflowException
from registration_corpus import commit_all, git, make_repo, materialise
from typer.testing import CliRunner

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import MODELS
from geomlops.cli.main import app
from geomlops.connections import get_connections
from geomlops.errors import NotFoundError, ServiceUnavailable
from geomlops.registration.register import package_item_id, register_package
from geomlops.stack import supervisor
from geomlops.stack.manager import LocalStack

pytestmark = [pytest.mark.stack, pytest.mark.slow]
runner = CliRunner()
NAME = "dangling-water"
BOUND = 30.0


class _DiesBeforeTheItem(CatalogClient):
    """The real catalog client; PostgreSQL is killed just before the item is written."""

    stack: LocalStack

    def upsert_item(self, item: Any, collection: str | None = None) -> Any:
        kill_service(self.stack, "postgres")
        return super().upsert_item(item, collection)


def _wait_catalog(timeout: float = 60.0) -> None:
    """Until the STAC API answers reads from its database again."""
    deadline = time.monotonic() + timeout
    with CatalogClient(get_connections().stac_url) as catalog:
        while True:
            try:
                catalog.get_item_dict(MODELS, "no-such-item")
            except NotFoundError:
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def test_register_with_postgres_killed_midway_then_reconcile_repairs(
    tmp_path: Path, paused_watchdog: LocalStack
) -> None:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", str(origin))
    package = materialise(None, repo, name=NAME)
    commit_all(repo)
    conn = get_connections()
    catalog = _DiesBeforeTheItem(conn.stac_url, _admin_key(paused_watchdog))
    catalog.stack = paused_watchdog

    began = time.monotonic()
    with pytest.raises(ServiceUnavailable) as failed:
        register_package(package, catalog=catalog)
    took = time.monotonic() - began
    catalog.close()
    assert took < BOUND, f"register took {took:.1f} s to fail"
    assert "could not be rolled back" in failed.value.message
    assert failed.value.hint and f"geomlops reconcile {NAME} --repair" in failed.value.hint
    print(f"register failed in {took:.1f} s: {failed.value.message}")

    supervisor.ensure(paused_watchdog.ctx)  # PostgreSQL comes back
    wait_healthy(paused_watchdog, timeout=60)
    _wait_catalog()
    client = conn.mlflow_client()
    assert client.get_registered_model(NAME).tags["geomlops.package_item"]  # left behind

    found = runner.invoke(app, ["reconcile", NAME])
    assert found.exit_code == 1, found.output
    item_id = package_item_id(NAME, "0.1.0")
    assert f"differs: STAC item {MODELS}/{item_id}: found no item" in found.stdout

    everything = runner.invoke(app, ["reconcile"])  # every model, this one among them
    assert everything.exit_code == 1 and item_id in everything.stdout

    repaired = runner.invoke(app, ["reconcile", NAME, "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert f"fixed: STAC item {MODELS}/{item_id}" in repaired.stdout
    with pytest.raises(MlflowException):
        client.get_registered_model(NAME)

    done = register_package(package)
    assert (done.mlflow, done.item) == ("created", "created")
    agreed = runner.invoke(app, ["reconcile", NAME])
    assert agreed.exit_code == 0, agreed.output
    assert "agree" in agreed.stdout


def test_package_item_without_its_registered_model_is_reported_and_recreated(
    tmp_path: Path, stack: Any
) -> None:
    """The reverse half: the catalog has the package, MLflow lost the registered model."""
    repo = make_repo(tmp_path / "repo")
    package = materialise(None, repo, name="orphan-item-water")
    commit_all(repo)
    register_package(package, git_url=str(repo))
    client = stack.mlflow_client()
    client.delete_registered_model("orphan-item-water")

    found = runner.invoke(app, ["reconcile", "orphan-item-water"])
    assert found.exit_code == 1, found.output
    assert "differs: MLflow registered model orphan-item-water: found none" in found.stdout
    repaired = runner.invoke(app, ["reconcile", "orphan-item-water", "--repair"])
    assert repaired.exit_code == 0, repaired.output
    tags = client.get_registered_model("orphan-item-water").tags
    assert tags["geomlops.package_item"] == package_item_id("orphan-item-water", "0.1.0")
    assert runner.invoke(app, ["reconcile", "orphan-item-water"]).exit_code == 0


def _admin_key(stack: LocalStack) -> str:
    import json

    return str(json.loads((stack.paths.secrets_dir / "admin_api_key.json").read_text())["key"])
