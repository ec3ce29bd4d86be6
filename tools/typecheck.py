"""Type-check the whole ``geomlops`` package with mypy, as it is imported.

The distribution maps one import namespace onto several top-level folders (pyproject's
``package-dir``: ``core/`` is ``geomlops``, ``catalog/`` is ``geomlops.catalog``, …), and
the editable install serves that mapping through an import hook mypy cannot follow. So this
script lays the namespace out as a tree of symbolic links (under ``.mypy_cache/tree``,
rebuilt on every run from ``package-dir``, the one source of the mapping), runs mypy on
``-p geomlops`` with the settings in ``[tool.mypy]``, and prints each error with the path of
the real file, so editors and people can jump to it.

Usage: ``python tools/typecheck.py [extra mypy arguments]``; exit status is mypy's.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

from mypy import api

REPO = Path(__file__).resolve().parents[1]
TREE = REPO / ".mypy_cache" / "tree"


def package_dirs() -> dict[str, Path]:
    """Dotted package name -> its folder, from pyproject.toml."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: REPO / folder for name, folder in setuptools["package-dir"].items()}


def build_tree(dirs: dict[str, Path]) -> dict[Path, Path]:
    """Link every package folder into place; returns link path -> real folder."""
    shutil.rmtree(TREE, ignore_errors=True)
    links: dict[Path, Path] = {}
    # Parents first, so a component's link lands inside its parent package's folder.
    for name in sorted(dirs, key=lambda n: n.count(".")):
        target = TREE.joinpath(*name.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for entry in dirs[name].iterdir():
            if entry.name == "__pycache__" or (target / entry.name).exists():
                continue
            if entry.is_dir() and any(d == entry for d in dirs.values()):
                continue  # another package's folder: linked under its own name
            (target / entry.name).symlink_to(entry)
        links[target] = dirs[name]
    return links


def real_path(line: str, links: dict[Path, Path]) -> str:
    """``geomlops/catalog/api.py:3: error`` -> ``catalog/api.py:3: error``."""
    for link, real in sorted(links.items(), key=lambda item: -len(item[0].parts)):
        prefix = str(link.relative_to(TREE)) + "/"
        if line.startswith(prefix):
            return f"{real.relative_to(REPO)}/{line[len(prefix) :]}"
    return line


def main(argv: list[str]) -> int:
    """Run mypy over the linked tree; print errors against the real files."""
    links = build_tree(package_dirs())
    # mypy finds `-p geomlops` from the working directory and reports paths relative to it.
    os.chdir(TREE)
    stdout, stderr, status = api.run(
        [
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--cache-dir",
            str(REPO / ".mypy_cache"),
            "--python-executable",
            sys.executable,
            "-p",
            "geomlops",
            *argv,
        ],
    )
    for line in stdout.splitlines():
        print(real_path(line, links))
    print(stderr, end="", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
