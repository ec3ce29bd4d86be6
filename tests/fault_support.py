"""Killing services of the session's stack for the fault tests (issue 19, items 14-16)."""

from __future__ import annotations

import contextlib

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
        if record is None:
            from geomlops.stack.process import log_tail

            raise AssertionError(
                f"{name} is not running. Its log:\n{log_tail(stack.paths.log_file(name), 40)}"
                f"\nThe watchdog's:\n{log_tail(stack.paths.log_file('supervisor'), 20)}"
            )
        pid = record.pid
    # PostgreSQL: the postmaster alone, as a crash of it is (its backends then exit). The
    # others: the whole service, since `mlflow server` serves from a uvicorn child which,
    # its parent killed alone, goes on answering.
    try:
        root = psutil.Process(pid)
        victims = [root] if name == "postgres" else [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        victims = []
    for victim in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=15)
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


def wait_for_log(stack: LocalStack, name: str, line: str, timeout: float = 60.0) -> str:
    """The text of service ``name``'s log once it holds ``line`` (the watchdog writes late)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        text = stack.paths.log_file(name).read_text()
        if line in text or time.monotonic() > deadline:
            return text
        time.sleep(0.5)
