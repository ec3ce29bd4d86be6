"""Reading rasters from S3 through GDAL, and putting files into S3 atomically.

GDAL reads a COG in S3 through ``/vsis3/`` with HTTP range requests: only the blocks of the
window asked for travel, never the whole scene. Its S3 settings are passed through
``rasterio.Env`` and an ``AWSSession`` (rasterio refuses AWS keys as plain Env options).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import rasterio
from botocore.exceptions import BotoCoreError, ClientError
from rasterio.session import AWSSession

from geomlops.connections import Connections
from geomlops.objects import ObjectStoreError, split
from geomlops.settings import get_settings

# Read-ahead suited to many small windowed reads of the same COGs. The block cache size is
# added by _options from the settings, in bytes: rasterio passes an integer GDAL_CACHEMAX
# straight to GDALSetCacheMax64, so 256 means 256 *bytes* (no cache at all), not 256 MB.
_GDAL_OPTIONS: dict[str, str | int] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
}


def raster_path(href: str) -> str:
    """What rasterio opens for an asset href: ``s3://b/k`` -> ``/vsis3/b/k``."""
    if href.startswith("s3://"):
        bucket, key = split(href)
        return f"/vsis3/{bucket}/{key}"
    return href


def _options() -> dict[str, str | int]:
    cache_bytes = get_settings().inference.gdal_cache_mb * 1024 * 1024
    return {**_GDAL_OPTIONS, "GDAL_CACHEMAX": cache_bytes}


@contextmanager
def gdal_env(conn: Connections | None) -> Iterator[None]:
    """GDAL configured for the platform's object store (plain GDAL when ``conn`` is None)."""
    options = _options()
    if conn is None:
        with rasterio.Env(**options):
            yield
        return
    env = conn.env()
    session = AWSSession(
        aws_access_key_id=conn.s3_access_key,
        aws_secret_access_key=conn.s3_secret_key,
        region_name=conn.s3_region,
        endpoint_url=env["AWS_S3_ENDPOINT"],
    )
    with rasterio.Env(
        session=session,
        AWS_HTTPS=env["AWS_HTTPS"],
        AWS_VIRTUAL_HOSTING=env["AWS_VIRTUAL_HOSTING"],
        **options,
    ):
        yield


def put_file(conn: Connections, path: Path, uri: str) -> None:
    """Upload ``path`` to ``uri``: visible only once complete (see :mod:`geomlops.objects`)."""
    bucket, key = split(uri)
    try:
        conn.s3_client().upload_file(str(path), bucket, key)
    except (BotoCoreError, ClientError) as exc:
        raise ObjectStoreError(
            f"could not write {uri} at {conn.s3_endpoint_url}: {exc}",
            hint="check that the object store is up (`geomlops status`), then resume the run",
        ) from exc


def get_file(conn: Connections, uri: str, path: Path) -> Path:
    """Download ``uri`` to ``path``."""
    bucket, key = split(uri)
    try:
        conn.s3_client().download_file(bucket, key, str(path))
    except (BotoCoreError, ClientError) as exc:
        raise ObjectStoreError(f"could not read {uri}: {exc}") from exc
    return path


def list_keys(conn: Connections, prefix_uri: str) -> list[str]:
    """Every key under ``prefix_uri`` (as ``s3://`` URIs), following pagination."""
    bucket, prefix = split(prefix_uri)
    found: list[str] = []
    try:
        pages = (
            conn.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        for page in pages:
            found.extend(f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", []))
    except (BotoCoreError, ClientError) as exc:
        raise ObjectStoreError(f"could not list {prefix_uri}: {exc}") from exc
    return found
