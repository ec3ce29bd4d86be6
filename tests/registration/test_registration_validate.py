"""`geomlops package validate` on the real packages, and the checks the corpus does not cover."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from registration_corpus import commit_all, git, make_repo, materialise
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.errors import ValidationFailed
from geomlops.registration.dockerfile import instructions
from geomlops.registration.source import package_digest, repository_root, source_info
from geomlops.registration.validate import validate_or_raise, validate_package

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["flood-water-s2", "flood-water-s1"])
def test_real_package_is_valid(name: str) -> None:
    result = CliRunner().invoke(app, ["package", "validate", f"{REPO}/model_packages/{name}"])
    assert result.exit_code == 0, result.stderr
    assert f"valid: {REPO}/model_packages/{name} ({name} 0.1.0)" in result.stdout


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    package = materialise("classes-mismatch", make_repo(tmp_path / "repo"))
    (package / "Dockerfile").unlink()
    (package / "README.md").unlink()
    with pytest.raises(ValidationFailed) as raised:
        validate_or_raise(package)
    text = "\n".join(raised.value.problems)
    assert "Dockerfile: the file is missing" in text
    assert "README.md: the file is missing" in text
    assert "differ from the classes the code writes" in text


def test_hyperparameter_default_must_match_mlm(tmp_path: Path) -> None:
    package = materialise(None, make_repo(tmp_path / "repo"))
    project = yaml.safe_load((package / "MLproject").read_text())
    project["entry_points"]["train"]["parameters"]["epochs"]["default"] = 30
    (package / "MLproject").write_text(yaml.safe_dump(project, sort_keys=False))
    [problem] = validate_package(package).problems
    assert problem.file == "MLproject"
    assert problem.location.startswith("entry_points.train.parameters.epochs (line ")
    assert "mlm:hyperparameters.epochs = 1" in problem.message


def test_parameter_types_and_placeholders(tmp_path: Path) -> None:
    package = materialise(None, make_repo(tmp_path / "repo"))
    project = yaml.safe_load((package / "MLproject").read_text())
    predict = project["entry_points"]["predict"]
    predict["parameters"]["input"] = {"type": "int"}
    predict["command"] += " --tiles {tiles}"
    (package / "MLproject").write_text(yaml.safe_dump(project, sort_keys=False))
    messages = [p.message for p in validate_package(package).problems]
    assert "has type 'int', not one of MLflow's ['float', 'path', 'string', 'uri']" in messages
    assert "has type 'int', the contract says 'path'" in messages
    assert "uses {tiles}, which is not a parameter of this entry point" in messages


def test_names_must_agree(tmp_path: Path) -> None:
    package = materialise(None, make_repo(tmp_path / "repo"))
    mlm = json.loads((package / "mlm.json").read_text())
    mlm["id"] = "other-name"
    (package / "mlm.json").write_text(json.dumps(mlm))
    problems = validate_package(package).problems
    assert [(p.file, p.location) for p in problems] == [("mlm.json", "id")]


def test_code_that_does_not_load_package_yaml_is_refused(tmp_path: Path) -> None:
    package = materialise(None, make_repo(tmp_path / "repo"))
    (package / "main.py").write_text("BANDS = ['VV', 'VH']\nprint(BANDS)\n")
    [problem] = validate_package(package).problems
    assert problem.file == "main.py"
    assert "no entry point script imports geomlops.ml" in problem.message


def test_mlm_json_syntax_error_has_a_line(tmp_path: Path) -> None:
    package = materialise(None, make_repo(tmp_path / "repo"))
    (package / "mlm.json").write_text('{\n  "id": "tiny-water",\n  "type": \n}\n')
    problems = validate_package(package).problems
    assert [(p.file, p.location) for p in problems] == [("mlm.json", "line 4, column 1")]


def test_dockerfile_sources_are_read_from_the_package_folder(tmp_path: Path) -> None:
    """The build context is the package folder, inside a repository or not."""
    package = materialise(None, make_repo(tmp_path / "repo"))
    (package / "Dockerfile").write_text(
        "# syntax=docker/dockerfile:1\n"
        "FROM python:3.11-slim AS base\n"
        "COPY --from=ghcr.io/astral-sh/uv:0.8 /uv /usr/local/bin/uv\n"
        "COPY pyproject.toml \\\n"
        "     README.md ./\n"
        "COPY model_packages/other-package/ .\n"
        "COPY ../elsewhere/ /opt/\n"
        "COPY *.py /main.py MLproject /opt/package/\n"
    )
    problems = validate_package(package).problems
    found = {(p.location, p.message.split(":")[0]) for p in problems}
    assert ("line 2", "FROM python") in found  # not a CUDA base image
    by_line = {p.location: p.message for p in problems if "source" in p.message}
    assert by_line == {
        "line 4": "COPY source 'pyproject.toml' does not exist in the build context, the "
        "package folder",
        "line 6": "COPY source 'model_packages/other-package/' does not exist in the build "
        "context, the package folder",
        "line 7": "COPY source '../elsewhere/' leaves the build context, the package folder",
    }  # README.md, *.py, /main.py (the context's root) and MLproject exist; /uv is a stage's
    assert not any("copies the package" in p.message for p in problems)  # MLproject is copied


def test_dockerfile_outside_a_repository_is_checked_and_each_rule_reported(
    tmp_path: Path,
) -> None:
    package = materialise(None, tmp_path)  # a copy in no git repository at all
    (package / "Dockerfile").write_text("WORKDIR /opt/package\nCOPY model_packages/x/ .\n")
    problems = validate_package(package).problems
    assert [(p.file, p.location) for p in problems] == [
        ("Dockerfile", ""),
        ("Dockerfile", "line 2"),
        ("Dockerfile", ""),
    ]
    assert problems[0].message == "has no FROM instruction"  # hides nothing after it
    assert "does not exist in the build context" in problems[1].message
    assert problems[2].message.startswith("no COPY instruction copies the package")


def test_dockerfile_instructions_join_continuations() -> None:
    steps = instructions("# c\nFROM a\nRUN x \\\n  # inner comment\n  y\n\nCOPY b c\n")
    assert [(s.line, s.keyword, s.arguments) for s in steps] == [
        (2, "FROM", "a"),
        (3, "RUN", "x  y"),
        (7, "COPY", "b c"),
    ]


def test_digest_follows_content_not_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    package = materialise(None, repo)
    (repo / ".gitignore").write_text("*.log\n")
    root = repository_root(package)
    assert root == repo.resolve()
    before = package_digest(package, root)
    commit_all(repo)
    assert package_digest(package, root) == before  # committing changes no content
    (package / "train.log").write_text("ignored by git\n")
    (package / "__pycache__").mkdir()
    assert package_digest(package, root) == before
    (package / "model.py").write_text("# edited\n")
    assert package_digest(package, root) != before


def test_source_info_reads_head_and_dirty_state(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    package = materialise(None, repo)
    sha = commit_all(repo)
    git(repo, "remote", "add", "origin", "git@github.com:acme/models.git")
    info = source_info(package)
    assert (info.commit, info.dirty) == (sha, False)
    (package / "model.py").write_text("# edited\n")
    info = source_info(package)
    assert info.dirty
    assert (info.git_url, info.path) == (
        "git@github.com:acme/models.git",
        "model_packages/tiny-water",
    )
    assert info.source_href() == (
        f"https://github.com/acme/models/tree/{sha}/model_packages/tiny-water"
    )


def test_a_broken_package_yaml_field_hides_no_other_problem(tmp_path: Path) -> None:
    """A rule package.yaml breaks is reported, and the rest of it is still compared."""
    package = materialise(None, make_repo(tmp_path / "repo"))
    spec = yaml.safe_load((package / "package.yaml").read_text())
    spec["input"]["patch_size"] = -3  # against the rule, well typed
    spec["output"]["classes"][1]["name"] = "Lake"  # against the name pattern
    (package / "package.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    found = {(p.file, p.location) for p in validate_package(package).problems}
    assert {
        ("package.yaml", "input.patch_size"),
        ("package.yaml", "output.classes.1.name"),
        ("mlm.json", "properties.mlm:input[0].input.shape"),
        ("mlm.json", "properties.mlm:output[0].classification:classes"),
        ("mlm.json", "properties.geomlops:gates.val_iou_water"),
        ("package.yaml", "metrics[4]"),
    } <= found


def test_gates_need_declared_metrics(tmp_path: Path) -> None:
    package = materialise(None, make_repo(tmp_path / "repo"))
    spec = yaml.safe_load((package / "package.yaml").read_text())
    del spec["metrics"]
    (package / "package.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    [problem] = validate_package(package).problems
    assert (problem.file, problem.location) == ("package.yaml", "metrics")
    assert "is missing, so nothing says the gates of mlm.json (val_iou_water)" in problem.message
    assert "val_f1_water" in problem.hint  # the list to declare


def test_an_output_the_platform_cannot_post_process_is_refused(tmp_path: Path) -> None:
    """Registration names the field and the kinds that exist; a probability output passes."""
    package = materialise(None, make_repo(tmp_path / "repo"))
    mlm_file = package / "mlm.json"
    mlm = json.loads(mlm_file.read_text())
    mlm["properties"]["mlm:output"][0]["tasks"] = ["object-detection"]
    mlm_file.write_text(json.dumps(mlm))
    [problem] = validate_package(package).problems
    assert (problem.file, problem.location) == ("mlm.json", "properties.mlm:output[0].tasks")
    assert "not an output the platform can post-process" in problem.message
    for kind in ("class-mask", "probability", "continuous", "chip-class"):
        assert kind in problem.hint
    mlm["properties"]["mlm:output"][0]["tasks"] = ["semantic-segmentation"]
    mlm["properties"]["mlm:output"][0]["geomlops:threshold"] = 0.5  # not for a class mask
    mlm_file.write_text(json.dumps(mlm))
    [problem] = validate_package(package).problems
    assert problem.location == "properties.mlm:output[0].geomlops:threshold"
    assert "only a probability or continuous output has one (class-mask)" in problem.message
