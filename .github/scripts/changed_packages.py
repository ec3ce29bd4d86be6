#!/usr/bin/env python3
"""Which model packages a push changed, as a JSON list for a GitHub Actions matrix.

Standard library only, so the job that runs it needs no installation. A package is a folder
``model_packages/<name>/`` holding an ``MLproject``; a package deleted by the push is left
out (there is nothing to register). Without a usable base commit (the first push of a
branch, a force push, a manual run) every package is listed. Names that are not package
names (``^[a-z][a-z0-9-]*$``) are never listed: they reach shell commands in later steps.

Usage:
    changed_packages.py --base SHA --head SHA [--requested "a b"] [--root DIR]

Prints the list on stdout and, in GitHub Actions, writes ``packages=<list>`` to
``$GITHUB_OUTPUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

PACKAGES_DIR = "model_packages"
NAME = re.compile(r"^[a-z][a-z0-9-]*$")
NO_COMMIT = re.compile(r"^0*$")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def all_packages(root: Path) -> list[str]:
    """Every package folder of the checkout."""
    folder = root / PACKAGES_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "MLproject").is_file())


def changed_packages(root: Path, base: str, head: str) -> list[str]:
    """Packages with a file changed between ``base`` and ``head`` that still exist."""
    existing = set(all_packages(root))
    if NO_COMMIT.match(base) or _git(root, "cat-file", "-e", f"{base}^{{commit}}").returncode:
        return sorted(existing)
    diff = _git(root, "diff", "--name-only", base, head, "--", PACKAGES_DIR)
    if diff.returncode != 0:
        sys.exit(f"git diff {base} {head} failed: {diff.stderr.strip()}")
    touched = {
        Path(line).parts[1] for line in diff.stdout.splitlines() if len(Path(line).parts) > 2
    }
    return sorted(touched & existing)


def main(argv: list[str] | None = None) -> int:
    """Print the packages to register; exit 1 when a requested one does not exist."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="", help="Commit before the push (event.before).")
    parser.add_argument("--head", default="HEAD", help="Commit pushed (GITHUB_SHA).")
    parser.add_argument(
        "--requested", default="", help="Package names to register (manual run); empty = diff."
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="Repository checkout.")
    args = parser.parse_args(argv)

    if args.requested.strip():
        existing = set(all_packages(args.root))
        requested = args.requested.split()
        unknown = [n for n in requested if n not in existing]
        if unknown:
            print(f"error: no such model package: {' '.join(unknown)}", file=sys.stderr)
            return 1
        packages = sorted(set(requested))
    else:
        packages = changed_packages(args.root, args.base, args.head)
    packages = [p for p in packages if NAME.match(p)]
    listed = json.dumps(packages)
    print(listed)
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        with open(output, "a", encoding="utf-8") as out:
            out.write(f"packages={listed}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
