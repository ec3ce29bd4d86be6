"""Bad input and failure of the local stack: each says what happened and what to do."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.errors import ConfigError, StackError
from geomlops.settings import get_settings
from geomlops.stack.manager import LocalStack
from geomlops.stack.process import read_pid, stop
from geomlops.stack.state import StatePaths

runner = CliRunner()


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty state directory of its own (outside pytest's 0700 base directory)."""
    path = Path(tempfile.mkdtemp(prefix="geomlops-fail-"))
    monkeypatch.setenv("GEOMLOPS_HOME", str(path))
    get_settings.cache_clear()
    yield path
    LocalStack(get_settings()).down()
    get_settings.cache_clear()
    shutil.rmtree(path, ignore_errors=True)


def _nothing_running(stack: LocalStack) -> bool:
    return not any(s.running for s in stack.status())


def test_configured_port_in_use_names_the_setting(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        monkeypatch.setenv("GEOMLOPS_DB_PORT", str(port))
        get_settings.cache_clear()
        result = runner.invoke(app, ["up"])
    assert result.exit_code == 1
    assert f"port {port} for postgres is already in use" in result.stderr
    assert "GEOMLOPS_DB_PORT" in result.stderr
    assert _nothing_running(LocalStack(get_settings()))


def test_stale_pid_file_is_recognised_and_never_kills_a_stranger(home: Path) -> None:
    paths = StatePaths(home)
    paths.ensure()
    stranger = psutil.Process(os.getpid())
    pid_file = paths.pid_file("mlflow")
    # Same PID as a live process, but a start time that is not its own: a recycled PID.
    pid_file.write_text(json.dumps({"pid": stranger.pid, "create_time": time.time() - 9999}))
    assert read_pid(pid_file) is None
    assert not pid_file.exists()
    pid_file.write_text(json.dumps({"pid": stranger.pid, "create_time": time.time() - 9999}))
    assert stop(pid_file) is False
    assert stranger.is_running()
    pid_file.write_text("{not json")
    assert read_pid(pid_file) is None


def test_corrupted_state_file_says_how_to_recover(home: Path) -> None:
    (home / "stack.json").write_text("{ this is not json")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert f"{home / 'stack.json'} is corrupted" in result.stderr
    assert "delete" in result.stderr and "geomlops up" in result.stderr
    (home / "stack.json").unlink()  # as the hint says; lets the fixture's `down` run


def test_missing_postgresql_binaries_name_the_apt_packages(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOMLOPS_DB_BINDIR", str(home / "no-postgres-here"))
    get_settings.cache_clear()
    result = runner.invoke(app, ["up"])
    assert result.exit_code == 1
    assert "PostgreSQL server binaries (initdb, pg_ctl) were not found" in result.stderr
    assert "apt-get install -y postgresql postgresql-15-postgis-3" in result.stderr


def test_foreign_data_directory_is_not_touched(home: Path) -> None:
    data = home / "postgres" / "data"
    data.mkdir(parents=True)
    (data / "precious.txt").write_text("not a database")
    with pytest.raises(StackError, match="is not a PostgreSQL data directory"):
        LocalStack(get_settings()).up()
    assert (data / "precious.txt").read_text() == "not a database"


def test_external_urls_and_up_conflict(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOMLOPS_STAC_URL", "https://stac.example.org")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="GEOMLOPS_STAC_URL"):
        LocalStack(get_settings()).up()


@pytest.mark.slow
def test_service_that_fails_to_start_is_reported_and_the_rest_stopped(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Too short a start-up allowance: the first process service cannot be healthy in time.
    monkeypatch.setenv("GEOMLOPS_STARTUP_TIMEOUT", "0.3")
    get_settings.cache_clear()
    stack = LocalStack(get_settings())
    with pytest.raises(StackError) as failure:
        stack.up()
    message = str(failure.value)
    assert "did not become healthy" in message
    assert "Last lines of" in message and ".log" in message
    assert _nothing_running(stack)
