"""What a package folder holds on disk: symbolic links, sizes, paths that must stay inside.

A package is shipped into an image and its files are read by CI with repository secrets in
reach, so nothing in it may point outside it: not the folder itself (a symbolic link out of
the repository would smuggle in any directory of the build machine), not a link inside it,
not a path an entry point runs. Size limits keep weights and data out of packages; those
belong in MLflow and the sample-data registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from geomlops.registration.problems import Problem
from geomlops.settings import RegistrationSettings

# Made by running the code or tools inside the folder, never part of the package.
IGNORED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", "mlruns", ".git"})


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"  # pragma: no cover - the loop always returns


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (resolved) is ``root`` or below it."""
    return path.resolve().is_relative_to(root.resolve())


def walk(package: Path) -> Iterator[Path]:
    """Every entry below ``package`` except tool caches, without following symbolic links."""
    for dirpath, dirnames, filenames in os.walk(package, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        here = Path(dirpath)
        for name in [*dirnames, *sorted(filenames)]:
            yield here / name


def folder_problems(package: Path, repo_root: Path | None) -> list[Problem]:
    """The package folder itself: it must exist, be a folder and not be a symbolic link."""
    shown = str(package)
    if package.is_symlink():
        target = package.resolve()
        where = ""
        if repo_root is not None and not is_inside(target, repo_root):
            where = f", outside the repository {repo_root}"
        return [
            Problem(
                shown,
                "",
                f"the package folder is a symbolic link to {target}{where}",
                "copy the package into model_packages/ instead of linking to it",
            )
        ]
    if not package.exists():
        return [Problem(shown, "", "no such folder", "give the path of a package folder")]
    if not package.is_dir():
        return [Problem(shown, "", "is a file, not a package folder", "give the folder")]
    return []


def content_problems(package: Path, limits: RegistrationSettings) -> list[Problem]:
    """Links that leave the package, files over the size limit, a package over its total."""
    problems: list[Problem] = []
    total = 0
    for entry in walk(package):
        relative = str(entry.relative_to(package))
        if entry.is_symlink():
            if not is_inside(entry, package):
                problems.append(
                    Problem(
                        relative,
                        "",
                        f"is a symbolic link to {os.readlink(entry)}, outside the package",
                        "replace the link with the file itself",
                    )
                )
            continue
        if not entry.is_file():
            continue
        size = entry.stat().st_size
        total += size
        if size > limits.max_file_bytes:
            problems.append(
                Problem(
                    relative,
                    "",
                    f"is {_human(size)}, over the limit of {_human(limits.max_file_bytes)} "
                    "per file",
                    "keep weights in MLflow and data in the sample-data registry, not in the "
                    "package (limit: GEOMLOPS_REGISTRATION_MAX_FILE_BYTES)",
                )
            )
    if total > limits.max_package_bytes:
        problems.append(
            Problem(
                ".",
                "",
                f"the package holds {_human(total)}, over the limit of "
                f"{_human(limits.max_package_bytes)}",
                "remove generated files (limit: GEOMLOPS_REGISTRATION_MAX_PACKAGE_BYTES)",
            )
        )
    return problems


def reference_problem(
    package: Path, reference: str, file: str, location: str, what: str
) -> Problem | None:
    """A problem if ``reference`` (a path a package file names) is not a file inside it."""
    pure = PurePosixPath(reference)
    if pure.is_absolute() or Path(reference).is_absolute():
        return Problem(
            file,
            location,
            f"{what} {reference!r} is an absolute path",
            "name files relative to the package folder",
        )
    target = package / reference
    if ".." in pure.parts and not is_inside(target, package):
        return Problem(
            file,
            location,
            f"{what} {reference!r} leaves the package folder (path traversal)",
            "keep every file an entry point uses inside the package folder",
        )
    if not is_inside(target, package):
        return Problem(
            file,
            location,
            f"{what} {reference!r} resolves outside the package folder",
            "replace the symbolic link with the file itself",
        )
    if not target.is_file():
        return Problem(
            file,
            location,
            f"{what} {reference!r} does not exist in the package",
            f"add {reference} to the package or fix the name",
        )
    return None
