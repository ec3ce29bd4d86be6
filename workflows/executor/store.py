"""Where a local run's state lives on disk, and how it survives a killed executor.

Layout under ``<state dir>/<run name>/``::

    run.json        snapshot: manifest, parameters, run fields and every node (atomic replace)
    journal.jsonl   one line per change since the snapshot: {"seq": n, "node"|"run": {...}}
    lock            flock held by the one executor process driving the run
    requests/       resume/stop requests dropped by other processes, consumed by the executor
    logs/<pod>.log  stdout and stderr of each pod (one process attempt)
    pods/<pod>/     per-pod scratch: the script source, the pid file, mapped paths

Every node change is appended to the journal and flushed before the executor acts on it,
so a SIGKILL loses at most a torn last line, which replay ignores. The snapshot is rewritten
(write to a temporary file, then ``os.replace``) when the executor stops driving the run;
rewriting a 1,000-node snapshot after each change would cost more than the steps themselves.
Only a process crash is covered: the journal is flushed, not fsynced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from geomlops.errors import ConflictError, NotFoundError
from geomlops.workflows.executor.model import Node, RunState

SNAPSHOT = "run.json"
JOURNAL = "journal.jsonl"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so that a reader sees the old file or the new one, never half."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, separators=(",", ":"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class RunStore:
    """The state directory holding every local run."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run_dir(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return (self.run_dir(name) / SNAPSHOT).is_file()

    def create(self, state: RunState) -> None:
        """Create the run's directory and first snapshot; an existing run is a conflict."""
        self.root.mkdir(parents=True, exist_ok=True)
        directory = self.run_dir(state.name)
        try:
            directory.mkdir()
        except FileExistsError:
            raise ConflictError(
                f"a run named {state.name!r} already exists in {self.root}",
                hint="use metadata.generateName, or another metadata.name",
            ) from None
        for sub in ("requests", "logs", "pods"):
            (directory / sub).mkdir()
        write_json_atomic(directory / SNAPSHOT, state.to_dict())

    def load(self, name: str) -> RunState:
        """The run's state: the snapshot with the journal replayed over it."""
        directory = self.run_dir(name)
        # Journal first, snapshot second: compaction replaces the snapshot before it empties
        # the journal, so this order never pairs an old snapshot with an emptied journal.
        try:
            journal = (directory / JOURNAL).read_bytes()
        except FileNotFoundError:
            journal = b""
        try:
            data = json.loads((directory / SNAPSHOT).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(
                f"no workflow run named {name!r} in {self.root}",
                hint="`geomlops workflows list` shows the runs there",
            ) from None
        state = RunState.from_dict(data)
        replay_journal(state, journal)
        return state

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / SNAPSHOT).is_file())


def replay_journal(state: RunState, journal: bytes) -> None:
    """Apply journal records newer than the snapshot; stop at a torn (unparseable) line."""
    for line in journal.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            break
        seq = record.get("seq", 0)
        if seq <= state.seq:
            continue
        if "node" in record:
            node = Node.from_dict(record["node"])
            state.nodes[node.id] = node
        if "run" in record:
            for key, value in record["run"].items():
                setattr(state, key, value)
        state.seq = seq


class RunJournal:
    """Append-only record of changes to one run, held by the process driving it."""

    def __init__(self, directory: Path, state: RunState) -> None:
        self.directory = directory
        self.state = state
        self._handle: IO[str] | None = open(directory / JOURNAL, "a", encoding="utf-8")  # noqa: SIM115

    def _append(self, record: dict[str, Any]) -> None:
        assert self._handle is not None, "journal used after close"  # noqa: S101
        self.state.seq += 1
        record["seq"] = self.state.seq
        self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._handle.flush()

    def node(self, node: Node) -> None:
        """Record the current state of ``node``."""
        self._append({"node": node.to_dict()})

    def run(self) -> None:
        """Record the run-level fields."""
        self._append({"run": self.state.run_fields()})

    def compact(self) -> None:
        """Fold the journal into a new snapshot (atomic), then empty the journal."""
        write_json_atomic(self.directory / SNAPSHOT, self.state.to_dict())
        if self._handle is not None:
            self._handle.truncate(0)
            self._handle.seek(0)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class RunLock:
    """An exclusive ``flock`` on the run: one executor drives a run at a time.

    The kernel drops the lock when the holder dies, so a killed executor never leaves a
    stale lock behind, and "is anyone driving this run?" is answered by trying the lock.
    Such probes take a *shared* lock for an instant, so they never block each other, and an
    executor taking the exclusive lock retries for a moment rather than losing to a probe.
    """

    _BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)

    def __init__(self, directory: Path) -> None:
        self.path = directory / "lock"
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0) -> bool:
        """Take the exclusive lock, retrying up to ``timeout`` s; False if another holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in self._BUSY or time.monotonic() >= deadline:
                    os.close(fd)
                    if error.errno in self._BUSY:
                        return False
                    raise
                time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def held_elsewhere(self) -> bool:
        """Whether an executor (another process, or another lock here) drives the run now."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in self._BUSY:
                return True
            raise
        finally:
            os.close(fd)
        return False

    def holder_pid(self) -> int | None:
        """The pid written by the current holder (informational)."""
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    @contextlib.contextmanager
    def held(self, run_name: str) -> Iterator[None]:
        if not self.acquire(timeout=2.0):
            raise ConflictError(
                f"run {run_name!r} is being driven by another executor process "
                f"(pid {self.holder_pid()})",
                hint="wait for it, or `geomlops workflows stop` the run",
            )
        try:
            yield
        finally:
            self.release()


def drop_request(directory: Path, kind: str, payload: dict[str, Any]) -> Path:
    """Leave a ``resume``/``stop`` request for the executor driving the run."""
    requests = directory / "requests"
    requests.mkdir(exist_ok=True)
    path = requests / f"{time.time_ns():020d}-{kind}.json"
    write_json_atomic(path, {"kind": kind, **payload})
    return path


def has_requests(directory: Path) -> bool:
    """Whether requests are waiting for an executor to take them."""
    requests = directory / "requests"
    return requests.is_dir() and any(requests.glob("*.json"))


def take_requests(directory: Path) -> list[dict[str, Any]]:
    """Read and remove pending requests, oldest first."""
    requests = directory / "requests"
    if not requests.is_dir():
        return []
    taken = []
    for path in sorted(requests.glob("*.json")):
        try:
            taken.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
        path.unlink(missing_ok=True)
    return taken
