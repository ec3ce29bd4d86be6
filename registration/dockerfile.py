"""Check a package's ``Dockerfile`` without a Docker engine (none runs on the build hosts).

The image is built with the package folder as its context (README section 7), in this
repository or in the package's own, so every ``COPY``/``ADD`` source must exist inside the
package folder, and one of them must bring the package itself. A Dockerfile copied from
another package (``COPY model_packages/flood-water-s1/ .``) fails here rather than after the
image build, or worse, builds the wrong package. Copies from other stages or images
(``COPY --from=…``) do not read the context and are not checked.
"""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path

from geomlops.registration.contract import DOCKERFILE, MLPROJECT_FILE
from geomlops.registration.files import is_inside
from geomlops.registration.problems import Problem

_FLAG = re.compile(r"^--[a-z-]+(=\S*)?$")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with the line it starts on."""

    line: int
    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The instructions, continuation lines joined, comments and directives dropped."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are skipped by Docker
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        keyword, _, arguments = " ".join(pending).partition(" ")
        found.append(Instruction(start, keyword.upper(), arguments.strip()))
        pending = []
    return found


def _sources(arguments: str) -> list[str] | None:
    """COPY/ADD sources from the local context; None for other stages and heredocs."""
    if "<<" in arguments:
        return None
    words = arguments.split()
    flags = [w for w in words if _FLAG.match(w)]
    if any(f.startswith("--from") for f in flags):
        return None
    rest = arguments
    for flag in flags:
        rest = rest.replace(flag, "", 1)
    rest = rest.strip()
    if rest.startswith("["):
        try:
            parts = [str(p) for p in json.loads(rest)]
        except json.JSONDecodeError:
            return []
    else:
        parts = rest.split()
    return [p for p in parts[:-1] if "://" not in p]


def dockerfile_problems(package: Path) -> list[Problem]:
    """FROM present and CUDA-based; every copied source exists in the package folder.

    Each rule is reported on its own: a missing ``FROM`` does not hide a wrong ``COPY``.
    """
    file = package / DOCKERFILE
    if not file.is_file():
        return []  # reported with the other missing files
    steps = instructions(file.read_text(encoding="utf-8", errors="replace"))
    problems: list[Problem] = []
    bases = [s for s in steps if s.keyword == "FROM"]
    if not bases:
        problems.append(
            Problem(
                DOCKERFILE,
                "",
                "has no FROM instruction",
                "start from a CUDA base image, e.g. `FROM nvidia/cuda:13.0.0-base-ubuntu24.04`",
            )
        )
    else:
        first = bases[0]
        image = next((w for w in first.arguments.split() if not w.startswith("--")), "")
        if "$" not in image and "cuda" not in image.lower():
            problems.append(
                Problem(
                    DOCKERFILE,
                    f"line {first.line}",
                    f"FROM {image}: the base image is not a CUDA image",
                    "start from a CUDA base image (the image must use a GPU when there is one "
                    "and run on CPU otherwise)",
                )
            )
    copies_package = False
    for step in steps:
        if step.keyword not in ("COPY", "ADD"):
            continue
        for source in _sources(step.arguments) or []:
            found = _source_problem(package, step, source)
            if found:
                problems.append(found)
            elif _copies_package(package, source):
                copies_package = True
    if not copies_package:
        problems.append(
            Problem(
                DOCKERFILE,
                "",
                "no COPY instruction copies the package (its MLproject), so the image "
                "cannot run an entry point",
                "add `COPY . /opt/package` (the build context is the package folder) and "
                "`WORKDIR /opt/package`",
            )
        )
    return problems


def _source_problem(package: Path, step: Instruction, source: str) -> Problem | None:
    """A problem if ``source`` is not in the build context: the package folder."""
    # Docker reads a leading slash as the context's root, not the host's.
    relative = source.lstrip("/") or "."
    target = package / relative
    inside = is_inside(target, package)
    if inside and any(c in relative for c in "*?["):
        exists = bool(glob.glob(relative, root_dir=package))
    else:
        exists = target.exists()
    if inside and exists:
        return None
    where = "leaves" if not inside else "does not exist in"
    return Problem(
        DOCKERFILE,
        f"line {step.line}",
        f"{step.keyword} source {source!r} {where} the build context, the package folder",
        "the image is built with the package folder as context (`docker build "
        "model_packages/<name>`, or `docker build .` in the package's own repository); "
        "name sources relative to it, e.g. `COPY . /opt/package`",
    )


def _copies_package(package: Path, source: str) -> bool:
    """Whether ``source`` brings the package itself (its folder or its MLproject)."""
    target = (package / (source.lstrip("/") or ".")).resolve()
    return target in (package.resolve(), (package / MLPROJECT_FILE).resolve())
