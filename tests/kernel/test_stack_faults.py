"""Services killed with a signal: `status` tells the truth, the watchdog brings them back,
and a command that needs a dead service fails within a bound, naming it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psutil
import pytest
from fault_support import kill_service, wait_for_log, wait_healthy
from typer.testing import CliRunner

from geomlops.catalog.client import CatalogClient
from geomlops.cli.main import app
from geomlops.connections import get_connections
from geomlops.errors import ServiceUnavailable
from geomlops.governance.decisions import Governance
from geomlops.service_errors import service_failure
from geomlops.settings import get_settings
from geomlops.stack import supervisor
from geomlops.stack.manager import LocalStack
from geomlops.stack.process import read_pid

pytestmark = [pytest.mark.stack, pytest.mark.slow]
runner = CliRunner()
BOUND = 30.0
"""Seconds within which a command must fail when a service it needs is dead (issue 19)."""


def test_status_reports_postgres_down_and_its_dependents_degraded(
    paused_watchdog: LocalStack,
) -> None:
    kill_service(paused_watchdog, "postgres")
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 1, result.output
    statuses = {s["name"]: s for s in json.loads(result.stdout)}
    assert not statuses["postgres"]["healthy"] and not statuses["postgres"]["running"]
    for dependent in ("mlflow", "stac"):
        assert statuses[dependent]["running"], statuses[dependent]
        assert statuses[dependent]["degraded"] and not statuses[dependent]["healthy"]
        assert "postgres" in statuses[dependent]["detail"]
    assert statuses["s3"]["healthy"] and not statuses["s3"]["degraded"]
    table = runner.invoke(app, ["status"])
    assert table.exit_code == 1 and "degraded" in table.stdout


def test_watchdog_restarts_killed_postgres_within_its_bound(paused_watchdog: LocalStack) -> None:
    kill_service(paused_watchdog, "postgres")
    assert not next(s for s in paused_watchdog.status() if s.name == "postgres").healthy
    supervisor.ensure(paused_watchdog.ctx)
    took = wait_healthy(paused_watchdog, timeout=60)
    # The services behind it work again, not only their health checks.
    conn = get_connections()
    with CatalogClient(conn.stac_url) as catalog:
        _eventually(lambda: catalog.get_item_dict("models", "no-such-item"), "catalog read")
    _eventually(lambda: conn.mlflow_client().search_experiments(max_results=1), "MLflow read")
    log = wait_for_log(paused_watchdog, supervisor.NAME, "postgres: healthy again")
    assert "postgres: not running; restarting" in log and "postgres: healthy again" in log
    print(f"postgres restored by the watchdog in {took:.1f} s")


def test_watchdog_restarts_killed_mlflow(local_stack: LocalStack) -> None:
    assert supervisor.running(local_stack.ctx), "`up` starts the watchdog"
    old = kill_service(local_stack, "mlflow")
    took = wait_healthy(local_stack, timeout=60)
    record = read_pid(local_stack.paths.pid_file("mlflow"))
    assert record is not None and record.pid != old
    assert "mlflow: healthy again" in wait_for_log(
        local_stack, supervisor.NAME, "mlflow: healthy again"
    )
    print(f"mlflow restored by the watchdog in {took:.1f} s")


def test_down_stops_the_watchdog_first(local_stack: LocalStack) -> None:
    """`down` must not race a watchdog that restarts what it stops (checked on a copy)."""
    record = read_pid(local_stack.paths.pid_file(supervisor.NAME))
    assert record is not None
    watchdog = psutil.Process(record.pid)
    assert "geomlops.stack.supervisor" in " ".join(watchdog.cmdline())
    # Every service runs in a session of its own: stopping the watchdog touches none of them.
    assert all(
        p.info["pid"] == record.pid
        for p in psutil.process_iter(["pid"])
        if _sid(p.info["pid"]) == record.sid
    )


class _DiesAfterWhoami(CatalogClient):
    """The real catalog client; PostgreSQL is killed right after the credential is checked."""

    stack: LocalStack

    def whoami(self) -> Any:
        identity = super().whoami()
        kill_service(self.stack, "postgres")
        return identity


def test_promote_with_postgres_killed_midway_fails_fast_naming_the_service(
    paused_watchdog: LocalStack,
) -> None:
    settings = get_settings()
    conn = get_connections(settings)
    catalog = _DiesAfterWhoami(conn.stac_url, _admin_key(paused_watchdog))
    catalog.stack = paused_watchdog
    began = time.monotonic()
    with Governance(settings, catalog=catalog) as governance, pytest.raises(Exception) as raised:
        governance.promote("flood-water-s2", "1", "faults test")
    took = time.monotonic() - began
    failure = (
        raised.value if isinstance(raised.value, ServiceUnavailable) else None
    ) or service_failure(raised.value)
    assert failure is not None, f"not recognised as a dead service: {raised.value!r}"
    assert took < BOUND, f"took {took:.1f} s"
    assert "MLflow" in failure.message or "PostgreSQL" in failure.message
    assert failure.hint and "geomlops status" in failure.hint
    print(f"promote failed in {took:.1f} s: {failure.message}")

    # The same through the CLI, as a person sees it: an error, no traceback, in the bound.
    began = time.monotonic()
    result = runner.invoke(app, ["promote", "flood-water-s2", "1", "--reason", "faults test"])
    took = time.monotonic() - began
    assert result.exit_code == 1, result.output
    assert "not answering" in result.stderr or "failed (HTTP 5" in result.stderr
    assert "geomlops status" in result.stderr and "Traceback" not in result.output
    assert took < BOUND, f"took {took:.1f} s"


def _admin_key(stack: LocalStack) -> str:
    return str(json.loads((stack.paths.secrets_dir / "admin_api_key.json").read_text())["key"])


def _sid(pid: int) -> int | None:
    import os

    try:
        return os.getsid(pid)
    except OSError:
        return None


def _eventually(call: Any, what: str, timeout: float = 30.0) -> None:
    """``call`` succeeds (or raises NotFoundError: an answer) within ``timeout`` seconds."""
    from geomlops.errors import NotFoundError

    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
            return
        except NotFoundError:
            return
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} still fails after {timeout} s") from None
            time.sleep(0.5)
