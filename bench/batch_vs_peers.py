"""Batch inference side by side with TerraTorch's tiled inference, and the model's ceiling.

The same flood-water-s2 network (random weights: speed does not depend on them), the same
synthetic 13-band int16 mosaic (``batch_common.make_mosaic``, converted to a COG), the same
64 px patches, 16 px overlap and batch size, three ways:

- **geomlops**: the shard worker (``run_shard``, as ``infer-step predict`` runs it) reads
  the COG from the local stack's S3 server (SeaweedFS, ``/vsis3/`` range requests) and
  writes one COG per tile plus its record to S3 (``S3TileSink``); then publish's own
  functions assemble the tiles into the scene's mask COG and polygonise it (``mosaic``,
  the scene's features) and put both into S3. Timed twice: the worker alone ("tiles"),
  and worker plus mosaic and polygons ("+ polygons").
- **terratorch**: ``terratorch.tasks.tiled_inference.tiled_inference`` on the mosaic read
  into memory from the same COG on local disk (its normal use), z-scored in place, with
  ``crop=64, stride=48, delta=0, padding=False`` (the same blended 16 px overlap; its
  default ``delta=8`` would crop the overlap away instead of blending it), then argmax and
  the class mask written as one tiled, deflate GeoTIFF. No polygons.
- **ceiling**: the model's forward passes alone, in batches, over the patches that cover
  the mosaic once at that overlap (as many as the peer runs; geomlops' tiles read a halo
  and run a few more, which counts against it).

Each run is a fresh process in flood-water-s2's own environment (its network needs
terratorch, which the platform's environment does not hold; built by the same code as the
train steps', ``geomlops.package_env``), with the platform's packages behind the
package's on its path. Peak RSS per method is its own, and the methods take turns
round by round, in a rotating order, so the drift of a shared machine cancels. Prints per
size megapixels/s, km²/s at 10 m, peak RSS, and geomlops/peer and geomlops/ceiling.
Goals: geomlops >= 1.0x the peer, >= 0.95x the ceiling, peak RSS < 2 GB at every size.

The peer holds the whole scene, its float copy, every patch's output and the blended
output in memory (~86 bytes a pixel): a run whose estimate exceeds what the machine has
free is not started ("would need N GB"), and a watchdog kills any run whose RSS passes
``--peer-limit-gb`` (reported with the RSS it reached).

``--memory-run SIZE`` measures instead one shard over a whole SIZE x SIZE mosaic with the
real reader and writer (S3 to S3) and a 1x1 convolution in place of the network, so that
20,000 px finishes on 2 cores: peak RSS and wall time (goal: < 2 GB).

    .venv/bin/python bench/batch_vs_peers.py                        # 2048, 4096, 8192
    .venv/bin/python bench/batch_vs_peers.py --sizes 2048 --rounds 1
    .venv/bin/python bench/batch_vs_peers.py --sizes 20000 --rounds 1  # peer: refused/killed
    .venv/bin/python bench/batch_vs_peers.py --memory-run 20000
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from batch_common import (
    BANDS,
    MEAN,
    PATCH,
    REPO,
    STDDEV,
    aoi_of,
    batch_sizes,
    load_model,
    make_mosaic,
    peak_rss_mb,
    plan_tiles,
    scene_patches,
    scene_pin,
    tile_batch_sizes,
    to_cog,
)

METHODS = ("geomlops", "terratorch", "ceiling")
PEER_BYTES_PER_PIXEL = 86
"""TerraTorch's peak: int16 scene (26) while its float32 copy (52) is made, then the
float32 scene, every patch's float32 output (~14 per pixel at stride 48), the blended
output (8), its weights (4) and the division's result (8)."""
KM2_PER_MPX = 100.0
"""One megapixel at 10 m is 100 km²."""


# ---------------------------------------------------------------------------- children


def _run_config(scene: Any, tiles: list, args: argparse.Namespace, run: str) -> Any:
    """A run's saved plan, as ``plan`` would write it, for the mosaic's whole footprint."""
    from geomlops.settings import get_settings
    from geomlops.workflows.inference.config import (
        ClassPin,
        InferenceRunConfig,
        ModelPin,
        RequestPin,
    )

    bucket = get_settings().s3.bucket_predictions
    return InferenceRunConfig(
        workflow=run,
        run_uri=f"s3://{bucket}/{run}",
        model=ModelPin(
            name="flood-water-s2", version="bench", item_id="flood-water-s2-bench",
            model_uri="models:/flood-water-s2/bench", stage="none", image="none",
            bands=BANDS, mean=[MEAN] * 13, stddev=[STDDEV] * 13, patch_size=PATCH,
            classes=[ClassPin(value=0, name="not_water"), ClassPin(value=1, name="water")],
        ),
        request=RequestPin(
            aoi=aoi_of(scene), aoi_uri=f"s3://{bucket}/{run}/aoi.geojson",
            datetime="2020-01-01T00:00:00Z/2020-01-02T00:00:00Z",
            allow_outside_region=False, outside_fraction=0.0,
        ),
        scenes=[scene], tile_size=PATCH * args.tile_patches, overlap=args.overlap,
        batch_size=args.batch_size, tile_retries=0, device="cpu", tile_count=len(tiles),
        shard_count=1,
    )  # fmt: skip


def _shard(config: Any, tiles: list, model: Any) -> tuple[Any, Any]:
    """Run one shard over ``tiles`` from S3 to S3 (the predict step's path); its result."""

    from geomlops.connections import get_connections
    from geomlops.workflows.inference.tilestore import S3TileSink
    from geomlops.workflows.inference.worker import ShardJob, run_shard

    conn = get_connections()
    job = ShardJob(
        shard=0, tiles=tiles, scenes={s.item_id: s for s in config.scenes},
        io=config.model.io(), overlap=config.overlap, batch_size=config.batch_size,
        tile_retries=0, aoi=config.request.aoi, pod="bench",
    )  # fmt: skip
    device = next(model.parameters()).device
    result = run_shard(job, model, S3TileSink(conn, config), device=device, conn=conn)
    if result.failed:
        raise SystemExit(f"tiles failed: {result.failed}")
    return conn, result


def run_geomlops(args: argparse.Namespace) -> dict:
    """COG in S3 -> tile COGs in S3 (worker), then the mask COG and polygons in S3."""
    from geomlops.transformers.raster_to_vector import write_geojson
    from geomlops.workflows.inference.publish import _scene_features, mosaic
    from geomlops.workflows.inference.storage import gdal_env, put_file

    scene = scene_pin(args.local, args.href)
    tiles = plan_tiles(scene, args.tile_patches)
    config = _run_config(scene, tiles, args, f"bench-{scene.width}-{os.getpid()}")
    model = _warm(load_model().to(_device()), args.batch_size)
    began = time.perf_counter()
    conn, _ = _shard(config, tiles, model)
    worker_s = time.perf_counter() - began
    worker_rss = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp, gdal_env(conn):
        # publish's own steps for one scene (its catalog items aside)
        cog, _ = mosaic(conn, config, scene, tiles, Path(tmp))
        features = _scene_features(cog, config, scene)
        put_file(conn, cog, config.uri(f"{scene.item_id}.tif"))
        geojson = write_geojson(
            {"type": "FeatureCollection", "features": features}, Path(tmp) / "run.geojson"
        )
        put_file(conn, geojson, config.uri(f"{config.workflow}.geojson"))
    total_s = time.perf_counter() - began
    patches = sum(sum(tile_batch_sizes(scene, t, args.overlap, args.batch_size)) for t in tiles)
    return {
        "seconds": total_s, "worker_seconds": worker_s, "peak_rss_mb": peak_rss_mb(),
        "worker_rss_mb": worker_rss, "patches": patches, "tiles": len(tiles),
        "features": len(features), **_gpu_memory(),
    }  # fmt: skip


def run_terratorch(args: argparse.Namespace) -> dict:
    """The peer: whole mosaic into memory, tiled_inference, argmax, one GeoTIFF out."""
    import numpy as np
    import rasterio
    import torch
    from terratorch.tasks.tiled_inference import tiled_inference

    device = _device()
    model = _warm(load_model().to(device), args.batch_size)
    began = time.perf_counter()
    with rasterio.open(args.local) as src:
        bands = src.read()
        profile = src.profile
    x = torch.from_numpy(bands).float()
    del bands
    x.sub_(MEAN).div_(STDDEV)
    with torch.inference_mode():
        logits = tiled_inference(
            model, x[None], crop=PATCH, stride=PATCH - args.overlap, delta=0, padding=False,
            batch_size=args.batch_size, device=str(device),
        )  # fmt: skip
        del x
        mask = logits[0].argmax(dim=0).to(torch.uint8).cpu().numpy()
    del logits
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        profile.update(count=1, dtype="uint8", nodata=255, compress="deflate", tiled=True,
                       blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER")  # fmt: skip
        with rasterio.open(Path(tmp) / "mask.tif", "w", **profile) as dst:
            dst.write(np.ascontiguousarray(mask), 1)
    seconds = time.perf_counter() - began
    return {
        "seconds": seconds, "peak_rss_mb": peak_rss_mb(),
        "patches": scene_patches(int(profile["width"]), args.overlap), **_gpu_memory(),
    }  # fmt: skip


def run_ceiling(args: argparse.Namespace) -> dict:
    """The model's forward passes alone over the patches that cover the mosaic once."""
    import torch

    patches = scene_patches(args.size, args.overlap)
    device = _device()
    model = _warm(load_model().to(device), args.batch_size)
    x = torch.randn(args.batch_size, 13, PATCH, PATCH, device=device)
    began = time.perf_counter()
    with torch.inference_mode():
        for b in batch_sizes(patches, args.batch_size):
            model(x[:b]).cpu()  # the logits come back, as in the other two
    return {
        "seconds": time.perf_counter() - began, "peak_rss_mb": peak_rss_mb(),
        "patches": patches, **_gpu_memory(),
    }  # fmt: skip


def run_memory(args: argparse.Namespace) -> dict:
    """One shard over the whole mosaic, S3 to S3, a 1x1 convolution in place of the network.

    Not a speed figure: the network is replaced so that 20,000 px finishes on 2 cores. What
    it measures is the worker's memory with the real reader, blending, masks and writer.
    """
    import torch

    scene = scene_pin(args.local, args.href)
    tiles = plan_tiles(scene, args.tile_patches)
    config = _run_config(scene, tiles, args, f"bench-memory-{scene.width}-{os.getpid()}")
    torch.manual_seed(0)
    model = torch.nn.Conv2d(13, 2, kernel_size=1).eval()
    began = time.perf_counter()
    _, result = _shard(config, tiles, model)
    return {
        "seconds": time.perf_counter() - began, "peak_rss_mb": peak_rss_mb(),
        "tiles": len(tiles), "model_seconds": result.model_seconds,
    }  # fmt: skip


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _warm(model: Any, batch_size: int) -> Any:
    """The first call with a shape picks kernels: no method pays for it in its timing."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        model(torch.zeros(batch_size, 13, PATCH, PATCH, device=device)).cpu()
    return model


def _gpu_memory() -> dict:
    """Peak GPU memory torch allocated in this process, MB (nothing on CPU)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


CHILDREN = {
    "geomlops": run_geomlops,
    "terratorch": run_terratorch,
    "ceiling": run_ceiling,
    "memory": run_memory,
}


# ---------------------------------------------------------------------------- parent


def _model_process() -> tuple[str, dict[str, str]]:
    """The interpreter and environment of a child: flood-water-s2's, then the platform's.

    The network is flood-water-s2's (terratorch), the bench's plumbing the platform's
    (psutil, S3, the inference worker): the package's environment wins where both hold a
    module (the same torch), the platform's fills in the rest.
    """
    import sysconfig

    from geomlops.package_env import package_env
    from geomlops.settings import get_settings

    environment = package_env(REPO / "model_packages" / "flood-water-s2", get_settings())
    own = sorted(str(p) for p in environment.path.glob("lib/python*/site-packages"))
    path = os.pathsep.join([*own, sysconfig.get_paths()["purelib"], str(Path(__file__).parent)])
    return str(environment.python), {**os.environ, "PYTHONPATH": path}


def _child(method: str, size: int, local: Path, href: str, args: argparse.Namespace) -> dict:
    """Run ``method`` in a fresh process, watching its RSS; its JSON, or why it stopped."""
    python, env = _model_process()
    command = [
        python, __file__, "--child", method, "--size", str(size), "--local", str(local),
        "--href", href, "--tile-patches", str(args.tile_patches),
        "--batch-size", str(args.batch_size), "--overlap", str(args.overlap),
    ]  # fmt: skip
    limit = args.peer_limit_gb * 2**30
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        watched, highest = psutil.Process(proc.pid), 0
        try:
            while proc.poll() is None:
                try:
                    highest = max(highest, watched.memory_info().rss)
                except psutil.NoSuchProcess:
                    break
                if highest > limit:
                    return {"stopped": f"killed at RSS {highest / 2**30:.1f} GiB (limit)"}
                time.sleep(0.1)
        finally:
            if proc.poll() is None:  # over the limit, or this bench is being stopped
                proc.kill()
                proc.wait()
        out.seek(0)
        err.seek(0)
        lines, stderr = out.read().strip().splitlines(), err.read()
    if proc.returncode != 0 or not lines:
        tail = stderr.strip().splitlines()[-3:]
        return {"stopped": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return {**json.loads(lines[-1]), "sampled_rss_mb": round(highest / 2**20, 1)}


def _mosaic_in_s3(size: int, folder: Path, conn: Any) -> tuple[Path, str]:
    """Make the size x size mosaic, convert it to a COG, put it into the imagery bucket."""
    from geomlops.objects import split
    from geomlops.settings import get_settings

    plain, cog = folder / f"mosaic-{size}.plain.tif", folder / f"mosaic-{size}.tif"
    began = time.perf_counter()
    make_mosaic(plain, size, compress=None)
    to_cog(plain, cog)
    plain.unlink()
    href = f"s3://{get_settings().s3.bucket_imagery}/bench/mosaic-{size}.tif"
    conn.s3_client().upload_file(str(cog), *split(href))  # multipart; no 5 GB copy after
    print(f"{size} px: COG of {cog.stat().st_size / 1e6:.0f} MB made and put into {href} in "
          f"{time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    return cog, href


def _peer_refusal(size: int, args: argparse.Namespace) -> str | None:
    """Why the peer is not started at ``size`` (its estimated peak is over the limit)."""
    need = size * size * PEER_BYTES_PER_PIXEL
    free = psutil.virtual_memory().available
    if need > min(free - 2 * 2**30, args.peer_limit_gb * 2**30):
        return (f"not run: would need ~{need / 2**30:.0f} GiB "
                f"({free / 2**30:.0f} GiB free, limit {args.peer_limit_gb} GiB)")  # fmt: skip
    return None


def compare(args: argparse.Namespace, sizes: list[int], conn: Any, folder: Path) -> None:
    for size in sizes:
        local, href = _mosaic_in_s3(size, folder, conn)
        refusal = _peer_refusal(size, args)
        runs: dict[str, list[dict]] = {m: [] for m in METHODS}
        for round_ in range(args.rounds):
            order = METHODS[round_ % 3 :] + METHODS[: round_ % 3]
            for method in order:
                if method == "terratorch" and refusal:
                    runs[method].append({"stopped": refusal})
                    continue
                began = time.perf_counter()
                runs[method].append(_child(method, size, local, href, args))
                print(f"{size} px round {round_ + 1}/{args.rounds} {method}: "
                      f"{time.perf_counter() - began:.0f} s {runs[method][-1]}",
                      file=sys.stderr, flush=True)  # fmt: skip
        local.unlink()
        _print_table([(size, runs)], PATCH * args.tile_patches)  # now: a later size may not end


def _mean(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if "stopped" not in r]
    return sum(values) / len(values) if values and len(values) == len(runs) else None


def _print_table(rows: list[tuple[int, dict[str, list[dict]]]], tile: int) -> None:
    """One line per method and size, then geomlops' ratios; tiles/s in ``tile`` px tiles."""
    print(f"{'size':>6} {'method':<22} {'patches':>8} {'s':>8} {'Mpx/s':>7} {'km²/s':>7} "
          f"{'tiles/s':>8} {'peak RSS MB':>12} {'GPU MB':>7}")  # fmt: skip
    for size, runs in rows:
        mpx, tiles = size * size / 1e6, size * size / tile**2
        speed: dict[str, float] = {}
        lines = [
            ("geomlops tiles", runs["geomlops"], "worker_seconds", "worker_rss_mb"),
            ("geomlops + polygons", runs["geomlops"], "seconds", "peak_rss_mb"),
            ("terratorch tiled_inf.", runs["terratorch"], "seconds", "peak_rss_mb"),
            ("ceiling (model alone)", runs["ceiling"], "seconds", "peak_rss_mb"),
        ]
        for name, method_runs, key, rss_key in lines:
            seconds = _mean(method_runs, key)
            if seconds is None:
                stopped = next(r["stopped"] for r in method_runs if "stopped" in r)
                print(f"{size:>6} {name:<22} {stopped}")
                continue
            speed[name] = mpx / seconds
            rss = max(r[rss_key] for r in method_runs)
            gpu = max(r.get("gpu_peak_mb", 0) for r in method_runs)
            print(f"{size:>6} {name:<22} {method_runs[0]['patches']:>8} {seconds:>8.1f} "
                  f"{speed[name]:>7.3f} {speed[name] * KM2_PER_MPX:>7.1f} "
                  f"{tiles / seconds:>8.3f} {rss:>12.0f} {gpu or '-':>7}")  # fmt: skip
        ceiling = speed.get("ceiling (model alone)")
        for ours in ("geomlops tiles", "geomlops + polygons"):
            if ours not in speed:
                continue
            parts = []
            if "terratorch tiled_inf." in speed:
                parts.append(f"/terratorch {speed[ours] / speed['terratorch tiled_inf.']:.3f}")
            if ceiling:
                # and against the ceiling on geomlops' own patches (its tiles' halos run more)
                own = runs["geomlops"][0]["patches"] / runs["ceiling"][0]["patches"]
                parts.append(f"/ceiling {speed[ours] / ceiling:.3f}")
                parts.append(f"/ceiling on its own patches {speed[ours] * own / ceiling:.3f}")
            print(f"{size:>6}   {ours}: {', '.join(parts)}")
    print("goals: geomlops >= 1.0x terratorch and >= 0.95x ceiling; peak RSS < 2048 MB")


def memory_run(args: argparse.Namespace, size: int, conn: Any, folder: Path) -> None:
    local, href = _mosaic_in_s3(size, folder, conn)
    result = _child("memory", size, local, href, args)
    local.unlink()
    if "stopped" in result:
        print(f"{size} px memory run: {result['stopped']}")
        return
    print(f"{size}x{size} px, one shard of {result['tiles']} tiles, S3 COG -> S3 tile COGs, "
          f"1x1 convolution in place of the network: wall {result['seconds']:.0f} s, "
          f"peak RSS {result['peak_rss_mb']:.0f} MB (VmHWM; sampled every 0.1 s by the parent: "
          f"{result['sampled_rss_mb']:.0f} MB) (goal < 2048 MB)")  # fmt: skip


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2048,4096,8192", help="Mosaic sides, px.")
    parser.add_argument("--rounds", type=int, default=2, help="Runs of each method per size.")
    parser.add_argument("--memory-run", type=int, default=0, help="Only the memory run, px.")
    parser.add_argument("--tile-patches", type=int, default=8, help="geomlops tile, patches.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--peer-limit-gb", type=float, default=16.0, help="Kill a run above.")
    parser.add_argument("--workdir", type=Path, help="Where the mosaics are made (disk).")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--local", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--href", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return

    from geomlops.connections import get_connections
    from geomlops.settings import get_settings
    from geomlops.stack.manager import LocalStack

    signal.signal(signal.SIGTERM, _stopped)  # `timeout` (bench/gpu.sh): still stop the stack
    print("$ " + shlex.join([Path(sys.executable).name, *sys.argv]), flush=True)
    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="geomlops-bench-"))
    os.environ["GEOMLOPS_HOME"] = str(home)  # children inherit it: the same stack
    get_settings.cache_clear()
    stack = LocalStack(get_settings())
    try:
        stack.up()
        conn = get_connections()
        with tempfile.TemporaryDirectory(prefix="geomlops-bench-", dir=args.workdir) as tmp:
            if args.memory_run:
                memory_run(args, args.memory_run, conn, Path(tmp))
            else:
                compare(args, [int(s) for s in args.sizes.split(",")], conn, Path(tmp))
    finally:
        stack.down()
        shutil.rmtree(home, ignore_errors=True)
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
