"""Reading model artifacts by their MLflow URI: ``s3://…`` or ``mlflow-artifacts:/…``.

The registry records where a model's files are as an artifact URI. A server started with
``--serve-artifacts`` (the local stack's) hands out ``mlflow-artifacts:/…`` URIs, which its
artifact proxy serves over HTTP (it reads the S3 bucket behind them); a server writing to S3
directly hands out ``s3://bucket/key``, read here with the platform's S3 credentials. Either
way the serving image needs no MLflow client.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

from geomlops.connections import get_connections
from geomlops.errors import GeomlopsError, NotFoundError, ValidationFailed
from geomlops.settings import Settings, get_settings

_TIMEOUT = 60
_CHUNK = 1024 * 1024


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); anything else is refused."""
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise ValidationFailed(f"{uri!r} is not an s3://bucket/key URI")
    return parts.netloc, key


def read_object(
    uri: str,
    *,
    settings: Settings | None = None,
    missing_ok: bool = False,
    max_bytes: int | None = None,
) -> bytes | None:
    """The bytes at ``uri``; None if it does not exist and ``missing_ok``.

    ``max_bytes`` refuses a larger object before reading it (its size is asked first).
    """
    settings = settings or get_settings()
    conn = get_connections(settings)
    if uri.startswith("mlflow-artifacts:"):
        path = urlsplit(uri).path.lstrip("/")
        url = f"{conn.mlflow_tracking_uri.rstrip('/')}/api/2.0/mlflow-artifacts/artifacts/"
        return _read_http(url + quote(path), uri, missing_ok, max_bytes, conn.mlflow_auth())
    bucket, key = split_s3_uri(uri)
    from botocore.exceptions import BotoCoreError, ClientError

    client = conn.s3_client()
    try:
        if max_bytes is not None:
            size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
            _check_size(uri, size, max_bytes)
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}:
            if missing_ok:
                return None
            raise NotFoundError(f"{uri} does not exist") from None
        raise GeomlopsError(f"cannot read {uri}: {error}") from None
    except BotoCoreError as error:
        raise GeomlopsError(f"cannot read {uri}: {error}") from None


def _check_size(uri: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValidationFailed(
            f"{uri} is {size} bytes, more than the {max_bytes} accepted",
            hint="cut the scene into smaller COGs, or raise GEOMLOPS_SERVING_MAX_INPUT_BYTES",
        )


def _read_http(
    url: str, uri: str, missing_ok: bool, max_bytes: int | None, auth: tuple[str, str] | None
) -> bytes | None:
    """Read MLflow's artifact proxy, with the platform's MLflow credential (basic auth)."""
    try:
        with requests.get(
            url, stream=True, timeout=_TIMEOUT, allow_redirects=False, auth=auth
        ) as response:
            if response.status_code == 404:
                if missing_ok:
                    return None
                raise NotFoundError(f"{uri} does not exist")
            if not response.ok:
                raise GeomlopsError(f"reading {uri} answered {response.status_code}")
            chunks, total = [], 0
            for chunk in response.iter_content(_CHUNK):
                total += len(chunk)
                if max_bytes is not None:
                    _check_size(uri, total, max_bytes)
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.RequestException as error:
        raise GeomlopsError(f"cannot read {uri}: {error}") from None


def download(uri: str, destination: Path, *, settings: Settings | None = None) -> Path:
    """Copy the object at ``uri`` to ``destination`` (written whole, then renamed)."""
    data = read_object(uri, settings=settings)
    assert data is not None  # noqa: S101 - missing_ok is False, so absence raised
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    partial.write_bytes(data)
    partial.replace(destination)
    return destination
