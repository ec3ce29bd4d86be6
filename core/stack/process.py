"""Background processes of the local stack: start detached, record, find again, stop.

A PID file records the process id *and* its start time, so a PID file left by a killed
run, whose number the kernel has since given to another program, is recognised as stale
instead of being trusted (and that program killed).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from geomlops.errors import StackError


@dataclass(frozen=True)
class PidRecord:
    """What a PID file holds."""

    pid: int
    create_time: float

    def process(self) -> psutil.Process | None:
        """The live process this record describes, or None if it is gone or another."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return proc


def read_pid(pid_file: Path) -> PidRecord | None:
    """The record in ``pid_file``; a stale or unreadable file is removed."""
    try:
        data = json.loads(pid_file.read_text())
        record = PidRecord(pid=int(data["pid"]), create_time=float(data["create_time"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        pid_file.unlink(missing_ok=True)
        return None
    if record.process() is None:
        pid_file.unlink(missing_ok=True)
        return None
    return record


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str],
    cwd: Path,
) -> PidRecord:
    """Start ``argv`` detached: in a new session, and not as our child.

    A short-lived ``sh`` starts the service in the background and prints its PID, so the
    service is re-parented to init. It then outlives the command that started it and is
    never left as a zombie of a long-lived caller (a test session, a notebook).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
    launcher = 'exec "$@" </dev/null >>"$GEOMLOPS_SPAWN_LOG" 2>&1 & echo $!'
    done = subprocess.run(
        ["sh", "-c", launcher, "sh", *argv],
        env={**env, "GEOMLOPS_SPAWN_LOG": str(log_file)},
        cwd=cwd,
        capture_output=True,
        text=True,
        start_new_session=True,
        check=True,
        timeout=30,
    )
    pid = int(done.stdout.strip())
    try:
        record = PidRecord(pid=pid, create_time=psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        raise StackError(
            f"{argv[0]} exited at once. Last lines of {log_file}:\n{log_tail(log_file)}"
        ) from None
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": record.pid, "create_time": record.create_time}))
    os.replace(tmp, pid_file)
    return record


def stop(pid_file: Path, *, timeout: float = 20.0) -> bool:
    """Stop the process group recorded in ``pid_file``; True if something was stopped."""
    record = read_pid(pid_file)
    if record is None:
        return False
    procs = _group(record)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(sig)
        _, alive = psutil.wait_procs(procs, timeout=timeout if sig == signal.SIGTERM else 5)
        if not alive:
            break
        procs = alive
    else:
        raise StackError(
            f"process {record.pid} did not stop", hint=f"kill it by hand: kill -9 {record.pid}"
        )
    pid_file.unlink(missing_ok=True)
    return True


def _group(record: PidRecord) -> list[psutil.Process]:
    """The recorded process and every descendant (workers, reloaders)."""
    proc = record.process()
    if proc is None:
        return []
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [proc]


def log_tail(log_file: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log, for error messages."""
    try:
        text = log_file.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {log_file})"
    return "\n".join(text.rstrip().splitlines()[-lines:])
