"""The gateway's small rules, without a stack: class colours, byte ranges, hrefs, errors."""

from __future__ import annotations

import pytest

from geomlops.errors import AuthError, NotFoundError, StackNotRunning, ValidationFailed
from geomlops.gateway.assets import _byte_range, with_http_hrefs
from geomlops.gateway.errors import OgcError, from_domain
from geomlops.gateway.jobs import status_info
from geomlops.gateway.runner import DISMISSED, argo_progress, ogc_status
from geomlops.gateway.tiles import PALETTE, class_colormap

CLASSES = [{"value": 0, "name": "not-water"}, {"value": 1, "name": "water"}]


def _model(*hints: tuple[int, str]) -> dict:
    classes = [{"value": v, "name": f"c{v}", "color_hint": h} for v, h in hints]
    return {"properties": {"mlm:output": [{"classification:classes": classes}]}}


def test_class_colours_come_from_the_mlm_color_hints() -> None:
    colormap = class_colormap(_model((0, "000000"), (1, "1E90FF")), CLASSES)
    assert colormap[1] == (0x1E, 0x90, 0xFF, 255)
    assert colormap[0] == (0, 0, 0, 255), "a hinted background is drawn"
    assert colormap[255] == (0, 0, 0, 0), "no data is transparent"


def test_without_hints_the_palette_colours_all_but_the_background() -> None:
    colormap = class_colormap(None, CLASSES)
    assert colormap[0][3] == 0
    red, green, blue = (int(PALETTE[1][i : i + 2], 16) for i in (1, 3, 5))
    assert colormap[1] == (red, green, blue, 255)


def test_a_bad_color_hint_falls_back_to_the_palette() -> None:
    assert class_colormap(_model((1, "blue")), CLASSES)[1] == class_colormap(None, CLASSES)[1]
    assert class_colormap(_model((1, "#00ff00")), CLASSES)[1] == (0, 255, 0, 255)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-15", (0, 15)),
        ("bytes=10-", (10, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=90-500", (90, 99)),
    ],
)
def test_byte_ranges(header: str | None, expected: tuple[int, int] | None) -> None:
    assert _byte_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-2", "bytes=0-1,5-6", "lines=1-2"])
def test_unsatisfiable_ranges_are_416(header: str) -> None:
    with pytest.raises(OgcError) as caught:
        _byte_range(header, 100)
    assert caught.value.status == 416


def test_served_assets_get_http_hrefs_and_keep_s3_as_alternate() -> None:
    item = {
        "id": "run-1",
        "collection": "predictions",
        "assets": {
            "mask": {"href": "s3://predictions/run-1/x.tif"},
            "doc": {"href": "https://example.org/readme"},
        },
    }
    served = with_http_hrefs(item, "http://gw")
    assert served["assets"]["mask"]["href"] == (
        "http://gw/collections/predictions/items/run-1/assets/mask"
    )
    assert served["assets"]["mask"]["alternate"]["s3"]["href"] == "s3://predictions/run-1/x.tif"
    assert served["assets"]["doc"] == {"href": "https://example.org/readme"}
    assert item["assets"]["mask"]["href"].startswith("s3://"), "the catalog's item is untouched"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("x"), 404),
        (ValidationFailed("x", problems=["a", "b"]), 400),
        (StackNotRunning("x", hint="run `geomlops up`"), 503),
        (AuthError("x"), 403),
    ],
)
def test_domain_errors_map_to_one_status_each(error: Exception, status: int) -> None:
    answer = from_domain(error)  # type: ignore[arg-type]
    assert answer.status == status
    body = answer.body("/jobs")
    assert set(body) == {"type", "title", "status", "detail", "instance"}


def test_problems_and_hint_reach_the_detail() -> None:
    detail = from_domain(ValidationFailed("bad", problems=["a", "b"], hint="fix it")).detail
    assert detail == "bad: a; b (hint: fix it)"


@pytest.mark.parametrize(
    ("phase", "message", "status"),
    [
        ("Pending", "", "accepted"),
        ("Running", "", "running"),
        ("Succeeded", "", "successful"),
        ("Failed", "child failed", "failed"),
        ("Error", "", "failed"),
        ("Failed", f"{DISMISSED} by alice at 2026-01-01T00:00:00Z", "dismissed"),
    ],
)
def test_argo_phases_become_ogc_status_codes(phase: str, message: str, status: str) -> None:
    assert ogc_status(phase, message) == status


def test_progress_counts_tiles_and_reaches_100_only_when_published() -> None:
    run = {"name": "r", "phase": "Running", "createdAt": "2026-01-01T00:00:00Z"}
    summary = {"tasks": {"tasks_count_total": 10, "tasks_count_success": 10}}
    info = status_info("http://gw", run, summary)
    assert info["progress"] == 95 and info["tasks"]["succeeded"] == 10
    done = status_info("http://gw", {**run, "phase": "Succeeded"}, summary)
    assert done["progress"] == 100
    assert argo_progress("3/4") == 75 and argo_progress(None) is None


def test_the_map_lists_model_versions_only() -> None:
    from geomlops.gateway.mappage import model_summary

    version = {
        "id": "flood-water-s2-mv3",
        "bbox": [0, 0, 1, 1],
        "properties": {"geomlops:stage": "candidate", "mlm:tasks": ["semantic-segmentation"]},
    }
    summary = model_summary(version)
    assert summary is not None
    assert (summary["name"], summary["version"], summary["stage"]) == (
        "flood-water-s2",
        "3",
        "candidate",
    )
    assert summary["tasks"] == ["semantic-segmentation"]
    assert model_summary({"id": "flood-water-s2", "properties": {}}) is None
