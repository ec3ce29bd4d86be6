"""The STAC item of a dataset version in the ``datasets`` collection.

Where the data is and what it must hash to, in standard fields where one exists: the
version extension (``version``), the file extension (``file:checksum`` as a multihash,
``file:size``) on the asset pointing at DVC's directory object in the remote. What no
extension covers is under ``geomlops:`` (git revision and tag, repository, DVC checksum,
file count).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import pystac
from pystac.extensions.version import VersionExtension

from geomlops.catalog.collections import DATASETS
from geomlops.catalog.extensions import FILE_SCHEMA
from geomlops.model import properties as prop

if TYPE_CHECKING:
    from geomlops.datasets.describe import FileSummary
    from geomlops.datasets.registry import DatasetVersion

MD5_MULTIHASH = "d510"
"""Multihash prefix of an md5 digest: code 0xd5, length 16 (0x10)."""


def remote_object(md5: str, bucket: str, prefix: str) -> str:
    """URI of a DVC object in the S3 remote (DVC 3 layout ``files/md5/ab/cdef…``)."""
    return f"s3://{bucket}/{prefix.strip('/')}/files/md5/{md5[:2]}/{md5[2:]}"


def dataset_item(
    version: DatasetVersion,
    summary: FileSummary,
    *,
    s3_bucket: str,
    remote_prefix: str,
    start: datetime | None,
    end: datetime | None,
    created: datetime,
) -> pystac.Item:
    """Build the item; footprint from the georeferenced files, else no geometry."""
    props: dict[str, object] = {
        "title": f"{version.name} {version.version}",
        "description": version.description or f"Dataset {version.name}, {version.version}",
        "created": pystac.utils.datetime_to_str(created),
        prop.DATASET: version.name,
        prop.GIT_REV: version.git_rev,
        prop.GIT_TAG: version.tag,
        prop.REPOSITORY: version.repo_url,
        prop.DVC_MD5: version.md5,
        prop.FILE_COUNT: version.file_count,
        prop.SIZE: version.size,
        prop.GEOREFERENCED_FILES: summary.georeferenced,
    }
    when: datetime | None = None
    if start is not None and end is not None:
        props["start_datetime"] = pystac.utils.datetime_to_str(start)
        props["end_datetime"] = pystac.utils.datetime_to_str(end)
    else:
        when = start or end or created
    geometry = None
    bbox = None
    if summary.bbox is not None:
        west, south, east, north = summary.bbox
        bbox = [west, south, east, north]
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        geometry = {"type": "Polygon", "coordinates": [ring]}
    item = pystac.Item(
        id=version.item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=when,
        properties=props,
        collection=DATASETS,
    )
    md5 = version.md5.removesuffix(".dir")
    item.add_asset(
        "dvc-manifest",
        pystac.Asset(
            href=remote_object(version.md5, s3_bucket, remote_prefix),
            media_type=pystac.MediaType.JSON,
            roles=["metadata"],
            title="DVC listing of the files (relpath and md5 of each), in the DVC remote",
            extra_fields={"file:checksum": MD5_MULTIHASH + md5, "file:size": version.size},
        ),
    )
    item.stac_extensions.append(FILE_SCHEMA)
    VersionExtension.ext(item, add_if_missing=True).version = version.version
    item.add_link(pystac.Link("collection", f"../{DATASETS}.json", pystac.MediaType.JSON))
    return item
