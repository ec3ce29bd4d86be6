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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batch_common import (
    PATCH,
    load_model,
    make_mosaic,
    model_io,
    peak_rss_mb,
    plan_tiles,
    scene_pin,
    tile_batch_sizes,
)


def measure(
    mosaic: Path, tile_patches: int, batch_size: int, overlap: int, chunk_tiles: int
) -> dict:
    """In this (fresh) process: pipeline over the mosaic, then the model alone; peak RSS."""
    import torch

    from geomlops.ml.tiling import as_probabilities
    from geomlops.workflows.inference.config import Tile
    from geomlops.workflows.inference.tilestore import LocalTileSink
    from geomlops.workflows.inference.worker import ShardJob, run_shard

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model().to(device)
    patch = PATCH
    scene = scene_pin(mosaic)
    tiles = plan_tiles(scene, tile_patches)
    io = model_io()

    def tile_batches(tile: Tile) -> list[int]:
        return tile_batch_sizes(scene, tile, overlap, batch_size)

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
            result = run_shard(job, as_probabilities(model, device), sink)
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
        "peak_rss_mb": peak_rss_mb(),
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
