"""`geomlops package new`: a package that validates as written and stands on its own.

The generated package is written outside this checkout and must not refer to it: its image
builds from its own folder FROM the published base image, and its requirements name the SDK
and torch as the platform pins them.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.registration.validate import validate_package
from geomlops.settings import get_settings

REPO = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).parent / "hadolint"
FILES = {
    ".dockerignore", ".gitignore", "Dockerfile", "MLproject", "README.md", "main.py",
    "mlm.json", "model.py", "package.yaml", "requirements.txt", "tests/test_package.py",
}  # fmt: skip


def _base_pins() -> set[str]:
    """torch as pyproject.toml's base dependencies (the SDK) pin it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {d for d in project["dependencies"] if Requirement(d).name == "torch"}


def _requirements(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def _new(dest: Path, *args: str) -> object:
    return CliRunner().invoke(app, ["package", "new", dest.name, "--dest", str(dest), *args])


def _same_pins(found: list[str]) -> set[tuple[str, SpecifierSet]]:
    """Requirements compared by name and specifier set (order-free)."""
    return {(Requirement(r).name, Requirement(r).specifier) for r in found}


def test_a_new_package_is_complete_valid_and_independent_of_this_checkout(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "lake-water"
    result = _new(dest)
    assert result.exit_code == 0, result.stderr
    written = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert written == FILES
    assert validate_package(dest).problems == []

    dockerfile = (dest / "Dockerfile").read_text()
    assert f"FROM {get_settings().registration.base_image}\n" in dockerfile
    assert "COPY --chown=1000:1000 . .\n" in dockerfile
    lint = subprocess.run([str(HADOLINT), "--no-color", str(dest / "Dockerfile")], check=False)
    assert lint.returncode == 0
    for path in dest.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert str(REPO) not in text and "model_packages/" not in text, path

    requirements = _requirements(dest / "requirements.txt")
    assert requirements[0] == "geomlops==0.1.0"
    assert _same_pins(requirements[1:]) == _same_pins(sorted(_base_pins()))
    main = (dest / "main.py").read_text()
    assert "from geomlops.ml.cli import package_app" in main  # the SDK, nothing else


def test_a_terratorch_package_validates_and_pins_the_framework_like_the_example(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "lake-water-tt"
    result = _new(dest, "--framework", "terratorch", "--classes", "dry,wet")
    assert result.exit_code == 0, result.stderr
    assert validate_package(dest).problems == []
    assert "from terratorch.models import EncoderDecoderFactory" in (dest / "model.py").read_text()
    example = _requirements(REPO / "model_packages" / "flood-water-s2" / "requirements.txt")
    assert _same_pins(_requirements(dest / "requirements.txt")) == _same_pins(example)
    assert "- {value: 1, name: wet" in (dest / "package.yaml").read_text()


def test_bad_choices_are_usage_errors_and_write_nothing(tmp_path: Path) -> None:
    result = _new(tmp_path / "Lake_Water", "--framework", "keras")
    assert result.exit_code == 2
    assert "is not a package name" in result.stderr and "--framework 'keras'" in result.stderr
    assert list(tmp_path.iterdir()) == []

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine\n")
    result = _new(taken)
    assert result.exit_code == 1 and "already exists and is not empty" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def test_the_example_packages_pin_what_the_platform_pins() -> None:
    for name in ("flood-water-s1", "flood-water-s2"):
        requirements = _requirements(REPO / "model_packages" / name / "requirements.txt")
        assert requirements[0] == "geomlops==0.1.0"
        torch = [r for r in requirements if Requirement(r).name == "torch"]
        assert _same_pins(torch) == _same_pins(sorted(_base_pins()))


@pytest.mark.slow
def test_the_new_package_passes_its_own_test(tmp_path: Path) -> None:
    dest = tmp_path / "lake-water"
    assert _new(dest).exit_code == 0
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=dest,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
