"""Tiles through the gateway (TiTiler on rio-tiler) and http hrefs, on the local stack.

The prediction of a finished job is tiled with its classes' colours and compared, pixel by
pixel, with rio-tiler reading the same tile of the same COG in-process; the source scene is
tiled through its STAC item; items come back with http hrefs; keyed read access refuses
anonymous tiles.
"""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from job_support import as_key
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rio_tiler.io import Reader

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import MODELS
from geomlops.gateway.app import create_app
from geomlops.gateway.tiles import PALETTE, gdal_environment
from geomlops.model import properties as prop
from geomlops.settings import get_settings

# Long: the session trains and promotes a model first (minutes on 2 busy cores).
pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(3600)]


def _rgba(png: bytes) -> np.ndarray:
    """The bands of a PNG tile (a tile has no georeference: GDAL's warning is expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(png) as memory, memory.open() as src:
            return src.read()


@pytest.fixture(scope="session")
def mask_item(client: httpx.Client, finished_job: dict[str, Any], keys: dict[str, str]) -> dict:
    """The per-scene prediction item of the finished job, as the gateway serves it."""
    results = client.get(
        f"/jobs/{finished_job['jobID']}/results", headers=as_key(keys["writer"])
    ).json()
    href = results["masks"][0]["href"]
    item_url = href.rsplit("/assets/", 1)[0]
    response = httpx.get(item_url, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_items_carry_http_hrefs_with_the_s3_alternate(gateway: str, mask_item: dict) -> None:
    mask = mask_item["assets"]["mask"]
    assert mask["href"].startswith(gateway + "/collections/predictions/items/")
    assert mask["alternate"]["s3"]["href"].startswith("s3://predictions/")
    opened = httpx.head(mask["href"], timeout=60)
    assert opened.status_code == 200


def _center_tile(tilejson: dict) -> morecantile.Tile:
    west, south, east, north = tilejson["bounds"]
    tms = morecantile.tms.get("WebMercatorQuad")
    return tms.tile((west + east) / 2, (south + north) / 2, tilejson["maxzoom"])


def test_mask_tiles_are_coloured_from_the_model_classes(gateway: str, mask_item: dict) -> None:
    base = mask_item["assets"]["mask"]["href"]
    tilejson = httpx.get(f"{base}/WebMercatorQuad/tilejson.json", timeout=60).json()
    assert tilejson["tiles"][0].startswith(base + "/tiles/WebMercatorQuad/")
    tile = _center_tile(tilejson)
    response = httpx.get(f"{base}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png", timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    rgba = _rgba(response.content)

    # The same tile read in-process by rio-tiler: the classes the colours must show.
    s3 = mask_item["assets"]["mask"]["alternate"]["s3"]["href"]
    with rasterio.Env(**gdal_environment(get_settings())), Reader(s3) as src:
        data = src.tile(tile.x, tile.y, tile.z).data[0]
    water = data == 1
    assert water.any() and (~water).any(), "the chip's centre holds water and land"
    # The package's MLM class gives water its colour (color_hint 1F78B4: blue).
    with CatalogClient.from_settings() as catalog:
        model = catalog.get_item_dict(MODELS, mask_item["properties"][prop.MODEL_ITEM])
    (output,) = model["properties"]["mlm:output"]
    hint = next(c for c in output["classification:classes"] if c["name"] == "water")
    blue = tuple(int(hint["color_hint"][i : i + 2], 16) for i in (0, 2, 4))
    assert blue == (0x1F, 0x78, 0xB4)
    assert (rgba[3] == 255).sum() == water.sum()
    assert ((rgba[3] == 255) == water).all(), "opaque exactly where the class is water"
    assert all((rgba[b][water] == blue[b]).all() for b in range(3))


def test_a_colour_ramp_replaces_the_classes_when_asked(mask_item: dict) -> None:
    base = mask_item["assets"]["mask"]["href"]
    tilejson = httpx.get(f"{base}/WebMercatorQuad/tilejson.json", timeout=60).json()
    tile = _center_tile(tilejson)
    ramp = httpx.get(
        f"{base}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
        params={"colormap_name": "viridis", "rescale": "0,1"},
        timeout=60,
    )
    assert ramp.status_code == 200, ramp.text
    rgba = _rgba(ramp.content)
    assert (rgba[3] == 255).sum() > 0
    assert not (rgba[0][rgba[3] == 255] == int(PALETTE[1][1:3], 16)).all()


def test_source_scene_tiles_through_its_stac_item(gateway: str, mask_item: dict) -> None:
    scene = mask_item["properties"]["geomlops:scene"]
    base = f"{gateway}/collections/imagery/items/{scene}"
    params = {"assets": "image|bidx=4,3,2", "rescale": "0,3000"}
    tilejson = httpx.get(f"{base}/WebMercatorQuad/tilejson.json", params=params, timeout=60)
    assert tilejson.status_code == 200, tilejson.text
    tile = _center_tile(tilejson.json())
    response = httpx.get(
        f"{base}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png", params=params, timeout=60
    )
    assert response.status_code == 200, response.text
    rgba = _rgba(response.content)
    assert rgba.shape == (4, 256, 256) and rgba[:3].std() > 0


def test_other_collections_and_missing_items_are_not_served(gateway: str) -> None:
    assert httpx.get(f"{gateway}/collections/models/items/x", timeout=60).status_code == 404
    missing = httpx.get(f"{gateway}/collections/imagery/items/nope/info", timeout=60)
    assert missing.status_code == 404
    assert missing.json()["status"] == 404


def test_keyed_read_access_refuses_anonymous_tiles(mask_item: dict, keys: dict[str, str]) -> None:
    settings = get_settings()
    keyed = settings.model_copy(
        update={"gateway": settings.gateway.model_copy(update={"read_access": "keyed"})}
    )
    path = mask_item["assets"]["mask"]["href"].split("/collections/", 1)[1]
    with TestClient(create_app(keyed)) as client:
        for suffix in ("", "/WebMercatorQuad/tilejson.json"):
            url = f"/collections/{path}{suffix}"
            assert client.get(url).status_code == 401, url
            assert client.get(url, headers=as_key(keys["approver"])).status_code == 200, url
