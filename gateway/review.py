"""The approver's view of a model version: its gates, its predictions, and the decision.

DESIGN.md §10: the map page has an approver's review view, with "the same authentication
and governance code as the CLI". So nothing here decides anything: the gates are checked by
:func:`~geomlops.governance.gates.check_gates` on the metrics
:func:`~geomlops.governance.gates.recorded_metrics` reads (what promotion checks), and a
decision is :meth:`Governance.promote`/:meth:`Governance.reject` followed by
:func:`~geomlops.workflows.training_runs.settle_run_of` — exactly what `geomlops promote` /
`geomlops reject` run — as the identity behind the caller's own API key (the gateway's key
never decides). The audit trail then holds the same entry as from the CLI, and the rules
(approver role, approver ≠ trainer, candidate stage, gates, reason) refuse in their own
words, answered as the OGC exception body.

The pictures (:mod:`geomlops.gateway.reference`) are real predictions of the version and of
the production version over the reference scene the version was evaluated on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import MODELS
from geomlops.connections import get_connections
from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.gateway.auth import CallerDep, ReaderDep
from geomlops.gateway.errors import OgcError, from_domain
from geomlops.gateway.reference import (
    ReviewCache,
    class_colours,
    image_png,
    legend,
    mask_png,
)
from geomlops.governance.decisions import Governance
from geomlops.governance.gates import GateResult, check_gates, recorded_metrics
from geomlops.model import properties as prop
from geomlops.model.ids import model_item_id, parse_model_item_id
from geomlops.model.resolve import NoProductionVersion, resolve_model
from geomlops.settings import Settings
from geomlops.workflows.training_runs import settle_run_of

PICTURES = ("image", "label", "candidate", "production")
"""The review's pictures of the reference scene, in the order the page shows them."""
NO_PRODUCTION = "no production version yet: nothing to compare with"

router = APIRouter(prefix="/map/api/review", tags=["review"])


class Decision(BaseModel):
    """An approver's decision about a candidate, as the page sends it."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"] = Field(
        description="`approve` promotes the candidate to production; `reject` ends it."
    )
    reason: str = Field(default="", description="Why; recorded in the audit trail.")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _cache(request: Request) -> ReviewCache:
    cache: ReviewCache = request.app.state.review_cache
    return cache


def _version_item(settings: Settings, item_id: str) -> tuple[str, str, dict[str, Any]]:
    """(name, version, item) of a model version item id; 400 for another id, 404 if absent."""
    name, version = parse_model_item_id(item_id)
    with CatalogClient.from_settings(settings) as catalog:
        return name, version, catalog.get_item_dict(MODELS, item_id)


def _production(settings: Settings, name: str) -> dict[str, Any]:
    """The production version's item (one resolution rule); 404 when there is none."""
    try:
        resolved = resolve_model(name, settings=settings)
    except NoProductionVersion as exc:
        raise OgcError(404, "NotFound", f"{name}: {NO_PRODUCTION} ({exc.message})") from exc
    return resolved.item


def _gates(gates: Any, metrics: dict[str, float]) -> list[dict[str, Any]]:
    results: list[GateResult] = check_gates(gates, metrics) if isinstance(gates, dict) else []
    return [
        {
            "metric": r.metric,
            "gate": r.bounds,
            "min": r.minimum,
            "max": r.maximum,
            "value": r.measured,
            "met": r.met,
            "problem": r.problem,
        }
        for r in results
    ]


def _evaluation(mlflow: Any, props: dict[str, Any]) -> dict[str, Any]:
    """The evaluation run the gates were measured by, and the columns it held out."""
    run_id = props.get(prop.EVALUATE_RUN_ID)
    holdout = None
    if run_id:
        from mlflow.exceptions import MlflowException

        try:
            text = mlflow.get_run(run_id).data.params.get("holdout_columns")
            start, stop = (int(v) for v in str(text).split(":"))
            holdout = [start, stop]
        except (MlflowException, ValueError):
            holdout = None
    return {"run": run_id, "holdout_columns": holdout}


@router.get("/{item_id}", summary="Review of a model version")
def summary(item_id: str, request: Request, _: ReaderDep) -> dict[str, Any]:
    """Stage, trainer, every gate (bound, value, met) beside production's, scene, pictures."""
    settings = _settings(request)
    name, version, item = _version_item(settings, item_id)
    props = item["properties"]
    gates = props.get(prop.GATES)
    mlflow = get_connections(settings).mlflow_client()
    production: dict[str, Any] | None = None
    production_problem = None
    try:
        current = _production(settings, name)
        cprops = current["properties"]
        production = {
            "id": current["id"],
            "version": parse_model_item_id(current["id"])[1],
            "approved_by": cprops.get(prop.APPROVED_BY),
            "gates": _gates(gates, recorded_metrics(cprops, mlflow)),
        }
    except OgcError as exc:
        production_problem = exc.detail
    except GeomlopsError as exc:
        production_problem = from_domain(exc).detail
    scene: dict[str, Any] | None = None
    scene_problem = None
    try:
        scene = _cache(request).scene(item).describe()
    except GeomlopsError as exc:
        scene_problem = from_domain(exc).detail
    evaluation = _evaluation(mlflow, props)
    if scene is not None and evaluation["holdout_columns"]:
        scene["holdout_columns"] = evaluation["holdout_columns"]
    base = f"/map/api/review/{item_id}"
    return {
        "id": item_id,
        "name": name,
        "version": version,
        "stage": props.get(prop.STAGE),
        "trained_by": props.get(prop.TRAINED_BY),
        "registered_by": props.get(prop.REGISTERED_BY),
        "approved_by": props.get(prop.APPROVED_BY),
        "approval_reason": props.get(prop.APPROVAL_REASON),
        "rejected_by": props.get(prop.REJECTED_BY),
        "rejection_reason": props.get(prop.REJECTION_REASON),
        "workflow": props.get(prop.WORKFLOW),
        "gates": _gates(gates, recorded_metrics(props, mlflow)),
        "gates_declared": isinstance(gates, dict) and bool(gates),
        "evaluation": evaluation,
        "production": production,
        "production_problem": production_problem,
        "scene": scene,
        "scene_problem": scene_problem,
        "legend": legend(item),
        "pictures": {p: f"{base}/{p}.png" for p in PICTURES},
        "decision": f"{base}/decision",
    }


@router.get("/{item_id}/{picture}.png", summary="A picture of the reference scene")
def picture(item_id: str, picture: str, request: Request, _: ReaderDep) -> Response:
    """A PNG of the reference scene: ``image``, ``label``, ``candidate`` or ``production``.

    ``image`` is the display bands, stretched; ``label`` the hand label; ``candidate`` this
    version's prediction and ``production`` the production version's, both class-coloured
    like the map's prediction tiles.
    """
    if picture not in PICTURES:
        raise OgcError(404, "NotFound", f"no picture {picture!r}: one of {list(PICTURES)}")
    settings = _settings(request)
    cache = _cache(request)
    name, _version, item = _version_item(settings, item_id)
    scene = cache.scene(item)
    if picture == "image":
        data = cache.png((item_id, scene.tag, picture), lambda: image_png(scene))
    elif picture == "label":
        data = cache.png(
            (item_id, scene.tag, picture), lambda: mask_png(scene.label, class_colours(item))
        )
    else:
        model = item if picture == "candidate" else _production(settings, name)
        data = cache.png(
            (model["id"], scene.tag, "prediction", item_id),
            lambda: mask_png(cache.mask(model, scene), class_colours(item)),
        )
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})


def acting_as(settings: Settings, token: str, via: str) -> Settings:
    """A copy of ``settings`` whose credential is the caller's (catalog, and so Argo too).

    Governance asks the catalog who is deciding (``whoami`` of the settings' API key) and
    the training run is resumed with the same key, so the audit entry and the run name the
    caller, never the gateway. The catalog client sends an API key only; an OIDC bearer
    token cannot be forwarded through it yet, so such a caller is told to use a key.
    """
    if via != "api-key":
        raise OgcError(
            403,
            "Forbidden",
            "decisions through the gateway are taken with an API key: the governance code "
            "acts through the catalog client, which sends X-API-Key only (send your "
            "approver key, from `geomlops keys create NAME --role approver`)",
        )
    auth = settings.auth.model_copy(update={"api_key": SecretStr(token)})
    return settings.model_copy(update={"auth": auth})


@router.post("/{item_id}/decision", summary="Approve or reject a candidate")
def decide(
    item_id: str,
    request: Request,
    caller: CallerDep,
    body: Annotated[Decision, Body()],
) -> dict[str, Any]:
    """Promote or reject as the caller, then let the waiting training run end.

    The CLI's `geomlops promote|reject` to the letter. Refusals keep the governance
    message: 403 (not an approver, or the version's trainer), 400 (no reason, a gate
    missed), 409 (not a candidate), 404 (no such version).
    """
    name, version = parse_model_item_id(item_id)
    settings = acting_as(_settings(request), caller.token, caller.identity.via)
    with Governance(settings) as governance:
        if body.decision == "approve":
            outcome = governance.promote(name, version, body.reason)
        else:
            outcome = governance.reject(name, version, body.reason)
    settled = settle_run_of(name, version, settings)
    with CatalogClient.from_settings(settings) as catalog:
        try:
            stage = catalog.get_item_dict(MODELS, model_item_id(name, version))["properties"].get(
                prop.STAGE
            )
        except NotFoundError:
            stage = None
    entry = outcome.entry
    return {
        "decision": body.decision,
        "model": name,
        "version": version,
        "actor": outcome.actor,
        "audit_entry": entry.id if entry is not None else None,
        "action": str(outcome.action),
        "stage": stage,
        "repaired": [str(d) for d in outcome.repaired],
        "training_run": settled.as_dict() if settled is not None else None,
    }


def install(app: FastAPI) -> None:
    """Mount the review routes on ``app`` with a cache of scenes and predictions."""
    app.state.review_cache = ReviewCache(app.state.settings)
    app.include_router(router)
