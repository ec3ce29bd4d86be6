"""Each model package runs in its own Python environment, built from its ``requirements.txt``.

On a cluster a package's steps run in its image, whose Dockerfile installs the package's
``requirements.txt``. Locally the executor does the same with uv: one environment per
distinct set of requirements, so the platform's own environment needs no model's framework
(flood-water-s2's terratorch lives only in flood-water-s2's environment).

An environment is cached under ``GEOMLOPS_TRAIN_ENV_CACHE`` by a hash of what decides its
contents: the package's requirements, the Python version and platform, and the platform SDK
(this checkout, installed editable, and the SDK's own dependencies). uv's cache makes a
second environment with the same wheels cheap: it hardlinks files rather than copying them.

Two workflows may need the same environment at once: the build holds a file lock, and is
done in a temporary folder renamed into place only when complete, so no step ever sees a
half-built environment and a crashed build leaves nothing behind that looks finished.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import geomlops
from geomlops.errors import GeomlopsError, ValidationFailed
from geomlops.settings import Settings
from geomlops.settings.base import REPO_ROOT

log = logging.getLogger(__name__)

REQUIREMENTS_FILE = "requirements.txt"
"""A package's Python requirements, installed by its Dockerfile and by the local executor."""

SDK_DISTRIBUTION = "geomlops"
"""The distribution of the platform SDK (``geomlops.ml``) a package declares it needs."""

PACKAGE_PINNED = ("torch",)
"""SDK dependencies every package pins itself (the torch it was written for)."""


MARKER = ".geomlops-env.json"
"""Written last into a finished environment: what it was built from, and how long it took."""

FORMAT = 2
"""Bump when the way an environment is built changes, so that old ones are not reused."""


class EnvironmentBuildFailed(GeomlopsError):
    """uv could not build a package's environment from its requirements."""


@dataclass(frozen=True)
class PackageEnv:
    """The Python environment a package's entry points run in."""

    path: Path
    """The environment's root (``sys.prefix`` of its interpreter)."""
    python: Path
    """Its interpreter."""
    built: bool = False
    """Whether this call built it (False: reused from the cache, or the image's own)."""

    @property
    def bindir(self) -> Path:
        """The folder put first on PATH, so the MLproject's ``python main.py`` runs here."""
        return self.python.parent


# --- requirements ---------------------------------------------------------------------------
def read_requirements(package_dir: Path, path: Path | None = None) -> list[Requirement]:
    """The requirements a package declares, one per line of its ``requirements.txt``.

    ``path``: read that file instead (a copy logged with a model, :func:`requirements_env`);
    ``package_dir`` then only names the package in messages.

    Only plain requirement lines are accepted (no ``-r``, ``-e``, ``--index-url``): the
    same file is installed by the package's Dockerfile and here, and anything that only one
    of the two could follow would make them differ. Every bad line is reported at once.
    """
    path = path or package_dir / REQUIREMENTS_FILE
    if not path.is_file():
        raise ValidationFailed(
            f"{package_dir.name}: {REQUIREMENTS_FILE} not found in {package_dir}",
            hint=f"declare the package's Python requirements in {path} (one per line: "
            "`geomlops`, the torch pin, the model's framework); its Dockerfile installs the "
            "same file",
        )
    found: list[Requirement] = []
    problems: list[str] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            problems.append(
                f"{REQUIREMENTS_FILE}:{number}: {line!r}: options are not supported, only "
                "requirements (e.g. `terratorch==1.2.11`)"
            )
            continue
        try:
            found.append(Requirement(line))
        except InvalidRequirement as exc:
            problems.append(f"{REQUIREMENTS_FILE}:{number}: {line!r}: {exc}")
    if not any(canonicalize_name(r.name) == SDK_DISTRIBUTION for r in found):
        problems.append(
            f"{REQUIREMENTS_FILE}: no `{SDK_DISTRIBUTION}` requirement: a package declares the "
            "platform SDK (geomlops.ml) it imports"
        )
    if problems:
        raise ValidationFailed(
            f"{package_dir.name}: {REQUIREMENTS_FILE} cannot be installed", problems=problems
        )
    return found


def sdk_requirements() -> list[str]:
    """The SDK's own dependencies: the base distribution's, as the platform declares them.

    The base distribution (no extra) is the package SDK, ``geomlops.ml`` and the kernel
    parts it imports (pyproject.toml), so a package environment and the main one agree on,
    say, the MLflow client; torch is left to the package's own pin. One substitution: the
    SDK's ``mlflow-skinny`` (a client for a tracking server, what an image holds) becomes
    the platform's own ``mlflow`` pin here, whose SQL stores let a package's entry points
    run against a local ``sqlite:`` store too, as its tests and ``mlflow run`` do.
    """
    found = []
    platform_mlflow = None
    for text in importlib.metadata.requires(SDK_DISTRIBUTION) or []:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None:  # the extras (`platform`, `dev`) carry a marker
            if name == "mlflow" and requirement.marker.evaluate({"extra": "platform"}):
                platform_mlflow = f"mlflow{requirement.specifier}"
            continue
        if name not in PACKAGE_PINNED:
            found.append(str(requirement))
    if not found:  # pragma: no cover - a packaging mistake of the platform itself
        raise GeomlopsError("the installed geomlops distribution declares no dependencies")
    if platform_mlflow is not None:
        found = [
            platform_mlflow if canonicalize_name(Requirement(r).name) == "mlflow-skinny" else r
            for r in found
        ]
    return sorted(found)


def _check_sdk(package: str, requirements: list[Requirement]) -> None:
    """Refuse a package that asks for another SDK version than this checkout's."""
    version = Version(geomlops.__version__)
    for requirement in requirements:
        if canonicalize_name(requirement.name) != SDK_DISTRIBUTION:
            continue
        if requirement.specifier and not requirement.specifier.contains(version, True):
            raise EnvironmentBuildFailed(
                f"{package}: {REQUIREMENTS_FILE} requires `{requirement}`, but this platform "
                f"is geomlops {version}",
                hint="relax the geomlops requirement, or run the platform version the package "
                "was written for",
            )


def environment_key(requirements: list[Requirement], sdk: list[str]) -> str:
    """A short hash of everything that decides an environment's contents."""
    facts = {
        "format": FORMAT,
        "requirements": sorted(str(r) for r in requirements),
        "sdk": sdk,
        "sdk_version": geomlops.__version__,
        "sdk_source": str(REPO_ROOT),  # installed editable: one environment per checkout
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": f"{sys.platform}-{platform.machine()}",
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


# --- building -------------------------------------------------------------------------------
def package_env(package_dir: Path, settings: Settings) -> PackageEnv:
    """The environment package ``package_dir`` runs in, built first when needed.

    In the package's image (the folder is the image's package folder) that is the image's
    own interpreter: its Dockerfile installed the same requirements there.
    """
    if package_dir.resolve() == Path(settings.training.image_dir).resolve():
        return PackageEnv(path=Path(sys.prefix), python=Path(sys.executable))
    return _environment(package_dir.name, read_requirements(package_dir), settings)


def requirements_env(name: str, requirements_file: Path, settings: Settings) -> PackageEnv:
    """The environment a ``requirements.txt`` describes, outside any package folder.

    A model that runs in its package's environment carries a copy of its package's
    ``requirements.txt`` (:data:`geomlops.model.runtimes.ENV_REQUIREMENTS_FILE`); the same
    requirements give the same cache key, so serving and batch inference find the very
    environment training built, and build it themselves only where none exists.
    """
    return _environment(name, read_requirements(Path(name), requirements_file), settings)


def _environment(package: str, requirements: list[Requirement], settings: Settings) -> PackageEnv:
    _check_sdk(package, requirements)
    sdk = sdk_requirements()
    cache = settings.training.env_cache
    target = cache / environment_key(requirements, sdk)
    if (target / MARKER).is_file():  # the common case needs no lock
        return PackageEnv(path=target, python=target / "bin" / "python")
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_suffix(".lock")):
        if (target / MARKER).is_file():  # another step built it while we waited
            return PackageEnv(path=target, python=target / "bin" / "python")
        _build(package, target, requirements, sdk)
    return PackageEnv(path=target, python=target / "bin" / "python", built=True)


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def _build(package: str, target: Path, requirements: list[Requirement], sdk: list[str]) -> None:
    """Build the environment in a temporary folder beside ``target``, then rename it there."""
    own = [str(r) for r in requirements if canonicalize_name(r.name) != SDK_DISTRIBUTION]
    log.info(
        "building the environment of %s in %s with uv (%s); the first build downloads "
        "every wheel (torch: ~3 GB), later ones reuse uv's cache",
        package, target, ", ".join(own),
    )  # fmt: skip
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    env = staging / "env"
    uv = _uv()
    try:
        # Relocatable: scripts find their interpreter relative to themselves, so the
        # finished environment still works after the rename into place.
        venv = [uv, "venv", "--quiet", "--relocatable", "--python", sys.executable, str(env)]
        _uv_run(package, requirements, venv)
        install = [uv, "pip", "install", "--python", str(env / "bin" / "python")]
        # Bytecode now, not at the first import: a step may run with PYTHONDONTWRITEBYTECODE,
        # and then every import of torch and its framework compiles them again (minutes).
        _uv_run(package, requirements, [*install, "--compile-bytecode", *own, *sdk])
        _uv_run(package, requirements, [*install, "--no-deps", "-e", str(REPO_ROOT)])
        seconds = round(time.monotonic() - started, 1)
        facts = {"package": package, "requirements": own, "sdk": sdk, "seconds": seconds}
        (env / MARKER).write_text(json.dumps(facts, indent=2) + "\n")
        env.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("built the environment of %s in %.1f s", package, seconds)


def _uv_run(package: str, requirements: list[Requirement], command: list[str]) -> None:
    """Run one uv command; a failure names the package and the requirements uv blamed."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return
    output = (done.stderr or done.stdout).strip()
    blamed = [str(r) for r in requirements if canonicalize_name(r.name) in output.lower()]
    what = f" (uv names {', '.join(f'`{b}`' for b in blamed)})" if blamed else ""
    raise EnvironmentBuildFailed(
        f"{package}: its environment could not be built from {REQUIREMENTS_FILE}{what}:\n"
        f"{output[-2000:]}",
        hint=f"fix {package}/{REQUIREMENTS_FILE} (every requirement must install together "
        "with torch and the platform SDK), or the package index it installs from",
    )
