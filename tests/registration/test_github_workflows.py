"""The GitHub Actions workflows are valid and call only things that exist.

No runner is available here, so the workflows are checked statically: against GitHub's
workflow schema as vendored by check-jsonschema (the tool itself runs, offline), and every
command they run (`make` targets, `geomlops` verbs and options, scripts) is looked up in
this repository. The script that picks changed packages runs against real git history.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from registration_corpus import commit_all, git, make_repo, materialise
from typer import _click  # typer vendors click: its own Context
from typer.core import TyperGroup

from geomlops.cli.main import app

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
REGISTER = WORKFLOWS / "register-model-packages.yml"
CHANGED = REPO / ".github" / "scripts" / "changed_packages.py"
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
PLATFORM_SECRETS = {
    "GEOMLOPS_STAC_URL",
    "GEOMLOPS_MLFLOW_TRACKING_URI",
    "GEOMLOPS_API_KEY",
    "GEOMLOPS_S3_ENDPOINT_URL",
    "GEOMLOPS_S3_ACCESS_KEY",
    "GEOMLOPS_S3_SECRET_KEY",
}


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _commands(workflow: dict[str, Any]) -> list[list[str]]:
    """Each shell command line of every `run:` step, split into words."""
    lines: list[list[str]] = []
    for step in _steps(workflow):
        script = EXPRESSION.sub("EXPR", step.get("run", ""))
        for line in script.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(shlex.split(line, posix=True))
    return lines


def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", text, flags=re.MULTILINE))


def _cli_command(words: list[str]) -> tuple[Any, list[str]]:
    """The command a `geomlops ...` line runs, and its remaining words.

    Subcommands are looked up through click's ``get_command``, as a command line does, so
    verb groups that are built on demand are found too. Typer builds on its own copy of
    click, hence ``typer._click``.
    """
    command: Any = typer.main.get_command(app)
    rest = words[1:]
    while isinstance(command, TyperGroup) and rest and not rest[0].startswith("-"):
        sub = command.get_command(_click.core.Context(command, info_name=command.name), rest[0])
        assert sub is not None, f"`geomlops` has no command {' '.join(words[: -len(rest) + 1])}"
        command, rest = sub, rest[1:]
    assert not isinstance(command, TyperGroup), f"{words} names a group, not a command"
    return command, rest


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with GitHub's workflow schema as vendored in the tool (offline)."""
    command = [sys.executable, "-m", "check_jsonschema"]
    command += ["--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("path", [CI, REGISTER], ids=lambda p: p.name)
def test_workflow_is_valid_against_githubs_schema(path: Path) -> None:
    done = _check_jsonschema(path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The schema check above can fail: a job without runs-on is refused."""
    broken = _load(CI)
    del broken["jobs"]["test"]["runs-on"]
    path = tmp_path / "broken.yml"
    path.write_text(json.dumps(broken))
    done = _check_jsonschema(path)
    assert done.returncode == 1, done.stdout


@pytest.mark.parametrize("path", [CI, REGISTER], ids=lambda p: p.name)
def test_every_command_a_workflow_runs_exists(path: Path) -> None:
    checked = 0
    for words in _commands(_load(path)):
        if words[0] == "make":
            targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
            assert set(targets) <= _make_targets(), words
            checked += 1
        if words[0] == "geomlops":
            command, rest = _cli_command(words)
            known = {opt for param in command.params for opt in param.opts}
            for word in rest:
                if word.startswith("--"):
                    assert word.split("=")[0] in known, f"{word} is not an option of {words}"
            checked += 1
        for word in words:
            if word.startswith(".github/"):
                assert (REPO / word).is_file(), f"{word} does not exist"
                checked += 1
    assert checked, "the workflow runs nothing this test recognises"


def test_ci_runs_the_same_make_test() -> None:
    commands = _commands(_load(CI))
    assert ["make", "test"] in commands


def test_registration_workflow_validates_builds_then_registers_with_the_digest() -> None:
    workflow = _load(REGISTER)
    push = workflow["on"]["push"]
    assert push["branches"] == ["main"] and push["paths"] == ["model_packages/**"]
    register = workflow["jobs"]["register"]
    assert register["permissions"]["packages"] == "write"
    assert "fromJSON(needs.changes.outputs.packages)" in register["strategy"]["matrix"]["package"]
    steps = register["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    for action in ("docker/setup-buildx-action", "docker/login-action", "docker/build-push-action"):
        assert action in uses
    order = [s.get("name") or s.get("uses") for s in steps]
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action"))
    validate = next(s for s in steps if "package validate" in s.get("run", ""))
    final = next(s for s in steps if "package register" in s.get("run", ""))
    assert order.index(validate["name"]) < order.index(build["name"]) < order.index(final["name"])

    login = next(s for s in steps if s.get("uses", "").startswith("docker/login-action"))
    assert login["with"]["registry"] == "ghcr.io"
    # Built with the package folder as context, as the contract (and the validator) says.
    assert build["with"]["context"] == "${{ env.PACKAGE_DIR }}"
    assert build["with"]["file"] == "${{ env.PACKAGE_DIR }}/Dockerfile"
    assert register["env"]["PACKAGE_DIR"] == "model_packages/${{ matrix.package }}"
    # A runner has no schema mirror: validation must be allowed to fetch the MLM schema.
    assert register["env"]["GEOMLOPS_SCHEMA_NETWORK"] == "true"
    assert build["with"]["push"] is True
    assert "${{ github.sha }}" in build["with"]["tags"]
    assert "${{ steps.build.outputs.digest }}" in final["env"]["IMAGE"]
    assert '--image "$IMAGE"' in final["run"] and '--git-sha "$GITHUB_SHA"' in final["run"]
    assert set(final["env"]) >= PLATFORM_SECRETS
    for name in PLATFORM_SECRETS:
        assert final["env"][name] == f"${{{{ secrets.{name} }}}}"


def test_actions_are_pinned_to_a_major_version() -> None:
    for path in (CI, REGISTER):
        for step in _steps(_load(path)):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


# --- the changed-packages script ------------------------------------------------------------
def _changed(repo: Path, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(CHANGED), "--root", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_changed_packages_follow_the_diff(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    materialise(None, repo, name="alpha-water")
    materialise(None, repo, name="beta-water")
    first = commit_all(repo)

    (repo / "model_packages" / "beta-water" / "model.py").write_text("# changed\n")
    (repo / "README.md").write_text("outside any package\n")
    second = commit_all(repo, "change beta")
    assert _changed(repo, "--base", first, "--head", second) == ["beta-water"]

    (repo / "README.md").write_text("only outside\n")
    third = commit_all(repo, "no package")
    assert _changed(repo, "--base", second, "--head", third) == []

    git(repo, "rm", "-rq", "model_packages/alpha-water")
    fourth = commit_all(repo, "delete alpha")
    assert _changed(repo, "--base", third, "--head", fourth) == []  # nothing left to register


def test_changed_packages_without_a_base_lists_every_package(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    materialise(None, repo, name="alpha-water")
    head = commit_all(repo)
    assert _changed(repo, "--base", "0" * 40, "--head", head) == ["alpha-water"]
    assert _changed(repo, "--base", "f" * 40, "--head", head) == ["alpha-water"]  # unknown


def test_changed_packages_on_request_and_github_output(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    materialise(None, repo, name="alpha-water")
    materialise(None, repo, name="beta-water")
    commit_all(repo)
    output = tmp_path / "github_output"
    done = subprocess.run(
        [sys.executable, str(CHANGED), "--root", str(repo), "--requested", "beta-water"],
        capture_output=True,
        text=True,
        check=True,
        env={"GITHUB_OUTPUT": str(output), "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(done.stdout) == ["beta-water"]
    assert output.read_text() == 'packages=["beta-water"]\n'
    refused = subprocess.run(
        [sys.executable, str(CHANGED), "--root", str(repo), "--requested", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1 and "no such model package: nope" in refused.stderr
