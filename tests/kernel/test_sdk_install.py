"""The package SDK installs on its own: the base distribution, without the platform extra.

A fresh virtual environment gets `geomlops` from a copy of this checkout's sources (no
extra), then runs a generated package's entry-point CLI and its own test there. The
servers' dependencies (the MLflow server, PostgreSQL drivers, the STAC API, Argo's client,
DVC, a framework only one package uses) must not come with it. uv installs it when it is
present (its cache makes the CUDA torch wheels cheap), pip otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geomlops.cli.main import app

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("psycopg", "stac_fastapi", "flask", "sqlalchemy", "alembic", "hera", "dvc")
"""Modules of the platform's servers and workflows; `terratorch` is one package's framework."""


def _sources(dest: Path) -> Path:
    """pyproject.toml, README.md and every mapped package folder, copied to ``dest``."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    for folder in set(pyproject["tool"]["setuptools"]["package-dir"].values()):
        shutil.copytree(
            REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return dest


def _run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_sdk_installs_alone_and_runs_a_package(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    _sources(source)
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    uv = Path(sys.executable).parent / "uv"
    if uv.exists():
        _run(uv, "pip", "install", "--python", python, "--quiet", source, "pytest")
    else:
        _run(python, "-m", "pip", "install", "--quiet", source, "pytest")

    package = tmp_path / "lake-water"
    created = CliRunner().invoke(app, ["package", "new", "lake-water", "--dest", str(package)])
    assert created.exit_code == 0, created.stderr
    usage = _run(python, "main.py", "--help", cwd=package)
    for entry_point in ("train", "evaluate", "predict"):
        assert entry_point in usage
    _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=package)

    probe = (
        "import importlib.metadata as m, importlib.util as u, json\n"
        f"mods = {[*SERVER_ONLY, 'terratorch']!r}\n"
        "names = {d.metadata['Name'].lower() for d in m.distributions()}\n"
        "print(json.dumps({'found': [x for x in mods if u.find_spec(x)],\n"
        "                  'mlflow': 'mlflow' in names, 'skinny': 'mlflow-skinny' in names}))\n"
    )
    seen = json.loads(_run(python, "-c", probe))
    assert seen == {"found": [], "mlflow": False, "skinny": True}
