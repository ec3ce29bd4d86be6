"""The local Argo API, run in this process by the same factory the stack's `argo` service uses.

In-process, so the runs it starts inherit the test's environment (``GEOMLOPS_*`` variables a
test sets reach the pods), as the CLI's own runs did before it spoke to a server. Tests that
need nothing of that kind use the stack's service itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from geomlops.connections import Connections
from geomlops.settings import LOOPBACK, get_settings
from geomlops.stack.ports import free_port

NAMESPACE = "flood-team"


@pytest.fixture(scope="module")
def argo_url(stack: Connections) -> Iterator[str]:
    """URL of a local Argo API (``create_app()``) served by uvicorn on a free loopback port."""
    import uvicorn

    from geomlops.workflows.executor.server import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(), host=LOOPBACK, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="argo-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the local Argo API did not start")
        time.sleep(0.02)
    yield f"http://{LOOPBACK}:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def argo(argo_url: str, monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> str:
    """The CLI pointed at the in-process Argo API (namespace ``flood-team``, fast polls)."""
    monkeypatch.setenv("GEOMLOPS_ARGO_SERVER", argo_url)
    monkeypatch.setenv("GEOMLOPS_ARGO_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("GEOMLOPS_ARGO_POLL_INTERVAL", "0.1")
    get_settings.cache_clear()
    return argo_url
