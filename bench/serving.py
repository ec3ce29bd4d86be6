"""Latency of the local Seldon graph against a direct in-process call of the same model.

Needs the local stack (`geomlops up`) with a production version of the model (see
tests/serving/test_serving.py for how one is trained and aliased). Both sides do the same work on
the Sen1Floods11 S2 chip (512 x 512, 13 bands): read the GeoTIFF bytes, select and normalise
bands, predict in overlapping tiles, vectorise to GeoJSON. The graph adds the HTTP hops
(router -> model -> router -> transformer), base64 and JSON of the image and the mask
payload. Goal: graph overhead under 15 ms at p50.

    .venv/bin/python bench/serving.py [--model flood-water-s2] [--requests 30]
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import torch

from geomlops.model.resolve import resolve_model
from geomlops.sample_data import fetch
from geomlops.serving.inputs import InputPolicy, RequestImage, read_image
from geomlops.serving.predictor import Predictor
from geomlops.settings import get_settings
from geomlops.transformers.raster_to_vector import (
    VectorizeOptions,
    feature_collection,
    payload,
    vectorize_payload,
)

REPO = Path(__file__).resolve().parents[1]
CHIP = "imagery/sen1floods11/Spain_7370579_S2Hand.tif"


def timings(call: Callable[[], object], count: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def summary(name: str, samples: list[float]) -> dict[str, float]:
    p50 = statistics.median(samples) * 1000
    p99 = float(np.percentile(samples, 99)) * 1000
    rate = len(samples) / sum(samples)
    print(f"{name:10} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms   {rate:6.2f} requests/s")
    return {"p50": p50, "p99": p99}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flood-water-s2")
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    settings = get_settings()
    chip = fetch(CHIP).read_bytes()
    options = VectorizeOptions.parse(
        {
            "min_area_m2": settings.serving.min_area_m2,
            "simplify_tolerance_m": settings.serving.simplify_tolerance_m,
        }
    )

    predictor = Predictor.load(resolve_model(args.model), settings)
    policy = InputPolicy.from_settings(settings)

    def direct() -> dict:
        raster = read_image(RequestImage(chip, "chip"), predictor.spec.bands, policy)
        decoded = payload.decode(predictor.predict(raster))
        return feature_collection(vectorize_payload(decoded, options))

    process = subprocess.Popen(
        [str(REPO / ".venv/bin/geomlops"), "serve", args.model],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = json.loads(process.stdout.readline())["url"]
        body = json.dumps({"binData": base64.b64encode(chip).decode()}).encode()
        with httpx.Client(timeout=120) as client:

            def graph() -> bytes:
                """Latency until the whole answer has arrived; parsing it is the client's."""
                response = client.post(
                    f"{url}/api/v1.0/predictions",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                response.raise_for_status()
                return response.content

            if json.loads(graph())["jsonData"] != direct():
                raise SystemExit("the graph and the direct call give different GeoJSON")
            print(f"{args.model} on a 512 x 512 x 13 chip, {args.requests} sequential requests")
            print(f"device {predictor.device}, {torch.get_num_threads()} torch threads")
            # Alternate the two, call by call, so drift on a shared machine hits both alike;
            # the model's own run-to-run spread (tens of ms on CPU) is far bigger than the
            # overhead, so the overhead is also given as the median of paired differences.
            direct_samples, graph_samples = timings(direct, 2), timings(graph, 2)
            direct_samples, graph_samples = [], []
            for _ in range(args.requests):
                direct_samples += timings(direct, 1, warmup=0)
                graph_samples += timings(graph, 1, warmup=0)
            d = summary("direct", direct_samples)
            g = summary("graph", graph_samples)
            paired = statistics.median(
                b - a for a, b in zip(direct_samples, graph_samples, strict=True)
            )
            print(
                f"graph overhead  p50 {g['p50'] - d['p50']:+.1f} ms   "
                f"p99 {g['p99'] - d['p99']:+.1f} ms   "
                f"median of paired differences {paired * 1000:+.1f} ms   (goal: p50 < 15 ms)"
            )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        process.stdout.close()


if __name__ == "__main__":
    main()
