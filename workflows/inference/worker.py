"""The shard worker: predict a shard's tiles, streaming windows, one tile's mask COG each.

Three stages overlap so the model is never kept waiting:

- a **reader** thread reads the next tiles' windows (core plus an ``overlap`` halo, only the
  model's bands and the cloud band) from the scenes' COGs — through ``/vsis3/`` range
  requests, never a whole scene — finds their no-data and cloud pixels and the core's
  pixels outside the AOI, and applies the MLM input spec (z-score), into a queue of
  ``prefetch`` tiles;
- the **main** thread runs the model on batches of patches, blends overlapping patches
  (:func:`geomlops.ml.tiling.predict_probabilities`) and applies the no-data, cloud and
  AOI masks: nothing else, because the model's throughput is the pipeline's. In a composed
  pipeline (:mod:`geomlops.model.pipeline`) it runs the mask model on the same window too
  (its own bands, its own normalisation) and its rule's masked pixels become no data;
- a **writer** thread writes each tile's raster as a COG and hands it to the sink, which
  records the tile as done last.

What a tile's raster is follows the model output's kind
(:func:`geomlops.transformers.postprocess.to_raster`, as serving makes it): a class mask
(uint8, 255 = no data) or a probability or continuous value (float32, NaN = no data).

Memory is bounded by the queues (a few tiles), not by the scene. A tile whose read, predict
or write fails is retried ``tile_retries`` times; one that still fails is reported with its
error and the shard fails after finishing the rest. Tiles the sink already holds are skipped,
so a retried or resumed shard does only what is missing.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from geomlops.connections import Connections
from geomlops.ml.scaling import normalise
from geomlops.ml.tiling import predict_probabilities
from geomlops.model.io import ModelIO
from geomlops.model.kinds import OutputKind
from geomlops.model.pipeline import MaskRule
from geomlops.transformers.postprocess import raster_dtype, raster_nodata, to_raster
from geomlops.workflows.inference import masks
from geomlops.workflows.inference.aoi import in_crs, inside_mask
from geomlops.workflows.inference.config import ScenePin, Tile, TileRecord
from geomlops.workflows.inference.storage import gdal_env, raster_path

log = logging.getLogger(__name__)

Model = Callable[[Any], Any]
"""A torch module (tensor in, logits out), or a model :func:`geomlops.ml.runtime.load_model`
loaded (``takes_numpy``: numpy batch in, numpy scores out)."""


class TileSink(Protocol):
    """Where finished tiles go; ``done`` must be true only once a tile is complete."""

    def done(self, tile: Tile) -> bool: ...

    def put(self, tile: Tile, mask_path: Path, record: TileRecord) -> None: ...


@dataclass(frozen=True)
class MaskJob:
    """A pipeline's mask model as a shard feeds it: its input spec and the rule it applies."""

    io: ModelIO
    rule: MaskRule


@dataclass(frozen=True)
class ShardJob:
    """What a shard works on (from the run's plan)."""

    shard: int
    tiles: list[Tile]
    scenes: dict[str, ScenePin]
    io: ModelIO
    overlap: int
    batch_size: int
    tile_retries: int
    aoi: dict[str, Any] | None
    """The run's AOI (GeoJSON, EPSG:4326): core pixels outside it become no data, so the
    masks and the counts describe the AOI only. None: every pixel of every tile counts."""
    pod: str = "local"
    mask: MaskJob | None = None
    """A pipeline's mask model: run on every window; the pixels its rule masks are no data."""


@dataclass
class ShardResult:
    """How a shard went."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    model_seconds: float = 0.0
    mask_seconds: float = 0.0
    """Time in the mask model (a pipeline's), apart from ``model_seconds``."""


@dataclass
class _Window:
    """A tile's pixels as read and normalised (C x h x w; no data = 0) around its core."""

    tile: Tile
    scaled: np.ndarray
    missing: np.ndarray
    cloud: np.ndarray | None
    inside: np.ndarray | None
    """Core pixels inside the AOI; None when all of them are."""
    core: tuple[slice, slice]
    transform: rasterio.Affine
    crs: CRS
    mask_scaled: np.ndarray | None = None
    """The mask model's bands, normalised its way (a pipeline's); None without one."""


def halo_window(scene: ScenePin, tile: Tile, overlap: int) -> Window:
    """The window read for ``tile``: its core and ``overlap`` pixels around, within the scene."""
    top, left = max(0, tile.row - overlap), max(0, tile.col - overlap)
    bottom = min(scene.height, tile.row + tile.height + overlap)
    right = min(scene.width, tile.col + tile.width + overlap)
    return Window(left, top, right - left, bottom - top)


def _read(
    src: rasterio.DatasetReader,
    scene: ScenePin,
    tile: Tile,
    job: ShardJob,
    native_aoi: BaseGeometry | None,
) -> _Window:
    window = halo_window(scene, tile, job.overlap)
    top, left = int(window.row_off), int(window.col_off)
    bands = src.read(scene.band_indexes, window=window)  # the file's dtype: half of float32's
    missing = masks.nodata_mask(bands, scene.nodata)
    scaled = normalise(bands, job.io.mean, job.io.stddev)
    del bands
    if missing.any():
        scaled[:, missing] = 0.0
    mask_scaled = None
    if job.mask is not None:
        if scene.mask_band_indexes is None:
            raise ValueError(f"scene {scene.item_id} was planned without the mask model's bands")
        mask_scaled = normalise(
            src.read(scene.mask_band_indexes, window=window), job.mask.io.mean, job.mask.io.stddev
        )
        if missing.any():
            mask_scaled[:, missing] = 0.0
    cloud = None
    if scene.cloud is not None:
        values = src.read(scene.cloud.index, window=window)
        cloud = masks.cloud_mask(scene.cloud.kind, values)
    core = (
        slice(tile.row - top, tile.row - top + tile.height),
        slice(tile.col - left, tile.col - left + tile.width),
    )
    transform = src.window_transform(Window(tile.col, tile.row, tile.width, tile.height))
    inside = (
        None
        if native_aoi is None
        else inside_mask(native_aoi, transform, (tile.height, tile.width))
    )
    return _Window(tile, scaled, missing, cloud, inside, core, transform, src.crs, mask_scaled)


def _with_retries(what: str, retries: int, action: Callable[[], object]) -> object:
    for attempt in range(retries + 1):
        try:
            return action()
        except Exception as error:
            if attempt == retries:
                raise
            log.warning("%s failed (attempt %d of %d): %s", what, attempt + 1, retries + 1, error)
            time.sleep(min(2.0, 0.2 * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def _reader(
    job: ShardJob,
    tiles: list[Tile],
    conn: Connections | None,
    out: queue.Queue,
    stop: threading.Event,
) -> None:
    """Read tiles in order into ``out``: a _Window, or (tile, error) when reading failed.

    Always ends with ``None``, also when the reader itself breaks (then every tile not yet
    handed over is reported failed), so the consumer never waits forever.
    """
    sent = 0

    def hand_over(item: object) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    opened: dict[str, rasterio.DatasetReader] = {}
    aoi = shape(job.aoi) if job.aoi is not None else None
    native: dict[str, BaseGeometry | None] = {}  # the AOI in each scene's CRS
    try:
        with gdal_env(conn):
            for tile in tiles:
                if stop.is_set():
                    return
                scene = job.scenes[tile.scene]

                def read(scene: ScenePin = scene, tile: Tile = tile) -> _Window:
                    if scene.item_id not in opened:
                        opened[scene.item_id] = rasterio.open(raster_path(scene.href))
                    if scene.item_id not in native:
                        native[scene.item_id] = None if aoi is None else in_crs(aoi, scene.crs)
                    try:
                        return _read(opened[scene.item_id], scene, tile, job, native[scene.item_id])
                    except Exception:
                        opened.pop(scene.item_id).close()  # reopen on the retry
                        raise

                try:
                    item: object = _with_retries(f"reading {tile.id}", job.tile_retries, read)
                except Exception as error:
                    item = (tile, f"read: {error}")
                hand_over(item)
                sent += 1
    except Exception as error:
        log.exception("tile reader failed")
        for tile in tiles[sent:]:
            hand_over((tile, f"read: {error}"))
    finally:
        for src in opened.values():
            src.close()
        hand_over(None)


def write_mask_cog(path: Path, mask: np.ndarray, window: _Window, io: ModelIO) -> Path:
    """Write a tile's raster as a COG: a class mask (uint8, 255 = no data) or float32 (NaN)."""
    height, width = mask.shape
    kind = io.kind
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=width,
        height=height,
        count=1,
        dtype=raster_dtype(kind),
        crs=window.crs,
        transform=window.transform,
        nodata=raster_nodata(kind),
        compress="deflate",
        blocksize=256,
    ) as dst:
        dst.write(mask, 1)
        if kind is OutputKind.CLASS_MASK:
            dst.set_band_description(1, "class")
            dst.update_tags(classes=",".join(f"{c.value}:{c.name}" for c in io.classes))
        else:
            dst.set_band_description(1, kind.value)
    return path


def _predict(model: Model, job: ShardJob, window: _Window, device: torch.device) -> np.ndarray:
    probabilities = predict_probabilities(
        model,
        window.scaled,
        patch_size=job.io.patch_size,
        overlap=job.overlap,
        device=device,
        batch_size=job.batch_size,
        softmax=job.io.kind is OutputKind.CLASS_MASK,
    )
    rows, cols = window.core
    return to_raster(job.io.kind, probabilities[:, rows, cols])


def _gate(model: Model, job: ShardJob, window: _Window, device: torch.device) -> np.ndarray:
    """The core pixels the pipeline's mask model masks (True = masked)."""
    assert job.mask is not None and window.mask_scaled is not None  # noqa: S101 - caller's
    values = predict_probabilities(
        model,
        window.mask_scaled,
        patch_size=job.mask.io.patch_size,
        overlap=min(job.overlap, job.mask.io.patch_size // 2),
        device=device,
        batch_size=job.batch_size,
    )
    rows, cols = window.core
    return job.mask.rule.masked(values[:, rows, cols])


def _attempt(
    what: str,
    step: str,
    job: ShardJob,
    result: ShardResult,
    lock: threading.Lock,
    tile_id: str,
    call: Callable[[], np.ndarray],
) -> tuple[np.ndarray | None, float]:
    """``call``'s answer with the shard's retries, and the seconds it took.

    None when every try failed: the tile is recorded as failed (``step: error``) and the
    shard goes on with the next one, so one bad tile never stops the others.
    """
    began = time.perf_counter()
    try:
        answer = _with_retries(what, job.tile_retries, call)
    except Exception as error:
        with lock:
            result.failed[tile_id] = f"{step}: {error}"
        return None, 0.0
    assert isinstance(answer, np.ndarray)  # noqa: S101 - for the type checker
    return answer, time.perf_counter() - began


def _writer(
    job: ShardJob,
    sink: TileSink,
    folder: Path,
    jobs: queue.Queue,
    result: ShardResult,
    lock: threading.Lock,
) -> None:
    while (item := jobs.get()) is not None:
        window, mask, record = item
        tile = window.tile
        path = folder / f"{tile.id}.tif"

        def write(
            mask: np.ndarray = mask,
            window: _Window = window,
            path: Path = path,
            record: TileRecord = record,
        ) -> None:
            sink.put(window.tile, write_mask_cog(path, mask, window, job.io), record)

        try:
            _with_retries(f"writing {tile.id}", job.tile_retries, write)
            with lock:
                result.done.append(tile.id)
        except Exception as error:
            with lock:
                result.failed[tile.id] = f"write: {error}"
        finally:
            path.unlink(missing_ok=True)


def run_shard(
    job: ShardJob,
    model: Model,
    sink: TileSink,
    *,
    device: torch.device,
    conn: Connections | None = None,
    prefetch: int = 2,
    on_tile: Callable[[str], None] | None = None,
    mask_model: Model | None = None,
) -> ShardResult:
    """Predict every tile of ``job`` the sink does not hold yet; never raises for a tile.

    ``mask_model``: the loaded mask model of ``job.mask`` (required when it is set).
    """
    if (job.mask is None) != (mask_model is None):
        raise ValueError("a shard with a mask needs its mask model, and only then")
    started = time.perf_counter()
    result = ShardResult()
    todo = []
    for tile in job.tiles:
        if sink.done(tile):
            result.skipped.append(tile.id)
        else:
            todo.append(tile)
    if result.skipped:
        log.info("shard %d: %d tile(s) already done, skipped", job.shard, len(result.skipped))
    reads: queue.Queue = queue.Queue(maxsize=prefetch)
    writes: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="geomlops-shard-") as tmp:
        reader = threading.Thread(
            target=_reader, args=(job, todo, conn, reads, stop), name="tile-reader", daemon=True
        )
        writer = threading.Thread(
            target=_writer,
            args=(job, sink, Path(tmp), writes, result, lock),
            name="tile-writer",
            daemon=True,
        )
        reader.start()
        writer.start()
        try:
            for window in _windows(reads):
                if isinstance(window, tuple):
                    tile, error = window
                    with lock:
                        result.failed[tile.id] = error
                    continue
                tile = window.tile
                began = time.perf_counter()
                mask, seconds = _attempt(
                    f"predicting {tile.id}", "predict", job, result, lock, tile.id,
                    partial(_predict, model, job, window, device),
                )  # fmt: skip
                if mask is None:
                    continue
                result.model_seconds += seconds
                gated: np.ndarray | None = None
                if mask_model is not None:
                    gated, seconds = _attempt(
                        f"masking {tile.id}", "mask model", job, result, lock, tile.id,
                        partial(_gate, mask_model, job, window, device),
                    )  # fmt: skip
                    if gated is None:
                        continue
                    result.mask_seconds += seconds
                record = _record(job, window, mask, began, gated)
                writes.put((window, mask, record))
                if on_tile is not None:
                    on_tile(tile.id)
        finally:
            stop.set()
            writes.put(None)
            writer.join()
            reader.join(timeout=30)
    result.seconds = time.perf_counter() - started
    return result


def _windows(reads: queue.Queue) -> Iterator[_Window | tuple[Tile, str]]:
    while (item := reads.get()) is not None:
        yield item


def _record(
    job: ShardJob,
    window: _Window,
    mask: np.ndarray,
    began: float,
    gated: np.ndarray | None = None,
) -> TileRecord:
    """Apply the masks to ``mask`` (in place) and describe the tile's pixels in the AOI.

    A class mask's pixels are counted per class; a float raster's as ``valid`` (its zonal
    statistics are computed over the whole mosaic when publishing: percentiles do not add).
    ``gated``: the core pixels a pipeline's mask model masked (counted apart from the no-data
    and cloud-band pixels, which they may overlap).
    """
    rows, cols = window.core
    missing = window.missing[rows, cols]
    cloud = window.cloud[rows, cols] & ~missing if window.cloud is not None else None
    gated = gated & ~missing if gated is not None else None
    nodata = raster_nodata(job.io.kind)
    mask[missing] = nodata
    if cloud is not None:
        mask[cloud] = nodata
    if gated is not None:
        mask[gated] = nodata
    if window.inside is not None:  # outside the AOI nothing was asked: no data, not counted
        mask[~window.inside] = nodata
        missing = missing & window.inside
        cloud = cloud & window.inside if cloud is not None else None
        gated = gated & window.inside if gated is not None else None
    if job.io.kind is OutputKind.CLASS_MASK:
        counts = np.bincount(mask.ravel(), minlength=256)
        pixels = {c.name: int(counts[c.value]) for c in job.io.classes}
    else:
        pixels = {"valid": int(np.count_nonzero(np.isfinite(mask)))}
    return TileRecord(
        tile=window.tile.id,
        scene=window.tile.scene,
        shard=job.shard,
        pod=job.pod,
        pixels=pixels,
        nodata_pixels=int(missing.sum()),
        cloud_pixels=int(cloud.sum()) if cloud is not None else 0,
        masked_pixels=int(gated.sum()) if gated is not None else 0,
        seconds=round(time.perf_counter() - began, 4),
    )
