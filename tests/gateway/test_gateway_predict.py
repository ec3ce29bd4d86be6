"""The `predict` process through a real Seldon graph: `geomlops serve`, then the gateway.

The graph is the production model then the raster-to-vector transformer, started as a
person would start it (`geomlops serve flood-water-s2`); the gateway is built by its
factory with ``GEOMLOPS_GATEWAY_PREDICT_URL`` pointing at the graph, and checks the
caller's credential against the stack's catalog as the `gateway` service does.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from job_support import as_key
from ogc_schemas import check
from stack_support import SPAIN_CHIP, sample

from geomlops.gateway.app import create_app
from geomlops.settings import get_settings

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(3600)]
REPO = Path(__file__).resolve().parents[2]
EXECUTE = "/processes/predict/execution"


@pytest.fixture(scope="module")
def graph(production: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The production model's Seldon graph; its predictions URL."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("w") as errors:
        process = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "geomlops"), "serve", "flood-water-s2"],
            stdout=subprocess.PIPE, stderr=errors, text=True,
        )  # fmt: skip
        try:
            line = process.stdout.readline() if process.stdout else ""
            if not line:
                process.wait(timeout=30)
                pytest.fail(f"geomlops serve exited: {log.read_text()}")
            yield json.loads(line)["url"] + "/api/v1.0/predictions"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            if process.stdout:
                process.stdout.close()


@pytest.fixture(scope="module")
def gateway_with_graph(graph: str) -> Iterator[TestClient]:
    settings = get_settings()
    settings = settings.model_copy(
        update={"gateway": settings.gateway.model_copy(update={"predict_url": graph})}
    )
    with TestClient(create_app(settings), base_url="http://gateway.test") as client:
        yield client


def test_an_uploaded_image_comes_back_as_class_polygons(
    gateway_with_graph: TestClient, keys: dict[str, str], production: str
) -> None:
    chip = base64.b64encode(sample(SPAIN_CHIP).read_bytes()).decode()
    response = gateway_with_graph.post(
        EXECUTE, json={"inputs": {"image": chip}}, headers=as_key(keys["writer"])
    )
    assert response.status_code == 200, response.text
    check("Results", response.json())  # the document sync execution answers
    polygons = response.json()["polygons"]
    assert polygons["mediaType"] == "application/geo+json"
    features = polygons["value"]["features"]
    assert features, "the Spain chip has flood water"
    water = [f for f in features if f["properties"]["class_name"] == "water"]
    assert water and all(f["properties"]["area_m2"] > 0 for f in water)
    assert {f["geometry"]["type"] for f in features} <= {"Polygon", "MultiPolygon"}


def test_what_the_graph_refuses_is_a_clear_exception(
    gateway_with_graph: TestClient, keys: dict[str, str]
) -> None:
    """Not a GeoTIFF (the graph's 415): the graph's own reason, as a 400, not a 5xx."""
    junk = base64.b64encode(b"this is not a GeoTIFF").decode()
    response = gateway_with_graph.post(
        EXECUTE, json={"inputs": {"image": junk}}, headers=as_key(keys["writer"])
    )
    assert response.status_code == 400, response.text
    check("InvalidParameter", response.json())
    assert "refused it (415)" in response.json()["detail"]
    assert "not a GeoTIFF" in response.json()["detail"]


def test_predict_needs_the_writer_role(
    gateway_with_graph: TestClient, keys: dict[str, str]
) -> None:
    chip = base64.b64encode(b"x").decode()
    response = gateway_with_graph.post(
        EXECUTE, json={"inputs": {"image": chip}}, headers=as_key(keys["approver"])
    )
    assert response.status_code == 403
