"""Writes that must be refused by the running stack, and leave nothing behind.

Through the real STAC API over HTTP (its write guard, :mod:`geomlops.catalog.guards`) and the
real ``geomlops imagery add`` against the real object store: each case is a clear 4xx or
error, and afterwards no catalog item and no S3 object exists.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bad_rasters import CASES as RASTERS
from catalog_items import model_dict
from corpus import expect_http_refusal, expect_refusal, run_cli

from geomlops.catalog.client import CatalogClient
from geomlops.connections import Connections
from geomlops.settings import get_settings

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def writer(stack: Connections) -> Iterator[httpx.Client]:
    with CatalogClient.from_settings() as client:
        key = client.api_key or ""
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    with httpx.Client(base_url=stack.stac_url, headers=headers, timeout=60) as http:
        yield http


def imagery_item(item_id: str) -> dict[str, Any]:
    ring = [[-0.78, 38.08], [-0.73, 38.08], [-0.73, 38.12], [-0.78, 38.12], [-0.78, 38.08]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": item_id,
        "collection": "imagery",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [-0.78, 38.08, -0.73, 38.12],
        "properties": {"datetime": "2019-09-18T10:50:00Z"},
        "links": [],
        "assets": {"image": {"href": f"s3://imagery/{item_id}/{item_id}.tif", "roles": ["data"]}},
    }


def changed(item: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    item = copy.deepcopy(item)
    change(item)
    return item


# name: (method, path, body (JSON data, or bytes sent as they are), fragments, item written)
Case = tuple[str, str, Any, list[str], tuple[str, str]]


def cases() -> dict[str, Case]:
    img = imagery_item("t-bad-img")
    model = model_dict("t-bad-model")
    items = "/collections/{}/items"
    where = ("imagery", "t-bad-img")
    model_at = ("models", "t-bad-model")
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    return {
        "body-5-mb": (
            "POST", items.format("imagery"),
            changed(img, lambda i: i["properties"].__setitem__("pad", "x" * 5 * 1024**2)),
            ["GEOMLOPS_STAC_MAX_BODY_BYTES"], where,
        ),
        "patch-5-mb": (
            "PATCH", items.format("imagery") + "/t-bad-img",
            {"properties": {"pad": "x" * 5 * 1024**2}}, ["GEOMLOPS_STAC_MAX_BODY_BYTES"], where,
        ),
        "20000-assets": (
            "POST", items.format("imagery"),
            changed(img, lambda i: i.__setitem__(
                "assets", {f"a{n}": {"href": f"s3://imagery/x/{n}.tif"} for n in range(20000)})),
            ["20000 assets", "GEOMLOPS_STAC_MAX_ASSETS"], where,
        ),
        "invalid-mlm-item": (
            "POST", items.format("models"),
            changed(model, lambda i: i["properties"].pop("mlm:input")),
            ["t-bad-model", "'mlm:input' is a required property"], model_at,
        ),
        "mlm-wrong-type": (
            "POST", items.format("models"),
            changed(model, lambda i: i["properties"].__setitem__("mlm:framework", ["pytorch"])),
            ["mlm:framework"], model_at,
        ),
        "model-output-without-kind": (
            "POST", items.format("models"),
            changed(model, lambda i: i["properties"]["mlm:output"][0].__setitem__(
                "tasks", ["object-detection"])),
            ["t-bad-model", "mlm:output[0].tasks", "class-mask", "probability", "chip-class"],
            model_at,
        ),
        "imagery-item-into-models": (
            "POST", items.format("models"),
            changed(img, lambda i: i.update(id="t-bad-model", collection="models")),
            ["MLM extension", "stac_extensions"], model_at,
        ),
        "missing-collection": (
            "POST", items.format("no-such-collection"), img,
            ["no-such-collection", "does not exist"], ("no-such-collection", "t-bad-img"),
        ),
        "latitude-200": (
            "POST", items.format("imagery"),
            changed(img, lambda i: (i["geometry"]["coordinates"][0][2].__setitem__(1, 200),
                                    i["bbox"].__setitem__(3, 200))),
            ["t-bad-img", "latitude"], where,
        ),
        "bbox-disagrees": (
            "POST", items.format("imagery"),
            changed(img, lambda i: i.__setitem__("bbox", [10, 10, 11, 11])),
            ["$.bbox", "does not enclose"], where,
        ),
        "invalid-geometry": (
            "POST", items.format("imagery"),
            changed(img, lambda i: i.update(geometry=bowtie, bbox=[0, 0, 1, 1])),
            ["invalid geometry", "Self-intersection"], where,
        ),
        "nan-literal": (
            "POST", items.format("imagery"),
            json.dumps(changed(img, lambda i: i["bbox"].__setitem__(0, float("nan")))).encode(),
            ["NaN"], where,
        ),
        "not-json": ("POST", items.format("imagery"), b"{id: t-bad-img", ["not JSON"], where),
        "array-body": ("POST", items.format("imagery"), [img], ["JSON object"], where),
        "collection-mismatch": (
            "POST", items.format("predictions"), img,
            ["'imagery'", "'predictions'"], ("predictions", "t-bad-img"),
        ),
        "bulk-with-bad-feature": (
            "POST", items.format("imagery"),
            {"type": "FeatureCollection", "features": [
                imagery_item("t-bad-img"),
                changed(imagery_item("t-bad-img2"), lambda i: i.__setitem__("bbox", [9, 9, 9, 9])),
            ]},
            ["features[1]", "t-bad-img2"], where,
        ),
        "put-id-mismatch": (
            "PUT", items.format("imagery") + "/t-bad-img",
            changed(img, lambda i: i.__setitem__("id", "t-other")), ["t-other", "differs"], where,
        ),
        "not-a-feature": (
            "POST", items.format("models"),
            changed(model, lambda i: i.__setitem__("type", "Point")), ["'Point'"], model_at,
        ),
    }  # fmt: skip


CASES = cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_stac_api_refuses_write(
    case: str, writer: httpx.Client, request: pytest.FixtureRequest
) -> None:
    method, path, body, fragments, (collection, item_id) = CASES[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = writer.request(method, path, content=content)
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    expect_http_refusal(request, response.status_code, answer, fragments)
    assert writer.get(f"/collections/{collection}/items/{item_id}").status_code == 404
    assert writer.get("/collections").status_code == 200  # the next request is served


def test_duplicate_post_is_409_with_a_description(
    writer: httpx.Client, request: pytest.FixtureRequest
) -> None:
    item = imagery_item("t-dup-img")
    assert writer.post("/collections/imagery/items", json=item).status_code in (200, 201)
    again = writer.post("/collections/imagery/items", json=item)
    expect_http_refusal(request, again.status_code, again.json(), ["t-dup-img", "already exists"])
    assert again.status_code == 409
    writer.delete("/collections/imagery/items/t-dup-img")


IMAGERY = ["identity-transform", "complex64", "truncated", "header-100000x100000",
           "latitude-150-to-200", "no-crs"]  # fmt: skip


@pytest.mark.parametrize("case", IMAGERY)
def test_imagery_add_refuses_and_writes_nothing(
    case: str, tmp_path: Path, stack: Connections, request: pytest.FixtureRequest
) -> None:
    make, _ = RASTERS[case]
    path = make(tmp_path)
    item_id = path.stem
    args = ["imagery", "add", str(path), "--datetime", "2019-09-18T10:50:00Z"]
    expect_refusal(request, lambda: run_cli(args), [path.name, "nothing was written"])
    bucket = get_settings().s3.bucket_imagery
    listed = stack.s3_client().list_objects_v2(Bucket=bucket, Prefix=f"{item_id}/")
    assert listed.get("KeyCount", 0) == 0
    staged = stack.s3_client().list_objects_v2(Bucket=bucket, Prefix="_incoming/")
    assert not [o for o in staged.get("Contents", []) if o["Key"].endswith(f"/{item_id}.tif")]
    with CatalogClient.from_settings() as client:
        assert client._http.get(f"/collections/imagery/items/{item_id}").status_code == 404
