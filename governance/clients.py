"""The two stores every governance question is asked of: the STAC catalog and the registry.

Decisions, lineage and their CLI all open both from the settings, accept ready-made ones
(tests, or a caller that already holds them), and close the catalog's connections when done.
"""

from __future__ import annotations

from typing import Any, Self

from geomlops.catalog.client import CatalogClient
from geomlops.connections import get_connections
from geomlops.settings import Settings, get_settings


class CatalogAndRegistry:
    """A catalog client and an MLflow client, opened from the settings unless given."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        catalog: CatalogClient | None = None,
        mlflow_client: Any = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.catalog = catalog or self._open_catalog(self.settings)
        self.mlflow = mlflow_client or get_connections(self.settings).mlflow_client()

    def _open_catalog(self, settings: Settings) -> CatalogClient:
        """The catalog as the acting identity (its API key from the settings)."""
        return CatalogClient.from_settings(settings)

    def close(self) -> None:
        """Release the catalog client's connections."""
        self.catalog.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
