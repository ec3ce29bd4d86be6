"""What the end-to-end stack tests share: identities, the sample data, a model trained and
promoted the platform's way, and the Sen1Floods11 Spain chip as a scene.

Each stack test module that needs a production model gets it through the real path (the
package registered from this checkout, `geomlops-train` submitted by one identity, promotion
by another), not behind governance's back: a version promoted here is a legitimate one that
later modules on the same stack may find.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from geomlops import objects
from geomlops.catalog.db import pgstac_connection
from geomlops.catalog.keys import create_key
from geomlops.cli.demo import demo_aoi
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.datasets import DatasetRegistry
from geomlops.datasets.registry import staged
from geomlops.governance.decisions import Governance
from geomlops.model.ids import model_item_id
from geomlops.registration.register import register_package
from geomlops.settings import get_settings
from geomlops.workflows.templates.train import run_uri

REPO = Path(__file__).resolve().parents[1]
SPAIN_CHIP = "imagery/sen1floods11/Spain_7370579_S2Hand.tif"
SPAIN_LABEL = "imagery/sen1floods11/Spain_7370579_LabelHand.tif"
SPAIN_DATETIME = "2019-09-18T10:50:00Z"
_runner = CliRunner()


def api_key(name: str, *roles: str) -> str:
    """A new API key for a new identity ``name-xxxxxx`` with ``roles``."""
    with pgstac_connection() as conn:
        key, _ = create_key(conn, f"{name}-{uuid.uuid4().hex[:6]}", roles)
    return key


def sample(path: str) -> Path:
    """A file of the shared sample data (``GEOMLOPS_SAMPLE_DATA``)."""
    root = get_settings().sample_data.sample_data
    assert root is not None, "the sample data is needed (GEOMLOPS_SAMPLE_DATA)"
    return root / path


def checkout_head() -> str:
    """This checkout's HEAD: training checks the recorded commit out, so it must exist."""
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


@contextmanager
def as_identity(key: str) -> Iterator[None]:
    """Commands and clients inside act as ``key``'s identity (``GEOMLOPS_API_KEY``)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("GEOMLOPS_API_KEY", key)
    get_settings.cache_clear()
    try:
        yield
    finally:
        patch.undo()
        get_settings.cache_clear()


def train_candidate(
    stack: Connections, package: str, trainer_key: str, *params: str
) -> tuple[str, dict[str, Any]]:
    """``package`` registered from this checkout and trained on the Spain chip by
    ``trainer_key`` through `geomlops-train`, up to its approval step.

    ``params`` are extra ``NAME=VALUE`` workflow parameters (``epochs=8``). Returns the run
    and its register step's record (``model_version`` among it); the test fails with the
    training logs when the run does not reach approval (exit status 2).
    """
    register_package(REPO / "model_packages" / package, git_sha=checkout_head(), git_url=str(REPO))
    root = sample("")
    with staged([root / "imagery" / "sen1floods11"], root) as staged_root:
        dataset, _ = DatasetRegistry().add(
            staged_root, "sen1floods11", description="Sen1Floods11 chip"
        )
    args = ["-p", f"package={package}", "-p", f"dataset={dataset.tag}", "-p", "device=cpu"]
    for param in params:
        args += ["-p", param]
    with as_identity(trainer_key):
        result = _runner.invoke(app, ["workflows", "submit", "geomlops-train", *args])
        run = result.stdout.strip()
        if result.exit_code != 2:
            last = run.splitlines()[-1] if run else ""
            logs = _runner.invoke(app, ["workflows", "logs", last]).output
            pytest.fail(f"training did not reach approval: {result.output}\n{logs[-6000:]}")
        registered = objects.read_json(stack, f"{run_uri(get_settings(), run)}/register.json")
    return run, registered


def promote(package: str, version: str, reason: str, approver_key: str) -> None:
    """``version`` promoted to production by ``approver_key``'s identity."""
    with as_identity(approver_key), Governance(get_settings()) as governance:
        governance.promote(package, version, reason)


def production_version(stack: Connections, package: str, label: str) -> str:
    """A production version of ``package``: trained by one identity, promoted by another.

    Returns its ``models`` item id (``NAME-mvN``). ``label`` names the identities.
    """
    _, registered = train_candidate(
        stack, package, api_key(f"{label}-trainer", "writer"), "epochs=8"
    )
    version = str(registered["model_version"])
    promote(package, version, f"gate met ({label} tests)", api_key(f"{label}-promoter", "approver"))
    return model_item_id(package, version)


def add_spain_scene() -> Path:
    """The Spain chip ingested with `geomlops imagery add`; returns the chip's path."""
    chip = sample(SPAIN_CHIP)
    result = _runner.invoke(app, ["imagery", "add", str(chip), "--datetime", SPAIN_DATETIME])
    assert result.exit_code == 0, result.output
    return chip


def spain_aoi_file(folder: Path) -> Path:
    """The Spain chip ingested as a scene; a GeoJSON file in ``folder`` of the AOI over it."""
    chip = add_spain_scene()
    aoi = folder / "spain.geojson"
    aoi.write_text(json.dumps(demo_aoi(chip)))
    return aoi
