"""An OGC API - Processes client path end to end on the local stack, through the gateway.

Execute `batch-inference` asynchronously on the Sen1Floods11 AOI, poll the job to
`successful`, fetch its results and open their links (the COG with range requests, the
GeoJSON); dismiss a second job mid-run. Every answer is validated against the official
schemas. Jobs are the workflow runs the Argo API knows: what the gateway lists is what
`geomlops workflows list` sees.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from job_support import ASYNC, EXECUTE, as_key, execute_inputs, poll_job
from ogc_schemas import check

from geomlops.settings import get_settings
from geomlops.workflows.argo import ArgoServer
from geomlops.workflows.inference.progress import run_summary

# Long: the session trains and promotes a model first (minutes on 2 busy cores).
pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(3600)]


def test_async_job_runs_to_successful_with_task_counts(finished_job: dict[str, Any]) -> None:
    assert finished_job["status"] == "successful", finished_job
    assert finished_job["progress"] == 100
    tasks = finished_job["tasks"]
    assert tasks["total"] > 0
    assert tasks == {
        "total": tasks["total"],
        "succeeded": tasks["total"],
        "failed": 0,
        "waiting": 0,
    }
    rels = {link["rel"] for link in finished_job["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/results" in rels


def test_the_job_is_the_workflow_run(finished_job: dict[str, Any], keys: dict[str, str]) -> None:
    """Not a second queue: the Argo API has the run, submitted as the caller."""
    run = ArgoServer(get_settings()).status(finished_job["jobID"])
    assert run["workflowTemplate"] == "geomlops-batch-inference"
    assert run["phase"] == "Succeeded"
    assert (run["submittedBy"] or "").startswith("gw-writer-")
    summary = run_summary(finished_job["jobID"], get_settings())
    assert summary["tasks"]["tasks_count_total"] == finished_job["tasks"]["total"]


def test_results_links_open(
    client: httpx.Client, finished_job: dict[str, Any], keys: dict[str, str]
) -> None:
    response = client.get(f"/jobs/{finished_job['jobID']}/results", headers=as_key(keys["writer"]))
    assert response.status_code == 200, response.text
    results = response.json()
    check("Results", results)
    polygons = httpx.get(results["polygons"]["href"], timeout=60)  # no credential: public reads
    assert polygons.status_code == 200
    assert polygons.json()["type"] == "FeatureCollection"
    assert polygons.json()["features"], "the flooded chip has water polygons"
    assert results["masks"], results
    mask = results["masks"][0]["href"]
    head = httpx.head(mask, timeout=60)
    assert head.status_code == 200 and head.headers["accept-ranges"] == "bytes"
    size = int(head.headers["content-length"])
    first = httpx.get(mask, headers={"Range": "bytes=0-15"}, timeout=60)
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-15/{size}"
    assert first.content[:4] in (b"II*\x00", b"MM\x00*")
    tail = httpx.get(mask, headers={"Range": "bytes=-10"}, timeout=60)
    assert tail.status_code == 206 and len(tail.content) == 10
    whole = httpx.get(mask, timeout=60)
    assert whole.content[:16] == first.content and whole.content[-10:] == tail.content


def test_job_list_holds_the_job(
    client: httpx.Client, finished_job: dict[str, Any], keys: dict[str, str]
) -> None:
    response = client.get("/jobs", headers=as_key(keys["writer"]))
    assert response.status_code == 200
    check("JobList", response.json())
    listed = {job["jobID"]: job for job in response.json()["jobs"]}
    assert listed[finished_job["jobID"]]["status"] == "successful"


def test_dismiss_stops_a_second_job_mid_run(
    client: httpx.Client, keys: dict[str, str], production: str, spain: dict
) -> None:
    writer = as_key(keys["writer"])
    response = client.post(EXECUTE, json=execute_inputs(spain), headers={**ASYNC, **writer})
    assert response.status_code == 201, response.text
    job = response.json()["jobID"]
    not_ready = client.get(f"/jobs/{job}/results", headers=writer)
    assert not_ready.status_code == 404
    check("NotFound", not_ready.json())
    assert not_ready.json()["type"].endswith("/result-not-ready")

    refused = client.delete(f"/jobs/{job}", headers=as_key(keys["approver"]))
    assert refused.status_code == 403, "dismissing needs the writer role"
    dismissed = client.delete(f"/jobs/{job}", headers=writer)
    assert dismissed.status_code == 200, dismissed.text
    check("Status", dismissed.json())
    assert dismissed.json()["status"] == "dismissed"

    final = poll_job(client, f"/jobs/{job}", keys["writer"])
    assert final["status"] == "dismissed", final
    assert run_summary(job, get_settings()).get("published") is None, "nothing published"
    failed = client.get(f"/jobs/{job}/results", headers=writer)
    check("ServerError", failed.json())


def test_executing_needs_the_writer_role_before_any_work(
    client: httpx.Client, keys: dict[str, str], spain: dict
) -> None:
    before = client.get("/jobs", headers=as_key(keys["writer"])).json()["jobs"]
    response = client.post(EXECUTE, json=execute_inputs(spain), headers=as_key(keys["approver"]))
    assert response.status_code == 403
    check("ServerError", response.json())
    assert "writer" in response.json()["detail"]
    bad_key = client.post(EXECUTE, json=execute_inputs(spain), headers=as_key("gml_not-a-key"))
    assert bad_key.status_code == 401
    after = client.get("/jobs", headers=as_key(keys["writer"])).json()["jobs"]
    assert len(after) == len(before), "no run was submitted"


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ({"model": "flood-water-s2", "datetime": "2019-09-01/2019-09-30"}, "'aoi' is required"),
        (
            {"model": "flood-water-s2", "aoi": {"type": "Point", "coordinates": [0, 0]},
             "datetime": "2019-09-01/2019-09-30"},
            "not a Polygon",
        ),
        ({"model": "flood-water-s2", "aoi": None, "datetime": "September"}, "input 'datetime'"),
        ({"model": "no-such-model", "aoi": "SPAIN", "datetime": "2019-09-01/.."}, "no-such-model"),
        ({"model": "flood-water-s2", "aoi": "SPAIN", "datetime": "2019/2020"}, "START/END"),
        ({"model": "flood-water-s2", "aoi": "AUSTRIA", "datetime": "2019-09-01/.."}, "outside"),
        ({"model": "m", "aoi": {}, "datetime": "..", "colour": "red"}, "unknown input 'colour'"),
    ],
)  # fmt: skip
def test_bad_inputs_are_invalid_parameter_exceptions(
    client: httpx.Client,
    keys: dict[str, str],
    production: str,
    spain: dict,
    inputs: dict[str, Any],
    says: str,
) -> None:
    austria = {
        "type": "Polygon",
        "coordinates": [[[14.0, 47.0], [14.1, 47.0], [14.1, 47.1], [14.0, 47.1], [14.0, 47.0]]],
    }
    inputs = {
        k: spain if v == "SPAIN" else austria if v == "AUSTRIA" else v for k, v in inputs.items()
    }
    response = client.post(
        EXECUTE, json={"inputs": inputs}, headers={**ASYNC, **as_key(keys["writer"])}
    )
    assert response.status_code == 400, response.text
    check("InvalidParameter", response.json())
    assert says in response.json()["detail"]


def test_unknown_job_is_a_no_such_job_exception(client: httpx.Client, keys: dict[str, str]) -> None:
    response = client.get("/jobs/geomlops-batch-inference-nope", headers=as_key(keys["writer"]))
    assert response.status_code == 404
    check("NotFound", response.json())
    assert response.json()["type"].endswith("/no-such-job")


def test_predict_without_a_graph_names_the_setting(
    client: httpx.Client, keys: dict[str, str]
) -> None:
    """`predict` forwards to a Seldon graph; with none configured it says which setting."""
    response = client.post(
        "/processes/predict/execution",
        json={"inputs": {"image": {"href": "s3://imagery/some.tif"}}},
        headers=as_key(keys["writer"]),
    )
    assert response.status_code == 503
    check("ServerError", response.json())
    assert "GEOMLOPS_GATEWAY_PREDICT_URL" in response.json()["detail"]
