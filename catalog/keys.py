"""API keys: generated once, shown once, stored only as a hash in the ``geomlops`` schema.

A key is 256 bits from :mod:`secrets`, so a plain SHA-256 of it is enough to store (slow
password hashes exist to protect low-entropy secrets; they would only slow every request
here). Each key belongs to a named identity with roles; at most one active key per name,
so ``geomlops keys revoke NAME`` is unambiguous. Revoked keys stay as rows, for the audit.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from geomlops.catalog.identity import ROLE_NAMES, Role
from geomlops.errors import AuthError, ConflictError, NotFoundError, ValidationFailed

KEY_PREFIX = "gml_"
ADMIN_IDENTITY = "admin"

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS geomlops;
CREATE TABLE IF NOT EXISTS geomlops.api_keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$'),
    key_hash text NOT NULL UNIQUE,
    key_hint text NOT NULL,
    roles text[] NOT NULL CHECK (cardinality(roles) > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_one_active_per_name
    ON geomlops.api_keys (name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS geomlops.write_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    identity text NOT NULL,
    via text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    status integer NOT NULL
);
"""

# Used by the API on every authenticated request (asyncpg placeholders).
LOOKUP_SQL = "SELECT name, roles FROM geomlops.api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
LOG_WRITE_SQL = (
    "INSERT INTO geomlops.write_log (identity, via, method, path, status) "
    "VALUES ($1, $2, $3, $4, $5)"
)


ADMIN_KEY_HINT = (
    "set GEOMLOPS_API_KEY to an administrator's key; the local stack's first one is made by "
    "`geomlops up` in $GEOMLOPS_HOME/secrets/admin_api_key.json (readable by its owner only) "
    "and used when GEOMLOPS_API_KEY is not set"
)


@dataclass(frozen=True)
class KeyInfo:
    """What is known about a key without the key itself."""

    name: str
    roles: tuple[str, ...]
    hint: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh key; the prefix lets secret scanners and people recognise it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _hint(key: str) -> str:
    return f"{key[:8]}…"


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the ``geomlops`` schema and its tables if missing (idempotent).

    Only the owner may create them (the bootstrap does); the platform's app role, which
    the CLI runs as, finds them there and creates nothing.
    """
    tables = conn.execute(
        "SELECT to_regclass('geomlops.api_keys') IS NOT NULL "
        "AND to_regclass('geomlops.write_log') IS NOT NULL"
    ).fetchone()
    if tables is None or not tables[0]:
        conn.execute(SCHEMA_SQL)


def _check_roles(roles: Iterable[str]) -> list[str]:
    roles = sorted(set(roles))
    unknown = [r for r in roles if r not in ROLE_NAMES]
    if not roles or unknown:
        raise ValidationFailed(
            f"bad roles {unknown or roles}",
            problems=[f"roles must be one or more of {', '.join(ROLE_NAMES)}"],
        )
    return roles


def store_key(conn: psycopg.Connection, name: str, key: str, roles: Iterable[str]) -> KeyInfo:
    """Record ``key`` (hashed) for identity ``name``; refuses a second active key per name."""
    checked = _check_roles(roles)
    try:
        row = conn.execute(
            "INSERT INTO geomlops.api_keys (name, key_hash, key_hint, roles) "
            "VALUES (%s, %s, %s, %s) RETURNING created_at",
            (name, hash_key(key), _hint(key), checked),
        ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise ConflictError(
            f"identity {name!r} already has an active key",
            hint=f"revoke it first: `geomlops keys revoke {name}`",
        ) from exc
    except psycopg.errors.CheckViolation as exc:
        raise ValidationFailed(
            f"bad identity name {name!r}",
            problems=["use letters, digits and . _ @ - (at most 128 characters)"],
        ) from exc
    assert row is not None  # noqa: S101 - RETURNING always yields the row
    return KeyInfo(name, tuple(checked), _hint(key), row[0], None)


def create_key(conn: psycopg.Connection, name: str, roles: Iterable[str]) -> tuple[str, KeyInfo]:
    """Generate and store a key for ``name``; the plain key is returned once, never stored."""
    key = new_key()
    return key, store_key(conn, name, key, roles)


def list_keys(conn: psycopg.Connection, include_revoked: bool = False) -> list[KeyInfo]:
    """All keys (active ones only unless asked), oldest first."""
    rows = conn.execute(
        "SELECT name, roles, key_hint, created_at, revoked_at FROM geomlops.api_keys "
        "WHERE %s OR revoked_at IS NULL ORDER BY created_at, id",
        (include_revoked,),
    ).fetchall()
    return [KeyInfo(r[0], tuple(r[1]), r[2], r[3], r[4]) for r in rows]


def revoke_key(conn: psycopg.Connection, name: str) -> KeyInfo:
    """Revoke the active key of ``name``; it stops working on the next request."""
    row = conn.execute(
        "UPDATE geomlops.api_keys SET revoked_at = now() "
        "WHERE name = %s AND revoked_at IS NULL "
        "RETURNING name, roles, key_hint, created_at, revoked_at",
        (name,),
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"no active key for identity {name!r}", hint="`geomlops keys list` shows them"
        )
    return KeyInfo(row[0], tuple(row[1]), row[2], row[3], row[4])


def ensure_admin_key(conn: psycopg.Connection, key: str) -> bool:
    """Make ``key`` (from the state directory) the administrator's key; True if it was added.

    A key row that exists, even revoked, is left alone: a revoked administrator key stays
    revoked. An active administrator key with another hash (the state directory was
    reset while the database was kept) is revoked in favour of ``key``.
    """
    digest = hash_key(key)
    if conn.execute("SELECT 1 FROM geomlops.api_keys WHERE key_hash = %s", (digest,)).fetchone():
        return False
    conn.execute(
        "UPDATE geomlops.api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL",
        (ADMIN_IDENTITY,),
    )
    store_key(conn, ADMIN_IDENTITY, key, [Role.ADMIN.value])
    return True


def require_admin(conn: psycopg.Connection, key: str | None) -> str:
    """The name behind ``key`` if it is an active administrator key; AuthError otherwise.

    Keys are managed through the database, whose credentials the local CLI holds anyway;
    checking the caller's own key here is what makes key management follow the roles,
    so a writer's key (or a revoked one) in ``GEOMLOPS_API_KEY`` cannot mint an admin key.
    """
    if not key:
        raise AuthError("managing API keys needs an administrator key", hint=ADMIN_KEY_HINT)
    row = conn.execute(
        "SELECT name, roles FROM geomlops.api_keys WHERE key_hash = %s AND revoked_at IS NULL",
        (hash_key(key),),
    ).fetchone()
    if row is None:
        raise AuthError(
            "managing API keys needs an administrator key; the key in use is unknown or revoked",
            hint=ADMIN_KEY_HINT,
        )
    if Role.ADMIN.value not in row[1]:
        raise AuthError(
            f"managing API keys needs the admin role; {row[0]!r} has {', '.join(sorted(row[1]))}",
            hint=ADMIN_KEY_HINT,
        )
    return str(row[0])
