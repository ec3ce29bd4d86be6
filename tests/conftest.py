"""Shared fixtures: one real local stack per test session, in a temporary state directory.

Tests talk to real servers (PostgreSQL+PgSTAC, SeaweedFS, MLflow, the STAC API) started
by the same code path as `geomlops up`, on free loopback ports.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import fault_support
import pytest

from geomlops.connections import Connections, get_connections
from geomlops.settings import get_settings
from geomlops.stack.manager import LocalStack

REPO = Path(__file__).resolve().parents[1]


def _reset_settings() -> None:
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def stack_home() -> Iterator[Path]:
    """A fresh `GEOMLOPS_HOME` for the whole session.

    Made with mkdtemp directly under /tmp rather than in pytest's base directory: pytest
    resets that directory to mode 0700 at every start, which would cut off the
    `postgres` user that PostgreSQL runs as when the tests run as root.
    """
    home = Path(tempfile.mkdtemp(prefix="geomlops-test-"))
    previous = os.environ.get("GEOMLOPS_HOME")
    os.environ["GEOMLOPS_HOME"] = str(home)
    _reset_settings()
    yield home
    shutil.rmtree(home, ignore_errors=True)
    if previous is None:
        os.environ.pop("GEOMLOPS_HOME", None)
    else:
        os.environ["GEOMLOPS_HOME"] = previous
    _reset_settings()


@pytest.fixture(scope="session")
def local_stack(stack_home: Path) -> Iterator[LocalStack]:
    """The running local stack (started once, stopped at the end of the session)."""
    stack = LocalStack(get_settings())
    stack.up()
    yield stack
    stack.down()


@pytest.fixture(scope="session")
def stack(local_stack: LocalStack) -> Connections:
    """Connections to the running local stack, as every component resolves them."""
    return get_connections()


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """Re-read settings before and after a test that changes `GEOMLOPS_*` variables."""
    _reset_settings()
    yield
    _reset_settings()


@pytest.fixture
def paused_watchdog(local_stack: LocalStack) -> Iterator[LocalStack]:
    """The session's stack with its watchdog stopped: a killed service stays dead.

    Afterwards the watchdog is started again and the test waits until it has restored
    every service, so the next test finds a whole stack.
    """
    from geomlops.stack import supervisor

    supervisor.stop(local_stack.ctx)
    try:
        yield local_stack
    finally:
        supervisor.ensure(local_stack.ctx)
        fault_support.wait_healthy(local_stack)
