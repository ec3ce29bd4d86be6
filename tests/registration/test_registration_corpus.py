"""The broken-package corpus: each broken package fails with its own message, nothing registered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from registration_corpus import (
    BASE_NAME,
    CASES,
    case,
    commit_all,
    expected,
    make_repo,
    materialise,
)
from typer.testing import CliRunner

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import MODELS
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.errors import NotFoundError, ValidationFailed
from geomlops.registration.problems import Problem
from geomlops.registration.register import package_item_id, register_package
from geomlops.registration.validate import validate_package
from geomlops.settings import get_settings

# Made at run time: a symbolic link out of the repository and a file over the size limit
# must not be committed.
RUNTIME_CASES = ["symlink-out-of-repo", "enormous-file"]


def _matches(problem: Problem, expected: dict[str, str]) -> bool:
    return (
        problem.file == expected["file"]
        and expected.get("location", "") in problem.location
        and expected["message"] in problem.message
    )


def _build(name: str, tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    """The broken package of case ``name`` inside a fresh repository, and what it must report."""
    repo = make_repo(tmp_path / "repo")
    if name == "symlink-out-of-repo":
        outside = make_repo(tmp_path / "elsewhere")
        target = materialise(None, outside)  # a valid package, but outside this repository
        link = repo / "model_packages" / BASE_NAME
        link.parent.mkdir(parents=True)
        link.symlink_to(target, target_is_directory=True)
        message = f"the package folder is a symbolic link to {target.resolve()}, outside the "
        return link, [{"file": str(link), "message": message}]
    package = materialise(None if name == "enormous-file" else name, repo)
    if name == "enormous-file":
        limit = get_settings().registration.max_file_bytes
        with (package / "weights.bin").open("wb") as sparse:  # no disk blocks written
            sparse.truncate(limit + 1)
        return package, [{"file": "weights.bin", "message": "over the limit of 10.0 MiB per file"}]
    return package, expected(name)


def test_base_package_is_valid(tmp_path: Path) -> None:
    """Every problem a case reports comes from its own change."""
    package = materialise(None, make_repo(tmp_path / "repo"))
    result = validate_package(package)
    assert result.problems == []


@pytest.mark.parametrize("name", CASES + RUNTIME_CASES)
def test_broken_package_reports_its_own_problem(name: str, tmp_path: Path) -> None:
    """Every problem a case expects is in the first report, named by file and field."""
    package, wanted = _build(name, tmp_path)
    problems = validate_package(package).problems
    for expectation in wanted:
        assert any(_matches(p, expectation) for p in problems), (
            expectation,
            [str(p) for p in problems],
        )
    assert all(p.message and p.file for p in problems)
    if name in CASES and case(name).get("combines"):
        return  # repeats other cases' mistakes on purpose
    # Specific: no other case's expected message is among this case's problems.
    for other in CASES:
        if other != name and not case(other).get("combines"):
            for expectation in expected(other):
                assert not any(_matches(p, expectation) for p in problems), other


def test_cli_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    package = materialise("bands-not-read", make_repo(tmp_path / "repo"))
    (package / "Dockerfile").unlink()
    result = CliRunner().invoke(app, ["package", "validate", str(package)])
    assert result.exit_code == 1
    assert "declares band(s) HH that the code does not read" in result.stderr
    assert "Dockerfile: the file is missing" in result.stderr
    assert "hint:" in result.stderr


def test_cli_validate_json_names_file_location_message_hint(tmp_path: Path) -> None:
    import json

    package = materialise("path-traversal", make_repo(tmp_path / "repo"))
    result = CliRunner().invoke(app, ["package", "validate", str(package), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    problem = next(p for p in report["problems"] if "path traversal" in p["message"])
    assert problem["file"] == "MLproject"
    assert problem["location"].startswith("entry_points.train.command (line ")
    assert problem["hint"]


def test_size_limit_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = materialise(None, make_repo(tmp_path / "repo"))
    monkeypatch.setenv("GEOMLOPS_REGISTRATION_MAX_FILE_BYTES", "1000")
    get_settings.cache_clear()
    try:
        problems = validate_package(package).problems
    finally:
        monkeypatch.delenv("GEOMLOPS_REGISTRATION_MAX_FILE_BYTES")
        get_settings.cache_clear()
    big = {p.file for p in problems if "per file" in p.message}
    assert "mlm.json" in big and "main.py" not in big


def test_link_inside_the_package_pointing_out_is_refused(tmp_path: Path) -> None:
    package = materialise(None, make_repo(tmp_path / "repo"))
    (package / "secrets").symlink_to("/etc/hostname")
    problems = validate_package(package).problems
    assert [p.file for p in problems] == ["secrets"]
    assert "outside the package" in problems[0].message


@pytest.mark.stack
@pytest.mark.parametrize("name", CASES + RUNTIME_CASES)
def test_broken_package_is_not_registered(name: str, tmp_path: Path, stack: Connections) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    package, _ = _build(name, tmp_path)
    if not package.is_symlink():
        commit_all(package.parents[1])
    with pytest.raises(ValidationFailed):
        register_package(package)
    with CatalogClient(stack.stac_url) as catalog, pytest.raises(NotFoundError):
        catalog.get_item_dict(MODELS, package_item_id(BASE_NAME, "0.1.0"))
    client = MlflowClient(stack.mlflow_tracking_uri)
    with pytest.raises(MlflowException, match=r"RESOURCE_DOES_NOT_EXIST|not found"):
        client.get_registered_model(BASE_NAME)
    assert os.path.lexists(package)  # validation left the package as it was
