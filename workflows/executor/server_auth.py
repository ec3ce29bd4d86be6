"""Who is calling the local Argo API, and what the app runs on.

Credentials are the catalog's: the token is checked by its ``/auth/whoami``, the one place
credentials are checked, so a revoked key stops here at once too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request

from geomlops.errors import StackNotRunning
from geomlops.settings import Settings, get_settings
from geomlops.workflows.executor.api import LocalExecutor
from geomlops.workflows.executor.argo_wire import (
    ADMIN,
    AUTH_TIMEOUT,
    LOCAL_OUTPUTS,
    PERMISSION_DENIED,
    UNAUTHENTICATED,
    UNAVAILABLE,
    WHOAMI_PATH,
    ArgoError,
)


@dataclass(frozen=True)
class Caller:
    """Who sent the request, as the catalog names them."""

    name: str
    roles: frozenset[str]

    def require(self, *roles: str) -> None:
        """Refuse the request unless the caller holds one of ``roles`` (or is admin)."""
        if ADMIN in self.roles or self.roles & set(roles):
            return
        raise ArgoError(
            PERMISSION_DENIED,
            f"identity {self.name!r} has roles {sorted(self.roles) or 'none'}; this needs one "
            f"of {list(roles)} or admin",
        )


class Backend:
    """The settings and the executor behind the app (resolved per request)."""

    def __init__(self, settings: Settings | None) -> None:
        self.fixed = settings
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """One client for every credential check.

        A new client costs ~70 ms (its TLS context), twenty times the check itself, and a
        waiting CLI polls several times a second.
        """
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=AUTH_TIMEOUT)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def settings(self) -> Settings:
        # Unset: re-read per request, so an app run inside a test follows its environment.
        return self.fixed or get_settings()

    def executor(self) -> LocalExecutor:
        """The local executor, with the templates' output paths mapped per pod."""
        settings = self.settings
        path_map = {**LOCAL_OUTPUTS, **settings.workflows.path_map}
        settings = settings.model_copy(
            update={"workflows": settings.workflows.model_copy(update={"path_map": path_map})}
        )
        return LocalExecutor(settings)

    def templates(self, namespace: str) -> dict[str, dict[str, Any]]:
        """The platform's WorkflowTemplates as installed in ``namespace``."""
        from geomlops.workflows.templates import all_templates, render

        installed = {}
        for name, template in all_templates(self.settings).items():
            manifest = render(template)
            manifest.setdefault("metadata", {})["namespace"] = namespace
            installed[name] = manifest
        return installed

    async def caller(self, request: Request) -> Caller:
        """The identity behind the request's credential, asked of the catalog."""
        from geomlops.connections import get_connections

        headers = {}
        authorization = request.headers.get("authorization") or ""
        scheme, _, token = authorization.strip().partition(" ")
        if request.headers.get("x-api-key"):
            headers["x-api-key"] = request.headers["x-api-key"]
        elif scheme.lower() == "bearer" and token.strip():
            # Argo clients send every token as a bearer token: an OIDC token (a JWT) goes on
            # as one, anything else is one of the catalog's API keys.
            token = token.strip()
            if token.count(".") == 2:
                headers["authorization"] = f"Bearer {token}"
            else:
                headers["x-api-key"] = token
        if not headers:
            raise ArgoError(
                UNAUTHENTICATED,
                "this request needs a credential: send `Authorization: Bearer <API key>`",
            )
        try:
            url = get_connections(self.settings).stac_url + WHOAMI_PATH
            response = await self.http.get(url, headers=headers)
        except (httpx.HTTPError, StackNotRunning) as exc:
            raise ArgoError(UNAVAILABLE, f"cannot check the credential: {exc}") from exc
        if response.status_code in (401, 403):
            try:
                reason = response.json().get("description") or response.text
            except ValueError:
                reason = response.text
            raise ArgoError(UNAUTHENTICATED, f"credential refused: {reason}")
        if response.status_code != 200:
            raise ArgoError(UNAVAILABLE, f"the catalog answered {response.status_code}")
        data = response.json()
        return Caller(name=str(data["name"]), roles=frozenset(data.get("roles") or []))
