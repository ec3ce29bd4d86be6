"""What a prediction request may carry, and turning it into the bands a model reads.

A request holds the GeoTIFF itself (``binData``, base64 in Seldon's JSON) or points to one
(``{"jsonData": {"url": "s3://bucket/key" | "https://host/path"}}``) so large scenes do not
travel in the request body. Pointing is where a server can be made to fetch what it should
not (server-side request forgery), so a URL is accepted only when:

- its scheme is ``s3`` (the platform's own object store, with its credentials) and its
  bucket is in the allow-list, or ``https`` and its host is in the allow-list;
- it carries no user name or password;
- it is not redirected elsewhere (redirects are refused, not followed).

Whatever the source, the bytes must start like a TIFF before GDAL sees them: GDAL opens many
formats, and some (VRT, for one) name other files or URLs it would then read. Sizes are
bounded three times: the bytes (``max_input_bytes``) before they are read, the pixels
(``max_input_pixels``) and the decoded bytes, bands included (``max_decoded_bytes``), before
they are decoded. The header must also place the raster on Earth (a CRS, a real geotransform,
longitudes and latitudes in range) and hold real-valued samples
(:mod:`geomlops.raster_checks`, the same rules ``imagery add`` applies).
"""

from __future__ import annotations

import binascii
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pybase64
import rasterio
import requests
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from geomlops.artifacts import read_object
from geomlops.errors import GeomlopsError, NotFoundError, ValidationFailed
from geomlops.ml.raster import Raster, read_bands
from geomlops.raster_checks import georeference_problems, sample_type_problems, size_problem
from geomlops.settings import Settings

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # TIFF and BigTIFF
_CHUNK = 1024 * 1024


class InputRejected(ValidationFailed):
    """A request the model cannot answer; ``status`` is the HTTP status it gets."""

    def __init__(self, message: str, *, status: int = 400, reason: str = "BAD_INPUT", **kw: Any):
        super().__init__(message, **kw)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class InputPolicy:
    """Where inputs may come from and how large they may be (from the serving settings)."""

    s3_buckets: tuple[str, ...]
    https_hosts: tuple[str, ...]
    max_bytes: int
    max_pixels: int
    max_decoded_bytes: int = 256 * 1024**2

    @classmethod
    def from_settings(cls, settings: Settings) -> InputPolicy:
        """The policy the serving settings describe."""
        serving = settings.serving
        return cls(
            s3_buckets=tuple(serving.s3_buckets(settings.s3)),
            https_hosts=tuple(serving.allowed_hosts),
            max_bytes=serving.max_input_bytes,
            max_pixels=serving.max_input_pixels,
            max_decoded_bytes=serving.max_decoded_bytes,
        )


@dataclass(frozen=True)
class RequestImage:
    """A request's GeoTIFF and how to name it in messages."""

    data: bytes
    source: str


def request_image(request: Any, policy: InputPolicy, settings: Settings) -> RequestImage:
    """The GeoTIFF bytes a Seldon request carries or points to."""
    if not isinstance(request, Mapping):
        raise InputRejected("the request body must be a JSON object (a Seldon message)")
    if "binData" in request:
        return RequestImage(_inline(request["binData"], policy), "binData")
    json_data = request.get("jsonData")
    if isinstance(json_data, Mapping) and "url" in json_data:
        url = json_data["url"]
        if not isinstance(url, str):
            raise InputRejected("jsonData.url must be a string")
        return RequestImage(_fetch(url, policy, settings), url)
    raise InputRejected(
        "the request holds no image: send a GeoTIFF as binData, or "
        '{"jsonData": {"url": "s3://bucket/key.tif"}}',
        hint="other Seldon payloads (ndarray, tensor, strData) carry no georeferencing",
    )


def _inline(encoded: Any, policy: InputPolicy) -> bytes:
    if not isinstance(encoded, str):
        raise InputRejected("binData must be a base64 string")
    if len(encoded) * 3 // 4 > policy.max_bytes:
        raise _too_large("binData", len(encoded) * 3 // 4, policy.max_bytes)
    try:
        return pybase64.b64decode(encoded, validate=True)  # SIMD: ~8x the stdlib's speed
    except binascii.Error as error:
        raise InputRejected(f"binData is not base64: {error}") from None


def _too_large(source: str, size: int, limit: int) -> InputRejected:
    return InputRejected(
        f"{source} is {size} bytes, more than the {limit} accepted",
        status=413,
        reason="INPUT_TOO_LARGE",
        hint="cut the scene into tiles, or raise GEOMLOPS_SERVING_MAX_INPUT_BYTES",
    )


def check_url(url: str, policy: InputPolicy) -> None:
    """Refuse a URL outside the allowed schemes, buckets and hosts (the SSRF guard)."""
    parts = urlsplit(url)

    def refuse(why: str) -> InputRejected:
        return InputRejected(
            f"jsonData.url {url!r}: {why}",
            status=403,
            reason="URL_NOT_ALLOWED",
            hint="allowed: s3:// URLs in buckets "
            f"{list(policy.s3_buckets)} and https:// URLs on hosts {list(policy.https_hosts)} "
            "(GEOMLOPS_SERVING_ALLOWED_S3_BUCKETS, GEOMLOPS_SERVING_ALLOWED_HOSTS)",
        )

    if parts.username is not None or parts.password is not None:
        raise refuse("URLs with credentials are refused")
    if parts.scheme == "s3":
        if parts.netloc not in policy.s3_buckets:
            raise refuse(f"bucket {parts.netloc!r} is not one this service may read")
        if not parts.path.strip("/"):
            raise refuse("no object key")
    elif parts.scheme == "https":
        host = (parts.hostname or "").lower()
        allowed = {h.lower() for h in policy.https_hosts}
        if host not in allowed and parts.netloc.lower() not in allowed:
            raise refuse(f"host {parts.netloc!r} is not one this service may fetch from")
    else:
        raise refuse(f"scheme {parts.scheme or '(none)'!r} is not allowed (only s3, https)")


def _fetch(url: str, policy: InputPolicy, settings: Settings) -> bytes:
    check_url(url, policy)
    try:
        if url.startswith("s3://"):
            data = read_object(url, settings=settings, max_bytes=policy.max_bytes)
            assert data is not None  # noqa: S101 - missing_ok is False
            return data
        return _fetch_https(url, policy)
    except NotFoundError as error:
        raise InputRejected(str(error.message), status=404, reason="INPUT_NOT_FOUND") from None
    except ValidationFailed as error:  # the size check
        raise InputRejected(
            error.message, status=413, reason="INPUT_TOO_LARGE", hint=error.hint or ""
        ) from None
    except GeomlopsError as error:
        raise InputRejected(error.message, status=502, reason="INPUT_UNREADABLE") from None


def _fetch_https(url: str, policy: InputPolicy) -> bytes:
    try:
        with requests.get(url, stream=True, timeout=60, allow_redirects=False) as response:
            if response.is_redirect:
                raise InputRejected(
                    f"jsonData.url {url!r} redirects elsewhere; redirects are not followed",
                    status=403,
                    reason="URL_NOT_ALLOWED",
                )
            if response.status_code == 404:
                raise NotFoundError(f"{url} does not exist")
            if not response.ok:
                raise GeomlopsError(f"fetching {url} answered {response.status_code}")
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > policy.max_bytes:
                raise _too_large(url, declared, policy.max_bytes)
            chunks, total = [], 0
            for chunk in response.iter_content(_CHUNK):
                total += len(chunk)
                if total > policy.max_bytes:
                    raise _too_large(url, total, policy.max_bytes)
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.RequestException as error:
        raise GeomlopsError(f"cannot fetch {url}: {error}") from None


def _check_header(src: Any, source: str, policy: InputPolicy) -> None:
    """Refuse a bomb, an unplaced raster or complex samples before a pixel is decoded."""
    too_large = size_problem(src, policy.max_decoded_bytes)
    if too_large:
        raise InputRejected(
            f"{source} {too_large}",
            status=413,
            reason="INPUT_TOO_LARGE",
            hint="send only the bands the model reads, in tiles, or raise "
            "GEOMLOPS_SERVING_MAX_DECODED_BYTES",
        )
    problems = georeference_problems(src) + sample_type_problems(src)
    if problems:
        raise InputRejected(
            f"{source} {problems[0]}",
            problems=problems[1:],
            hint="send a georeferenced GeoTIFF of real-valued bands (e.g. warp it with gdalwarp)",
        )


def read_image(image: RequestImage, bands: Sequence[str], policy: InputPolicy) -> Raster:
    """The model's ``bands`` (by name) of a request's GeoTIFF, checked before decoding."""
    if not image.data.startswith(TIFF_MAGIC):
        raise InputRejected(
            f"{image.source} is not a GeoTIFF (it does not start with a TIFF header)",
            status=415,
            reason="NOT_GEOTIFF",
        )
    with rasterio.MemoryFile(image.data) as memory, warnings.catch_warnings():
        # Reported as an error naming the source (no geotransform), not as a warning.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with memory.open() as src:
                if src.driver != "GTiff":
                    raise InputRejected(
                        f"{image.source} is not a GeoTIFF", status=415, reason="NOT_GEOTIFF"
                    )
                if src.width * src.height > policy.max_pixels:
                    raise InputRejected(
                        f"{image.source} is {src.width} x {src.height} pixels, more than the "
                        f"{policy.max_pixels} accepted",
                        status=413,
                        reason="INPUT_TOO_LARGE",
                        hint="cut the scene into tiles, or raise GEOMLOPS_SERVING_MAX_INPUT_PIXELS",
                    )
                _check_header(src, image.source, policy)
            return read_bands(memory.name, bands)
        except RasterioIOError as error:
            raise InputRejected(
                f"{image.source} cannot be read as a GeoTIFF: "
                + str(error).replace(f"'{memory.name}' ", ""),
                status=415,
                reason="NOT_GEOTIFF",
            ) from None
        except InputRejected:
            raise
        except ValidationFailed as error:  # no CRS, missing bands: named by the vsimem path
            raise InputRejected(
                error.message.replace(memory.name, image.source),
                problems=error.problems,
                hint=error.hint or "",
            ) from None
        except GeomlopsError as error:
            raise InputRejected(
                error.message.replace(memory.name, image.source), status=415, reason="NOT_GEOTIFF"
            ) from None
