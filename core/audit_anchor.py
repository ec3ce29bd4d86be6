"""The audit chain's anchors: its head, recorded outside the database that holds it.

A hash chain proves that no entry was altered, removed from the middle or inserted out of
order, but not that its *end* is still there: delete the last entries and what is left is
a shorter, perfectly valid chain. So every append also writes an anchor, one S3 object per
entry (``anchors/<id>.json`` in the audit bucket), saying "the log held ``count`` entries,
the newest being ``id`` with ``hash``". Whoever can delete rows from the table (the
database's owner; the platform's own role cannot) cannot erase the anchors with the same
credential, and :func:`check` compares the newest anchor with the log.

The anchor is written inside the append's transaction, before it commits, so a decision
that rolls back leaves an anchor for an entry that never was. The anchor therefore names
its transaction (``pg_current_xact_id``), and :func:`check` skips anchors whose
transaction PostgreSQL reports aborted or still running: only a committed entry that is
gone is a deleted tail.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from geomlops.connections import get_connections
from geomlops.errors import GeomlopsError
from geomlops.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "anchors/"


@dataclass(frozen=True)
class Anchor:
    """The log's head right after one append: its entry, hash, size and transaction."""

    id: int
    hash: str
    count: int
    xact: str
    """``pg_current_xact_id()`` of the appending transaction, as text."""

    @property
    def key(self) -> str:
        """Object key; zero-padded so keys sort as the entries do."""
        return f"{PREFIX}{self.id:020d}.json"


class AnchorStore:
    """Anchors in the audit bucket of the platform's object store."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> AnchorStore:
        settings = settings or get_settings()
        return cls(get_connections(settings).s3_client(), settings.s3.bucket_audit)

    def where(self, anchor: Anchor) -> str:
        return f"s3://{self.bucket}/{anchor.key}"

    def write(self, anchor: Anchor) -> None:
        """Record ``anchor``; a failure fails the append (an unanchored entry is refused)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=anchor.key,
                Body=json.dumps(asdict(anchor)).encode(),
                ContentType="application/json",
            )
        except (BotoCoreError, ClientError) as error:
            raise GeomlopsError(
                f"the audit entry {anchor.id} could not be anchored in s3://{self.bucket}: {error}",
                hint="is the object store up (`geomlops status`)? Nothing was recorded",
            ) from None

    def newest_first(self) -> list[Anchor]:
        """Every anchor, newest entry first."""
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=PREFIX):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        anchors = []
        for key in sorted(keys, reverse=True):
            body: dict[str, Any] = json.loads(
                self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            )
            anchors.append(
                Anchor(
                    id=int(body["id"]),
                    hash=str(body["hash"]),
                    count=int(body["count"]),
                    xact=str(body["xact"]),
                )
            )
        return anchors


def current(conn: psycopg.Connection, entry_id: int, entry_hash: str) -> Anchor:
    """The anchor of the entry just inserted in ``conn``'s transaction."""
    row = conn.execute(
        "SELECT count(*), pg_current_xact_id()::text FROM geomlops.audit_log"
    ).fetchone()
    if row is None:
        raise GeomlopsError("the audit log's database returned no row where one is certain")
    return Anchor(id=entry_id, hash=entry_hash, count=int(row[0]), xact=str(row[1]))


def _committed(conn: psycopg.Connection, xact: str) -> bool:
    """Whether the transaction ``xact`` committed (one too old to know counts as committed)."""
    row = conn.execute("SELECT pg_xact_status(%s::xid8)", (xact,)).fetchone()
    status = row[0] if row else None
    return status not in ("aborted", "in progress")


def check(
    conn: psycopg.Connection, hashes: dict[int, str], count: int, store: AnchorStore
) -> list[str]:
    """Problems with the log's end: ``hashes`` (id -> hash) and ``count`` are the log's.

    The newest anchor of a committed append must name an entry still in the log, with its
    hash, and the log must hold at least as many entries as it did then.
    """
    for anchor in store.newest_first():
        if not _committed(conn, anchor.xact):
            continue
        newest = max(hashes) if hashes else None
        ends = f"the log ends at entry {newest}" if newest is not None else "the log is empty"
        if hashes.get(anchor.id) != anchor.hash:
            return [
                f"entry {anchor.id} is missing: its anchor {store.where(anchor)} records it "
                f"(hash {anchor.hash[:12]}, {anchor.count} entries) but {ends} with {count} "
                "entries: the log's tail was deleted"
            ]
        if count < anchor.count:
            return [
                f"the log holds {count} entries, fewer than the {anchor.count} its anchor "
                f"{store.where(anchor)} records: entries were deleted"
            ]
        return []
    return []
