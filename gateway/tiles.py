"""Map tiles with TiTiler: COG assets of imagery and prediction items, and whole STAC items.

Two TiTiler factories on rio-tiler, mounted under the item paths the gateway serves:

- ``/collections/{collection}/items/{item}/assets/{asset}/…`` — one COG asset
  (``tiles/{tms}/{z}/{x}/{y}``, ``{tms}/tilejson.json``, ``info``, ``preview``…). A class
  mask of the ``predictions`` collection is coloured from its model's MLM classes (their
  ``color_hint``, else a fixed palette), no data transparent; any raster takes TiTiler's
  ``colormap_name`` and ``rescale`` (a colour ramp for probabilities, say) instead.
- ``/collections/{collection}/items/{item}/…`` — the STAC item with its assets
  (``assets=…``), read through rio-tiler's STACReader from the STAC API.

COGs are read from S3 with the GDAL settings an S3-compatible server needs (endpoint,
path-style addressing, http or https), taken from the kernel's connections: the same values
``geomlops env`` exports for QGIS. Read access follows ``GEOMLOPS_GATEWAY_READ_ACCESS``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from typing import Annotated, Any

import rasterio
from fastapi import Depends, FastAPI
from rasterio.io import DatasetReader
from rasterio.session import AWSSession
from rio_tiler.io import Reader, STACReader
from rio_tiler.types import ColorMapType
from titiler.core.dependencies import ColorMapParams
from titiler.core.factory import MultiBaseTilerFactory, TilerFactory

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import MODELS, PREDICTIONS
from geomlops.connections import get_connections
from geomlops.gateway.assets import SERVED, get_item, s3_href
from geomlops.gateway.auth import read_access
from geomlops.gateway.errors import OgcError
from geomlops.ml.raster import MASK_NODATA
from geomlops.model import properties as prop
from geomlops.settings import Settings

log = logging.getLogger(__name__)
ASSET_PREFIX = "/collections/{collection}/items/{item_id}/assets/{asset}"
ITEM_PREFIX = "/collections/{collection}/items/{item_id}"
CACHE_SECONDS = 30.0
"""How long an item read for tiles is reused: a map asks for dozens of tiles at once."""
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
"""Class colours where a model's MLM classes give no ``color_hint`` (value 0: none)."""
GDAL_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
}


class ItemCache:
    """Items (and their models) read from the catalog, reused for a few seconds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._items: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, collection: str, item_id: str) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            cached = self._items.get((collection, item_id))
        if cached and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        if collection == MODELS:
            with CatalogClient.from_settings(self.settings) as catalog:
                item = catalog.get_item_dict(MODELS, item_id)
        else:
            item = get_item(self.settings, collection, item_id)
        with self._lock:
            self._items[(collection, item_id)] = (now, item)
        return item


class OpenDatasets:
    """COGs kept open per worker thread for a few seconds, the newest few.

    A map asks for a burst of tiles of the same files. Opened anew for each tile, a COG
    loses GDAL's cache of its decoded blocks, and tiles that share a block decode it again:
    that was most of what the gateway took over rio-tiler with the file kept open. rasterio
    datasets are not thread-safe, so each thread keeps its own; reads still happen inside
    each request's ``rasterio.Env``, so the S3 keys in use are the request's. Entries expire
    like the item cache, so a rewritten object is seen within that time.
    """

    def __init__(self, seconds: float = CACHE_SECONDS, size: int = 8) -> None:
        self.seconds = seconds
        self.size = size
        self._local = threading.local()

    def get(self, path: str) -> DatasetReader:
        cache: OrderedDict[str, tuple[float, DatasetReader]] | None = getattr(
            self._local, "cache", None
        )
        if cache is None:
            cache = self._local.cache = OrderedDict()
        now = time.monotonic()
        entry = cache.pop(path, None)
        if entry is not None and now - entry[0] < self.seconds and not entry[1].closed:
            cache[path] = entry
            return entry[1]
        if entry is not None:
            entry[1].close()
        dataset = rasterio.open(path)
        cache[path] = (now, dataset)
        while len(cache) > self.size:
            _, (_, oldest) = cache.popitem(last=False)
            oldest.close()
        return dataset


OPEN_DATASETS = OpenDatasets()


class CachedReader(Reader):
    """rio-tiler's COG reader on a dataset from :data:`OPEN_DATASETS` (left open at close)."""

    def __attrs_post_init__(self) -> None:
        if not self.dataset and self.input:
            self.dataset = OPEN_DATASETS.get(self.input)
        super().__attrs_post_init__()


def _hex(color: str) -> tuple[int, int, int, int] | None:
    """``RRGGBB`` (MLM's ``color_hint``, ``#`` tolerated) as RGBA; None if it is not one."""
    text = color.lstrip("#")
    if not re.fullmatch(r"[0-9A-Fa-f]{6}", text):
        return None
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16), 255


def class_colormap(
    model_item: dict[str, Any] | None, classes: list[dict[str, Any]]
) -> ColorMapType:
    """Mask value → RGBA: the model's MLM ``color_hint``s, else the palette; no data clear.

    Value 0 (background) is left transparent when the model gives it no colour, so a
    prediction over imagery shows only what was found. A hint that is not ``RRGGBB`` falls
    back to the palette: a map with a default colour beats no map.
    """
    hints: dict[int, str] = {}
    if model_item is not None:
        outputs = (model_item.get("properties") or {}).get("mlm:output") or []
        for output in outputs[:1]:
            for cls in output.get("classification:classes") or []:
                if isinstance(cls, dict) and cls.get("color_hint"):
                    hints[int(cls["value"])] = str(cls["color_hint"])
    colormap: dict[int, tuple[int, int, int, int]] = {MASK_NODATA: (0, 0, 0, 0)}
    for index, cls in enumerate(classes):
        value = int(cls["value"])
        hinted = _hex(hints[value]) if value in hints else None
        if hinted is not None:
            colormap[value] = hinted
        elif value == 0:
            colormap[value] = (0, 0, 0, 0)
        else:
            colormap[value] = _hex(PALETTE[index % len(PALETTE)]) or (0, 0, 0, 255)
    return colormap


_SESSIONS: dict[tuple[str, str, str, str], AWSSession] = {}
_SESSIONS_LOCK = threading.Lock()


def _session(access_key: str, secret_key: str, region: str, endpoint: str) -> AWSSession:
    """One session per set of S3 credentials, shared by every tile.

    Making one builds a boto3 session (10-20 ms): per tile, that was a large part of what
    the gateway added to rio-tiler's own time. A session only hands GDAL fixed keys, so
    sharing it between threads is safe; new keys or a moved endpoint get a new one.
    """
    key = (access_key, secret_key, region, endpoint)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = _SESSIONS[key] = AWSSession(
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                region_name=region,
                endpoint_url=endpoint,
            )
        return session


def gdal_environment(settings: Settings) -> dict[str, Any]:
    """``rasterio.Env`` arguments for the platform's object store (keys through a session)."""
    conn = get_connections(settings)
    env = conn.env()
    return {
        "session": _session(
            conn.s3_access_key, conn.s3_secret_key, conn.s3_region, env["AWS_S3_ENDPOINT"]
        ),
        "AWS_HTTPS": env["AWS_HTTPS"],
        "AWS_VIRTUAL_HOSTING": env["AWS_VIRTUAL_HOSTING"],
        **GDAL_OPTIONS,
    }


def warm_up(settings: Settings) -> None:
    """Pay a fresh process's one-time costs before its first tile, not during it.

    GDAL's drivers, rio-tiler's reader and PNG encoder, the WebMercatorQuad grid and the S3
    session are set up on first use; together they made a cold process's first tile take
    seconds. Rendering one tile of a small in-memory raster here (at start-up, before the
    gateway reports ready) sets them all up. A stack that is not reachable yet only skips
    the session: the first tile will make it.
    """
    import numpy as np
    from rasterio.io import MemoryFile
    from rasterio.transform import from_bounds
    from rio_tiler.io import Reader

    profile = {
        "driver": "GTiff", "width": 256, "height": 256, "count": 1, "dtype": "uint8",
        "crs": "EPSG:3857", "transform": from_bounds(0, 0, 1000, 1000, 256, 256),
        "tiled": True, "blockxsize": 256, "blockysize": 256, "nodata": MASK_NODATA,
    }  # fmt: skip
    with MemoryFile() as memory:
        with memory.open(**profile) as raster:
            raster.write(np.zeros((1, 256, 256), dtype="uint8"))
        with Reader(memory.name) as reader:
            reader.tile(0, 0, 0).render(img_format="PNG", colormap={0: (0, 0, 0, 0)})
    try:
        gdal_environment(settings)
    except Exception as exc:  # the stack may start after the gateway
        log.info("tiles warm-up: no S3 session yet (%s)", exc)


def install(app: FastAPI, settings: Settings) -> None:
    """Mount both tilers on ``app`` (read access checked on every route)."""
    items = ItemCache(settings)

    def environment() -> dict[str, Any]:
        return gdal_environment(settings)

    def asset_path(collection: str, item_id: str, asset: str) -> str:
        bucket, key, _ = s3_href(settings, items.get(collection, item_id), asset)
        return f"s3://{bucket}/{key}"

    def colormap(
        collection: str,
        item_id: str,
        asset: str,
        chosen: Annotated[ColorMapType | None, Depends(ColorMapParams)],
    ) -> ColorMapType | None:
        if chosen is not None or collection != PREDICTIONS:
            return chosen
        item = items.get(collection, item_id)
        classes = (item.get("properties") or {}).get(prop.CLASSES)
        if asset != "mask" or not classes:
            return None
        model_id = item["properties"].get(prop.MODEL_ITEM)
        model = items.get(MODELS, model_id) if model_id else None
        return class_colormap(model, classes)

    def item_url(collection: str, item_id: str) -> str:
        if collection not in SERVED:
            raise OgcError(404, "NotFound", f"no tiles for collection {collection!r}")
        items.get(collection, item_id)  # 404 before the reader sees it
        stac = get_connections(settings).stac_url
        return f"{stac}/collections/{collection}/items/{item_id}"

    cog = TilerFactory(
        reader=CachedReader,
        router_prefix=ASSET_PREFIX,
        path_dependency=asset_path,
        colormap_dependency=colormap,
        environment_dependency=environment,
        add_viewer=False,
        add_ogc_maps=False,
        add_part=False,
    )
    stac = MultiBaseTilerFactory(
        reader=STACReader,
        router_prefix=ITEM_PREFIX,
        path_dependency=item_url,
        environment_dependency=environment,
        add_viewer=False,
        add_ogc_maps=False,
        add_part=False,
    )
    readers = [Depends(read_access)]
    app.include_router(cog.router, prefix=ASSET_PREFIX, tags=["tiles"], dependencies=readers)
    app.include_router(stac.router, prefix=ITEM_PREFIX, tags=["tiles"], dependencies=readers)
