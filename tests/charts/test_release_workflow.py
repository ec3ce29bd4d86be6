"""The release workflow builds every image the chart pulls from us and publishes the chart.

Checked statically (no runner here): GitHub's workflow schema as vendored by
check-jsonschema, and the workflow's image matrix against the chart's image list.
"""

from __future__ import annotations

import subprocess
import sys

import yaml
from chart_support import CHART, REPO

RELEASE = REPO / ".github" / "workflows" / "release.yml"


def _workflow() -> dict:
    data = yaml.safe_load(RELEASE.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_valid_against_githubs_schema() -> None:
    command = [sys.executable, "-m", "check_jsonschema"]
    done = subprocess.run(
        [*command, "--builtin-schema", "vendor.github-workflows", str(RELEASE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_image_of_ours_in_the_chart_is_built_on_a_tag() -> None:
    ours = {
        line.split(":")[0].rsplit("/", 1)[1]
        for line in (CHART / "images.txt").read_text().split()
        if line.startswith("ghcr.io/geomlops/")
    }
    matrix = _workflow()["jobs"]["images"]["strategy"]["matrix"]["include"]
    assert {entry["name"] for entry in matrix} == ours
    for entry in matrix:
        assert (REPO / entry["dockerfile"]).is_file(), entry
    assert "tags" in _workflow()["on"]["push"]


def test_the_chart_steps_use_existing_tools() -> None:
    steps = [s.get("run", "") for s in _workflow()["jobs"]["chart"]["steps"]]
    commands = {
        line.split()[2] for s in steps for line in s.splitlines() if "tools/chart.py" in line
    }
    assert commands == {"lint", "render", "package"}
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "chart.py"), "lint"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_package_base_image_is_built_on_a_tag_under_the_settings_name() -> None:
    """docker/ml-base builds the image `package new` writes in FROM; its name is read once."""
    from geomlops import __version__
    from geomlops.settings import get_settings

    job = _workflow()["jobs"]["ml-base"]
    build = next(s for s in job["steps"] if s.get("id") == "build")
    assert build["with"]["file"] == "docker/ml-base/Dockerfile"
    assert (REPO / build["with"]["file"]).is_file()
    ref = next(s for s in job["steps"] if s.get("id") == "ref")
    assert "registration.base_image" in ref["run"]
    assert "ml-base" in _workflow()["jobs"]["publish"]["needs"]
    image = get_settings().registration.base_image
    assert image.rsplit(":", 1)[1] == __version__
