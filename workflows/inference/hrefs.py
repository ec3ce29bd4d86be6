"""Which imagery asset hrefs the planner and workers may read: the SSRF guard of batch inference.

An imagery item's asset href is whatever a writer put there. Opened blindly, GDAL follows it
anywhere: ``http://127.0.0.1:…`` makes the plan step send requests to a loopback service,
``/etc/…`` or ``file://…`` reads (and the run then publishes) a local file, ``/vsicurl/`` or
``/vsis3/`` reaches any host or bucket. So an href is read only when it is

- ``s3://<imagery bucket>/<key>`` (the platform's own scenes, ``imagery add`` writes these), or
- under one of the URL prefixes of ``GEOMLOPS_INFER_ALLOWED_ASSET_HREFS`` (an external
  catalog's COG host, for one), matched on whole path segments;

and never when it holds credentials, ``..`` segments or a GDAL virtual-file prefix.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from geomlops.errors import ValidationFailed
from geomlops.settings import Settings


def href_problem(href: str, settings: Settings) -> str | None:
    """Why ``href`` may not be read (None when it may)."""
    if not isinstance(href, str) or not href:
        return "the asset has no href"
    parts = urlsplit(href)
    if href.startswith("/vsi") or "/vsi" in parts.path[:5]:
        return "GDAL virtual-file paths are not read"
    if parts.username is not None or parts.password is not None:
        return "hrefs with credentials are not read"
    if ".." in parts.path.split("/"):
        return "hrefs with '..' segments are not read"
    if parts.scheme == "s3":
        if parts.netloc == settings.s3.bucket_imagery and parts.path.strip("/"):
            return None
        return f"bucket {parts.netloc!r} is not the imagery bucket {settings.s3.bucket_imagery!r}"
    for prefix in settings.inference.allowed_asset_hrefs:
        if "://" not in prefix or not href.startswith(prefix):
            continue
        if prefix.endswith("/") or len(href) == len(prefix) or href[len(prefix)] in "/?":
            return None
    if not parts.scheme or parts.scheme == "file":
        return "local files are not read"
    return f"{parts.scheme}://{parts.netloc} is not an allowed source"


def check_asset_href(href: str, item_id: str, settings: Settings) -> None:
    """Refuse, naming the item, an asset href outside the imagery bucket and the allow-list."""
    why = href_problem(href, settings)
    if why is not None:
        raise ValidationFailed(
            f"imagery item {item_id!r}: asset href {href!r:.200} is refused: {why}",
            hint=f"scenes are read from s3://{settings.s3.bucket_imagery}/ (`geomlops imagery "
            "add`) or from URL prefixes in GEOMLOPS_INFER_ALLOWED_ASSET_HREFS",
        )
