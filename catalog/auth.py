"""Authentication of the STAC API: every write needs a credential with the right role.

stac-fastapi deployments leave transactions open by default (stac-fastapi-pgstac#166); this
ASGI middleware closes that gap in front of the whole app, so no route, present or added by
a later extension, escapes it. A write is any POST/PUT/PATCH/DELETE under ``/collections``
(``POST /search`` is a read). Reads are public unless ``GEOMLOPS_AUTH_PUBLIC_READS=false``.

Credentials: ``X-API-Key: <key>`` (or ``Authorization: Bearer <key>``), checked against the
hashed keys in ``geomlops.api_keys`` on every request so a revoked key stops at once; or,
when an issuer is configured, ``Authorization: Bearer <JWT>``. Missing or invalid
credentials get 401, a valid one without the role 403, both with a ``{code, description}``
JSON body. The identity is put in ``request.state.identity`` and each write is logged to
``geomlops.write_log`` with its status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import anyio

from geomlops.catalog.identity import Identity, Role, parse_roles
from geomlops.catalog.keys import KEY_PREFIX, LOG_WRITE_SQL, LOOKUP_SQL, hash_key
from geomlops.catalog.oidc import OidcVerifier, TokenRejected
from geomlops.settings import AuthSettings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRITE_ROLES = (Role.WRITER,)
# Approvers record their decisions (stage, approval, version links) on model items.
DECISION_METHODS = frozenset({"PUT", "PATCH"})
DECISION_PATH = "/collections/models/items/"


def roles_for_write(method: str, path: str) -> tuple[Role, ...]:
    """The roles (besides admin) that may make this write."""
    if method in DECISION_METHODS and path.startswith(DECISION_PATH):
        return (Role.WRITER, Role.APPROVER)
    return WRITE_ROLES


# Liveness probes stay open even when reads are closed.
ALWAYS_OPEN = ("/_mgmt/ping", "/_mgmt/health")
# Answers with the identity behind the credential sent: how the CLI learns, from the one
# place that checks credentials, who is approving, training or registering.
WHOAMI_PATH = "/auth/whoami"


class AuthFailed(Exception):
    """A request is refused; carries its status and ``{code, description}``."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description


def is_write(method: str, path: str) -> bool:
    """Whether a request changes the catalog."""
    return method in WRITE_METHODS and (path == "/collections" or path.startswith("/collections/"))


class CatalogAuthMiddleware:
    """Refuses writes (and, if configured, reads) without a suitable credential."""

    def __init__(self, app: ASGIApp, settings: AuthSettings) -> None:
        self.app = app
        self.settings = settings
        self.oidc = OidcVerifier(settings) if settings.oidc_enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path = scope["path"][len(scope.get("root_path", "")) :] or "/"
        if path == WHOAMI_PATH and method == "GET":
            await self._whoami(scope, send)
            return
        write = is_write(method, path)
        needs_identity = write or (
            not self.settings.public_reads and method != "OPTIONS" and path not in ALWAYS_OPEN
        )
        if not needs_identity:
            await self.app(scope, receive, send)
            return
        try:
            identity = await self._authenticate(scope)
            allowed = roles_for_write(method, path)
            if write and not identity.has_any(*allowed):
                raise AuthFailed(
                    403,
                    "Forbidden",
                    f"identity {identity.name!r} has roles "
                    f"{sorted(r.value for r in identity.roles) or 'none'}; this write needs "
                    f"one of {[r.value for r in allowed]} or admin",
                )
        except AuthFailed as exc:
            await _refuse(send, exc)
            return
        scope.setdefault("state", {})["identity"] = identity
        if not write:
            await self.app(scope, receive, send)
            return

        status = 500

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, remember_status)
        finally:
            await self._log_write(scope, identity, method, path, status)

    async def _whoami(self, scope: Scope, send: Send) -> None:
        try:
            identity = await self._authenticate(scope)
        except AuthFailed as exc:
            await _refuse(send, exc)
            return
        await _send_json(
            send,
            200,
            {"name": identity.name, "roles": sorted(identity.roles), "via": identity.via},
        )

    async def _authenticate(self, scope: Scope) -> Identity:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        api_key = headers.get("x-api-key")
        bearer = None
        authorization = headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            bearer = authorization[7:].strip()
        if api_key is None and bearer is not None and bearer.startswith(KEY_PREFIX):
            api_key, bearer = bearer, None
        if api_key:
            return await self._identity_from_key(scope, api_key.strip())
        if bearer:
            if self.oidc is None:
                raise AuthFailed(
                    401, "Unauthorized", "bearer tokens are not accepted here: send X-API-Key"
                )
            try:
                return await anyio.to_thread.run_sync(self.oidc.verify, bearer)
            except TokenRejected as exc:
                raise AuthFailed(401, "Unauthorized", str(exc)) from exc
        accepted = "an X-API-Key header" + (
            " or an OIDC bearer token" if self.oidc is not None else ""
        )
        raise AuthFailed(401, "Unauthorized", f"this request needs a credential: send {accepted}")

    async def _identity_from_key(self, scope: Scope, key: str) -> Identity:
        pool = scope["app"].state.readpool
        async with pool.acquire() as conn:
            row = await conn.fetchrow(LOOKUP_SQL, hash_key(key))
        if row is None:
            raise AuthFailed(401, "Unauthorized", "unknown or revoked API key")
        return Identity(row["name"], parse_roles(list(row["roles"])), via="api-key")

    async def _log_write(
        self, scope: Scope, identity: Identity, method: str, path: str, status: int
    ) -> None:
        """Append the write to the audit log; a failure here must not fail the write."""
        try:
            pool = scope["app"].state.writepool
            async with pool.acquire() as conn:
                await conn.execute(LOG_WRITE_SQL, identity.name, identity.via, method, path, status)
        except Exception:  # any database trouble: log it, the write itself already happened
            log.exception("could not record %s %s by %s in the write log", method, path, identity)


async def _send_json(
    send: Send, status: int, data: object, extra_headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(data).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, error: AuthFailed) -> None:
    challenge = (
        [(b"www-authenticate", b'Bearer realm="geomlops", ApiKey header="X-API-Key"')]
        if error.status == 401
        else []
    )
    await _send_json(
        send, error.status, {"code": error.code, "description": error.description}, challenge
    )
