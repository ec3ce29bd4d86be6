"""The map page: its files, the basemap, and what it shows of models and lineage.

Everything the page loads comes from the gateway: MapLibre GL (installed from the npm
registry by ``make`` into ``static/node_modules``), the page's own script, and country
outlines from the sample data as a basemap that needs no tile server on the internet. So
the page works air-gapped: no request leaves the machine it is served from.

The model list and the lineage panel are assembled here, in Python, so the property names
stay those of ``geomlops.model.properties`` (one source of truth) rather than a second copy
in JavaScript.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import IMAGERY, MODELS, PREDICTIONS
from geomlops.errors import NotFoundError, ValidationFailed
from geomlops.gateway.assets import asset_path, base_url, get_item
from geomlops.gateway.auth import ReaderDep
from geomlops.gateway.errors import OgcError
from geomlops.gateway.jobs import asset_url
from geomlops.model import ModelIO
from geomlops.model import properties as prop
from geomlops.model.ids import parse_model_item_id
from geomlops.settings import Settings
from geomlops.workflows.inference.publish import scene_item_id

STATIC = Path(__file__).parent / "static"
MAPLIBRE = STATIC / "node_modules" / "maplibre-gl" / "dist"
COUNTRIES = "countries.geojson"

router = APIRouter()


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.get("/map", include_in_schema=False)
def page() -> FileResponse:
    """The map page (HTML; its script and MapLibre are served beside it)."""
    if not (MAPLIBRE / "maplibre-gl.mjs").exists():
        raise OgcError(
            503,
            "ServiceUnavailable",
            f"MapLibre GL is not installed in {MAPLIBRE.parent}: run `make install` "
            "(it runs `npm ci` in gateway/static)",
        )
    return FileResponse(STATIC / "map.html", media_type="text/html")


@router.get("/map/basemap.geojson", include_in_schema=False)
def basemap(request: Request) -> FileResponse:
    """Country outlines (sample data ``vector/countries.geojson``): the offline basemap."""
    folder = _settings(request).gateway.vector_dir
    if folder is None or not (folder / COUNTRIES).exists():
        raise OgcError(
            404,
            "NotFound",
            "no country outlines: set GEOMLOPS_GATEWAY_VECTOR_DIR to a folder holding "
            f"{COUNTRIES} (the sample data's vector/)",
        )
    return FileResponse(folder / COUNTRIES, media_type="application/geo+json")


def model_summary(item: dict[str, Any]) -> dict[str, Any] | None:
    """What the page lists of a model version: name, version, stage, task, input bands.

    None for an item of the collection that is not a model version (a package's item).
    """
    try:
        name, version = parse_model_item_id(item["id"])
    except ValidationFailed:
        return None
    props = item.get("properties") or {}
    try:
        bands = list(ModelIO.from_item(item).bands)
    except Exception:  # a version whose MLM fields the reader refuses still gets listed
        bands = []
    return {
        "id": item["id"],
        "name": name,
        "version": version,
        "stage": props.get(prop.STAGE),
        "tasks": props.get("mlm:tasks") or [],
        "bands": bands,
        "bbox": item.get("bbox"),
    }


@router.get("/map/api/models", summary="Model versions for the map")
def models(request: Request, _: ReaderDep) -> list[dict[str, Any]]:
    """Every model version in the catalog with its stage, task and input bands."""
    with CatalogClient.from_settings(_settings(request)) as catalog:
        items = list(catalog.iter_search(collections=[MODELS]))
    listed = [m for m in map(model_summary, items) if m is not None]
    return sorted(listed, key=lambda m: (m["name"], -int(m["version"])))


def _model_item(settings: Settings, item_id: str) -> dict[str, Any]:
    with CatalogClient.from_settings(settings) as catalog:
        try:
            return catalog.get_item_dict(MODELS, item_id)
        except NotFoundError as exc:
            raise OgcError(404, "NotFound", exc.message) from exc


@router.get("/map/api/lineage/{item_id}", summary="Lineage of a prediction")
def lineage(item_id: str, request: Request, _: ReaderDep) -> dict[str, Any]:
    """Model version and its approval, dataset, code, workflow run, software; downloads."""
    settings = _settings(request)
    base = base_url(request)
    item = get_item(settings, PREDICTIONS, item_id)
    props = item["properties"]
    model = _model_item(settings, props[prop.MODEL_ITEM])
    mprops = model["properties"]
    scenes = props.get(prop.SCENES) or ([props[prop.SCENE]] if props.get(prop.SCENE) else [])
    downloads = [
        {
            "title": spec.get("title") or name,
            "href": base + asset_path(PREDICTIONS, item_id, name),
            "type": spec.get("type"),
        }
        for name, spec in (item.get("assets") or {}).items()
    ]
    downloads.append(
        {
            "title": "STAC item (http hrefs)",
            "href": f"{base}/collections/{PREDICTIONS}/items/{item_id}",
            "type": "application/geo+json",
        }
    )
    return {
        "prediction": item_id,
        "model": {
            "item": model["id"],
            "name": props.get(prop.MODEL),
            "version": props.get(prop.MODEL_VERSION),
            "stage": mprops.get(prop.STAGE),
            "approved_by": mprops.get(prop.APPROVED_BY),
            "approved_at": mprops.get(prop.APPROVED_AT),
            "approval_reason": mprops.get(prop.APPROVAL_REASON),
            "trained_by": mprops.get(prop.TRAINED_BY),
            "git_commit": mprops.get(prop.GIT_COMMIT),
            "image": mprops.get(prop.IMAGE),
            "mlflow_run": mprops.get(prop.MLFLOW_RUN_ID),
        },
        "dataset": {
            "name": mprops.get(prop.DATASET),
            "version": mprops.get(prop.DATASET_VERSION),
            "md5": mprops.get(prop.DATASET_MD5),
        },
        "workflow": {"run": props.get(prop.WORKFLOW), "runs": props.get(prop.WORKFLOW_RUNS)},
        "software": props.get("processing:software") or {},
        "scenes": [{"id": s, "href": f"{base}/collections/{IMAGERY}/items/{s}"} for s in scenes],
        "outside_region": bool(props.get(prop.OUTSIDE_REGION)),
        "stats": props.get(prop.STATS) or {},
        "downloads": downloads,
    }


@router.get("/map/api/runs/{run}", summary="The published outputs of a batch-inference run")
def run_outputs(run: str, request: Request, _: ReaderDep) -> dict[str, Any]:
    """Its class masks and polygons, found in the catalog: ``/map?run=RUN`` shows them.

    A job's results (``/jobs/{id}/results``) ask Argo about the run and need a credential;
    a published run is in the catalog, readable as its tiles are, so a link to the map of
    a run (the demo prints one) opens for anyone who may read them.
    """
    settings = _settings(request)
    base = base_url(request)
    item = get_item(settings, PREDICTIONS, run)
    scenes = item["properties"].get(prop.SCENES) or []
    return {
        "masks": [
            {"href": asset_url(base, PREDICTIONS, scene_item_id(run, scene), "mask")}
            for scene in scenes
        ],
        "polygons": {"href": asset_url(base, PREDICTIONS, run, "vectors")},
    }


def install(app: FastAPI) -> None:
    """Mount the page's routes and files on ``app``."""
    app.include_router(router)
    app.mount("/map/static", StaticFiles(directory=STATIC / "app"), name="map-static")
    app.mount(
        "/vendor/maplibre-gl",
        StaticFiles(directory=MAPLIBRE, check_dir=False),
        name="maplibre",
    )
