"""Who is calling the gateway: the catalog's identities, checked by the catalog.

Credentials are the catalog's (DESIGN.md §8): an API key (``X-API-Key``, or a ``gml_`` key
as a bearer token) or, when an issuer is configured, an OIDC bearer token. They are checked
by the catalog's ``/auth/whoami`` — the one place credentials are checked, so a revoked key
stops here at once too — and roles are the catalog's :class:`Role`. Every write needs a
role, checked before any work starts; the credential is then forwarded to the Argo API, so
the run is submitted as the caller (its ``creator`` label names them, not the gateway).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request

from geomlops.catalog.auth import WHOAMI_PATH
from geomlops.catalog.identity import Identity, Role, parse_roles
from geomlops.catalog.keys import KEY_PREFIX
from geomlops.connections import get_connections
from geomlops.errors import StackNotRunning
from geomlops.gateway.errors import OgcError
from geomlops.settings import Settings

AUTH_TIMEOUT = 10.0


@dataclass(frozen=True)
class Caller:
    """An authenticated caller and the credential to act on their behalf."""

    identity: Identity
    token: str
    """The API key or bearer token they sent; forwarded to the Argo API as theirs."""

    def require(self, *roles: Role) -> None:
        """Refuse (403) unless the caller holds one of ``roles`` or is an administrator."""
        if not self.identity.has_any(*roles):
            held = sorted(r.value for r in self.identity.roles) or "none"
            raise OgcError(
                403,
                "Forbidden",
                f"identity {self.identity.name!r} has roles {held}; this needs one of "
                f"{[r.value for r in roles]} or admin",
            )


def credential(request: Request) -> tuple[dict[str, str], str] | None:
    """The headers to forward to ``/auth/whoami`` and the bare token, or None if none sent."""
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return {"x-api-key": key}, key
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    if token.startswith(KEY_PREFIX):
        return {"x-api-key": token}, token
    return {"authorization": f"Bearer {token}"}, token


class Authenticator:
    """Asks the catalog who sent a request; one HTTP client for every check."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=AUTH_TIMEOUT)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def caller(self, request: Request) -> Caller:
        """The caller behind the request's credential (401 without a valid one)."""
        sent = credential(request)
        if sent is None:
            raise OgcError(
                401,
                "Unauthorized",
                "this request needs a credential: send an X-API-Key header (`geomlops keys "
                "create NAME --role writer`) or an OIDC bearer token",
            )
        headers, token = sent
        try:
            url = get_connections(self.settings).stac_url + WHOAMI_PATH
            response = await self.http.get(url, headers=headers)
        except (httpx.HTTPError, StackNotRunning) as exc:
            raise OgcError(
                503, "ServiceUnavailable", f"cannot check the credential: {exc}"
            ) from exc
        if response.status_code in (401, 403):
            try:
                reason = response.json().get("description") or response.text
            except ValueError:
                reason = response.text
            raise OgcError(401, "Unauthorized", f"credential refused: {reason}")
        if response.status_code != 200:
            raise OgcError(
                503, "ServiceUnavailable", f"the catalog answered {response.status_code}"
            )
        data = response.json()
        roles = parse_roles(data.get("roles") or [])
        if data.get("via") == "oidc":
            identity = Identity(str(data["name"]), roles, via="oidc")
        else:
            identity = Identity(str(data["name"]), roles, via="api-key")
        return Caller(identity, token)


async def _caller(request: Request) -> Caller:
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.caller(request)


async def _writer(request: Request) -> Caller:
    caller = await _caller(request)
    caller.require(Role.WRITER)
    return caller


async def read_access(request: Request) -> Caller | None:
    """Anyone when read access is public; otherwise any valid credential."""
    authenticator: Authenticator = request.app.state.authenticator
    if authenticator.settings.gateway.read_access == "public":
        return None
    return await _caller(request)


CallerDep = Annotated[Caller, Depends(_caller)]
WriterDep = Annotated[Caller, Depends(_writer)]
"""A caller holding the ``writer`` role (or admin): runs jobs and dismisses them."""
ReaderDep = Annotated[Caller | None, Depends(read_access)]
"""A caller allowed to read tiles and assets (anyone, unless read access is keyed)."""
