"""Every Dockerfile in the repository passes hadolint (as `make test` runs it).

The registration tests' broken packages are the only exception: their Dockerfiles are
wrong on purpose (tests/registration/broken_packages). The rules are .hadolint.yaml's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).parent / "hadolint"
BROKEN_ON_PURPOSE = "tests/registration/broken_packages/"


def _dockerfiles() -> list[str]:
    tracked = subprocess.run(
        ["git", "ls-files", "*Dockerfile"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [path for path in tracked if not path.startswith(BROKEN_ON_PURPOSE)]


def test_the_platform_image_has_a_dockerfile() -> None:
    assert "Dockerfile" in _dockerfiles()
    assert {"serving/Dockerfile", "transformers/Dockerfile"} <= set(_dockerfiles())


@pytest.mark.parametrize("path", _dockerfiles())
def test_hadolint_passes(path: str) -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", path], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "DL3007" in result.stdout  # `latest` is not a pinned image


def test_the_platform_image_holds_every_package_folder() -> None:
    """The build installs the package from the folders pyproject maps; none may be missing."""
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    text = (REPO / "Dockerfile").read_text()
    copied = {
        line.split()[1]
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from" not in line
    }
    assert folders <= copied, f"the Dockerfile does not COPY {sorted(folders - copied)}"
    assert "USER 10001" in text  # non-root, numeric (runAsNonRoot can check it)


def test_the_platform_image_serves_the_map_page_offline() -> None:
    """MapLibre is installed from the lock file and lands where the gateway looks for it."""
    from geomlops.gateway import mappage

    text = (REPO / "Dockerfile").read_text()
    assert "COPY gateway/static/package.json gateway/static/package-lock.json" in text
    assert "npm ci" in text
    installed = "/opt/venv/lib/python3.11/site-packages/geomlops/gateway/"
    relative = mappage.MAPLIBRE.relative_to(Path(mappage.__file__).parent)
    assert f"/map/node_modules/maplibre-gl/dist {installed}{relative.as_posix()}\n" in text
    assert "gateway/static/node_modules" in (REPO / ".dockerignore").read_text()
