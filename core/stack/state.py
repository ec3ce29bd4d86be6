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
        """Create the directory skeleton (idempotent)."""
        for path in (self.home, self.logs_dir, self.run_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


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


def _write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
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
