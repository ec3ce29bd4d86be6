"""Build packages of the broken-package corpus (broken_packages/ here) in a git repository.

Each case is a copy of ``base/`` with the changes its ``case.yaml`` lists (see the corpus
README); the copy lives in ``<repo>/model_packages/<name>/`` like a real package, in a
repository of its own, so validation sees the same layout and git state as in the project.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parent / "broken_packages"
BASE = CORPUS / "base"
BASE_NAME = "tiny-water"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.yaml").is_file())


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def make_repo(root: Path) -> Path:
    """An empty git repository with an identity for commits."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "tests@geomlops.invalid")
    git(root, "config", "user.name", "geomlops tests")
    return root


def commit_all(repo: Path, message: str = "package") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def case(name: str) -> dict[str, Any]:
    return yaml.safe_load((CORPUS / name / "case.yaml").read_text())


def expected(name: str) -> list[dict[str, str]]:
    """The problems case ``name`` must report in one pass (``expect``: one or a list)."""
    expect = case(name)["expect"]
    return expect if isinstance(expect, list) else [expect]


def _walk(data: Any, path: str) -> tuple[Any, str | int]:
    """The container holding the last part of a dotted path, and that part (index or key)."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
    for part in parts[:-1]:
        data = data[part]
    return data, parts[-1]


def _load(file: Path) -> Any:
    text = file.read_text()
    return json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)


def _dump(file: Path, data: Any) -> None:
    if file.suffix == ".json":
        file.write_text(json.dumps(data, indent=2) + "\n")
    else:
        file.write_text(yaml.safe_dump(data, sort_keys=False))


def rename(package: Path, new_name: str) -> Path:
    """Rename a copy of the base package everywhere its name is written."""
    for file in package.iterdir():
        if file.is_file():
            file.write_text(file.read_text().replace(BASE_NAME, new_name))
    target = package.with_name(new_name)
    package.rename(target)
    return target


def materialise(case_name: str | None, repo: Path, name: str = BASE_NAME) -> Path:
    """``<repo>/model_packages/<name>``: the base package with the case's changes applied."""
    package = repo / "model_packages" / BASE_NAME
    shutil.copytree(BASE, package)
    if case_name is not None:
        spec = case(case_name)
        for file in (CORPUS / case_name).iterdir():
            if file.name != "case.yaml":
                shutil.copy(file, package / file.name)
        for removed in spec.get("remove", []):
            (package / removed).unlink()
        for file_name, fields in (spec.get("set") or {}).items():
            data = _load(package / file_name)
            for path, value in fields.items():
                holder, key = _walk(data, path)
                holder[key] = value
            _dump(package / file_name, data)
        for file_name, paths in (spec.get("unset") or {}).items():
            data = _load(package / file_name)
            for path in paths:
                holder, key = _walk(data, path)
                del holder[key]
            _dump(package / file_name, data)
        folder = spec.get("folder")
        if folder:  # a copy whose folder was renamed, and only what `set` renames inside
            package = package.rename(package.with_name(folder))
    return rename(package, name) if name != BASE_NAME else package
