"""The state directory of the local stack: its layout, remembered ports and secrets.

Everything the local stack keeps lives under ``$GEOMLOPS_HOME``. Ports are chosen once
(free ports on loopback, or the ones the settings fix) and remembered in ``stack.json`` so
every later command, and every tool pointed at the stack by ``geomlops env``, finds the
same URLs. Secrets are generated once and kept in ``secrets/`` readable by the owner only.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geomlops.errors import StackError

STATE_VERSION = 1


@dataclass(frozen=True)
class StatePaths:
    """Where each piece of local state lives under the state directory."""

    home: Path

    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def outputs_dir(self) -> Path:
        """Where the demo and local runs leave files for a person to open (QGIS, a browser)."""
        return self.home / "outputs"

    def service_dir(self, name: str) -> Path:
        return self.home / name

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def ensure(self) -> None:
        """Create the directory skeleton (idempotent), readable by its owner only."""
        self.home.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        for path in (self.logs_dir, self.run_dir, self.secrets_dir):
            path.mkdir(mode=PRIVATE_DIR, exist_ok=True)


PRIVATE_DIR = 0o700
"""Mode of every directory under the state directory: its owner's alone."""
PRIVATE_FILE = 0o600
"""Mode of every file under it: logs, S3 volumes, secrets, run records."""
SERVICE_UMASK = 0o077
"""The umask services start with, so the files they make are born private."""


def generated_secrets(paths: StatePaths) -> list[str]:
    """Every secret generated into ``secrets/`` (passwords, keys): what no log may show."""
    found: list[str] = []
    for path in sorted(paths.secrets_dir.glob("*.json")) if paths.secrets_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found += [v for v in data.values() if isinstance(v, str) and len(v) >= 16]
    return found


def redact_logs(paths: StatePaths, secrets: list[str]) -> list[Path]:
    """Overwrite every occurrence of ``secrets`` in the service logs with asterisks.

    Earlier versions started MLflow with the database password in its command line, and
    the log header of every start repeats the command line, so logs kept from then hold
    the password. Each occurrence is overwritten in place, with as many bytes, so a
    service appending to the log meanwhile loses nothing. Returns the logs changed.
    """
    wanted = [s.encode() for s in secrets if len(s) >= 8]
    changed: list[Path] = []
    for log in sorted(paths.logs_dir.glob("*.log")) if paths.logs_dir.is_dir() else []:
        with log.open("r+b") as fh:
            data = fh.read()
            redacted = data
            for secret in wanted:
                redacted = redacted.replace(secret, b"*" * len(secret))
            if redacted != data:
                fh.seek(0)
                fh.write(redacted)
                changed.append(log)
    return changed


def restrict(paths: StatePaths, *, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Take group and other access away from everything under the state directory.

    Logs can hold what a service printed (URLs, tracebacks) and S3 volumes hold every
    model, dataset and prediction; both were readable by every local user (0644 files in
    0755 directories). Services now start with :data:`SERVICE_UMASK`; this fixes what an
    earlier version left. Directories in ``keep`` are made private but not entered (a
    PostgreSQL data directory is the server's, and PostgreSQL keeps it 0700 itself). The
    state directory itself keeps its group *execute* bit: it may be an ACL mask that lets
    the ``postgres`` user through to its own directory and log (see
    :mod:`geomlops.stack.postgres`); so does ``logs/``. Returns what was changed.
    """
    changed: list[Path] = []

    def tighten(path: Path, allowed: int) -> None:
        mode = path.lstat().st_mode & 0o777
        if mode & ~allowed:
            path.chmod(mode & allowed)
            changed.append(path)

    if not paths.home.is_dir():
        return changed
    traverse = {paths.home, paths.logs_dir}
    tighten(paths.home, PRIVATE_DIR | 0o010)
    for root, dirs, files in os.walk(paths.home):
        here = Path(root)
        for name in list(dirs):
            path = here / name
            if path.is_symlink():
                dirs.remove(name)
                continue
            tighten(path, PRIVATE_DIR | (0o010 if path in traverse else 0))
            if path in keep:
                dirs.remove(name)
        for name in files:
            path = here / name
            if not path.is_symlink():
                tighten(path, PRIVATE_FILE)
    return changed


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise StackError(
            f"{path} is corrupted ({exc})",
            hint=f"delete {path} and run `geomlops up` again (data is kept)",
        ) from exc
    if not isinstance(data, dict):
        raise StackError(
            f"{path} is corrupted (expected a JSON object)",
            hint=f"delete {path} and run `geomlops up` again (data is kept)",
        )
    return data


def _write_json(path: Path, data: dict[str, Any], mode: int = 0o600) -> None:
    """Write atomically, so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def load_ports(paths: StatePaths) -> dict[str, int]:
    """Ports remembered for each service (empty before the first `up`)."""
    data = _read_json(paths.state_file)
    ports = data.get("ports", {})
    if not isinstance(ports, dict) or not all(isinstance(v, int) for v in ports.values()):
        raise StackError(
            f"{paths.state_file} is corrupted (bad 'ports')",
            hint=f"delete {paths.state_file} and run `geomlops up` again (data is kept)",
        )
    return ports


def save_ports(paths: StatePaths, ports: dict[str, int]) -> None:
    """Remember the ports chosen for each service."""
    _write_json(paths.state_file, {"version": STATE_VERSION, "ports": ports})


def _token(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def secret(paths: StatePaths, name: str, fields: dict[str, int]) -> dict[str, str]:
    """Return the secret ``name``, generating it once (``fields``: field → length)."""
    path = paths.secrets_dir / f"{name}.json"
    data = _read_json(path)
    if data and set(fields) <= set(data):
        return {k: str(v) for k, v in data.items()}
    paths.ensure()
    data = {field: _token(length) for field, length in fields.items()}
    _write_json(path, data, mode=0o600)
    return data


def existing_secret(paths: StatePaths, name: str) -> dict[str, str] | None:
    """Return the secret ``name`` if it was generated, without creating it."""
    data = _read_json(paths.secrets_dir / f"{name}.json")
    return {k: str(v) for k, v in data.items()} or None
