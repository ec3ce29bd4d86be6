"""OGC API - Processes - Part 1: Core 1.0 routes: landing page to job results.

Conformance classes: core, ogc-process-description, json, job-list, dismiss. Reading the
process list needs nothing; executing a process and dismissing a job need the ``writer``
role, checked before anything is read or submitted; reading jobs needs a credential (a job
is someone's workflow run, with their area of interest in it).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import httpx
import jsonschema
from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse, Response

from geomlops.errors import NotFoundError, ValidationFailed
from geomlops.gateway.assets import base_url
from geomlops.gateway.auth import CallerDep, WriterDep
from geomlops.gateway.errors import OgcError, from_domain
from geomlops.gateway.jobs import JSON, no_such_job, results, status_info
from geomlops.gateway.processes import (
    GEOJSON,
    PREDICT,
    PROCESSES,
    description,
    summary,
)
from geomlops.gateway.runner import Runner
from geomlops.settings import Settings

CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
CONFORMANCE = [CONF + c for c in ("core", "ogc-process-description", "json", "job-list", "dismiss")]
OGC_REL = "http://www.opengis.net/def/rel/ogc/1.0/"
PREDICT_TIMEOUT = 300.0

router = APIRouter()


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.get("/", summary="Landing page")
def landing(request: Request) -> dict[str, Any]:
    """Landing page."""
    base = base_url(request)
    return {
        "title": "geomlops gateway",
        "description": "OGC API - Processes (batch inference as workflow runs, predictions "
        "through the Seldon graph), tiles of imagery and predictions, and the map page.",
        "links": [
            {"href": f"{base}/", "rel": "self", "type": JSON, "title": "this document"},
            {
                "href": f"{base}/api",
                "rel": "service-desc",
                "type": "application/vnd.oai.openapi+json;version=3.0",
                "title": "the API definition",
            },
            {"href": f"{base}/conformance", "rel": OGC_REL + "conformance", "type": JSON},
            {"href": f"{base}/processes", "rel": OGC_REL + "processes", "type": JSON},
            {"href": f"{base}/jobs", "rel": OGC_REL + "job-list", "type": JSON},
            {"href": f"{base}/map", "rel": "alternate", "type": "text/html", "title": "map"},
        ],
    }


@router.get("/conformance", summary="Conformance classes")
def conformance() -> dict[str, Any]:
    """Conformance classes."""
    return {"conformsTo": CONFORMANCE}


@router.get("/api", summary="OpenAPI definition")
def api(request: Request) -> JSONResponse:
    """OpenAPI definition."""
    return JSONResponse(
        request.app.openapi(), media_type="application/vnd.oai.openapi+json;version=3.0"
    )


def _process_links(base: str, process_id: str) -> list[dict[str, str]]:
    return [
        {"href": f"{base}/processes/{process_id}", "rel": "self", "type": JSON},
        {
            "href": f"{base}/processes/{process_id}/execution",
            "rel": OGC_REL + "execute",
            "title": "execute",
        },
    ]


@router.get("/processes", summary="The processes offered")
def processes(request: Request) -> dict[str, Any]:
    """The processes offered."""
    base = base_url(request)
    return {
        "processes": [{**summary(p), "links": _process_links(base, p)} for p in PROCESSES],
        "links": [{"href": f"{base}/processes", "rel": "self", "type": JSON}],
    }


@router.get("/processes/{process_id}", summary="A process's description")
def process(process_id: str, request: Request) -> dict[str, Any]:
    """A process's description."""
    return {**description(process_id), "links": _process_links(base_url(request), process_id)}


def _values(process_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The inputs of an execute request, unwrapped and checked against the description."""
    inputs = body.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise OgcError(400, "InvalidParameterValue", "`inputs` must be an object")
    declared = description(process_id)["inputs"]
    problems = [f"unknown input {name!r}" for name in inputs if name not in declared]
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name not in inputs:
            if spec.get("minOccurs", 1) != 0:
                problems.append(f"input {name!r} is required")
            continue
        value = inputs[name]
        if isinstance(value, dict) and "value" in value and "type" not in value:
            value = value["value"]  # a qualified value
        if isinstance(value, dict) and "href" in value and process_id == PREDICT:
            values[name] = value  # a link: checked where it is read
            continue
        try:
            jsonschema.validate(value, spec["schema"])
        except jsonschema.ValidationError as exc:
            # A pattern's regex tells a person little; the input's description says more.
            why = spec["description"] if exc.validator == "pattern" else exc.message
            problems.append(f"input {name!r}: {value!r} is not valid: {why}")
            continue
        values[name] = value
    if problems:
        raise OgcError(400, "InvalidParameterValue", "; ".join(problems))
    return values


@router.post("/processes/{process_id}/execution", summary="Execute a process")
def execute(
    process_id: str,
    request: Request,
    caller: WriterDep,
    body: Annotated[dict[str, Any], Body()],
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    """batch-inference runs asynchronously (201 + Location); predict synchronously (200)."""
    description(process_id)  # 404 for an unknown process before the body is looked at
    values = _values(process_id, body)
    settings = _settings(request)
    if process_id == PREDICT:
        return JSONResponse(_predict(settings, values["image"]))
    runner = Runner(settings, caller.token)
    try:
        name, _ = runner.submit_batch_inference(
            model=values["model"],
            version=values.get("version"),
            aoi=values["aoi"],
            datetime=values["datetime"],
            allow_outside_region=bool(values.get("allow-outside-region", False)),
        )
    except (NotFoundError, ValidationFailed) as exc:  # a bad input value, not a bad route
        raise OgcError(400, "InvalidParameterValue", from_domain(exc).detail) from exc
    base = base_url(request)
    info = status_info(base, runner.run(name))
    headers = {"Location": f"{base}/jobs/{name}"}
    if prefer and "respond-async" in prefer:
        headers["Preference-Applied"] = "respond-async"
    return JSONResponse(info, status_code=201, headers=headers)


def _predict(settings: Settings, image: Any) -> dict[str, Any]:
    """One image through the Seldon graph; the results document with its GeoJSON."""
    url = settings.gateway.predict_url
    if not url:
        raise OgcError(
            503,
            "ServiceUnavailable",
            "no Seldon graph to predict with: set GEOMLOPS_GATEWAY_PREDICT_URL to its "
            "`…/api/v1.0/predictions` (`geomlops serve MODEL` prints it)",
        )
    if isinstance(image, dict):
        message: dict[str, Any] = {"jsonData": {"url": str(image["href"])}}
    else:
        try:
            base64.b64decode(str(image), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise OgcError(
                400, "InvalidParameterValue", f"input 'image': not base64 ({exc})"
            ) from exc
        message = {"binData": str(image)}
    try:
        response = httpx.post(url, json=message, timeout=PREDICT_TIMEOUT)
    except httpx.HTTPError as exc:
        raise OgcError(503, "ServiceUnavailable", f"the Seldon graph at {url}: {exc}") from exc
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code != 200:
        reason = (answer.get("status") or {}).get("info") or response.text[:300]
        if 400 <= response.status_code < 500:  # the image itself: too big, not a GeoTIFF…
            raise OgcError(
                400,
                "InvalidParameterValue",
                f"input 'image': the Seldon graph refused it ({response.status_code}): {reason}",
            )
        raise OgcError(502, "PredictionFailed", f"the Seldon graph failed: {reason}")
    geojson = answer.get("jsonData", answer)
    return {"polygons": {"value": geojson, "mediaType": GEOJSON}}


@router.get("/jobs", summary="Jobs (batch-inference workflow runs)")
def jobs(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Jobs (batch-inference workflow runs)."""
    base = base_url(request)
    runner = Runner(_settings(request), caller.token)
    return {
        "jobs": [status_info(base, run) for run in runner.runs()],
        "links": [{"href": f"{base}/jobs", "rel": "self", "type": JSON}],
    }


def _run(runner: Runner, job_id: str) -> dict[str, Any]:
    try:
        return runner.run(job_id)
    except NotFoundError:
        raise no_such_job(job_id) from None


@router.get("/jobs/{job_id}", summary="A job's status, progress and task counts")
def job(job_id: str, request: Request, caller: CallerDep) -> dict[str, Any]:
    """A job's status, progress and task counts."""
    runner = Runner(_settings(request), caller.token)
    run = _run(runner, job_id)
    return status_info(base_url(request), run, runner.summary(run))


@router.delete("/jobs/{job_id}", summary="Dismiss a job: stop its workflow run")
def dismiss(job_id: str, request: Request, caller: WriterDep) -> dict[str, Any]:
    """Dismiss a job: stop its workflow run."""
    runner = Runner(_settings(request), caller.token)
    _run(runner, job_id)
    run = runner.dismiss(job_id, caller.identity.name)
    info = status_info(base_url(request), run, runner.summary(run))
    if info["status"] in ("accepted", "running"):
        info["status"] = "dismissed"  # stopping: its pods are being killed
    return info


@router.get("/jobs/{job_id}/results", summary="A successful job's outputs")
def job_results(job_id: str, request: Request, caller: CallerDep) -> dict[str, Any]:
    """A successful job's outputs."""
    runner = Runner(_settings(request), caller.token)
    run = _run(runner, job_id)
    return results(base_url(request), run, runner.summary(run))
