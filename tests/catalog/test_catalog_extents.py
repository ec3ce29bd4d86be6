"""Collection extents follow their items: added, moved and removed, by any writer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from geomlops.catalog.bootstrap import admin_key, bootstrap
from geomlops.catalog.collections import MODELS, placeholder_extent
from geomlops.connections import Connections
from geomlops.settings import get_settings

pytestmark = pytest.mark.stack

COLLECTION = "t-extent"


def _item(item_id: str, box: tuple[float, float, float, float], when: str) -> dict[str, Any]:
    west, south, east, north = box
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": COLLECTION,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": list(box),
        "properties": {"datetime": when},
        "links": [],
        "assets": {},
    }


@pytest.fixture
def api(stack: Connections) -> Iterator[httpx.Client]:
    """The STAC API with the administrator key, and an empty test collection."""
    headers = {"X-API-Key": admin_key(get_settings())}
    with httpx.Client(base_url=stack.stac_url, headers=headers, timeout=30) as client:
        client.delete(f"/collections/{COLLECTION}")
        collection = {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": COLLECTION,
            "description": "extent test",
            "license": "CC0-1.0",
            "extent": placeholder_extent(),
            "links": [],
        }
        assert client.post("/collections", json=collection).status_code in (200, 201)
        yield client
        client.delete(f"/collections/{COLLECTION}")


def _extent(api: httpx.Client, collection: str = COLLECTION) -> dict[str, Any]:
    answer = api.get(f"/collections/{collection}")
    assert answer.status_code == 200, answer.text
    return answer.json()["extent"]


def _add(api: httpx.Client, item: dict[str, Any]) -> None:
    answer = api.post(f"/collections/{COLLECTION}/items", json=item)
    assert answer.status_code in (200, 201), answer.text


def test_extent_follows_items_added_moved_and_removed(api: httpx.Client) -> None:
    assert _extent(api) == placeholder_extent()

    _add(api, _item("a", (10.0, 40.0, 11.0, 41.0), "2021-03-01T00:00:00Z"))
    extent = _extent(api)
    assert extent["spatial"]["bbox"] == [[10.0, 40.0, 11.0, 41.0]]
    assert extent["temporal"]["interval"] == [["2021-03-01T00:00:00Z", "2021-03-01T00:00:00Z"]]

    _add(api, _item("b", (-5.0, 38.0, -4.0, 39.5), "2023-07-15T12:30:00Z"))
    extent = _extent(api)
    assert extent["spatial"]["bbox"] == [[-5.0, 38.0, 11.0, 41.0]]
    assert extent["temporal"]["interval"] == [["2021-03-01T00:00:00Z", "2023-07-15T12:30:00Z"]]

    # Replacing an item moves the extent with it.
    moved = _item("b", (-5.0, 30.0, -4.0, 31.0), "2022-01-01T00:00:00Z")
    assert api.put(f"/collections/{COLLECTION}/items/b", json=moved).status_code == 200
    extent = _extent(api)
    assert extent["spatial"]["bbox"] == [[-5.0, 30.0, 11.0, 41.0]]
    assert extent["temporal"]["interval"] == [["2021-03-01T00:00:00Z", "2022-01-01T00:00:00Z"]]

    # Removing an item shrinks it.
    assert api.delete(f"/collections/{COLLECTION}/items/a").status_code == 200
    extent = _extent(api)
    assert extent["spatial"]["bbox"] == [[-5.0, 30.0, -4.0, 31.0]]
    assert extent["temporal"]["interval"] == [["2022-01-01T00:00:00Z", "2022-01-01T00:00:00Z"]]

    # A bootstrap (every `geomlops up`) keeps the extent its items give.
    bootstrap()
    assert _extent(api)["spatial"]["bbox"] == [[-5.0, 30.0, -4.0, 31.0]]

    # Without items: the placeholder again, never null (STAC requires an extent).
    assert api.delete(f"/collections/{COLLECTION}/items/b").status_code == 200
    assert _extent(api) == placeholder_extent()


def test_platform_collections_are_not_world_wide_once_they_hold_items(
    api: httpx.Client,
) -> None:
    """The models collection, written by other tests and re-bootstrapped, follows them."""
    from catalog_items import model_dict

    from geomlops.catalog.client import CatalogClient

    with CatalogClient.from_settings() as client:
        client.upsert_item(model_dict("t-extent-model", bbox=(20.0, 10.0, 21.0, 11.0)))
    bootstrap()
    west, south, east, north = _extent(api, MODELS)["spatial"]["bbox"][0]
    assert (west, south, east, north) != (-180.0, -90.0, 180.0, 90.0)
    assert west <= 20.0 and south <= 10.0 and east >= 21.0 and north >= 11.0
