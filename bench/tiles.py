"""Tile latency through the gateway against rio-tiler reading the same tiles in-process.

Takes the newest prediction item of the running stack (run `geomlops infer …` or
`make demo` first) and its source scene, lists the 256x256 WebMercatorQuad tiles covering
them at the COG's native zoom and one below, and times each tile as PNG:

- through the gateway over HTTP (TiTiler: S3 read, class colours, PNG encoding), and
- with rio-tiler in this process, reading the same COG from S3 with the same GDAL
  settings and rendering the same PNG (the floor: no HTTP, no catalog look-up).

Prints p50/p95 of each for the prediction COG and the imagery COG, their ratio (goal: the
gateway's p95 within 1.5x of in-process), and the first tile of a freshly started gateway
process (goal: under 500 ms on a cold process).

Usage (the stack must be up, with a published prediction):
    .venv/bin/python bench/tiles.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
import morecantile
import rasterio
from rio_tiler.io import Reader

from geomlops.catalog.client import CatalogClient
from geomlops.connections import get_connections
from geomlops.gateway.tiles import class_colormap, gdal_environment
from geomlops.settings import LOOPBACK, get_settings
from geomlops.stack.ports import free_port

TMS = morecantile.tms.get("WebMercatorQuad")
IMAGERY_PARAMS = {"bidx": ["4", "3", "2"], "rescale": "0,3000"}


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _tiles(info: dict[str, Any]) -> list[morecantile.Tile]:
    west, south, east, north = info["bounds"]
    top = int(info["maxzoom"])
    return [t for z in (top - 1, top) for t in TMS.tiles(west, south, east, north, [z])]


def _newest_prediction() -> tuple[dict[str, Any], dict[str, Any]]:
    with CatalogClient.from_settings() as catalog:
        items = [
            i
            for i in catalog.iter_search(collections=["predictions"], limit=200)
            if "mask" in (i.get("assets") or {})
        ]
        if not items:
            sys.exit("no prediction in the catalog: run `geomlops infer …` or `make demo` first")
        item = max(items, key=lambda i: i["properties"].get("processing:datetime", ""))
        model = catalog.get_item_dict("models", item["properties"]["geomlops:model_item"])
    return item, model


def _time_gateway(client: httpx.Client, url: str, tiles: list, params: dict, rounds: int) -> list:
    times = []
    for _ in range(rounds):
        for t in tiles:
            start = time.perf_counter()
            response = client.get(
                f"{url}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png", params=params
            )
            times.append(time.perf_counter() - start)
            response.raise_for_status()
    return times


def _time_local(href: str, tiles: list, render: dict, rounds: int) -> list:
    times = []
    with rasterio.Env(**gdal_environment(get_settings())), Reader(href) as src:
        for _ in range(rounds):
            for t in tiles:
                start = time.perf_counter()
                image = src.tile(t.x, t.y, t.z, indexes=render.get("indexes"))
                if render.get("rescale"):
                    image.rescale(in_range=[render["rescale"]])
                image.render(img_format="PNG", colormap=render.get("colormap"))
                times.append(time.perf_counter() - start)
    return times


def _cold_first_tile(path: str, tile: morecantile.Tile) -> tuple[float, float]:
    """Seconds from a fresh gateway process answering to its first tile; and its start-up."""
    port = free_port()
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "geomlops.gateway.app:create_app", "--factory",
         "--host", LOOPBACK, "--port", str(port), "--log-level", "warning"],
    )  # fmt: skip
    base = f"http://{LOOPBACK}:{port}"
    try:
        while True:
            try:
                httpx.get(f"{base}/conformance", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        ready = time.perf_counter() - began
        start = time.perf_counter()
        url = f"{base}{path}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        httpx.get(url, timeout=60).raise_for_status()
        return time.perf_counter() - start, ready
    finally:
        process.terminate()
        process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    gateway = get_connections().gateway_url
    item, model = _newest_prediction()
    scene = item["properties"]["geomlops:scene"]
    mask_path = f"/collections/predictions/items/{item['id']}/assets/mask"
    image_path = f"/collections/imagery/items/{scene}/assets/image"
    with CatalogClient.from_settings() as catalog:
        image_href = catalog.get_item_dict("imagery", scene)["assets"]["image"]["href"]
    colormap = class_colormap(model, item["properties"]["geomlops:classes"])
    cases = [
        ("prediction COG", mask_path, item["assets"]["mask"]["href"], {},
         {"colormap": colormap}),
        ("imagery COG", image_path, image_href, IMAGERY_PARAMS,
         {"indexes": (4, 3, 2), "rescale": (0, 3000)}),
    ]  # fmt: skip
    first_tiles = []
    with httpx.Client(base_url=gateway, timeout=60) as client:
        for name, path, href, params, render in cases:
            info = client.get(f"{path}/WebMercatorQuad/tilejson.json", params=params).json()
            tiles = _tiles(info)
            first_tiles.append(tiles[len(tiles) // 2])
            _time_gateway(client, path, tiles[:1], params, 1)  # warm both paths once
            _time_local(href, tiles[:1], render, 1)
            remote = _time_gateway(client, path, tiles, params, args.rounds)
            local = _time_local(href, tiles, render, args.rounds)
            (rp50, rp95), (lp50, lp95) = _percentiles(remote), _percentiles(local)
            print(
                f"{name}: {len(tiles)} tiles x {args.rounds} rounds, zooms "
                f"{tiles[0].z}-{tiles[-1].z}\n"
                f"  gateway     p50 {rp50 * 1000:7.1f} ms  p95 {rp95 * 1000:7.1f} ms\n"
                f"  in-process  p50 {lp50 * 1000:7.1f} ms  p95 {lp95 * 1000:7.1f} ms\n"
                f"  gateway p95 / in-process p95: {rp95 / lp95:.2f} (goal <= 1.5)"
            )
    first, ready = _cold_first_tile(mask_path, first_tiles[0])
    print(
        f"cold gateway process: ready after {ready:.2f} s, first prediction tile "
        f"{first * 1000:.0f} ms (goal < 500 ms)"
    )


if __name__ == "__main__":
    main()
