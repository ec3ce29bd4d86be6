"""Who is calling: a named identity with roles, from an API key or an OIDC token.

Every write is made by an identity, so later steps (promotion, audit) can tell who did
what. Roles are few and fixed: ``writer`` writes catalog items, ``approver`` promotes model
versions, ``admin`` may do everything including managing keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Role(StrEnum):
    """What an identity is allowed to do."""

    WRITER = "writer"
    APPROVER = "approver"
    ADMIN = "admin"


ROLE_NAMES: tuple[str, ...] = tuple(r.value for r in Role)


@dataclass(frozen=True)
class Identity:
    """An authenticated caller."""

    name: str
    roles: frozenset[Role]
    via: Literal["api-key", "oidc"]

    def has_any(self, *roles: Role) -> bool:
        """True when the identity holds one of ``roles``, or is an administrator."""
        return Role.ADMIN in self.roles or any(r in self.roles for r in roles)


def parse_roles(values: object) -> frozenset[Role]:
    """Known roles among ``values`` (a list, or a space/comma-separated string); others drop."""
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    if not isinstance(values, (list, tuple, set, frozenset)):
        return frozenset()
    return frozenset(Role(v) for v in values if isinstance(v, str) and v in ROLE_NAMES)
