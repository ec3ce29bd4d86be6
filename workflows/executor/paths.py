"""Translating container paths to local ones, and Kubernetes' ``$(VAR)`` references.

A manifest written for a cluster names container paths (``/work``, ``/tmp/outputs``). On one
machine two parallel steps writing ``/tmp/outputs/x`` would collide, and ``/opt/package``
may not exist at all. The ``path_map`` setting maps a container path prefix to a local
directory; ``{pod_dir}`` and ``{run_dir}`` in a target give each pod (or run) its own copy.
The mapping applies, at path boundaries only, to command, args, env values, the script
source, ``workingDir`` and ``valueFrom.path`` — the places a container path can appear.
"""

from __future__ import annotations

import re
from pathlib import Path

from geomlops.errors import ConfigError

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_k8s_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion: ``$(NAME)`` from the container's env, ``$$`` escapes a ``$``.

    A reference to a name not in the container's env stays as written, as in Kubernetes.
    """
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR.sub(replace, text)


class PathMapper:
    """Applies the ``path_map`` setting for one pod."""

    def __init__(self, mapping: dict[str, str], *, pod_dir: Path, run_dir: Path) -> None:
        self.targets: dict[str, str] = {}
        for prefix, target in mapping.items():
            if not prefix.startswith("/") or prefix.rstrip("/") == "":
                raise ConfigError(
                    f"path map prefix {prefix!r} must be an absolute path other than '/'",
                    hint="set GEOMLOPS_WORKFLOWS_PATH_MAP, e.g. "
                    '\'{"/tmp/outputs": "{pod_dir}/outputs"}\'',
                )
            local = target.replace("{pod_dir}", str(pod_dir)).replace("{run_dir}", str(run_dir))
            self.targets[prefix.rstrip("/")] = local.rstrip("/") or "/"
        self._own_dirs = [
            Path(self.targets[p.rstrip("/")])
            for p, t in mapping.items()
            if "{pod_dir}" in t or "{run_dir}" in t
        ]
        if self.targets:
            alternatives = "|".join(
                re.escape(p) for p in sorted(self.targets, key=len, reverse=True)
            )
            self._pattern: re.Pattern[str] | None = re.compile(
                rf"(?<![\w.\-/])({alternatives})(?=$|/|[^\w.\-])"
            )
        else:
            self._pattern = None

    def map(self, text: str) -> str:
        """``text`` with every mapped container path replaced by its local path."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.targets[m.group(1)], text)

    def make_dirs(self) -> None:
        """Create the per-pod and per-run directories the mapping points to."""
        for directory in self._own_dirs:
            directory.mkdir(parents=True, exist_ok=True)
