"""The roles a batch-inference run needs, checked before any of its work starts.

A run is done on its submitter's behalf (locally its pods use their key): plan and predict
only read, but publish writes prediction items to the catalog. Checked only at publish, a
key without that role computed every tile first and then failed, three times over, and
`infer resume` did it again. So ``geomlops infer`` and ``infer resume`` ask the catalog
who the caller is (``/auth/whoami``, the one place credentials are checked) and refuse a
caller who lacks a role, naming it, before anything is uploaded or submitted.
"""

from __future__ import annotations

from geomlops.catalog.identity import Identity, Role
from geomlops.errors import AuthError
from geomlops.settings import Settings

RUN_ROLES: dict[Role, str] = {
    Role.WRITER: "its publish step writes the prediction items to the catalog",
}
"""Each role a batch-inference run needs (an admin holds them all), and what needs it."""


def missing_roles(identity: Identity) -> dict[Role, str]:
    """The roles of :data:`RUN_ROLES` that ``identity`` lacks, with what needs each."""
    return {role: why for role, why in RUN_ROLES.items() if not identity.has_any(role)}


def check_run_roles(settings: Settings) -> Identity:
    """The caller, if they hold every role a run needs; AuthError naming what is missing."""
    from geomlops.catalog.client import CatalogClient

    with CatalogClient.from_settings(settings) as catalog:
        identity = catalog.whoami()
    missing = missing_roles(identity)
    if missing:
        held = sorted(r.value for r in identity.roles) or "none"
        needs = "; ".join(f"the {role.value} role: {why}" for role, why in missing.items())
        raise AuthError(
            f"identity {identity.name!r} (roles {held}) cannot run batch inference: it needs "
            f"{needs}. Nothing was submitted.",
            hint="use a key that holds "
            + " and ".join(r.value for r in missing)
            + " (an admin creates one: `geomlops keys create NAME --role writer`)",
        )
    return identity
