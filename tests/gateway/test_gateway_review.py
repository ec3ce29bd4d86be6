"""The approver's review on the map page, on the real local stack and in a real browser.

Two more versions of the S2 flood model are trained through `geomlops-train` by a trainer
who also holds the approver role (so only the separation rule can refuse them): a weak one
(two epochs: misses its gate) and a good one (the production fixture's eight epochs). The
review's facts are checked against the governance code itself, its pictures decoded, and
its decisions against the audit trail `geomlops audit` prints. Screenshots are written to
``test-artifacts/gateway/`` (``GEOMLOPS_TEST_ARTIFACTS`` elsewhere).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from stack_support import api_key
from test_gateway_map import CHROMIUM, FLAGS, Traffic, artifacts
from typer.testing import CliRunner

from geomlops import audit, objects
from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import MODELS
from geomlops.catalog.db import pgstac_url
from geomlops.cli.main import app
from geomlops.connections import Connections, get_connections
from geomlops.governance.gates import check_gates, recorded_metrics
from geomlops.model import properties as prop
from geomlops.model.ids import model_item_id
from geomlops.settings import get_settings
from geomlops.workflows.templates.train import run_uri

# Long: the session trains three versions first (minutes each on 2 busy cores).
pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(5400)]
DECISION_TIMEOUT = 600.0
"""A decision resumes the training run and waits for it to end (its `approved` step)."""
PICTURES = ("image", "label", "candidate", "production")
MODEL = "flood-water-s2"
runner = CliRunner()


def train(key: str, dataset: str, epochs: int) -> str:
    """Train a version through `geomlops-train` as ``key``; its item id (a candidate)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GEOMLOPS_API_KEY", key)
    get_settings.cache_clear()
    try:
        result = runner.invoke(
            app,
            [
                "workflows", "submit", "geomlops-train", "-p", f"package={MODEL}",
                "-p", f"dataset={dataset}", "-p", f"epochs={epochs}", "-p", "device=cpu",
            ],
        )  # fmt: skip
        assert result.exit_code == 2, result.output  # suspended, waiting for approval
        registered = objects.read_json(
            get_connections(), f"{run_uri(get_settings(), result.stdout.strip())}/register.json"
        )
    finally:
        mp.undo()
        get_settings.cache_clear()
    return model_item_id(MODEL, registered["model_version"])


def item(item_id: str) -> dict[str, Any]:
    with CatalogClient.from_settings() as catalog:
        return catalog.get_item_dict(MODELS, item_id)


def who(key: str) -> str:
    with CatalogClient(get_connections().stac_url, key) as catalog:
        return catalog.whoami().name


def audit_trail() -> list[dict[str, Any]]:
    """`geomlops audit flood-water-s2 --json`: the trail as the CLI shows it."""
    result = runner.invoke(app, ["audit", MODEL, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def audit_count() -> int:
    with psycopg.connect(pgstac_url(get_settings())) as conn:
        return len(list(audit.entries(conn, MODEL)))


def decoded(png: bytes) -> np.ndarray:
    """A PNG's pixels (bands x height x width)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(png) as memory, memory.open() as src:
            assert src.driver == "PNG"
            return src.read()


@pytest.fixture(scope="module")
def trainer(stack: Connections) -> str:
    """A trainer who also holds the approver role: only separation can refuse them."""
    return api_key("gw-review-trainer", "writer", "approver")


@pytest.fixture(scope="module")
def candidates(production: str, trainer: str) -> dict[str, str]:
    """A weak candidate (two epochs: IoU about 0.65) and a good one (eight, as production)."""
    props = item(production)["properties"]
    dataset = f"{props[prop.DATASET]}@{props[prop.DATASET_VERSION]}"
    return {"weak": train(trainer, dataset, 2), "good": train(trainer, dataset, 8)}


@pytest.fixture(scope="module")
def http(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=DECISION_TIMEOUT) as client:
        yield client


def decide(
    http: httpx.Client, item_id: str, key: str | None, decision: str, reason: str
) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return http.post(
        f"/map/api/review/{item_id}/decision",
        json={"decision": decision, "reason": reason},
        headers=headers,
    )


def refused(response: httpx.Response, status: int, *phrases: str) -> str:
    """The exception body of a refusal, checked for ``status`` and each phrase."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail"}
    assert body["status"] == status
    for phrase in phrases:
        assert phrase in body["detail"], body["detail"]
    return str(body["detail"])


# --- the summary ------------------------------------------------------------------------
def test_the_summary_is_every_gate_beside_production(
    http: httpx.Client, production: str, candidates: dict[str, str], trainer: str
) -> None:
    good = candidates["good"]
    summary = http.get(f"/map/api/review/{good}")
    assert summary.status_code == 200, summary.text
    s = summary.json()
    props = item(good)["properties"]
    assert (s["id"], s["stage"]) == (good, "candidate")
    assert s["trained_by"] == who(trainer) == props[prop.TRAINED_BY]
    # The very check promotion makes, on the very metrics it reads.
    mlflow = get_connections().mlflow_client()
    expected = check_gates(props[prop.GATES], recorded_metrics(props, mlflow))
    assert [(g["metric"], g["gate"], g["value"], g["met"]) for g in s["gates"]] == [
        (r.metric, r.bounds, r.measured, r.met) for r in expected
    ]
    assert [g["metric"] for g in s["gates"]] == ["val_iou_water"]
    assert s["gates"][0]["gate"] == ">= 0.7" and s["gates"][0]["met"] is True
    assert s["evaluation"]["run"] == props[prop.EVALUATE_RUN_ID]
    current = s["production"]
    assert current["id"] == production
    produced = recorded_metrics(item(production)["properties"], mlflow)
    assert current["gates"][0]["value"] == pytest.approx(produced["val_iou_water"])
    scene = s["scene"]
    assert scene["dataset"] == props[prop.DATASET]
    assert scene["dataset_version"] == props[prop.DATASET_VERSION]
    assert scene["image"].endswith("Spain_7370579_S2Hand.tif")
    assert scene["label"].endswith("Spain_7370579_LabelHand.tif")
    assert (scene["width"], scene["height"]) == (512, 512)
    assert scene["display_bands"] == ["B4", "B3", "B2"]
    start, stop = scene["holdout_columns"]
    assert 0 < start < stop == 512  # the right-hand block evaluation measured
    assert {c["name"] for c in s["legend"]} == {"not_water", "water"}
    assert s["pictures"] == {p: f"/map/api/review/{good}/{p}.png" for p in PICTURES}


def test_the_weak_candidate_shows_its_failing_gate_and_cannot_be_approved(
    http: httpx.Client, candidates: dict[str, str], keys: dict[str, str]
) -> None:
    weak = candidates["weak"]
    gate = http.get(f"/map/api/review/{weak}").json()["gates"][0]
    assert gate["met"] is False and gate["value"] < 0.7, gate
    assert gate["problem"].startswith("val_iou_water = ")
    before = audit_count()
    refused(
        decide(http, weak, keys["approver"], "approve", "looks fine to me"),
        400,
        "does not meet its evaluation gates",
        "is below the gate's minimum 0.7",
    )
    assert audit_count() == before
    assert item(weak)["properties"][prop.STAGE] == "candidate"


# --- the pictures -----------------------------------------------------------------------
def test_the_pictures_are_the_scene_and_real_predictions(
    http: httpx.Client, candidates: dict[str, str]
) -> None:
    good = candidates["good"]
    legend = http.get(f"/map/api/review/{good}").json()["legend"]
    colour = next(c["color"] for c in legend if c["name"] == "water")  # the tiles' colour
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]).reshape(3, 1, 1)
    pixels: dict[str, np.ndarray] = {}
    for name in PICTURES:
        response = http.get(f"/map/api/review/{good}/{name}.png")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        pixels[name] = decoded(response.content)
        assert pixels[name].shape == (4, 512, 512), name
    water = {n: (pixels[n][:3] == rgb).all(axis=0) & (pixels[n][3] == 255) for n in PICTURES}
    # The prediction is not the label drawn again; it agrees with it where it should.
    assert not np.array_equal(pixels["candidate"], pixels["label"])
    both, either = water["candidate"] & water["label"], water["candidate"] | water["label"]
    assert 0.4 < both.sum() / either.sum() < 0.99
    assert water["production"].any()
    # Trained differently, predicted differently (the good one retrains production's recipe).
    weak = decoded(http.get(f"/map/api/review/{candidates['weak']}/candidate.png").content)
    assert not np.array_equal(weak, pixels["candidate"])
    # The image is a stretched picture (not blank), opaque where there is data.
    assert pixels["image"][:3].std() > 20 and pixels["image"][3].mean() > 200
    # A second view is served from the cache.
    started = time.monotonic()
    assert http.get(f"/map/api/review/{good}/candidate.png").content == (
        http.get(f"/map/api/review/{good}/candidate.png").content
    )
    assert time.monotonic() - started < 2.0


def test_bad_requests_get_the_exception_body(
    http: httpx.Client, candidates: dict[str, str], keys: dict[str, str]
) -> None:
    good = candidates["good"]
    refused(http.get("/map/api/review/not-a-version"), 400, "not the id of a model version")
    refused(http.get(f"/map/api/review/{MODEL}-mv999"), 404, "does not exist")
    refused(http.get(f"/map/api/review/{good}/mask.png"), 404, "no picture 'mask'")
    refused(decide(http, good, None, "approve", "x"), 401, "needs a credential")
    bad = http.post(
        f"/map/api/review/{good}/decision",
        json={"decision": "maybe", "reason": "x"},
        headers={"X-API-Key": keys["approver"]},
    )
    refused(bad, 400, "decision")


# --- deciding ---------------------------------------------------------------------------
def test_the_trainer_is_refused_as_by_the_cli_and_nothing_is_recorded(
    http: httpx.Client, candidates: dict[str, str], trainer: str, keys: dict[str, str]
) -> None:
    good = candidates["good"]
    version = good.rsplit("mv", 1)[1]
    before = audit_count()
    detail = refused(
        decide(http, good, trainer, "approve", "I trained it well"),
        403,
        f"'{who(trainer)}' trained {MODEL} version {version} and cannot also approve it",
    )
    # `geomlops promote` refuses the same identity with the same words.
    mp = pytest.MonkeyPatch()
    mp.setenv("GEOMLOPS_API_KEY", trainer)
    get_settings.cache_clear()
    try:
        cli = runner.invoke(app, ["promote", MODEL, version, "--reason", "I trained it well"])
    finally:
        mp.undo()
        get_settings.cache_clear()
    assert cli.exit_code == 1
    assert detail.split(" (hint")[0] in " ".join(cli.output.split())
    # A writer without the approver role is refused by the role rule.
    refused(decide(http, good, keys["writer"], "approve", "ok"), 403, "needs the approver role")
    # An approver still needs a reason.
    refused(decide(http, good, keys["approver"], "approve", "  "), 400, "needs a reason")
    assert audit_count() == before
    assert item(good)["properties"][prop.STAGE] == "candidate"


def test_reject_through_the_page_is_the_clis_reject(
    http: httpx.Client, candidates: dict[str, str], keys: dict[str, str]
) -> None:
    weak = candidates["weak"]
    reason = "misses the water gate after two epochs"
    response = decide(http, weak, keys["approver"], "reject", reason)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["action"], result["stage"]) == ("reject", "rejected")
    assert result["actor"] == who(keys["approver"])
    run = result["training_run"]
    assert run["decision"] == "rejected" and run["phase"] == "Succeeded", run
    entry = next(e for e in audit_trail() if e["id"] == result["audit_entry"])
    assert entry["action"] == "reject" and entry["reason"] == reason
    assert entry["actor"] == who(keys["approver"])
    assert entry["model_version"] == weak.rsplit("mv", 1)[1]
    refused(decide(http, weak, keys["approver"], "approve", "changed my mind"), 409, "rejected")


# --- the page, in a browser ---------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def test_an_approver_reviews_and_approves_on_the_page(
    gateway: str,
    production: str,
    candidates: dict[str, str],
    keys: dict[str, str],
    browser: Any,
) -> None:
    good = candidates["good"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    traffic = Traffic()
    traffic.attach(page)
    # The weak version (rejected above): its gate is marked failed, and nothing is decidable.
    page.goto(f"{gateway}/map?review={candidates['weak']}")
    page.wait_for_function(
        "window.geomlops && window.geomlops.review && window.geomlops.review.summary"
        " && Object.keys(window.geomlops.review.images).length === 4",
        timeout=600_000,
    )
    row = page.inner_text("#review-gates tbody tr[data-metric=val_iou_water]")
    assert "✗ fail" in row and ">= 0.7" in row, row
    assert "rejected" in page.inner_text("#review-facts")
    assert not page.is_enabled("#review-approve")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(artifacts() / "review-gate-failed.png"), full_page=True)

    page.goto(f"{gateway}/map?review={good}")
    page.wait_for_function(
        "window.geomlops && window.geomlops.review && window.geomlops.review.summary",
        timeout=120_000,
    )
    page.wait_for_function(
        "Object.keys(window.geomlops.review.images).length === 4", timeout=600_000
    )
    page.wait_for_load_state("networkidle")
    images = page.evaluate("window.geomlops.review.images")
    assert set(images) == set(PICTURES)
    assert all(size == {"width": 512, "height": 512} for size in images.values()), images
    row = page.inner_text("#review-gates tbody tr[data-metric=val_iou_water]")
    assert "val_iou_water" in row and ">= 0.7" in row and "✓ pass" in row, row
    assert page.locator("#review-gates tbody tr td[data-met=true]").count() == 2
    assert f"production v{production.rsplit('mv', 1)[1]}" in page.inner_text("#review-gates")
    assert page.is_enabled("#review-approve")
    page.screenshot(path=str(artifacts() / "review-candidate.png"), full_page=True)

    reason = "IoU above the gate on the held-out block; water edges follow the hand label"
    page.fill("#key", keys["approver"])
    page.dispatch_event("#key", "change")
    page.fill("#review-reason", reason)
    page.click("#review-approve")
    page.wait_for_function(
        "window.geomlops.review.result || window.geomlops.review.error",
        timeout=int(DECISION_TIMEOUT * 1000),
    )
    state = page.evaluate("(({result, error}) => ({result, error}))(window.geomlops.review)")
    assert state["error"] is None, state
    result = state["result"]
    assert (result["action"], result["stage"]) == ("promote", "production")
    message = page.inner_text("#review-result")
    assert f"audit entry #{result['audit_entry']}" in message and "now production" in message
    page.wait_for_function(
        "Object.keys(window.geomlops.review.images).length === 4", timeout=120_000
    )
    listed = f"{MODEL} v{good.rsplit('mv', 1)[1]} (production)"
    page.wait_for_function(  # the map's model list follows the decision
        "t => [...document.querySelectorAll('#model option')].some(o => o.textContent === t)",
        arg=listed,
        timeout=60_000,
    )
    page.wait_for_load_state("networkidle")
    assert "production" in page.inner_text("#review-facts")
    assert not page.is_enabled("#review-approve")
    page.screenshot(path=str(artifacts() / "review-approved.png"), full_page=True)
    assert traffic.off_loopback == [] and traffic.failed == []
    context.close()

    # The decision is in the trail exactly as `geomlops promote` writes it: the production
    # fixture's promotion ran the same Governance.promote the CLI runs.
    trail = audit_trail()
    entry = next(e for e in trail if e["id"] == result["audit_entry"])
    by_cli = next(
        e
        for e in trail
        if e["action"] == "promote" and e["model_version"] == production.rsplit("mv", 1)[1]
    )
    assert entry["action"] == "promote"
    assert entry["actor"] == who(keys["approver"])
    assert entry["reason"] == reason
    assert entry["model_version"] == good.rsplit("mv", 1)[1]
    assert set(entry["details"]) == set(by_cli["details"]) == {"previous", "metrics", "trained_by"}
    assert entry["details"]["previous"] == production.rsplit("mv", 1)[1]
    assert entry["details"]["trained_by"] == item(good)["properties"][prop.TRAINED_BY]
    props = item(good)["properties"]
    assert props[prop.STAGE] == "production"
    assert props[prop.APPROVED_BY] == who(keys["approver"])
    assert props[prop.APPROVAL_REASON] == reason
    assert result["training_run"]["phase"] == "Succeeded"
    verify = runner.invoke(app, ["audit", "--verify"])
    assert verify.exit_code == 0, verify.output
