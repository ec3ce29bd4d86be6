"""The import rules of DESIGN.md §2, checked on the source and in the serving environment.

The rules keep the house livable: the kernel is the ground floor and imports nothing above
it; only the platform's two doors — the CLI (verbs) and the gateway (HTTP) — wire workflows
and governance; nothing imports a door; the
serving environment (Seldon's pins, no MLflow) never pulls in training or dataset code; a
model package's SDK stands on the kernel alone. Every import counts, including those inside
functions: a lazy import is still a dependency, only a cheaper one.
"""

from __future__ import annotations

import ast
import os
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIRS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"][
    "setuptools"
]["package-dir"]
KERNEL = "geomlops"
COMPONENTS = {name.split(".", 1)[1] for name in PACKAGE_DIRS if name != KERNEL}
SERVING_PYTHON = REPO / ".venv-serving" / "bin" / "python"


@dataclass(frozen=True)
class Import:
    """One import statement of a geomlops module: who imports what, and where."""

    importer: str
    """The importing module's component (a folder name), or ``kernel``."""
    target: str
    """The imported component, or ``kernel``."""
    module: str
    where: str

    def __str__(self) -> str:
        return f"{self.where} imports {self.module}"


def _component_of(module: str) -> str | None:
    """``kernel`` or the component folder a ``geomlops…`` module belongs to."""
    parts = module.split(".")
    if parts[0] != KERNEL:
        return None
    if len(parts) > 1 and parts[1] in COMPONENTS:
        return parts[1]
    return "kernel"


def _imports() -> Iterator[Import]:
    for package, folder in PACKAGE_DIRS.items():
        importer = "kernel" if package == KERNEL else package.split(".", 1)[1]
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    # `from geomlops import objects` imports the module geomlops.objects.
                    modules = (
                        [f"{node.module}.{alias.name}" for alias in node.names]
                        if node.module == KERNEL
                        else [node.module]
                    )
                else:
                    continue
                for module in modules:
                    target = _component_of(module)
                    if target is not None and target != importer:
                        where = f"{path.relative_to(REPO)}:{node.lineno}"
                        yield Import(importer, target, module, where)


IMPORTS = list(_imports())


def test_the_rules_see_imports_at_all() -> None:
    """Guards the other tests: a parser that found nothing would pass every rule."""
    assert any(i.importer == "cli" and i.target == "workflows" for i in IMPORTS)
    assert any(i.importer == "serving" and i.target == "kernel" for i in IMPORTS)
    assert any(i.importer == "gateway" and i.target == "workflows" for i in IMPORTS)


def test_the_kernel_imports_no_component() -> None:
    offending = [str(i) for i in IMPORTS if i.importer == "kernel"]
    assert offending == [], "move the shared piece into the kernel instead"


DOORS = ("cli", "gateway")
"""The platform's doors: the CLI and the gateway (OGC API - Processes, tiles, the map)."""


@pytest.mark.parametrize("door", DOORS)
def test_nothing_imports_a_door(door: str) -> None:
    assert [str(i) for i in IMPORTS if i.target == door] == []


@pytest.mark.parametrize("wired", ["workflows", "governance"])
def test_only_the_doors_import_workflows_and_governance(wired: str) -> None:
    offending = [str(i) for i in IMPORTS if i.target == wired and i.importer not in DOORS]
    assert offending == []


def test_the_package_sdk_stands_on_the_kernel_alone() -> None:
    """A model package imports only ``geomlops.ml``, which must not need the servers."""
    assert [str(i) for i in IMPORTS if i.importer == "ml" and i.target != "kernel"] == []


SERVING_FORBIDDEN = (
    "workflows",
    "governance",
    "datasets",
    "registration",
    "cli",
    "gateway",
    "catalog",
)


def test_serving_names_no_training_or_dataset_code() -> None:
    offending = [
        str(i) for i in IMPORTS if i.importer == "serving" and i.target in SERVING_FORBIDDEN
    ]
    assert offending == []


@pytest.mark.skipif(not SERVING_PYTHON.exists(), reason="no serving environment (make install)")
def test_serving_import_closure_in_its_own_environment() -> None:
    """The graph's components import in the serving environment, and pull in nothing else.

    Run there, not here: the serving environment has Seldon's pins and no MLflow, so an
    import that works in the main environment can still break a served model.
    """
    entry_points = [
        "geomlops.transformers.microservice",  # what launches each graph node
        "geomlops.serving.seldon_model",  # the model component
        "geomlops.transformers.seldon_raster_to_vector",  # the output transformer
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {entry_points!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [str(SERVING_PYTHON), "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    forbidden = [
        name
        for name in loaded
        if _component_of(name) in SERVING_FORBIDDEN
        or name.split(".")[0] in ("mlflow", "terratorch", "lightning", "dvc", "hera")
    ]
    assert sorted(forbidden) == []
