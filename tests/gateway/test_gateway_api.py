"""The gateway's OGC API - Processes documents, checked against the official schemas.

These answers need no stack (the landing page, conformance, the API definition, the process
list and descriptions, and the errors a request gets before anything is looked up), so the
app is driven in-process through the same factory the stack's `gateway` service uses.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from ogc_schemas import check

from geomlops.gateway.app import create_app
from geomlops.gateway.processes import PROCESSES
from geomlops.settings import get_settings

CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(get_settings()), base_url="http://gateway.test") as client:
        yield client


def test_landing_page(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    check("LandingPage", response.json())
    rels = {link["rel"]: link["href"] for link in response.json()["links"]}
    assert rels["service-desc"] == "http://gateway.test/api"
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/conformance"].endswith("/conformance")
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/processes"].endswith("/processes")


def test_conformance_declares_the_classes_served(client: TestClient) -> None:
    response = client.get("/conformance")
    check("ConformanceDeclaration", response.json())
    classes = {c.removeprefix(CONF) for c in response.json()["conformsTo"]}
    assert classes == {"core", "ogc-process-description", "json", "job-list", "dismiss"}


def test_api_definition_lists_every_ogc_path(client: TestClient) -> None:
    response = client.get("/api")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    paths = response.json()["paths"]
    for path in (
        "/", "/conformance", "/api", "/processes", "/processes/{process_id}",
        "/processes/{process_id}/execution", "/jobs", "/jobs/{job_id}",
        "/jobs/{job_id}/results",
    ):  # fmt: skip
        assert path in paths, path
    assert "delete" in paths["/jobs/{job_id}"]


def test_process_list(client: TestClient) -> None:
    body = client.get("/processes").json()
    check("ProcessList", body)
    assert [p["id"] for p in body["processes"]] == ["batch-inference", "predict"]
    assert all("inputs" not in p for p in body["processes"])


@pytest.mark.parametrize("process_id", list(PROCESSES))
def test_process_description(client: TestClient, process_id: str) -> None:
    body = client.get(f"/processes/{process_id}").json()
    check("ProcessDescription", body)
    assert body["id"] == process_id


def test_batch_inference_takes_what_geomlops_infer_takes(client: TestClient) -> None:
    body = client.get("/processes/batch-inference").json()
    assert set(body["inputs"]) == {"model", "version", "aoi", "datetime", "allow-outside-region"}
    assert {n for n, i in body["inputs"].items() if i.get("minOccurs", 1) == 0} == {
        "version",
        "allow-outside-region",
    }
    assert body["jobControlOptions"] == ["async-execute", "dismiss"]


def test_unknown_process_is_a_no_such_process_exception(client: TestClient) -> None:
    response = client.get("/processes/nope")
    assert response.status_code == 404
    check("NotFound", response.json())
    assert response.json()["type"].endswith("/no-such-process")


def test_unknown_route_gets_the_exception_body(client: TestClient) -> None:
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    check("NotFound", response.json())


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/processes/batch-inference/execution"),
        ("get", "/jobs"),
        ("get", "/jobs/some-run"),
        ("delete", "/jobs/some-run"),
        ("get", "/jobs/some-run/results"),
    ],
)
def test_jobs_need_a_credential(client: TestClient, method: str, path: str) -> None:
    kwargs = {"json": {"inputs": {}}} if method == "post" else {}
    response = client.request(method.upper(), path, **kwargs)
    assert response.status_code == 401
    check("ServerError", response.json())  # the exception body (schema exception.yaml)
    assert "X-API-Key" in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")
