"""The gateway on the real local stack: its `gateway` service, a production model, a scene.

The S2 flood model is trained through `geomlops-train` by one identity and promoted by
another, as in the inference tests; the Sen1Floods11 chip is ingested with `geomlops
imagery add`. Requests go to the stack's own `gateway` service over loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from job_support import ASYNC, EXECUTE, as_key, execute_inputs, poll_job
from ogc_schemas import check
from stack_support import add_spain_scene, api_key, production_version

from geomlops.cli.demo import demo_aoi
from geomlops.connections import Connections

MODEL = "flood-water-s2"


@pytest.fixture(scope="session")
def gateway(stack: Connections) -> str:
    """URL of the stack's `gateway` service."""
    return stack.gateway_url


@pytest.fixture(scope="session")
def keys(stack: Connections) -> dict[str, str]:
    """A writer (runs jobs), an approver who is not a writer, and an identity to read with."""
    return {
        "writer": api_key("gw-writer", "writer"),
        "approver": api_key("gw-approver", "approver"),
    }


@pytest.fixture(scope="session")
def production(stack: Connections) -> str:
    """A production version of the S2 model: trained by one identity, promoted by another."""
    return production_version(stack, MODEL, "gw")


@pytest.fixture(scope="session")
def spain(stack: Connections) -> dict:
    """The chip ingested as a scene; returns the AOI (a GeoJSON Feature) covering it."""
    return demo_aoi(add_spain_scene())


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
