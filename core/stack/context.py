"""What every service of the local stack needs to know while starting or checking."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from geomlops.settings import Settings
from geomlops.stack.state import StatePaths


@dataclass
class StackContext:
    """Settings, state paths and the ports chosen for this run of the stack."""

    settings: Settings
    paths: StatePaths
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def python(self) -> str:
        """The interpreter of this environment, so services run the same packages."""
        return sys.executable

    def bin(self, name: str) -> str:
        """A console script installed beside this interpreter."""
        candidate = Path(sys.executable).parent / name
        return str(candidate) if candidate.exists() else name

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a service: ours, pinned to this state directory."""
        env = dict(os.environ)
        env["GEOMLOPS_HOME"] = str(self.paths.home)
        env.update(extra or {})
        return env
