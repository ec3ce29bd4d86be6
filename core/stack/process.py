"""Background processes of the local stack: start detached, record, find again, stop.

A PID file records the process id *and* its start time, so a PID file left by a killed
run, whose number the kernel has since given to another program, is recognised as stale
instead of being trusted (and that program killed).
"""

from __future__ import annotations

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
    """Start ``argv`` in its own session (so `down` can stop its whole group)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    record = PidRecord(pid=proc.pid, create_time=psutil.Process(proc.pid).create_time())
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
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
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
