"""The audit trail: an append-only record of every decision about a model.

Registrations, training runs, promotions, rejections and rollbacks are appended here. The
STAC item and the MLflow tags mirror each decision, but this table is the record. It
cannot be edited through the platform: triggers refuse UPDATE, DELETE and TRUNCATE for
every role, superusers included (only someone who drops the triggers by hand, outside the
platform, could change history, and the hash chain would then show it).

Each entry carries the SHA-256 of the previous entry and of its own content, so
:func:`verify` can prove that no entry was altered, removed or inserted out of order; and
each append anchors the log's new head outside the database (:mod:`geomlops.audit_anchor`),
so :func:`verify` also sees a deleted tail. The platform itself connects as a role that
may only read and append here (no DELETE, TRUNCATE, trigger or replication-role rights:
:mod:`geomlops.stack.roles`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row

from geomlops import audit_anchor
from geomlops.audit_anchor import AnchorStore
from geomlops.errors import GeomlopsError, ValidationFailed

GENESIS = "0" * 64
#: The ``details`` key of a registration's package version (``version`` is a model version).
PACKAGE_VERSION_KEY = "package_version"


def _one(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """The row a statement always returns (an INSERT … RETURNING, a bare SELECT).

    None would mean the connection or the table is broken, not that the log is empty.
    """
    if row is None:
        raise GeomlopsError("the audit log's database returned no row where one is certain")
    return row


class Action(StrEnum):
    """What was decided or done."""

    REGISTER = "register"
    TRAIN = "train"
    PROMOTE = "promote"
    REJECT = "reject"
    ROLLBACK = "rollback"
    REPAIR = "repair"


SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS geomlops;
CREATE TABLE IF NOT EXISTS geomlops.audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor text NOT NULL CHECK (actor <> ''),
    action text NOT NULL,
    model text NOT NULL CHECK (model <> ''),
    version text,
    reason text,
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash text NOT NULL,
    hash text NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS audit_log_model ON geomlops.audit_log (model, id);
CREATE OR REPLACE FUNCTION geomlops.audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'geomlops.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
DROP TRIGGER IF EXISTS audit_log_no_update_delete ON geomlops.audit_log;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON geomlops.audit_log
    FOR EACH ROW EXECUTE FUNCTION geomlops.audit_log_refuse_change();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON geomlops.audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON geomlops.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION geomlops.audit_log_refuse_change();
"""

# Appends are serialised so the chain has one order; the lock ends with the transaction.
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('geomlops.audit_log'))"


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit trail."""

    actor: str
    action: Action
    model: str
    version: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    at: datetime | None = None
    prev_hash: str | None = None
    hash: str | None = None

    def content(self) -> str:
        """The canonical text that the hash covers (everything but id and hash)."""
        return json.dumps(
            {
                "at": self.at.astimezone(UTC).isoformat() if self.at else None,
                "actor": self.actor,
                "action": str(self.action),
                "model": self.model,
                "version": self.version,
                "reason": self.reason,
                "details": self.details,
                "prev_hash": self.prev_hash,
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )

    @property
    def model_version(self) -> str | None:
        """The registry's model version (1, 2, …) the entry is about, if any.

        ``version`` is that number for every decision and training run. Registrations are
        about a *package* version (0.1.0) instead: new ones record it in ``details``
        (:data:`PACKAGE_VERSION_KEY`) and leave ``version`` empty; older ones wrote it into
        ``version``, and the hash chain forbids rewriting them, so they are read here.
        """
        return None if self.action == Action.REGISTER else self.version

    @property
    def package_version(self) -> str | None:
        """The model package's version (0.1.0) a registration is about, if any."""
        recorded = self.details.get(PACKAGE_VERSION_KEY)
        if recorded is not None:
            return str(recorded)
        return self.version if self.action == Action.REGISTER else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for `geomlops audit --json` (the two kinds of version apart)."""
        return {
            "id": self.id,
            "at": self.at.isoformat() if self.at else None,
            "actor": self.actor,
            "action": str(self.action),
            "model": self.model,
            "model_version": self.model_version,
            "package_version": self.package_version,
            "reason": self.reason,
            "details": self.details,
            "hash": self.hash,
        }


def _digest(entry: AuditEntry) -> str:
    return hashlib.sha256(entry.content().encode()).hexdigest()


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the table and its guards if missing (idempotent)."""
    conn.execute(SCHEMA_SQL)


def append(
    conn: psycopg.Connection, entry: AuditEntry, *, anchors: AnchorStore | None = None
) -> AuditEntry:
    """Append ``entry`` inside the caller's transaction and return it as stored.

    Appending in the caller's transaction is what lets a decision and its record commit
    or roll back together. The new head is anchored in ``anchors`` (default: the platform's
    object store) before returning; if it cannot be, the append fails.
    """
    if not entry.actor:
        raise ValidationFailed("an audit entry needs an actor")
    conn.execute(LOCK_SQL)
    last = conn.execute("SELECT hash FROM geomlops.audit_log ORDER BY id DESC LIMIT 1").fetchone()
    prev_hash = last[0] if last else GENESIS
    at = _one(conn.execute("SELECT date_trunc('milliseconds', clock_timestamp())").fetchone())[0]
    stored = AuditEntry(
        actor=entry.actor,
        action=Action(entry.action),
        model=entry.model,
        version=entry.version,
        reason=entry.reason,
        details=entry.details,
        at=at,
        prev_hash=prev_hash,
    )
    digest = _digest(stored)
    row = _one(
        conn.execute(
            "INSERT INTO geomlops.audit_log "
            "(at, actor, action, model, version, reason, details, prev_hash, hash) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING id",
            (
                at,
                stored.actor,
                str(stored.action),
                stored.model,
                stored.version,
                stored.reason,
                json.dumps(stored.details, default=str),
                prev_hash,
                digest,
            ),
        ).fetchone()
    )
    (anchors or AnchorStore.from_settings()).write(audit_anchor.current(conn, row[0], digest))
    return AuditEntry(**{**stored.__dict__, "id": row[0], "hash": digest})


def entries(
    conn: psycopg.Connection, model: str | None = None, version: str | None = None
) -> Iterator[AuditEntry]:
    """Entries in the order they were appended, optionally for one model (and version)."""
    query = "SELECT * FROM geomlops.audit_log"
    clauses, params = [], []
    if model is not None:
        clauses.append("model = %s")
        params.append(model)
    if version is not None:
        clauses.append("version = %s")
        params.append(version)
    if clauses:
        query += " WHERE " + " AND ".join(clauses)
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(query + " ORDER BY id", params):
            yield AuditEntry(
                id=row["id"],
                at=row["at"],
                actor=row["actor"],
                action=Action(row["action"]),
                model=row["model"],
                version=row["version"],
                reason=row["reason"],
                details=row["details"],
                prev_hash=row["prev_hash"],
                hash=row["hash"],
            )


@dataclass(frozen=True)
class Verification:
    """What walking the whole chain found: how much was checked, and every problem."""

    checked: int
    problems: list[str]
    last: AuditEntry | None = None

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One sentence for people: intact (through which entry), or where it first breaks."""
        if self.intact:
            if self.last is None:
                return "audit log: empty, nothing to verify"
            return (
                f"audit log: chain intact, {self.checked} entries verified "
                f"(last #{self.last.id}, hash {(self.last.hash or '')[:12]})"
            )
        return (
            f"audit log: chain BROKEN, {len(self.problems)} problem(s) in {self.checked} "
            f"entries; first: {self.problems[0]}"
        )


def check_chain(conn: psycopg.Connection, anchors: AnchorStore | None = None) -> Verification:
    """Walk the whole chain, oldest first, checking each link and each entry's own hash.

    Then compare its end with the newest anchor in ``anchors`` (default: the platform's
    object store), which a deleted tail no longer matches.
    """
    problems = []
    expected_prev = GENESIS
    checked, last = 0, None
    hashes: dict[int, str] = {}
    for entry in entries(conn):
        checked, last = checked + 1, entry
        if entry.id is not None:
            hashes[entry.id] = entry.hash or ""
        if entry.prev_hash != expected_prev:
            problems.append(
                f"entry {entry.id}: chain broken before it (an entry was removed, inserted "
                "or altered)"
            )
        if _digest(entry) != entry.hash:
            problems.append(f"entry {entry.id}: content does not match its hash (altered)")
        expected_prev = entry.hash or ""
    problems += audit_anchor.check(conn, hashes, checked, anchors or AnchorStore.from_settings())
    return Verification(checked, problems, last)


def verify(conn: psycopg.Connection, anchors: AnchorStore | None = None) -> list[str]:
    """Problems found walking the whole chain and comparing its end (empty when intact)."""
    return check_chain(conn, anchors).problems
