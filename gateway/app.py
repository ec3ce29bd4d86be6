"""The gateway's app factory: the only way the gateway is assembled (tests call it too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from geomlops.gateway import assets, errors, mappage, ogc, review, tiles
from geomlops.gateway.auth import Authenticator
from geomlops.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway: OGC API - Processes, tiles, asset hrefs, the map page and its review."""
    settings = settings or get_settings()
    authenticator = Authenticator(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(tiles.warm_up, settings)
        yield
        await authenticator.close()

    app = FastAPI(
        title="geomlops gateway",
        description="OGC API - Processes - Part 1: Core 1.0, tiles and the map page.",
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.authenticator = authenticator
    errors.install(app)
    app.include_router(ogc.router)
    app.include_router(assets.router)
    tiles.install(app, settings)
    mappage.install(app)
    review.install(app)
    return app
