"""What the batch-inference benches share: the synthetic mosaic, the network, the scene pin.

Imported by ``bench/batch_inference.py`` and ``bench/batch_vs_peers.py`` (run as scripts,
so ``bench/`` is on ``sys.path``). Nothing here is timed.
"""

from __future__ import annotations

import importlib.util
import resource
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin
from rasterio.windows import Window

from geomlops.model.io import ModelIO, OutputClass
from geomlops.workflows.inference.config import ScenePin, Tile

REPO = Path(__file__).resolve().parents[1]
BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
PATCH = 64
"""flood-water-s2's input size (its MLM ``mlm:input`` shape)."""
MEAN, STDDEV = 1500.0, 500.0
"""One z-score for every band of the synthetic mosaic (its values are 500-3000 + noise)."""


def make_mosaic(path: Path, size: int, block: int = 512, compress: str | None = "deflate") -> None:
    """A size x size, 13-band int16 mosaic written strip by strip (never whole in memory).

    ``compress=None`` writes it uncompressed, which is quicker when :func:`to_cog` follows.
    """
    rng = np.random.default_rng(0)
    base = rng.integers(500, 3000, size=13).astype("float32")
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=13, dtype="int16",
        crs="EPSG:32630", transform=from_origin(700000, 4300000, 10, 10), nodata=0,
        tiled=True, blockxsize=block, blockysize=block, compress=compress, BIGTIFF="IF_SAFER",
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


def to_cog(plain: Path, cog: Path) -> None:
    """``plain`` as a COG (deflate, 512 px blocks, no overviews: only full resolution is read)."""
    rasterio.shutil.copy(
        plain, cog, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512, OVERVIEWS="NONE",
        BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
    )  # fmt: skip


def load_model(in_channels: int = 13, classes: int = 2):  # type: ignore[no-untyped-def]
    """flood-water-s2's network (ResNet-18 + UNet), seeded random weights, in eval mode.

    The speed does not depend on the weights.
    """
    import torch

    if importlib.util.find_spec("terratorch") is None:
        raise SystemExit(
            "flood-water-s2's network needs terratorch, which is in that package's own "
            "environment, not the platform's: batch_vs_peers.py runs its measurements there "
            "itself (batch_vs_peers._model_process); for another script, run it with the "
            "interpreter and PYTHONPATH that function returns"
        )
    spec = importlib.util.spec_from_file_location(
        "s2_model", REPO / "model_packages/flood-water-s2/model.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    torch.manual_seed(0)
    return module.build_model(in_channels, classes).eval()


CLOUD_BANDS = ["B1", "B2", "B4", "B5", "B8", "B8A", "B9", "B10", "B11", "B12"]
"""What cloud-s2 (s2cloudless) reads, in its order (its MLM ``mlm:input``)."""
CLOUD_PATCH = 256
"""cloud-s2's input size."""
S2CLOUDLESS_BOOSTER = "models/pixel_s2_cloud_detector_lightGBM_v0.1.txt"
"""The LightGBM weights inside the s2cloudless wheel (CC BY-SA 4.0)."""


def load_cloud_model(kind: str):  # type: ignore[no-untyped-def]
    """The pipeline's mask model as a torch callable: normalised batch -> N x 1 x H x W.

    ``s2cloudless``: cloud-s2's classifier itself (its package's ``cloud_model.py`` on the
    booster the wheel ships), run in this process: it needs s2cloudless and LightGBM in
    the interpreter running the bench. ``standin``: a one-channel torch convolution of the
    same shape, to measure what the composition itself costs apart from LightGBM.
    """
    import torch

    if kind == "standin":
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(len(CLOUD_BANDS), 1, kernel_size=3, padding=1)
        return torch.nn.Sequential(conv, torch.nn.Sigmoid()).eval()
    if importlib.util.find_spec("s2cloudless") is None:
        raise SystemExit(
            "--mask s2cloudless needs s2cloudless (and LightGBM) in this interpreter: "
            "pip install s2cloudless==1.7.3 into the environment running the bench, or pass "
            "--mask standin to measure the composition with a torch stand-in"
        )
    import s2cloudless

    spec = importlib.util.spec_from_file_location(
        "cloud_model", REPO / "model_packages/cloud-s2/cloud_model.py"
    )
    if spec is None or not Path(spec.origin or "").is_file():
        raise SystemExit("model_packages/cloud-s2/cloud_model.py is missing (cloud-s2 package)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    booster = Path(s2cloudless.__file__).parent / S2CLOUDLESS_BOOSTER
    detector = module.detector_for(str(booster))

    def forward(batch: torch.Tensor) -> torch.Tensor:
        values = module.cloud_probability(detector, batch.float().cpu().numpy())
        return torch.from_numpy(values).to(batch.device)

    return forward


def cloud_io() -> ModelIO:
    """cloud-s2's input spec: reflectance = value / 10000, one class whose probability it is."""
    return ModelIO(
        bands=tuple(CLOUD_BANDS), mean=(0.0,) * len(CLOUD_BANDS),
        stddev=(10000.0,) * len(CLOUD_BANDS), patch_size=CLOUD_PATCH,
        classes=(OutputClass(1, "cloud"),),
    )  # fmt: skip


def scene_pin(path: Path | str, href: str | None = None) -> ScenePin:
    """The mosaic as the planner would pin it; ``href`` (e.g. ``s3://…``) where it is read."""
    with rasterio.open(path) as src:
        return ScenePin(
            item_id="mosaic", href=href or str(path), datetime="2020-01-01T00:00:00Z",
            crs=src.crs.to_string(), transform=list(src.transform)[:6], width=src.width,
            height=src.height, band_indexes=list(range(1, 14)), nodata=0.0,
            mask_band_indexes=[BANDS.index(b) + 1 for b in CLOUD_BANDS],
        )  # fmt: skip


def model_io() -> ModelIO:
    """The mosaic's bands, z-score and the model's two classes."""
    return ModelIO(
        bands=tuple(BANDS), mean=(MEAN,) * 13, stddev=(STDDEV,) * 13, patch_size=PATCH,
        classes=(OutputClass(0, "not_water"), OutputClass(1, "water")),
    )  # fmt: skip


def aoi_of(scene: ScenePin) -> dict:
    """The scene's whole footprint as a GeoJSON geometry in EPSG:4326."""
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping

    west, north = scene.transform[2], scene.transform[5]
    east = west + scene.transform[0] * scene.width
    south = north + scene.transform[4] * scene.height
    return dict(transform_geom(scene.crs, "EPSG:4326", mapping(box(west, south, east, north))))


def plan_tiles(scene: ScenePin, tile_patches: int) -> list[Tile]:
    """The planner's tiles over the whole scene (the settings' strip order)."""
    from shapely.geometry import shape

    from geomlops.settings import InferenceSettings
    from geomlops.workflows.inference.planner import scene_tiles

    return scene_tiles(
        scene, shape(aoi_of(scene)), PATCH * tile_patches, strip=InferenceSettings().strip_tiles
    )


def batch_sizes(patches: int, batch_size: int) -> list[int]:
    """The batches ``patches`` patches go to the model in (the last one may be short)."""
    full, rest = divmod(patches, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def tile_batch_sizes(
    scene: ScenePin, tile: Tile, overlap: int, batch_size: int, patch: int = PATCH
) -> list[int]:
    """The batch sizes the shard worker feeds a model of input ``patch`` for ``tile``."""
    from geomlops.ml.split import window_starts
    from geomlops.workflows.inference.worker import halo_window

    window = halo_window(scene, tile, overlap)
    stride = patch - min(overlap, patch // 2)
    rows = window_starts(max(int(window.height), patch), patch, stride)
    cols = window_starts(max(int(window.width), patch), patch, stride)
    return batch_sizes(len(rows) * len(cols), batch_size)


def scene_patches(size: int, overlap: int) -> int:
    """Patches that cover a size x size scene once at this overlap (no tiles, no halos)."""
    from geomlops.ml.split import window_starts

    return len(window_starts(size, PATCH, PATCH - overlap)) ** 2


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB.

    Linux's ``VmHWM``, the high-water mark of this program's own memory. Not ``ru_maxrss``:
    that survives ``exec``, so a child started by a big parent (one that has just made a
    20,000 px mosaic) reports the parent's size at the fork.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)
