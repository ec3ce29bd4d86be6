"""http hrefs for imagery and prediction assets: what a browser or QGIS can open.

Items of the ``imagery`` and ``predictions`` collections keep ``s3://`` hrefs in the catalog
(credentialed: anonymous HTTP gets 403 from the store). The gateway serves each such item
with its assets' hrefs pointing here, the ``s3://`` href kept as an alternate, and streams
the asset itself with range requests, so GDAL, QGIS and the map read a COG block by block.
Only assets in the platform's ``imagery`` and ``predictions`` buckets are served; who may
read is ``GEOMLOPS_GATEWAY_READ_ACCESS`` (public, or any valid credential).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import IMAGERY, PREDICTIONS
from geomlops.connections import get_connections
from geomlops.errors import NotFoundError
from geomlops.gateway.auth import ReaderDep
from geomlops.gateway.errors import OgcError
from geomlops.objects import split
from geomlops.settings import Settings

SERVED = (IMAGERY, PREDICTIONS)
"""Collections whose items and assets the gateway serves over http."""
CHUNK = 256 * 1024
ASSET = "/collections/{collection}/items/{item_id}/assets/{asset}"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

router = APIRouter()


def base_url(request: Request) -> str:
    """The gateway's URL as this client reached it (links in answers start with it)."""
    return str(request.base_url).rstrip("/")


def asset_path(collection: str, item_id: str, asset: str) -> str:
    """The gateway path of an item's asset (the one place its shape is written)."""
    return f"/collections/{collection}/items/{quote(item_id, safe='')}/assets/{asset}"


def get_item(settings: Settings, collection: str, item_id: str) -> dict[str, Any]:
    """A served item from the catalog (404 for other collections or a missing item)."""
    if collection not in SERVED:
        raise OgcError(
            404, "NotFound", f"the gateway serves items of {', '.join(SERVED)}, not {collection!r}"
        )
    with CatalogClient.from_settings(settings) as catalog:
        try:
            return catalog.get_item_dict(collection, item_id)
        except NotFoundError as exc:
            raise OgcError(404, "NotFound", exc.message) from exc


def s3_href(settings: Settings, item: dict[str, Any], asset: str) -> tuple[str, str, str]:
    """Bucket, key and media type of an item's asset, if it is one the gateway serves."""
    spec = (item.get("assets") or {}).get(asset)
    if spec is None:
        raise OgcError(
            404,
            "NotFound",
            f"item {item['id']!r} has no asset {asset!r}; assets: "
            f"{', '.join(item.get('assets') or {}) or 'none'}",
        )
    href = str(spec.get("alternate", {}).get("s3", {}).get("href") or spec["href"])
    buckets = (settings.s3.bucket_imagery, settings.s3.bucket_predictions)
    if not href.startswith("s3://") or split(href)[0] not in buckets:
        raise OgcError(404, "NotFound", f"asset {asset!r} of {item['id']!r} is not served here")
    bucket, key = split(href)
    return bucket, key, str(spec.get("type") or "application/octet-stream")


def with_http_hrefs(item: dict[str, Any], base: str) -> dict[str, Any]:
    """The item with each served asset's href on the gateway, ``s3://`` as the alternate."""
    item = dict(item)
    assets = {}
    for name, spec in (item.get("assets") or {}).items():
        spec = dict(spec)
        href = str(spec.get("href", ""))
        if href.startswith("s3://"):
            spec["href"] = base + asset_path(item["collection"], item["id"], name)
            spec["alternate"] = {"s3": {"href": href, "title": "in the object store (S3)"}}
        assets[name] = spec
    item["assets"] = assets
    extension = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
    item["stac_extensions"] = sorted({*(item.get("stac_extensions") or []), extension})
    return item


@router.get("/collections/{collection}/items/{item_id}", summary="An item with http hrefs")
def item(collection: str, item_id: str, request: Request, _: ReaderDep) -> JSONResponse:
    """The catalog's item, its ``s3://`` assets served over http by the gateway."""
    settings: Settings = request.app.state.settings
    found = get_item(settings, collection, item_id)
    return JSONResponse(
        with_http_hrefs(found, base_url(request)), media_type="application/geo+json"
    )


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single ``Range: bytes=…`` header; None for the whole object."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        raise OgcError(416, "RangeNotSatisfiable", f"unsupported range {header!r}")
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(size - 1, int(last)) if last else size - 1
    if start > end or start >= size:
        raise OgcError(416, "RangeNotSatisfiable", f"range {header!r} outside {size} bytes")
    return start, end


@router.get(ASSET, summary="An asset's bytes (range requests)", operation_id="asset")
@router.head(ASSET, include_in_schema=False)
def asset(collection: str, item_id: str, asset: str, request: Request, _: ReaderDep) -> Response:
    """The asset from S3: whole, or the byte range asked for (206)."""
    settings: Settings = request.app.state.settings
    bucket, key, media_type = s3_href(settings, get_item(settings, collection, item_id), asset)
    client = get_connections(settings).s3_client()
    try:
        size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except (BotoCoreError, ClientError) as exc:
        raise OgcError(404, "NotFound", f"s3://{bucket}/{key} cannot be read: {exc}") from exc
    wanted = _byte_range(request.headers.get("range"), size)
    start, end = wanted or (0, size - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start + 1),
        "Content-Disposition": f'inline; filename="{key.rsplit("/", 1)[-1]}"',
    }
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.method == "HEAD" or size == 0:
        return Response(status_code=status, headers=headers, media_type=media_type)
    body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"]

    def chunks() -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    return StreamingResponse(chunks(), status_code=status, headers=headers, media_type=media_type)
