"""Clients give up on a hung service within the settings' bound, and say which service.

A "hung" service here is a real listening socket that completes TCP handshakes and then
never answers: the worst case for a client (a refused connection fails at once; this one
waits for as long as the client lets it). Before issue 19 the database clients waited
10 s (or, for psycopg used directly, for ever) and MLflow's client 120 s per try, 8 tries.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from geomlops.catalog.db import pgstac_connection
from geomlops.cli.main import app
from geomlops.connections import get_connections
from geomlops.errors import ServiceUnavailable
from geomlops.service_errors import service_failure
from geomlops.settings import get_settings

runner = CliRunner()


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A loopback port whose listener accepts connections into its backlog, never replies."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def hung_services(
    hung_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> Iterator[int]:
    """Settings that point the database and MLflow at the hung port, with short bounds."""
    monkeypatch.setenv("GEOMLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("GEOMLOPS_DB_DSN", f"postgresql://geomlops:secret@127.0.0.1:{hung_port}")
    monkeypatch.setenv("GEOMLOPS_DB_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("GEOMLOPS_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{hung_port}")
    monkeypatch.setenv("GEOMLOPS_MLFLOW_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("GEOMLOPS_MLFLOW_REQUEST_RETRIES", "0")
    for variable in (
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    ):
        monkeypatch.delenv(variable, raising=False)  # get_connections sets them; undone after
    get_settings.cache_clear()
    yield hung_port
    get_settings.cache_clear()


def test_a_hung_database_is_a_clear_error_within_the_connect_timeout(hung_services: int) -> None:
    began = time.monotonic()
    with pytest.raises(ServiceUnavailable) as raised, pgstac_connection():
        pass
    took = time.monotonic() - began
    assert took < 8, f"took {took:.1f} s with a 2 s connect timeout"
    assert "PostgreSQL" in raised.value.message and "not answering" in raised.value.message
    assert raised.value.hint and "geomlops status" in raised.value.hint


def test_every_database_url_carries_the_timeouts(hung_services: int) -> None:
    url = get_connections().db_url("pgstac")
    assert "connect_timeout=2" in url
    assert "statement_timeout%3D20000" in url and "lock_timeout%3D20000" in url


def test_the_cli_names_the_hung_database_without_a_traceback(hung_services: int) -> None:
    began = time.monotonic()
    result = runner.invoke(app, ["audit"])
    took = time.monotonic() - began
    assert result.exit_code == 1, result.output
    assert "PostgreSQL" in result.stderr and "not answering" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert took < 8, f"took {took:.1f} s"


def test_a_hung_mlflow_is_a_clear_error_within_the_request_bound(hung_services: int) -> None:
    client = get_connections().mlflow_client()
    began = time.monotonic()
    with pytest.raises(Exception) as raised:
        client.search_experiments(max_results=1)
    took = time.monotonic() - began
    assert took < 10, f"took {took:.1f} s with a 2 s timeout and no retries"
    failure = service_failure(raised.value)
    assert failure is not None, repr(raised.value)
    assert "MLflow" in failure.message and failure.hint and "geomlops status" in failure.hint


def test_pods_and_mlflow_runs_inherit_the_mlflow_bound(
    hung_services: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mlflow run` and workflow pods are started with `Connections.env()`."""
    monkeypatch.setenv("GEOMLOPS_S3_ENDPOINT_URL", f"http://127.0.0.1:{hung_services}")
    monkeypatch.setenv("GEOMLOPS_STAC_URL", f"http://127.0.0.1:{hung_services}")
    monkeypatch.setenv("GEOMLOPS_S3_ACCESS_KEY", "test-access")
    monkeypatch.setenv("GEOMLOPS_S3_SECRET_KEY", "test-secret")
    get_settings.cache_clear()
    env = get_connections().env()
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "2"
    assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
