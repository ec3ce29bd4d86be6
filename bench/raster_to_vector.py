"""Throughput of the raster-to-vector transformer against bare ``rasterio.features.shapes``.

Both run on the same seeded 8192x8192 water mask (UTM, 10 m pixels): blobs of smooth
multi-scale noise thresholded at ~25 % water, a no-data stripe along one edge (a swath
border) and speckle of single pixels, as a segmentation model's argmax looks. Prints
Mpixel/s of

* the baseline: ``rasterio.features.shapes(mask)``, every feature consumed;
* the full transformer: classes, skip background, no-data, islands and holes under
  1,000 m² removed, 10 m simplification, reprojection to EPSG:4326, right-hand rule,
  6-decimal precision, and the FeatureCollection as a JSON-ready dict;

their ratio (goal: at least 1.0 since issue 18; it was 0.7), the time per stage of the
transformer, and peak memory: traced Python/NumPy allocations (tracemalloc; GEOS's own
allocations are not traced) and the peak rise of the process's resident memory (sampled
every 5 ms), each from a run of its own, since tracing slows the timed runs unevenly.
Throughput is given for wall-clock and for CPU time of this process: both paths are
single-threaded, and on a shared machine CPU time is the figure other load does not skew.

Usage:
    .venv/bin/python bench/raster_to_vector.py [--size 8192] [--repeat 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil
import rasterio.features
from affine import Affine
from scipy import ndimage

from geomlops.transformers.raster_to_vector import feature_collection, vectorize

CLASSES = [{"value": 0, "name": "not_water"}, {"value": 1, "name": "water"}]
NODATA = 255
OPTIONS: dict[str, Any] = {
    "min_area_m2": 1000.0,
    "simplify_tolerance_m": 10.0,
    "skip_values": [0],
    "precision": 6,
}
CRS = "EPSG:32630"
TRANSFORM = Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 4_300_000.0)


def water_mask(size: int, seed: int) -> np.ndarray:
    """Seeded blobs: smooth noise at four scales, thresholded, plus speckle and no-data."""
    rng = np.random.default_rng(seed)
    field = np.zeros((size, size), dtype=np.float32)
    for scale, weight in ((512, 1.0), (128, 0.5), (32, 0.25), (8, 0.12)):
        cells = size // scale + 2
        coarse = rng.standard_normal((cells, cells)).astype(np.float32)
        field += weight * ndimage.zoom(coarse, scale, order=1, grid_mode=False)[:size, :size]
    mask = (field > np.quantile(field[::16, ::16], 0.75)).astype(np.uint8)
    speckle = rng.random((size, size), dtype=np.float32) < 0.002
    mask[speckle] ^= 1
    mask[:, : size // 64] = NODATA
    return mask


def bare_shapes(mask: np.ndarray) -> int:
    return sum(1 for _ in rasterio.features.shapes(mask, transform=TRANSFORM))


def full_transformer(mask: np.ndarray) -> dict[str, Any]:
    return feature_collection(
        vectorize(mask, TRANSFORM, CRS, classes=CLASSES, nodata=NODATA, options=OPTIONS)
    )


def set_simplify_method(method: str) -> None:
    OPTIONS["simplify_method"] = method


class PeakRss:
    """Samples resident memory in a thread; ``rise`` is the peak above the start."""

    def __init__(self, interval: float = 0.005) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def rise(self) -> int:
        return self.peak - self.start


def timed(fn: Callable[[np.ndarray], Any], mask: np.ndarray) -> tuple[float, float]:
    """Wall and CPU seconds of one untraced call.

    tracemalloc is off here: it slows every Python allocation, and the two paths allocate
    very differently (the bare one builds every feature as Python objects), so timing under
    it skewed the ratio (0.80 traced against 0.56 untraced before the fix of this issue).
    """
    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    fn(mask)
    return time.perf_counter() - start, time.process_time() - cpu_start


def memory(fn: Callable[[np.ndarray], Any], mask: np.ndarray) -> tuple[int, int]:
    """Traced peak bytes and RSS rise of one call (a separate run from the timed ones)."""
    gc.collect()
    tracemalloc.start()
    with PeakRss() as rss:
        fn(mask)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return traced_peak, rss.rise


def stages(mask: np.ndarray) -> None:
    """Where the transformer's time goes (one untraced run, cumulative profile)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.runcall(full_transformer, mask)
    stats = pstats.Stats(profile)
    wanted = (
        "polygonize",
        "remove_small",
        "simplify",
        "simplify_coverage",
        "resolve_conflicts",
        "clip_to_data",
        "transform",
        "orient_polygons",
        "_repair",
        "areas_m2",
        "feature_collection",
        "_valid_pixels",
        "_included_pixels",
    )
    print("  stage times (cumulative, one profiled run):")
    for (filename, _, name), row in sorted(stats.stats.items(), key=lambda kv: -kv[1][3]):
        if name in wanted and ("raster_to_vector" in filename or "shapely" in filename):
            print(f"    {name:<20} {row[3]:7.3f} s")
            wanted = tuple(w for w in wanted if w != name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-stages", action="store_true", help="skip the profiled run")
    parser.add_argument(
        "--method",
        default="auto",
        choices=["auto", "douglas-peucker", "coverage"],
        help="simplification method (auto: Douglas-Peucker here, one class is vectorised)",
    )
    args = parser.parse_args()
    set_simplify_method(args.method)

    t0 = time.perf_counter()
    mask = water_mask(args.size, args.seed)
    megapixels = mask.size / 1e6
    print(
        f"mask {args.size}x{args.size} ({megapixels:.1f} Mpixel), seed {args.seed}, "
        f"simplification {args.method}: "
        f"{(mask == 1).mean():.1%} water, {(mask == NODATA).mean():.1%} no-data, "
        f"generated in {time.perf_counter() - t0:.1f} s"
    )
    features = full_transformer(mask)["features"]
    water = next(f for f in features if f["properties"]["class_name"] == "water")
    print(
        f"output: {len(features)} feature(s); water: "
        f"{len(water['geometry']['coordinates'])} polygons, "
        f"{water['properties']['area_m2'] / 1e6:.1f} km²; "
        f"bare shapes yields {bare_shapes(mask)} polygons"
    )

    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "full": []}
    for _ in range(args.repeat):  # interleaved, so drift in machine load hits both alike
        runs["bare"].append(timed(bare_shapes, mask))
        runs["full"].append(timed(full_transformer, mask))
    memories = {"bare": memory(bare_shapes, mask), "full": memory(full_transformer, mask)}

    wall = {name: min(r[0] for r in results) for name, results in runs.items()}
    cpu = {name: min(r[1] for r in results) for name, results in runs.items()}
    for name, label in (("bare", "rasterio.features.shapes"), ("full", "full transformer")):
        traced, rss = (m / 2**20 for m in memories[name])
        print(
            f"{label:<25} wall {megapixels / wall[name]:5.1f} Mpixel/s ({wall[name]:5.2f} s)  "
            f"cpu {megapixels / cpu[name]:5.1f} Mpixel/s ({cpu[name]:5.2f} s)  "
            f"peak traced {traced:4.0f} MiB  peak RSS rise {rss:4.0f} MiB"
        )
    print(
        f"throughput ratio full/bare: cpu {cpu['bare'] / cpu['full']:.2f}, "
        f"wall {wall['bare'] / wall['full']:.2f} (goal >= 1.0)"
    )
    if not args.no_stages:
        stages(mask)


if __name__ == "__main__":
    main()
