"""Batch inference shard worker: pipeline throughput vs the model alone, and peak memory.

Makes a synthetic 13-band Sentinel-2-like mosaic (tiled, deflate GeoTIFF on local disk, as
big as asked), then, in fresh processes, runs the shard worker over all of it — windowed
reads with prefetch, z-score, batched forward passes, overlap blending, masks, one COG per
tile — and the model's own forward passes on batches of the same shapes, chunk by chunk:
model, pipeline, model again (see measure()). Prints tiles/s of both, their ratio (goal
>= 0.85) and the peak RSS of a process running one shard over the whole mosaic (goal < 2 GB,
flat as the mosaic grows). The model is the flood-water-s2 package's network (random
weights: the speed does not depend on them).

Then the composed flood+cloud pipeline (``geomlops infer --pipeline``: cloud-s2's cloud
probability masks flood-water-s2's answer): the shard worker running both models on every
tile window against the two models' own forward passes on the same batches, chunk by chunk
in the same model / pipeline / model order. ``--mask s2cloudless`` (the default) runs
cloud-s2's LightGBM classifier in this process (s2cloudless must be importable; without
it the composed table is skipped, saying why); ``--mask standin`` a one-channel torch
convolution, which isolates what the composition costs; ``--mask none`` skips it.

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
    CLOUD_BANDS,
    PATCH,
    cloud_io,
    load_cloud_model,
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
        "peak_rss_mb": peak_rss_mb(),
    }


def measure_pipeline(
    mosaic: Path, tile_patches: int, batch_size: int, overlap: int, chunk_tiles: int, mask: str
) -> dict:
    """In this (fresh) process: the composed pipeline vs both models' own forward passes."""
    import torch

    from geomlops.model.pipeline import MaskRule
    from geomlops.workflows.inference.config import Tile
    from geomlops.workflows.inference.tilestore import LocalTileSink
    from geomlops.workflows.inference.worker import MaskJob, ShardJob, run_shard

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    flood = load_model().to(device)
    cloud = load_cloud_model(mask)
    if isinstance(cloud, torch.nn.Module):
        cloud = cloud.to(device)
    scene = scene_pin(mosaic)
    tiles = plan_tiles(scene, tile_patches)
    gate = MaskJob(cloud_io(), MaskRule("cloud-probability", 0, 0.4, "above"))
    patch = gate.io.patch_size

    def sizes(tile: Tile) -> tuple[list[int], list[int]]:
        return (
            tile_batch_sizes(scene, tile, overlap, batch_size),
            tile_batch_sizes(scene, tile, overlap, batch_size, patch),
        )

    flood_x = torch.randn(batch_size, 13, PATCH, PATCH, device=device)
    cloud_x = torch.rand(batch_size, len(CLOUD_BANDS), patch, patch, device=device) * 0.3
    shapes = [sizes(tile) for tile in tiles]
    with torch.inference_mode():  # warm both on every batch shape, as measure() does
        for b in sorted({b for flood_sizes, _ in shapes for b in flood_sizes}):
            flood(flood_x[:b])
        for b in sorted({b for _, cloud_sizes in shapes for b in cloud_sizes}):
            cloud(cloud_x[:b])

    def models_alone(chunk: list[Tile]) -> tuple[float, float]:
        spent = []
        for model, x, index in ((flood, flood_x, 0), (cloud, cloud_x, 1)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
            with torch.inference_mode():
                for tile in chunk:
                    for b in sizes(tile)[index]:
                        model(x[:b]).float().cpu()
            spent.append(time.perf_counter() - began)
        return spent[0], spent[1]

    pipeline_seconds = flood_seconds = cloud_seconds = 0.0
    mask_seconds = 0.0
    with tempfile.TemporaryDirectory() as out:
        sink = LocalTileSink(Path(out))
        step = chunk_tiles or len(tiles)
        for first in range(0, len(tiles), step):
            chunk = tiles[first : first + step]
            before = models_alone(chunk)
            job = ShardJob(
                shard=0, tiles=chunk, scenes={"mosaic": scene}, io=model_io(), overlap=overlap,
                batch_size=batch_size, tile_retries=0, aoi=None, mask=gate,
            )  # fmt: skip
            result = run_shard(job, flood, sink, device=device, mask_model=cloud)
            assert not result.failed, result.failed
            after = models_alone(chunk)
            pipeline_seconds += result.seconds
            mask_seconds += result.mask_seconds
            flood_seconds += (before[0] + after[0]) / 2
            cloud_seconds += (before[1] + after[1]) / 2
    models_seconds = flood_seconds + cloud_seconds
    return {
        "size": scene.width,
        "tiles": len(tiles),
        "mask": mask,
        "device": str(device),
        "pipeline_s": round(pipeline_seconds, 3),
        "flood_model_s": round(flood_seconds, 3),
        "cloud_model_s": round(cloud_seconds, 3),
        "cloud_in_pipeline_s": round(mask_seconds, 3),
        "pipeline_tiles_per_s": round(len(tiles) / pipeline_seconds, 3),
        "models_tiles_per_s": round(len(tiles) / models_seconds, 3),
        "flood_tiles_per_s": round(len(tiles) / flood_seconds, 3),
        "cloud_tiles_per_s": round(len(tiles) / cloud_seconds, 3),
        "ratio": round(models_seconds / pipeline_seconds, 3),
        "peak_rss_mb": peak_rss_mb(),
    }


def _composed(args: argparse.Namespace, mosaic: Path) -> dict | str:
    """The composed pipeline's row for ``mosaic`` (a fresh process), or why it was skipped."""
    child = subprocess.run(
        [sys.executable, __file__, "--child", str(mosaic), "--child-mask", args.mask,
         "--tile-patches", str(args.tile_patches), "--batch-size", str(args.batch_size),
         "--overlap", str(args.overlap), "--chunk-tiles", str(args.chunk_tiles)],
        capture_output=True, text=True,
    )  # fmt: skip
    if child.returncode != 0:
        return (child.stderr.strip().splitlines() or [f"exit {child.returncode}"])[-1]
    return json.loads(child.stdout.strip().splitlines()[-1])


def _print_composed(rows: list[dict], skipped: list[str]) -> None:
    for why in dict.fromkeys(skipped):
        print(f"composed flood+cloud pipeline skipped: {why}")
    if not rows:
        return
    print(
        f"\ncomposed flood+cloud pipeline (--mask {rows[0]['mask']}): tiles/s of the shard "
        "worker running both models vs their own forward passes on the same batches"
    )
    print(
        f"{'mosaic':>12} {'tiles':>6} {'pipeline t/s':>13} {'both t/s':>9} {'flood t/s':>10} "
        f"{'cloud t/s':>10} {'ratio':>6} {'peak RSS MB':>12}  device"
    )
    for r in rows:
        print(
            f"{r['size']:>6}x{r['size']:<5} {r['tiles']:>6} {r['pipeline_tiles_per_s']:>13.3f} "
            f"{r['models_tiles_per_s']:>9.3f} {r['flood_tiles_per_s']:>10.3f} "
            f"{r['cloud_tiles_per_s']:>10.3f} {r['ratio']:>6.3f} {r['peak_rss_mb']:>12.1f}  "
            f"{r['device']}"
        )
    print("ratio: (flood alone + cloud alone) / composed pipeline; goal >= 0.85, as above")


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
    parser.add_argument(
        "--mask",
        choices=("s2cloudless", "standin", "none"),
        default="s2cloudless",
        help="The composed pipeline's cloud model (none: skip the composed pipeline).",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-mask", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.child_mask:
        result = measure_pipeline(
            Path(args.child), args.tile_patches, args.batch_size, args.overlap,
            args.chunk_tiles, args.child_mask,
        )  # fmt: skip
        print(json.dumps(result))
        return
    if args.child:
        result = measure(
            Path(args.child), args.tile_patches, args.batch_size, args.overlap, args.chunk_tiles
        )
        print(json.dumps(result))
        return
    sizes = [10000, 20000] if args.full else [int(s) for s in args.sizes.split(",")]
    rows: list[dict] = []
    composed: list[dict] = []
    skipped: list[str] = []
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
            if args.mask != "none":
                row = _composed(args, mosaic)
                if isinstance(row, str):
                    skipped.append(row)
                else:
                    composed.append(row)
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
    _print_composed(composed, skipped)


if __name__ == "__main__":
    main()
