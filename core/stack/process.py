"""Background processes of the local stack: start detached, record, find again, stop.

A PID file records the process id *and* its start time, so a PID file left by a killed
run, whose number the kernel has since given to another program, is recognised as stale
instead of being trusted (and that program killed).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from geomlops.errors import StackError
from geomlops.stack.state import PRIVATE_DIR, PRIVATE_FILE, SERVICE_UMASK

if TYPE_CHECKING:
    import psutil


@dataclass(frozen=True)
class PidRecord:
    """What a PID file holds.

    ``sid`` is the session every process of the service belongs to (the launcher starts
    each service in a session of its own). Workers that outlive a killed parent keep it,
    so they can still be found and stopped.
    """

    pid: int
    create_time: float
    sid: int | None = None

    def session_leftovers(self) -> list[psutil.Process]:
        """Live processes of this service's session started with or after it."""
        import psutil  # in each function: `geomlops status` without a stack never needs it

        if self.sid is None:
            return []
        found = []
        for proc in psutil.process_iter(["pid", "create_time", "status"]):
            try:
                if (
                    proc.info["create_time"] >= self.create_time - 1.0
                    and proc.info["status"] != psutil.STATUS_ZOMBIE
                    and os.getsid(proc.pid) == self.sid
                ):
                    found.append(proc)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return found

    def process(self) -> psutil.Process | None:
        """The live process this record describes, or None if it is gone or another."""
        import psutil

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
    """The record in ``pid_file`` if its process lives.

    A stale or unreadable file is removed; so are the processes its service left behind
    when its main process was killed (a worker keeping the port would block a restart).
    """
    try:
        text = pid_file.read_text()
        data = json.loads(text)
        sid = data.get("sid")
        record = PidRecord(
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            sid=None if sid is None else int(sid),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pid_file.unlink(missing_ok=True)
        return None
    if record.process() is None:
        _terminate(record.session_leftovers())
        _unlink_if_unchanged(pid_file, text)
        return None
    return record


def _unlink_if_unchanged(pid_file: Path, text: str) -> None:
    """Remove a stale PID file unless it was replaced meanwhile.

    Readers run concurrently (`status`, the watchdog, `up`): one that found the file stale
    must not delete the record of the service another has just started in its place, which
    would leave that service running untracked and holding its port.
    """
    with contextlib.suppress(FileNotFoundError):
        if pid_file.read_text() == text:
            pid_file.unlink(missing_ok=True)


def _terminate(procs: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    """SIGTERM, then SIGKILL what is still alive after ``timeout``; returns any survivors."""
    import psutil

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(sig)
        _, procs = psutil.wait_procs(procs, timeout=wait)
        if not procs:
            break
    return procs


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
    import psutil

    with open_log(log_file) as log:
        started = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}"
        log.write(f"\n=== {redact_urls(started)}\n".encode())
    # The service's own files (S3 volumes, MLflow's, the API's) are born private.
    launcher = (
        f'umask {SERVICE_UMASK:03o}; exec "$@" </dev/null >>"$GEOMLOPS_SPAWN_LOG" 2>&1 & echo $!'
    )
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
        record = PidRecord(
            pid=pid, create_time=psutil.Process(pid).create_time(), sid=os.getsid(pid)
        )
    except (psutil.NoSuchProcess, ProcessLookupError):
        raise StackError(
            f"{argv[0]} exited at once. Last lines of {log_file}:\n{log_tail(log_file)}"
        ) from None
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"pid": record.pid, "create_time": record.create_time, "sid": record.sid})
    )
    os.replace(tmp, pid_file)
    return record


def stop(pid_file: Path, *, timeout: float = 20.0) -> bool:
    """Stop the process group recorded in ``pid_file``; True if something was stopped."""
    record = read_pid(pid_file)
    if record is None:
        return False
    if _terminate(_group(record), timeout):
        raise StackError(
            f"process {record.pid} did not stop", hint=f"kill it by hand: kill -9 {record.pid}"
        )
    pid_file.unlink(missing_ok=True)
    return True


def _group(record: PidRecord) -> list[psutil.Process]:
    """The recorded process, its descendants and anything else left in its session."""
    import psutil

    proc = record.process()
    if proc is None:
        return record.session_leftovers()
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        members = [proc]
    known = {p.pid for p in members}
    return members + [p for p in record.session_leftovers() if p.pid not in known]


_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s]+@")


def redact_urls(text: str) -> str:
    """``scheme://user:PASSWORD@host`` → ``scheme://user:***@host``, for what goes in a log."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def open_log(log_file: Path) -> BinaryIO:
    """Open a service log for appending, readable by its owner only (created so, or made so).

    A log holds whatever its service printed; other local users have no business there.
    """
    log_file.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, "ab")


def log_tail(log_file: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log, for error messages."""
    try:
        text = log_file.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {log_file})"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_checked(
    argv: Sequence[str], *, what: str, log_file: Path, env: Mapping[str, str] | None = None
) -> None:
    """Run a one-off command to completion, its output appended to ``log_file``.

    A failure raises :class:`StackError` with the tail of that log, like a service that
    does not start, so `geomlops up` reports it the same way.
    """
    with open_log(log_file) as log:
        result = subprocess.run(
            list(argv), stdout=log, stderr=subprocess.STDOUT, env=dict(env or os.environ)
        )
    if result.returncode != 0:
        raise StackError(
            f"{what} failed (exit {result.returncode}). Last lines of {log_file}:\n"
            + log_tail(log_file),
            hint="read the log above; `geomlops up` again retries",
        )
