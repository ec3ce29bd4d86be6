"""``geomlops imagery add``: convert, upload and register scenes, all or nothing per scene.

Order matters for "nothing half-written": every check and the whole item are done locally
first (georeferencing, datetime, COG conversion, validation). Only then is the COG uploaded
under a temporary key and moved into place (readers never see a partial object), and the
item upserted. If the upsert fails, an object this run created is deleted again.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rasterio.errors import RasterioError
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from geomlops.catalog.client import CatalogClient, UpsertResult
from geomlops.catalog.imagery import (
    build_scene_item,
    item_id_for,
    read_facts,
    scene_datetime,
)
from geomlops.errors import GeomlopsError, ValidationFailed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What happened to one scene."""

    item_id: str
    href: str
    result: UpsertResult


def to_cog(src: Path, dst: Path) -> None:
    """Write ``src`` as a valid COG at ``dst`` (deflate, internal overviews and tiling)."""
    profile = cog_profiles.get("deflate")
    try:
        cog_translate(str(src), str(dst), profile, in_memory=False, quiet=True)
    except RasterioError as error:  # truncated or corrupt pixel data
        cause = error.__cause__ or error
        raise ValidationFailed(
            f"{src}: its pixels cannot be read ({cause}); nothing was written",
            hint="the file is truncated or corrupt: copy or export it again",
        ) from None
    valid, errors, _warnings = cog_validate(str(dst), quiet=True)
    if not valid:
        raise ValidationFailed(f"{src}: conversion did not produce a valid COG", problems=errors)


def _exists(s3: S3Client, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def _put_atomically(s3: S3Client, bucket: str, key: str, path: Path) -> None:
    """Upload under a temporary key, then copy into place and drop the temporary object."""
    staging = f"_incoming/{uuid.uuid4().hex}/{Path(key).name}"
    s3.upload_file(str(path), bucket, staging)
    try:
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": staging})
    finally:
        s3.delete_object(Bucket=bucket, Key=staging)


def ingest_scene(
    path: Path,
    *,
    client: CatalogClient,
    s3: S3Client,
    bucket: str,
    when: datetime | None = None,
    sensor: str | None = None,
    item_id: str | None = None,
) -> IngestResult:
    """Convert one GeoTIFF to a COG, upload it and upsert its imagery item."""
    facts = read_facts(path)  # refuses files without CRS or georeference, before any work
    acquired = scene_datetime(facts, when)
    item_id = item_id or item_id_for(path)
    key = f"{item_id}/{item_id}.tif"
    href = f"s3://{bucket}/{key}"
    with tempfile.TemporaryDirectory(prefix="geomlops-cog-") as tmp:
        cog = Path(tmp) / f"{item_id}.tif"
        to_cog(path, cog)
        item = build_scene_item(
            cog, item_id=item_id, href=href, when=acquired, sensor=sensor, source_name=path.name
        )
        data = client.prepare(item)  # validates: an invalid item uploads nothing
        existed = _exists(s3, bucket, key)
        _put_atomically(s3, bucket, key, cog)
    try:
        result = client.upsert_item(data)
    except Exception:
        if not existed:
            s3.delete_object(Bucket=bucket, Key=key)
        raise
    log.info("%s → %s (%s)", path, href, result)
    return IngestResult(item_id, href, result)


def ingest(
    paths: Sequence[Path],
    *,
    client: CatalogClient,
    s3: S3Client,
    bucket: str,
    when: datetime | None = None,
    sensor: str | None = None,
) -> list[IngestResult]:
    """Ingest several scenes; all are checked for georeferencing before the first upload."""
    problems = []
    for path in paths:
        try:
            read_facts(path)
        except GeomlopsError as exc:
            problems.append(exc.message)
    if problems:
        raise ValidationFailed(
            f"{len(problems)} of {len(paths)} file(s) cannot be ingested; nothing was written",
            problems=problems,
        )
    return [
        ingest_scene(p, client=client, s3=s3, bucket=bucket, when=when, sensor=sensor)
        for p in paths
    ]
