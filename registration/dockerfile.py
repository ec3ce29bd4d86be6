"""Check a package's ``Dockerfile`` without a Docker engine (none runs on the build hosts).

The image is built with the package folder as its context (README section 7), here or in
the package's own repository, so every ``COPY``/``ADD`` source must exist inside the package
folder, and one of them must be the folder itself (``COPY . .``): a Dockerfile copied from
another package, or written for another build context, fails here rather than in the build.
"""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path

from geomlops.registration.contract import DOCKERFILE
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


def dockerfile_problems(package: Path, repo_root: Path | None) -> list[Problem]:
    """FROM present and CUDA-based; every copied source exists in the build context."""
    file = package / DOCKERFILE
    if not file.is_file():
        return []  # reported with the other missing files
    steps = instructions(file.read_text(encoding="utf-8", errors="replace"))
    problems: list[Problem] = []
    bases = [s for s in steps if s.keyword == "FROM"]
    if not bases:
        return [
            Problem(
                DOCKERFILE,
                "",
                "has no FROM instruction",
                "start from a CUDA base image, e.g. `FROM nvidia/cuda:13.0.0-base-ubuntu24.04`",
            )
        ]
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
    del repo_root  # the build context is the package folder (its own repository, or here)
    repo_root = package
    copies_package = False
    for step in steps:
        if step.keyword not in ("COPY", "ADD"):
            continue
        for source in _sources(step.arguments) or []:
            magic = any(c in source for c in "*?[")
            matches = glob.glob(source, root_dir=repo_root) if magic else []
            target = repo_root / source
            if not (matches or target.exists()) or not is_inside(target, repo_root):
                problems.append(
                    Problem(
                        DOCKERFILE,
                        f"line {step.line}",
                        f"{step.keyword} source {source!r} does not exist in the build "
                        f"context (the package folder {package})",
                        "images are built with the package folder as build context "
                        "(`docker build .` in the package); name sources relative to it",
                    )
                )
            elif target.resolve() == package.resolve():
                copies_package = True
    if not copies_package:
        problems.append(
            Problem(
                DOCKERFILE,
                "",
                "no COPY instruction copies the package folder (`COPY . .`)",
                "add `COPY . .` after `WORKDIR` (the image runs the package)",
            )
        )
    return problems
