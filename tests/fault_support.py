"""Killing services of the session's stack for the fault tests (issue 19, items 14-16)."""

from __future__ import annotations

import contextlib
import os

from geomlops.stack.manager import LocalStack


def _postmaster_pid(stack: LocalStack) -> int:
    pid_file = stack.paths.service_dir("postgres") / "data" / "postmaster.pid"
    return int(pid_file.read_text().splitlines()[0])


def kill_service(stack: LocalStack, name: str) -> int:
    """SIGKILL a running service's main process (PostgreSQL's postmaster); returns its pid.

    Waits until it is gone, so what follows sees the service dead, as after a crash.
    """
    import signal

    import psutil

    from geomlops.stack.process import read_pid

    if name == "postgres":
        pid = _postmaster_pid(stack)
    else:
        record = read_pid(stack.paths.pid_file(name))
        assert record is not None, f"{name} is not running"
        pid = record.pid
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).wait(timeout=15)
    return pid


def wait_healthy(stack: LocalStack, timeout: float = 120.0) -> float:
    """Seconds until every service is healthy again; fails the test after ``timeout``."""
    import time

    began = time.monotonic()
    while time.monotonic() - began < timeout:
        statuses = stack.status()
        if all(s.healthy for s in statuses):
            return time.monotonic() - began
        time.sleep(0.5)
    raise AssertionError(f"the stack did not become healthy in {timeout} s: {statuses}")
