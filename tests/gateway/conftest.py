"""The gateway on the real local stack: its `gateway` service, a production model, a scene.

The S2 flood model is trained through `geomlops-train` by one identity and promoted by
another, as in the inference tests; the Sen1Floods11 chip is ingested with `geomlops
imagery add`. Requests go to the stack's own `gateway` service over loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from job_support import ASYNC, EXECUTE, as_key, execute_inputs, make_key, poll_job
from ogc_schemas import check
from typer.testing import CliRunner

from geomlops import objects
from geomlops.cli.demo import demo_aoi
from geomlops.cli.main import app
from geomlops.connections import Connections, get_connections
from geomlops.datasets import DatasetRegistry
from geomlops.datasets.registry import staged
from geomlops.governance.decisions import Governance
from geomlops.registration.register import register_package
from geomlops.settings import get_settings
from geomlops.workflows.templates.train import run_uri

REPO = Path(__file__).resolve().parents[2]
MODEL = "flood-water-s2"
CHIP = "imagery/sen1floods11/Spain_7370579_S2Hand.tif"
SCENE_DATETIME = "2019-09-18T10:50:00Z"
runner = CliRunner()


def sample(path: str) -> Path:
    root = get_settings().sample_data.sample_data
    assert root is not None, "the sample data is needed (GEOMLOPS_SAMPLE_DATA)"
    return root / path


@pytest.fixture(scope="session")
def gateway(stack: Connections) -> str:
    """URL of the stack's `gateway` service."""
    return stack.gateway_url


@pytest.fixture(scope="session")
def keys(stack: Connections) -> dict[str, str]:
    """A writer (runs jobs), an approver who is not a writer, and an identity to read with."""
    return {
        "writer": make_key("gw-writer", "writer"),
        "approver": make_key("gw-approver", "approver"),
    }


@pytest.fixture(scope="session")
def production(stack: Connections) -> str:
    """A production version of the S2 model: trained by one identity, promoted by another."""
    register_package(REPO / "model_packages" / MODEL, git_url=str(REPO))
    root = sample("")
    with staged([root / "imagery" / "sen1floods11"], root) as staged_root:
        dataset, _ = DatasetRegistry().add(
            staged_root, "sen1floods11", description="Sen1Floods11 chip"
        )
    mp = pytest.MonkeyPatch()
    mp.setenv("GEOMLOPS_API_KEY", make_key("gw-trainer", "writer"))
    get_settings.cache_clear()
    result = runner.invoke(
        app,
        [
            "workflows", "submit", "geomlops-train", "-p", f"package={MODEL}",
            "-p", f"dataset={dataset.tag}", "-p", "epochs=8", "-p", "device=cpu",
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    run = result.stdout.strip()
    registered = objects.read_json(
        get_connections(), f"{run_uri(get_settings(), run)}/register.json"
    )
    mp.setenv("GEOMLOPS_API_KEY", make_key("gw-promoter", "approver"))
    get_settings.cache_clear()
    with Governance(get_settings()) as governance:
        governance.promote(MODEL, registered["model_version"], "gate met (gateway tests)")
    mp.undo()
    get_settings.cache_clear()
    return f"{MODEL}-mv{registered['model_version']}"


@pytest.fixture(scope="session")
def spain(stack: Connections) -> dict:
    """The chip ingested as a scene; returns the AOI (a GeoJSON Feature) covering it."""
    chip = sample(CHIP)
    result = runner.invoke(app, ["imagery", "add", str(chip), "--datetime", SCENE_DATETIME])
    assert result.exit_code == 0, result.output
    aoi = demo_aoi(chip)
    return aoi


@pytest.fixture(scope="session")
def client(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def finished_job(
    client: httpx.Client, keys: dict[str, str], production: str, spain: dict
) -> dict[str, Any]:
    """A batch-inference job executed asynchronously and polled to its end."""
    response = client.post(
        EXECUTE, json=execute_inputs(spain), headers={**ASYNC, **as_key(keys["writer"])}
    )
    assert response.status_code == 201, response.text
    check("ExecuteAsync", response.json())
    assert response.headers["preference-applied"] == "respond-async"
    location = response.headers["location"]
    assert location.endswith(f"/jobs/{response.json()['jobID']}")
    return poll_job(client, location, keys["writer"])
