"""Settings of the gateway: the platform's HTTP door for people and programs not on the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from geomlops.settings.base import config, shared_data


class GatewaySettings(BaseSettings):
    """OGC API - Processes, tiles, http hrefs and the map page (``geomlops.gateway``)."""

    model_config = config("GEOMLOPS_GATEWAY_")

    url: str | None = Field(
        default=None,
        description="Public URL of an external gateway (`GEOMLOPS_GATEWAY_URL`); unset means "
        "the local stack's `gateway` service. Asset hrefs a browser or QGIS opens start here.",
    )
    port: int = Field(
        default=0, ge=0, le=65535, description="Local `gateway` service port; 0 picks a free one."
    )
    read_access: Literal["public", "keyed"] = Field(
        default="public",
        description="Who may read tiles and assets through the gateway: `public` (anyone who "
        "reaches it) or `keyed` (an API key or bearer token with any role).",
    )
    predict_url: str | None = Field(
        default=None,
        description="The Seldon graph's predictions endpoint the `predict` process forwards "
        "to (`…/api/v1.0/predictions`: a SeldonDeployment's, or `geomlops serve`'s router); "
        "unset means `predict` answers 503 naming this setting.",
    )
    schema_dir: Path | None = Field(
        default_factory=lambda: shared_data("schemas/ogcapi-processes-1.0"),
        description="OGC API - Processes 1.0 OpenAPI fragments (`GEOMLOPS_GATEWAY_SCHEMA_DIR`), "
        "served at `/api` and used to validate answers in tests; unset means "
        "`../shared/data/schemas/ogcapi-processes-1.0` next to the repository.",
    )
    vector_dir: Path | None = Field(
        default_factory=lambda: shared_data("vector"),
        description="Country outlines (`countries.geojson`) the map draws as its basemap, so "
        "it needs no tile server on the internet.",
    )
