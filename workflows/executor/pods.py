"""Running one pod of a template as a local process.

A container or script template becomes one process: its command and args (or its script
source), its env on top of the executor's environment, its working directory, its stdout
and stderr in a per-pod log file. The image is not pulled; it is recorded. Each process
starts in its own session so that stopping a run, or cleaning up after a killed executor,
can signal the whole process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from geomlops.workflows.executor.model import NodePhase, now

RESULT_LIMIT = 256 * 1024
"""Argo keeps the last 256 kB of stdout as ``outputs.result``."""


@dataclass(frozen=True)
class OutputFile:
    """An output parameter read from a file the process writes (``valueFrom.path``)."""

    name: str
    path: Path
    default: str | None


@dataclass
class PodSpec:
    """Everything needed to run one pod, already substituted and mapped to local paths."""

    node_id: str
    pod_name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None
    log_path: Path
    pod_dir: Path
    script: str | None = None
    output_files: list[OutputFile] = field(default_factory=list)
    deadline: float | None = None
    termination_log: Path | None = None
    """The container's ``terminationMessagePath``, mapped: what it writes there on failure
    becomes the node's message, as Kubernetes and Argo report it."""


TERMINATION_MESSAGE_LIMIT = 4096
"""Kubernetes keeps the first 4096 bytes of a termination message."""


@dataclass
class PodResult:
    """How a pod ended: the node's phase, message and outputs."""

    node_id: str
    phase: str
    message: str
    exit_code: int | None = None
    result: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    finished_at: float = field(default_factory=now)


def pid_file(pod_dir: Path) -> Path:
    """Where a running pod's pid and start time are kept, for cleanup after a crash."""
    return pod_dir / "pid"


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a recycled pid.

    Read from ``/proc`` directly: calling psutil in the launch path measurably slowed every
    later ``fork`` of this process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def kill_leftover(pod_dir: Path) -> bool:
    """Kill the process group a dead executor left running for this pod; True if it did.

    The pid file holds the pid and its start time, so a recycled pid is never signalled.
    """
    try:
        pid_text, started = pid_file(pod_dir).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    if process_start(pid) != started:
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process_start(pid) == started:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except OSError:
            break
        time.sleep(0.02)
    return True


class PodRunner:
    """Runs pods on worker threads and kills them on request."""

    def __init__(self, kill_grace: float) -> None:
        self.kill_grace = kill_grace
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._kill_reasons: dict[str, str] = {}
        self._lock = threading.Lock()

    def kill(self, node_id: str, reason: str) -> None:
        """Terminate a running pod's process group (SIGTERM, then SIGKILL after the grace)."""
        with self._lock:
            process = self._processes.get(node_id)
            self._kill_reasons.setdefault(node_id, reason)
        if process is not None:
            _terminate_group(process, self.kill_grace)

    def kill_all(self, reason: str) -> None:
        with self._lock:
            running = list(self._processes)
        for node_id in running:
            self.kill(node_id, reason)

    def run(self, spec: PodSpec) -> PodResult:
        """Run the pod to its end; never raises for anything the process does."""
        spec.pod_dir.mkdir(parents=True, exist_ok=True)
        if spec.termination_log is not None:  # a fresh file per run of the pod, as a kubelet's
            spec.termination_log.unlink(missing_ok=True)
        argv = list(spec.argv)
        if spec.script is not None:
            script_path = spec.pod_dir / "script"
            script_path.write_text(spec.script, encoding="utf-8")
            script_path.chmod(0o755)
            argv.append(str(script_path))
        with open(spec.log_path, "ab", buffering=0) as log:
            try:
                process = subprocess.Popen(
                    argv,
                    cwd=spec.cwd,
                    env=spec.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                )
            except OSError as error:
                message = f"failed to start {argv[0]!r}: {error.strerror or error}"
                log.write(f"[geomlops executor] {message}\n".encode())
                return PodResult(spec.node_id, NodePhase.ERROR, message)
            self._remember(spec, process)
            timer = None
            if spec.deadline is not None:
                timer = threading.Timer(spec.deadline, self._expire, (spec.node_id,))
                timer.daemon = True
                timer.start()
            tail = self._pump(process, log)
            code = process.wait()
            if timer is not None:
                timer.cancel()
        with self._lock:
            self._processes.pop(spec.node_id, None)
            kill_reason = self._kill_reasons.pop(spec.node_id, None)
        pid_file(spec.pod_dir).unlink(missing_ok=True)
        return _result(spec, code, tail, kill_reason)

    def _remember(self, spec: PodSpec, process: subprocess.Popen[bytes]) -> None:
        started = process_start(process.pid) or "0"
        pid_file(spec.pod_dir).write_text(f"{process.pid} {started}")
        with self._lock:
            self._processes[spec.node_id] = process
            reason = self._kill_reasons.get(spec.node_id)
        if reason is not None:  # stopped before it had started
            _terminate_group(process, self.kill_grace)

    def _expire(self, node_id: str) -> None:
        self.kill(node_id, "Pod was active on the node longer than the specified deadline")

    @staticmethod
    def _pump(process: subprocess.Popen[bytes], log: object) -> bytes:
        """Copy stdout into the log while keeping its last ``RESULT_LIMIT`` bytes."""
        assert process.stdout is not None  # noqa: S101 - set by stdout=PIPE
        tail = bytearray()
        write = log.write  # type: ignore[attr-defined]
        while chunk := process.stdout.read1(65536):  # type: ignore[attr-defined]
            write(chunk)
            tail += chunk
            if len(tail) > 2 * RESULT_LIMIT:
                del tail[: len(tail) - RESULT_LIMIT - 1]
        process.stdout.close()
        return bytes(tail)


def _terminate_group(process: subprocess.Popen[bytes], grace: float) -> None:
    def signal_group(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    if process.poll() is not None:
        return
    signal_group(signal.SIGTERM)

    def escalate() -> None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return
            time.sleep(0.05)
        signal_group(signal.SIGKILL)

    threading.Thread(target=escalate, daemon=True).start()


def _result(spec: PodSpec, code: int, stdout_tail: bytes, kill_reason: str | None) -> PodResult:
    exit_code = code if code >= 0 else 128 - code
    text = stdout_tail.decode("utf-8", errors="replace")
    if text.endswith("\n"):  # Argo trims one newline for convenience
        text = text[:-1]
    if len(text.encode()) > RESULT_LIMIT:
        text = text.encode()[-RESULT_LIMIT:].decode("utf-8", errors="ignore")
    if kill_reason is not None:
        phase, message = NodePhase.FAILED, kill_reason
    elif code == 0:
        phase, message = NodePhase.SUCCEEDED, ""
    elif code < 0:
        phase, message = NodePhase.FAILED, f"killed by signal {-code} (exit code {exit_code})"
    else:
        phase, message = NodePhase.FAILED, f"Error (exit code {exit_code})"
        said = _termination_message(spec.termination_log)
        if said:  # Argo: "<reason> (exit code N): <termination message>"
            message = f"{message}: {said}"
    result = PodResult(spec.node_id, phase, message, exit_code=exit_code, result=text)
    for output in spec.output_files:
        try:
            result.parameters[output.name] = output.path.read_text(encoding="utf-8")
        except OSError as error:
            if output.default is not None:
                result.parameters[output.name] = output.default
            elif result.phase == NodePhase.SUCCEEDED:
                result.phase = NodePhase.ERROR
                result.message = (
                    f"output parameter '{output.name}': cannot read {output.path} "
                    f"({error.strerror or error})"
                )
    return result


def _termination_message(path: Path | None) -> str:
    """What the container wrote to its termination message file (first 4096 bytes), or ''."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as handle:
            data = handle.read(TERMINATION_MESSAGE_LIMIT)
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace").strip()
