"""A contributor's path, end to end: `package new` in a repository of its own, validate,
register, train through `geomlops-train` on the local stack, and evaluate. No setting tells
the platform where the package is: the steps check out what the registration recorded.

The package's repository lives outside this checkout and pushes to a bare repository, its
`origin`: that URL and the commit are the recorded source, not the working folder.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from geomlops.catalog.client import CatalogClient
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.datasets import DatasetRegistry
from geomlops.datasets.registry import staged
from geomlops.settings import get_settings

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PACKAGE = "lake-water"
runner = CliRunner()


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def dataset(stack: Connections) -> str:
    sample = get_settings().sample_data.sample_data
    assert sample is not None, "the Sen1Floods11 sample is needed (GEOMLOPS_SAMPLE_DATA)"
    with staged([sample / "imagery" / "sen1floods11"], sample) as root:
        version, _ = DatasetRegistry().add(root, "sen1floods11", description="Sen1Floods11 chip")
    return version.tag


def test_a_new_package_in_its_own_repository_registers_trains_and_evaluates(
    tmp_path: Path, dataset: str, stack: Connections
) -> None:
    assert not os.environ.get("GEOMLOPS_TRAIN_LOCAL_PACKAGES")
    origin = tmp_path / "remote" / f"{PACKAGE}.git"
    origin.parent.mkdir()
    _git(origin.parent, "init", "-q", "--bare", "-b", "main", str(origin))
    work = tmp_path / PACKAGE
    assert not work.is_relative_to(REPO)

    created = _invoke("package", "new", PACKAGE, "--dest", str(work))
    assert created.exit_code == 0, created.stderr
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", "-A")
    _git(work, "-c", "user.name=c", "-c", "user.email=c@geomlops.invalid", "commit", "-qm", "new")
    _git(work, "remote", "add", "origin", str(origin))
    _git(work, "push", "-q", "origin", "main")
    commit = _git(work, "rev-parse", "HEAD")

    validated = _invoke("package", "validate", str(work))
    assert validated.exit_code == 0, validated.stderr
    registered = _invoke("package", "register", str(work), "--json")
    assert registered.exit_code == 0, registered.stderr
    record = json.loads(registered.stdout)
    assert (record["git_url"], record["git_commit"], record["package_path"]) == (
        str(origin),
        commit,
        "",
    )

    submitted = _invoke(
        "workflows", "submit", "geomlops-train", "-p", f"package={PACKAGE}",
        "-p", f"dataset={dataset}", "-p", "epochs=1", "-p", "device=cpu",
    )  # fmt: skip
    run = submitted.stdout.strip().splitlines()[-1] if submitted.stdout.strip() else ""
    if submitted.exit_code != 2:  # suspended, awaiting approval, is the one good end
        logs = _invoke("workflows", "logs", run, "--node", "train").output if run else ""
        raise AssertionError(f"{submitted.output}\n--- train's log ---\n{logs[-4000:]}")
    run = submitted.stdout.strip()
    status = json.loads(_invoke("workflows", "status", run, "--json").stdout)
    phases = {n["displayName"].split("(")[0]: n["phase"] for n in status["nodes"]}
    for step in ("resolve", "materialise", "train", "evaluate", "register"):
        assert phases.get(step) == "Succeeded", (step, phases)

    # Trained and evaluated from the checkout of the recorded commit, under the platform home.
    client = MlflowClient(stack.mlflow_tracking_uri)
    (version,) = [
        v
        for v in client.search_model_versions(f"name = '{PACKAGE}'")
        if v.tags.get("geomlops.workflow") == run
    ]
    assert version.tags["geomlops.package_git_commit"] == commit
    with CatalogClient.from_settings() as catalog:
        item = catalog.get_item_dict("models", f"{PACKAGE}-mv{version.version}")
    props = item["properties"]
    assert props["geomlops:git_url"] == str(origin)
    assert props["geomlops:git_commit"] == commit
    assert {"val_iou_water", "val_iou_not_water"} <= set(props["geomlops:metrics"])
    checkouts = get_settings().stack.home / "packages" / "checkouts"
    assert [p.name for p in checkouts.glob(f"*/{commit}")] == [commit]
