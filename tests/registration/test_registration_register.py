"""`geomlops package register` against the real local stack (STAC API, MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from registration_corpus import commit_all, git, make_repo, materialise
from typer.testing import CliRunner

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import MODELS
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.errors import AuthError, ConflictError, NotFoundError
from geomlops.registration.register import package_item_id, register_package

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["flood-water-s2", "flood-water-s1"]
DIGEST_IMAGE = "ghcr.io/acme/{name}@sha256:" + "ab" * 32


def _registered(conn: Connections, name: str, version: str = "0.1.0") -> tuple[dict, dict]:
    with CatalogClient(conn.stac_url) as catalog:
        item = catalog.get_item_dict(MODELS, package_item_id(name, version))
    tags = MlflowClient(conn.mlflow_tracking_uri).get_registered_model(name).tags
    return item, tags


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A package repository whose remote `origin` is a bare repository beside it."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    made = make_repo(tmp_path / "repo")
    git(made, "remote", "add", "origin", str(origin))
    return made


def test_real_packages_register_once_then_report_no_change(stack: Connections) -> None:
    runner = CliRunner()
    for name in PACKAGES:
        path = str(REPO / "model_packages" / name)
        first = runner.invoke(app, ["package", "register", path, "--git-url", str(REPO), "--json"])
        assert first.exit_code == 0, first.stderr
        done = json.loads(first.stdout)
        assert done["item_id"] == f"{name}-0.1.0"
        second = runner.invoke(app, ["package", "register", path, "--git-url", str(REPO), "--json"])
        assert second.exit_code == 0, second.stderr
        again = json.loads(second.stdout)
        assert (again["mlflow"], again["item"]) == ("unchanged", "unchanged")
        assert again["digest"] == done["digest"]

        item, tags = _registered(stack, name)
        props = item["properties"]
        assert props["geomlops:stage"] == "registered"
        assert props["mlm:name"] == name and props["version"] == "0.1.0"
        assert props["geomlops:git_commit"] == git(REPO, "rev-parse", "HEAD")
        assert props["geomlops:image"] == done["image"]
        assert tags["geomlops.package_version"] == "0.1.0"
        assert tags["geomlops.git_commit"] == props["geomlops:git_commit"]
        assert tags["geomlops.image"] == props["geomlops:image"]
        model_asset = next(a for a in item["assets"].values() if "mlm:model" in a["roles"])
        assert model_asset["href"] == f"models:/{name}@production"  # no weights yet

    text = runner.invoke(
        app,
        ["package", "register", str(REPO / "model_packages" / PACKAGES[0]), "--git-url", str(REPO)],
    )
    assert text.exit_code == 0
    assert f"STAC item models/{PACKAGES[0]}-0.1.0: unchanged" in text.stdout

    found = runner.invoke(app, ["catalog", "search", "--task", "semantic-segmentation", "--json"])
    assert found.exit_code == 0, found.stderr
    ids = {f["id"] for f in json.loads(found.stdout)["features"]}
    assert {f"{name}-0.1.0" for name in PACKAGES} <= ids


def test_changed_content_under_a_registered_version_is_refused(
    repo: Path, stack: Connections
) -> None:
    package = materialise(None, repo, name="conflict-water")
    sha = commit_all(repo)
    created = register_package(package)
    assert (created.mlflow, created.item) == ("created", "created")
    assert created.provenance.commit == sha and not created.provenance.dirty
    before = _registered(stack, "conflict-water")

    model = package / "model.py"
    model.write_text(model.read_text().replace("kernel_size=1", "kernel_size=1, bias=False"))
    commit_all(repo, "change the model, forget the version")
    with pytest.raises(ConflictError, match="already registered with different content"):
        register_package(package)
    assert _registered(stack, "conflict-water") == before  # nothing changed


def test_same_content_from_a_later_commit_is_unchanged_then_digest_replaces_tag(
    repo: Path, stack: Connections
) -> None:
    package = materialise(None, repo, name="steady-water")
    first_sha = commit_all(repo)
    first = register_package(package)
    assert first.provenance.image.endswith(f"/steady-water:{first_sha}")

    (repo / "NOTES.md").write_text("a change elsewhere in the repository\n")
    commit_all(repo, "unrelated")
    again = register_package(package)
    assert (again.mlflow, again.item) == ("unchanged", "unchanged")
    assert again.provenance.commit == first_sha
    assert any("kept as first recorded" in note for note in again.notes)

    image = DIGEST_IMAGE.format(name="steady-water")
    pushed = register_package(package, image=image, git_sha=first_sha)
    assert (pushed.mlflow, pushed.item) == ("updated", "updated")
    item, tags = _registered(stack, "steady-water")
    assert item["properties"]["geomlops:image"] == tags["geomlops.image"] == image


def test_dirty_tree_is_recorded(repo: Path, stack: Connections) -> None:
    package = materialise(None, repo, name="dirty-water")
    commit_all(repo)
    (package / "notes.txt").write_text("not committed\n")
    result = register_package(package)
    assert result.provenance.dirty
    assert any("uncommitted changes" in note for note in result.notes)
    item, tags = _registered(stack, "dirty-water")
    assert item["properties"]["geomlops:git_dirty"] is True
    assert tags["geomlops.git_dirty"] == "true"


def test_catalog_failure_rolls_back_the_mlflow_model(repo: Path, stack: Connections) -> None:
    package = materialise(None, repo, name="rollback-water")
    commit_all(repo)
    with (
        CatalogClient(stack.stac_url, api_key="not-a-key") as catalog,
        pytest.raises(AuthError),
    ):
        register_package(package, catalog=catalog)
    with pytest.raises(MlflowException):
        MlflowClient(stack.mlflow_tracking_uri).get_registered_model("rollback-water")
    with CatalogClient(stack.stac_url) as catalog, pytest.raises(NotFoundError):
        catalog.get_item_dict(MODELS, package_item_id("rollback-water", "0.1.0"))
    # The retry with a valid key converges to a complete registration.
    done = register_package(package)
    assert (done.mlflow, done.item) == ("created", "created")


def test_cli_refuses_a_malformed_git_sha(repo: Path) -> None:
    package = materialise(None, repo)
    result = CliRunner().invoke(app, ["package", "register", str(package), "--git-sha", "HEAD"])
    assert result.exit_code == 2
    assert "--git-sha" in result.stderr


def test_demo_step_registers_both_packages(stack: Connections) -> None:
    from geomlops.cli.demo import STEPS
    from geomlops.settings import get_settings

    step = next(s for s in STEPS if s.title == "Register the model packages")
    step.run(get_settings())
    for name in PACKAGES:
        item, _ = _registered(stack, name)
        assert item["properties"]["geomlops:stage"] == "registered"


def test_the_source_recorded_is_the_remote_the_commit_and_the_folder(
    repo: Path, stack: Connections
) -> None:
    """What training clones: origin's URL (a bare repository here), never the working folder."""
    package = materialise(None, repo, name="sourced-water")
    sha = commit_all(repo)
    origin = git(repo, "remote", "get-url", "origin")
    git(repo, "push", "-q", "origin", "main")
    result = register_package(package)
    assert (result.provenance.git_url, result.provenance.package_path) == (
        origin,
        "model_packages/sourced-water",
    )
    item, tags = _registered(stack, "sourced-water")
    props = item["properties"]
    assert props["geomlops:git_url"] == tags["geomlops.git_url"] == origin
    assert props["geomlops:git_commit"] == sha
    assert props["geomlops:package_path"] == "model_packages/sourced-water"
    code = next(a for a in item["assets"].values() if "mlm:source_code" in a["roles"])
    assert code["href"] == origin
    assert "file://" not in json.dumps(item)
    assert str(repo) not in json.dumps(item)


def test_a_repository_without_a_remote_is_refused(tmp_path: Path) -> None:
    """Nothing would tell training where the code is: refused before anything is written."""
    repo = make_repo(tmp_path / "repo")
    package = materialise(None, repo)
    commit_all(repo)
    result = CliRunner().invoke(app, ["package", "register", str(package)])
    assert result.exit_code == 1
    assert "has no remote `origin`" in result.stderr
    assert "git remote add origin" in result.stderr
    assert "--git-url" in result.stderr


def test_a_relative_remote_is_recorded_as_the_path_it_names(tmp_path: Path) -> None:
    from geomlops.registration.source import source_info

    repo = make_repo(tmp_path / "repo")
    package = materialise(None, repo)
    commit_all(repo)
    git(repo, "remote", "add", "origin", "../shared.git")
    info = source_info(package)
    assert info.git_url == str((tmp_path / "shared.git").resolve())
    assert source_info(package, git_url="https://example.org/x.git").git_url == (
        "https://example.org/x.git"
    )
