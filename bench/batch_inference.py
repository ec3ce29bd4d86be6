"""Batch inference shard worker: pipeline throughput vs the model alone, and peak memory.

Makes a synthetic 13-band Sentinel-2-like mosaic (tiled, deflate GeoTIFF on local disk, as
big as asked), then, in fresh processes, runs the shard worker over all of it — windowed
reads with prefetch, z-score, batched forward passes, overlap blending, masks, one COG per
tile — and the model's own forward passes on batches of the same shapes, chunk by chunk:
model, pipeline, model again (see measure()). Prints tiles/s of both, their ratio (goal
>= 0.85) and the peak RSS of a process running one shard over the whole mosaic (goal < 2 GB,
flat as the mosaic grows). The model is the flood-water-s2 package's network (random
weights: the speed does not depend on them).

    .venv/bin/python bench/batch_inference.py          # 2048, 4096 px: minutes on 2 cores
    .venv/bin/python bench/batch_inference.py --full   # 10,000 and 20,000 px (GPU)
    .venv/bin/python bench/batch_inference.py --sizes 4096
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


def make_mosaic(path: Path, size: int, block: int = 512) -> None:
    """A size x size, 13-band int16 mosaic written strip by strip (never whole in memory)."""
    rng = np.random.default_rng(0)
    base = rng.integers(500, 3000, size=13).astype("float32")
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=13, dtype="int16",
        crs="EPSG:32630", transform=from_origin(700000, 4300000, 10, 10), nodata=0,
        tiled=True, blockxsize=block, blockysize=block, compress="deflate", BIGTIFF="IF_SAFER",
    ) as dst:  # fmt: skip
        cols = np.arange(size, dtype="float32")
        for top in range(0, size, block):
            rows = np.arange(top, min(top + block, size), dtype="float32")[:, None]
            field = np.sin(rows / 97.0) * np.cos(cols / 131.0)  # smooth: compresses, has edges
            strip = base[:, None, None] * (1 + 0.3 * field[None])
            strip += rng.normal(0, 20, size=strip.shape).astype("float32")
            dst.write(strip.astype("int16"), window=Window(0, top, size, len(rows)))
        for index, name in enumerate(BANDS, start=1):
            dst.set_band_description(index, name)


def _model():  # type: ignore[no-untyped-def]
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location(
        "s2_model", REPO / "model_packages/flood-water-s2/model.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    torch.manual_seed(0)
    return module.build_model(13, 2).eval()


def measure(
    mosaic: Path, tile_patches: int, batch_size: int, overlap: int, chunk_tiles: int
) -> dict:
    """In this (fresh) process: pipeline over the mosaic, then the model alone; peak RSS."""
    import torch
    from shapely.geometry import box

    from geomlops.ml.split import window_starts
    from geomlops.model.io import ModelIO, OutputClass
    from geomlops.settings import InferenceSettings
    from geomlops.workflows.inference.config import ScenePin, Tile
    from geomlops.workflows.inference.planner import scene_tiles
    from geomlops.workflows.inference.tilestore import LocalTileSink
    from geomlops.workflows.inference.worker import ShardJob, halo_window, run_shard

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = _model().to(device)
    patch = 64
    with rasterio.open(mosaic) as src:
        scene = ScenePin(
            item_id="mosaic", href=str(mosaic), datetime="2020-01-01T00:00:00Z",
            crs=src.crs.to_string(), transform=list(src.transform)[:6], width=src.width,
            height=src.height, band_indexes=list(range(1, 14)), nodata=0.0,
        )  # fmt: skip
        aoi_native = box(*src.bounds)
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping, shape

    aoi = shape(transform_geom(scene.crs, "EPSG:4326", mapping(aoi_native)))
    tiles = scene_tiles(scene, aoi, patch * tile_patches, strip=InferenceSettings().strip_tiles)
    io = ModelIO(
        bands=tuple(BANDS), mean=(1500.0,) * 13, stddev=(500.0,) * 13, patch_size=patch,
        classes=(OutputClass(0, "not_water"), OutputClass(1, "water")),
    )  # fmt: skip

    def tile_batches(tile: Tile) -> list[int]:
        """The batch sizes the pipeline feeds the model for ``tile`` (core + halo)."""
        window = halo_window(scene, tile, overlap)
        stride = patch - overlap
        n = len(window_starts(max(int(window.height), patch), patch, stride)) * len(
            window_starts(max(int(window.width), patch), patch, stride)
        )
        return [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])

    batches = [b for tile in tiles for b in tile_batches(tile)]
    # Both sides are warmed up on every batch shape first: the first call with a new shape
    # allocates and picks kernels, and neither side should pay for it.
    with torch.inference_mode():
        for b in sorted(set(batches)):
            model(torch.zeros(b, 13, patch, patch, device=device))
    x = torch.randn(batch_size, 13, patch, patch, device=device)

    def model_alone(sizes: list[int]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        with torch.inference_mode():
            for b in sizes:
                model(x[:b]).float().cpu()
        return time.perf_counter() - began

    # The speed of a shared 2-core machine drifts by ~10 % over minutes, more than the gap
    # being measured. So the tiles go in chunks, and each chunk is timed three times: the
    # model alone on its batches, the pipeline on its tiles, the model alone again; the
    # model's time is the mean of its two runs, which cancels a steady drift. Each chunk is
    # a fresh shard (cold GDAL cache, pipeline fill and drain): that only costs the pipeline.
    pipeline_seconds = model_seconds = 0.0
    with tempfile.TemporaryDirectory() as out:
        sink = LocalTileSink(Path(out))
        step = chunk_tiles or len(tiles)  # 0: the whole mosaic in one shard
        for first in range(0, len(tiles), step):
            chunk = tiles[first : first + step]
            sizes = [b for tile in chunk for b in tile_batches(tile)]
            before = model_alone(sizes)
            job = ShardJob(
                shard=0, tiles=chunk, scenes={"mosaic": scene}, io=io, overlap=overlap,
                batch_size=batch_size, tile_retries=0, aoi=None,
            )  # fmt: skip
            result = run_shard(job, model, sink, device=device)
            assert not result.failed, result.failed
            pipeline_seconds += result.seconds
            model_seconds += (before + model_alone(sizes)) / 2
    return {
        "size": scene.width,
        "tiles": len(tiles),
        "patches": int(sum(batches)),
        "device": str(device),
        "pipeline_s": round(pipeline_seconds, 3),
        "model_s": round(model_seconds, 3),
        "pipeline_tiles_per_s": round(len(tiles) / pipeline_seconds, 3),
        "model_tiles_per_s": round(len(tiles) / model_seconds, 3),
        "ratio": round(model_seconds / pipeline_seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2048,4096", help="Mosaic sides, px (comma list).")
    parser.add_argument("--full", action="store_true", help="Sizes 10000 and 20000 (long).")
    parser.add_argument("--tile-patches", type=int, default=8, help="Tile side in patches.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument(
        "--chunk-tiles", type=int, default=32, help="Tiles per timed chunk (0: all in one)."
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = measure(
            Path(args.child), args.tile_patches, args.batch_size, args.overlap, args.chunk_tiles
        )
        print(json.dumps(result))
        return
    sizes = [10000, 20000] if args.full else [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="geomlops-bench-") as tmp:
        for size in sizes:
            mosaic = Path(tmp) / f"mosaic-{size}.tif"
            began = time.perf_counter()
            make_mosaic(mosaic, size)
            made = time.perf_counter() - began
            print(f"made {size}x{size} mosaic ({mosaic.stat().st_size / 1e6:.0f} MB) in "
                  f"{made:.1f}s", file=sys.stderr)  # fmt: skip
            runs = {}
            # Memory: one shard over the whole mosaic, as a pod runs it (chunked runs restart
            # the worker's threads and files, which is not what a pod does). Speed: chunked.
            for name, chunk in (("memory", 0), ("speed", args.chunk_tiles)):
                child = subprocess.run(
                    [sys.executable, __file__, "--child", str(mosaic),
                     "--tile-patches", str(args.tile_patches),
                     "--batch-size", str(args.batch_size), "--overlap", str(args.overlap),
                     "--chunk-tiles", str(chunk)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                runs[name] = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append({**runs["speed"], "peak_rss_mb": runs["memory"]["peak_rss_mb"]})
            mosaic.unlink()
    header = (
        f"{'mosaic':>12} {'tiles':>6} {'patches':>8} {'pipeline t/s':>13} {'model t/s':>10} "
        f"{'ratio':>6} {'peak RSS MB':>12}  device   (RSS: one shard over the whole mosaic)"
    )
    print(header)
    for r in rows:
        print(
            f"{r['size']:>6}x{r['size']:<5} {r['tiles']:>6} {r['patches']:>8} "
            f"{r['pipeline_tiles_per_s']:>13.3f} {r['model_tiles_per_s']:>10.3f} "
            f"{r['ratio']:>6.3f} {r['peak_rss_mb']:>12.1f}  {r['device']}"
        )
    print("goals: ratio >= 0.85 (pipeline vs model alone); peak RSS < 2048 MB and flat with size")


if __name__ == "__main__":
    main()
