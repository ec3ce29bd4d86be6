"""Running a generic processor: its checksum verified, in its own process, within limits.

The script runs as ``python -I processor_host.py SCRIPT`` (the platform's Python, so numpy,
rasterio, shapely and pyproj are there) with:

- its sha256 checked against the catalogued one first: a script changed in S3 after
  registration is refused, not run;
- a wall-clock limit (the process group is killed when it passes), an address-space
  (memory) limit, a CPU-time limit and a file-size limit (set by the host on itself
  before it loads the script);
- an environment with no platform credentials (no S3 keys, no API key): it needs no
  network and gets nothing to reach the platform with;
- a working folder of its own, its stdout and stderr going to files there (bounded by the
  file-size limit, never held in memory).

Any failure — a non-zero exit, a kill, a timeout, stdout that is not one JSON object —
raises :class:`ProcessorFailed` with the tail of its stderr, which the process step puts in
the run's status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geomlops.errors import GeomlopsError
from geomlops.processors import sha256_file

HOST = Path(__file__).with_name("processor_host.py")


class ProcessorFailed(GeomlopsError):
    """A processor was refused, failed, timed out or answered something other than JSON."""

    def __init__(self, message: str, *, stderr: str = "", hint: str | None = None) -> None:
        super().__init__(message + (f"; stderr ends: {stderr}" if stderr else ""), hint=hint)
        self.stderr = stderr


@dataclass(frozen=True)
class Limits:
    """What one processor run may use."""

    timeout_s: float
    memory_mb: int
    file_mb: int = 512
    stderr_chars: int = 2000


def _limit_args(limits: Limits) -> list[str]:
    """The host's limits: memory MB, CPU seconds (the wall limit, rounded up), file MB."""
    return [str(limits.memory_mb), str(max(1, int(limits.timeout_s) + 1)), str(limits.file_mb)]


def _environment(workdir: Path) -> dict[str, str]:
    """A minimal environment: nothing of the platform's, least of all its credentials."""
    return {
        "PATH": os.defpath,
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
    }


def _tail(path: Path, chars: int) -> str:
    if not path.exists():
        return ""
    text = path.read_bytes()[-chars * 4 :].decode("utf-8", "replace")
    return text[-chars:].strip()


def verify(script: Path, expected_sha256: str) -> None:
    """ProcessorFailed unless ``script`` is byte for byte the catalogued one."""
    actual = sha256_file(script)
    if actual != expected_sha256:
        raise ProcessorFailed(
            f"{script.name}: sha256 {actual} is not the catalogued {expected_sha256}: the "
            "script was changed after registration and is not run",
            hint="register the changed script as a new version (`geomlops processor register`)",
        )


def run_processor(
    script: Path,
    expected_sha256: str,
    inputs: dict[str, Any],
    params: dict[str, Any],
    workdir: Path,
    limits: Limits,
) -> dict[str, Any]:
    """Run ``script`` on ``inputs`` and ``params`` in ``workdir``; its JSON result."""
    verify(script, expected_sha256)
    workdir.mkdir(parents=True, exist_ok=True)
    request = workdir / "request.json"
    request.write_text(json.dumps({"inputs": inputs, "params": params}), encoding="utf-8")
    stdout, stderr = workdir / "stdout.json", workdir / "stderr.log"
    with request.open("rb") as fin, stdout.open("wb") as fout, stderr.open("wb") as ferr:
        process = subprocess.Popen(
            [sys.executable, "-I", str(HOST), str(script), *_limit_args(limits)],
            stdin=fin,
            stdout=fout,
            stderr=ferr,
            cwd=workdir,
            env=_environment(workdir),
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
        try:
            code = process.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise ProcessorFailed(
                f"{script.name} ran past its time limit of {limits.timeout_s:g} s and was killed",
                stderr=_tail(stderr, limits.stderr_chars),
                hint="raise GEOMLOPS_PROCESSOR_TIMEOUT_S, or make the script faster",
            ) from None
    said = _tail(stderr, limits.stderr_chars)
    if code < 0:
        name = signal.Signals(-code).name
        raise ProcessorFailed(
            f"{script.name} was killed by {name} (over its CPU, memory or file-size limit?)",
            stderr=said,
        )
    if code != 0:
        raise ProcessorFailed(f"{script.name} failed with exit code {code}", stderr=said)
    text = stdout.read_text(encoding="utf-8", errors="replace")
    try:
        result = json.loads(text)
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise ProcessorFailed(
            f"{script.name} printed non-JSON on stdout ({text[:200]!r}): stdout carries the "
            "result of process() alone",
            stderr=said,
            hint="log with print(..., file=sys.stderr) or the logging module",
        )
    return result
