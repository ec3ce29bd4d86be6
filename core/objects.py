"""Reading and writing small JSON documents and folders at ``s3://`` URIs.

Steps of a workflow run in different pods, so everything one hands to the next goes
through the object store. A reader never sees half of a document (DESIGN.md §7): an S3
object becomes visible only when its PUT (or a multipart upload's completion) succeeds, so
one request writes it atomically. Writing under a temporary key, copying into place and
deleting the temporary cost three requests an object and added nothing to that; the batch
worker paid them twice a tile, on the cores its model runs on (issue 18).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from geomlops.connections import Connections
from geomlops.errors import GeomlopsError, NotFoundError


class ObjectStoreError(GeomlopsError):
    """The object store could not be reached or refused a request."""


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise GeomlopsError(f"{uri!r} is not an s3:// URI")
    return parts.netloc, parts.path.lstrip("/")


def _store_error(action: str, uri: str, conn: Connections, exc: Exception) -> ObjectStoreError:
    return ObjectStoreError(
        f"could not {action} {uri} at {conn.s3_endpoint_url}: {exc}",
        hint="check that the object store is up (`geomlops status`), then retry or resume",
    )


def write_json(conn: Connections, uri: str, document: Any) -> None:
    """Write ``document`` at ``uri`` atomically: one PUT, visible only when complete."""
    bucket, key = split(uri)
    body = json.dumps(document, indent=2, sort_keys=True).encode()
    try:
        conn.s3_client().put_object(Bucket=bucket, Key=key, Body=body)
    except (BotoCoreError, ClientError) as exc:
        raise _store_error("write", uri, conn, exc) from exc


def read_json(conn: Connections, uri: str) -> Any:
    """The document at ``uri``; NotFoundError if there is none."""
    bucket, key = split(uri)
    try:
        body = conn.s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise NotFoundError(f"{uri} does not exist") from exc
        raise _store_error("read", uri, conn, exc) from exc
    except BotoCoreError as exc:
        raise _store_error("read", uri, conn, exc) from exc
    return json.loads(body)


def exists(conn: Connections, uri: str) -> bool:
    """Whether a document is at ``uri``."""
    try:
        read_json(conn, uri)
    except NotFoundError:
        return False
    return True


def upload_folder(conn: Connections, folder: Path, uri: str) -> int:
    """Upload every file under ``folder`` to the prefix ``uri``; returns the file count."""
    bucket, prefix = split(uri)
    client = conn.s3_client()
    count = 0
    try:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
            client.upload_file(str(path), bucket, key)
            count += 1
    except (BotoCoreError, ClientError) as exc:
        raise _store_error("upload to", uri, conn, exc) from exc
    return count
