"""Each package runs in its own environment, built with uv from its requirements.txt.

The environments are real (uv, the package registry, uv's cache): the first build of
flood-water-s2's downloads torch and terratorch (~3 GB) once; later builds hardlink them from
uv's cache, and a second call with the same requirements builds nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from geomlops.errors import ValidationFailed
from geomlops.model.runtimes import TORCH_EXPORT, artifact_type
from geomlops.package_env import (
    MARKER,
    EnvironmentBuildFailed,
    PackageEnv,
    package_env,
    read_requirements,
)
from geomlops.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
PACKAGES = REPO / "model_packages"


def _package(root: Path, requirements: str, name: str = "tiny") -> Path:
    package = root / name
    package.mkdir(parents=True)
    (package / "requirements.txt").write_text(requirements)
    return package


def _settings(cache: Path) -> Settings:
    settings = get_settings().model_copy(deep=True)
    settings.training.env_cache = cache
    return settings


def _python(environment: PackageEnv, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(environment.python), "-c", code],
        capture_output=True, text=True, timeout=600, check=False, cwd="/",
    )  # fmt: skip


# --- the declaration ------------------------------------------------------------------------
def test_every_bad_line_of_requirements_is_reported_with_its_line(tmp_path: Path) -> None:
    package = _package(tmp_path, "# comment\n-r other.txt\ntorch===\nnumpy>=1 # why\n")
    with pytest.raises(ValidationFailed) as caught:
        read_requirements(package)
    problems = caught.value.problems
    assert problems[0].startswith("requirements.txt:2: '-r other.txt': options are not")
    assert problems[1].startswith("requirements.txt:3: 'torch===':")
    assert "no `geomlops` requirement" in problems[2]
    assert len(problems) == 3


def test_a_package_without_requirements_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    with pytest.raises(ValidationFailed, match=r"bare: requirements.txt not found"):
        package_env(tmp_path / "bare", _settings(tmp_path / "envs"))


def test_a_package_for_another_sdk_version_is_refused(tmp_path: Path) -> None:
    package = _package(tmp_path, "geomlops>=99\n")
    with pytest.raises(EnvironmentBuildFailed, match=r"tiny: requirements.txt requires"):
        package_env(package, _settings(tmp_path / "envs"))
    assert not (tmp_path / "envs").exists()


def test_the_packages_declare_what_their_images_install() -> None:
    """One source: each Dockerfile installs the package's requirements.txt, nothing else."""
    for package in sorted(p for p in PACKAGES.iterdir() if (p / "MLproject").is_file()):
        names = {r.name for r in read_requirements(package)}
        assert "geomlops" in names, package.name
        runtime = artifact_type(json.loads((package / "mlm.json").read_text()))
        if runtime == TORCH_EXPORT:  # a torch.export program: the package pins its torch
            assert "torch" in names, package.name
        dockerfile = (package / "Dockerfile").read_text()
        installs = re.search(
            r"^RUN uv pip install --no-cache -r (\S*)requirements\.txt$", dockerfile, re.M
        )
        assert installs, package.name
        if installs.group(1):  # copied first, so the layer is reused while only code changes
            assert f"COPY requirements.txt {installs.group(1)}requirements.txt" in dockerfile
    s2 = {r.name: str(r.specifier) for r in read_requirements(PACKAGES / "flood-water-s2")}
    assert s2["terratorch"] == "==1.2.11"
    cloud = {r.name: str(r.specifier) for r in read_requirements(PACKAGES / "cloud-s2")}
    assert cloud == {"geomlops": "==0.1.0", "s2cloudless": "==1.7.3", "lightgbm": "==4.7.0"}


def test_the_main_environment_declares_no_model_framework() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = pyproject["project"]
    declared = {
        Requirement(text).name
        for text in [*project["dependencies"], *project["optional-dependencies"]["platform"]]
    }
    assert not declared & {"terratorch", "torchvision", "timm", "torchgeo", "lightning"}
    assert "uv" in declared


# --- building -------------------------------------------------------------------------------
def test_a_failed_build_names_the_requirement_and_leaves_nothing(tmp_path: Path) -> None:
    package = _package(tmp_path, "geomlops\nnumpy==1.26.4\nnumpy==2.0.0\n", name="clash")
    cache = tmp_path / "envs"
    with pytest.raises(EnvironmentBuildFailed) as caught:
        package_env(package, _settings(cache))
    message = str(caught.value)
    assert message.startswith("clash: its environment could not be built from requirements.txt")
    assert "`numpy==1.26.4`" in message and "`numpy==2.0.0`" in message
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.slow
def test_two_steps_building_one_environment_at_once_share_it(tmp_path: Path) -> None:
    """Two builds of the same environment at once: one builds, the other waits and reuses."""
    package = _package(tmp_path, "geomlops\n")
    settings = _settings(tmp_path / "envs")
    results: list[PackageEnv] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(package_env(package, settings))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({r.path for r in results}) == 1
    assert sorted(r.built for r in results) == [False, True]
    (environment,) = {r.path for r in results}
    assert (environment / MARKER).is_file()
    leftovers = [p.name for p in (tmp_path / "envs").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    found = _python(results[0], "import sys, mlflow, geomlops.ml.spec; print(sys.prefix)")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(environment)


@pytest.mark.slow
def test_flood_water_s2_has_terratorch_in_its_environment_only() -> None:
    """terratorch is importable in flood-water-s2's environment, and not in the platform's."""
    settings = get_settings()
    environment = package_env(PACKAGES / "flood-water-s2", settings)
    assert environment.path.parent == settings.training.env_cache
    probe = _python(
        environment,
        "import sys, terratorch, torch, geomlops.ml.cli; print(sys.prefix); "
        "print(torch.__version__)",
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    prefix, torch_version = probe.stdout.split()
    assert prefix == str(environment.path) != sys.prefix
    assert torch_version.startswith("2.13.0+cu")  # the CUDA build the pin asks for, not +cpu
    again = package_env(PACKAGES / "flood-water-s2", settings)
    assert again == PackageEnv(path=environment.path, python=environment.python, built=False)
    main = subprocess.run(
        [sys.executable, "-c", "import terratorch"], capture_output=True, text=True, check=False
    )
    assert main.returncode == 1, "terratorch is still in the main environment (a stale .venv: "
    "`.venv/bin/pip uninstall terratorch torchvision`, or `make clean-venv install`)"
    assert "No module named 'terratorch'" in main.stderr
