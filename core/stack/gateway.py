"""The stack's ``gateway`` service: OGC API - Processes, tiles and the map page."""

from __future__ import annotations

from collections.abc import Sequence

from geomlops.settings import LOOPBACK
from geomlops.stack.processes import ProcessService


class GatewayService(ProcessService):
    """``geomlops.gateway.app:create_app`` on uvicorn, started by module name.

    The kernel names the entry point but never imports ``geomlops.gateway`` (DESIGN.md §2).
    It finds the STAC API, the Argo API and S3 through the remembered ports on each request,
    so it starts with the others and needs no restart when one of them moves.
    """

    name = "gateway"
    port_roles = ("gateway",)
    health_path = "/conformance"

    def argv(self) -> Sequence[str]:
        return [
            self.ctx.python, "-m", "uvicorn", "geomlops.gateway.app:create_app", "--factory",
            "--host", LOOPBACK,
            "--port", str(self.port),
            "--no-access-log",
        ]  # fmt: skip
