"""The CLI starts without its heavy dependencies: what `--help` and `status` may import.

`bench/cli_startup.py` measures the start-up time; this test keeps its cause in check on
any machine, however loaded: a verb module that imports the catalog client, Hera or
psycopg at its top level puts seconds back on every command, and shows up here by name.
Each command line runs in a fresh interpreter, so nothing a test imported counts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geomlops.cli.main import VERB_GROUPS

HEAVY = (
    "boto3",
    "botocore",
    "fastapi",
    "hera",
    "httpx",
    "mlflow",
    "numpy",
    "psutil",
    "psycopg",
    "pystac",
    "rasterio",
    "requests",
    "shapely",
    "torch",
    "uvicorn",
    "geomlops.catalog.client",
    "geomlops.datasets",
    "geomlops.governance",
    "geomlops.registration",
    "geomlops.serving",
    "geomlops.workflows",
)
"""Never imported to print help or the status of a stack that is not running."""
SETTINGS = ("pydantic_settings", "geomlops.settings", "geomlops.stack")
"""Needed by `status`, but not to print help."""

PROBE = """
import sys
from pathlib import Path
from geomlops.cli.main import app
try:
    app(sys.argv[2:], prog_name="geomlops")
except SystemExit:
    pass
Path(sys.argv[1]).write_text("\\n".join(sorted(sys.modules)))
"""
"""Runs a command line, then writes the names of the modules it imported to a file (the
command's own output, which names services and modules too, stays apart)."""


def _imported(args: list[str], tmp_path: Path) -> set[str]:
    """Modules imported by ``geomlops ARGS`` with a state directory never used."""
    listing = tmp_path / "modules.txt"
    home = tmp_path / "never-started"
    subprocess.run(
        [sys.executable, "-c", PROBE, str(listing), *args],
        capture_output=True,
        check=True,
        env={"GEOMLOPS_HOME": str(home), "PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    return set(listing.read_text().split())


def _offenders(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize(
    "args", [["--help"], *([group, "--help"] for group in VERB_GROUPS)], ids=" ".join
)
def test_help_imports_nothing_heavy(args: list[str], tmp_path: Path) -> None:
    modules = _imported(args, tmp_path)
    assert "typer" in modules  # the probe ran the CLI
    assert _offenders(modules, HEAVY + SETTINGS) == []


def test_status_without_a_stack_imports_only_settings_and_the_stack(tmp_path: Path) -> None:
    modules = _imported(["status"], tmp_path)
    assert "geomlops.stack.manager" in modules
    assert _offenders(modules, HEAVY) == []
