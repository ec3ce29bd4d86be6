"""Bearer tokens from an OIDC issuer: signature, issuer, audience and expiry checked.

The issuer's JSON Web Key Set is fetched from the configured ``http(s)://`` URL and cached
by PyJWT; a token signed by an unknown key triggers one refetch, so key rotation at the
issuer needs no restart.
"""

from __future__ import annotations

from typing import Any

import jwt

from geomlops.catalog.identity import Identity, parse_roles
from geomlops.settings import AuthSettings


class TokenRejected(Exception):
    """The bearer token is not acceptable; the message says why (safe to return)."""


class OidcVerifier:
    """Verifies bearer tokens against one issuer's keys."""

    def __init__(self, settings: AuthSettings) -> None:
        if not settings.oidc_enabled:
            raise ValueError("OIDC is not configured")
        self.settings = settings
        self._jwks = jwt.PyJWKClient(str(settings.oidc_jwks_url), cache_keys=True, timeout=10)

    def verify(self, token: str) -> Identity:
        """The identity a valid token names (raises :class:`TokenRejected`). Blocking."""
        s = self.settings
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=s.oidc_algorithms,
                audience=s.oidc_audience,
                issuer=s.oidc_issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientError as exc:
            raise TokenRejected(f"token signing key not found at the issuer: {exc}") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(f"invalid bearer token: {exc}") from exc
        name = claims.get(s.oidc_identity_claim) or claims["sub"]
        return Identity(str(name), parse_roles(claims.get(s.oidc_roles_claim, [])), via="oidc")
