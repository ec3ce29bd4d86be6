"""Search latency of the catalog with 100,000 model items: bbox + datetime + CQL2 filter.

Loads N seeded synthetic model items (MLM tasks, framework, accelerator, input bands, a
random 2-degree footprint and acquisition period) with pypgstac's bulk loader into a
dedicated collection of the running stack, then times ``POST /search`` through the STAC API
over HTTP, as a client sees it. Prints p50/p95 for bbox+datetime (baseline) and for
bbox+datetime+CQL2 (``a_contains`` on ``mlm:tasks`` and ``=`` on ``mlm:framework``), and
their ratio. Goal: p95 under 30 ms.

Usage (the stack must be up: `geomlops up`):
    .venv/bin/python bench/catalog_search.py [--items 100000] [--queries 300] [--keep]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from geomlops.catalog.collections import catalog_collections
from geomlops.catalog.db import pgstac_connection, pgstac_url
from geomlops.connections import get_connections

COLLECTION = "bench-models"
TASKS = ["semantic-segmentation", "classification", "object-detection", "regression"]
FRAMEWORKS = ["pytorch", "tensorflow", "onnx", "jax"]
BANDS = ["B2", "B3", "B4", "B8", "B8A", "B11", "B12", "VV", "VH"]
START = datetime(2015, 1, 1, tzinfo=UTC)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def synthetic_items(n: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i in range(n):
        west, south = rng.uniform(-180, 178), rng.uniform(-80, 78)
        east, north = west + 2, south + 2
        begin = START + timedelta(days=rng.randrange(0, 3500))
        tasks = rng.sample(TASKS, rng.randint(1, 2))
        bands = rng.sample(BANDS, 4)
        yield {
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": f"bench-{i:06d}",
            "collection": COLLECTION,
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[west, south], [east, south], [east, north], [west, north], [west, south]]
                ],
            },
            "bbox": [west, south, east, north],
            "properties": {
                "datetime": None,
                "start_datetime": _stamp(begin),
                "end_datetime": _stamp(begin + timedelta(days=180)),
                "mlm:name": f"model {i}",
                "mlm:architecture": rng.choice(["UNet", "ResNet-18", "ViT"]),
                "mlm:tasks": tasks,
                "mlm:framework": rng.choice(FRAMEWORKS),
                "mlm:accelerator": rng.choice(["cuda", "amd64"]),
                "mlm:input": [{"name": "chips", "bands": bands}],
                "geomlops:input_bands": bands,
            },
            "links": [],
            "assets": {},
        }


def load(n: int) -> float:
    """Create the bench collection and bulk-load ``n`` items; returns seconds."""
    collection = catalog_collections()[0].to_dict(include_self_link=False)
    collection.update(id=COLLECTION, title="Benchmark models", links=[])
    with pgstac_connection() as conn:
        conn.execute("SELECT pgstac.upsert_collection(%s::jsonb)", (json.dumps(collection),))
    started = time.perf_counter()
    with PgstacDB(dsn=pgstac_url()) as db:
        Loader(db).load_items(synthetic_items(n, random.Random(7)), insert_mode=Methods.upsert)
    elapsed = time.perf_counter() - started
    with pgstac_connection() as conn:  # fresh statistics, as after any bulk load
        conn.execute("ANALYZE pgstac.items")
    return elapsed


def random_query(rng: random.Random, with_filter: bool) -> dict[str, Any]:
    west, south = rng.uniform(-170, 150), rng.uniform(-70, 50)
    begin = START + timedelta(days=rng.randrange(0, 3000))
    body: dict[str, Any] = {
        "collections": [COLLECTION],
        "bbox": [west, south, west + 20, south + 20],
        "datetime": f"{_stamp(begin)}/{_stamp(begin + timedelta(days=365))}",
        "limit": 10,
    }
    if with_filter:
        body["filter-lang"] = "cql2-json"
        body["filter"] = {
            "op": "and",
            "args": [
                {"op": "a_contains", "args": [{"property": "mlm:tasks"}, [rng.choice(TASKS)]]},
                {"op": "=", "args": [{"property": "mlm:framework"}, rng.choice(FRAMEWORKS)]},
            ],
        }
    return body


def time_queries(client: httpx.Client, n: int, with_filter: bool) -> tuple[list[float], float]:
    rng = random.Random(11)
    for _ in range(10):  # warm the pools and caches
        client.post("/search", json=random_query(rng, with_filter)).raise_for_status()
    latencies, hits = [], 0
    for _ in range(n):
        body = random_query(rng, with_filter)
        started = time.perf_counter()
        response = client.post("/search", json=body)
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        hits += len(response.json()["features"])
    return latencies, hits / n


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="Keep the bench collection.")
    parser.add_argument("--no-load", action="store_true", help="Reuse a kept collection.")
    args = parser.parse_args()

    if args.no_load:
        with pgstac_connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pgstac.items WHERE collection = %s", (COLLECTION,)
            ).fetchone()
        print(f"reusing {row[0] if row else 0:,} items in {COLLECTION}")
    else:
        seconds = load(args.items)
        rate = args.items / seconds
        print(f"loaded {args.items:,} items in {seconds:.1f} s ({rate:,.0f} items/s)")
    try:
        with httpx.Client(base_url=get_connections().stac_url, timeout=60) as client:
            base, base_hits = time_queries(client, args.queries, with_filter=False)
            cql2, cql2_hits = time_queries(client, args.queries, with_filter=True)
        for name, lat, hits in (
            ("bbox+datetime", base, base_hits),
            ("bbox+datetime+CQL2", cql2, cql2_hits),
        ):
            print(
                f"{name:20s} n={len(lat)}  p50 {p(lat, 50):6.1f} ms  p95 {p(lat, 95):6.1f} ms  "
                f"mean {statistics.fmean(lat):6.1f} ms  ({hits:.1f} items/page)"
            )
        ratio = p(cql2, 95) / p(base, 95)
        verdict = "meets" if p(cql2, 95) < 30 else "misses"
        print(f"CQL2/baseline p95 ratio {ratio:.2f}; CQL2 p95 {verdict} the 30 ms goal")
    finally:
        if not args.keep:
            with pgstac_connection() as conn:
                conn.execute("SELECT pgstac.delete_collection(%s)", (COLLECTION,))


if __name__ == "__main__":
    main()
