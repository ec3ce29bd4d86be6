"""The STAC API application: stac-fastapi-pgstac assembled by one factory.

``create_app`` is the only way the API is built; the local stack runs it under uvicorn
(``--factory``) and tests call the same factory, so test wiring cannot drift from what runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings, ServerSettings
from stac_fastapi.pgstac.config import Settings as StacFastapiSettings
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.db import close_db_connection, connect_to_db
from stac_fastapi.pgstac.models.extensions import Extensions
from stac_fastapi.pgstac.types.search import PgstacSearch
from starlette.requests import Request

from geomlops.catalog.auth import CatalogAuthMiddleware
from geomlops.catalog.governed import GovernedModelsMiddleware
from geomlops.catalog.guards import CatalogWriteGuard
from geomlops.connections import get_connections
from geomlops.settings import Settings, get_settings


def postgres_settings(settings: Settings) -> PostgresSettings:
    """PgSTAC connection settings derived from the platform's one database setting."""
    url = urlsplit(get_connections(settings).db_url(settings.db.pgstac_database))
    return PostgresSettings(
        pguser=unquote(url.username or ""),
        pgpassword=unquote(url.password or ""),
        pghost=url.hostname or "127.0.0.1",
        pgport=url.port or 5432,
        pgdatabase=settings.db.pgstac_database,
        # A search page is a few index scans of milliseconds; starting parallel workers for
        # it costs more than it saves (p95 of a bbox+datetime+CQL2 search with 100,000 items
        # went from ~84 ms to see bench/catalog_search.py on 2 cores).
        # The platform's one statement timeout (GEOMLOPS_DB_STATEMENT_TIMEOUT), as every
        # other client of the database has it: no request waits on a lock for ever.
        server_settings=ServerSettings(
            max_parallel_workers_per_gather="0",
            statement_timeout=str(settings.db.statement_timeout * 1000),
            lock_timeout=str(settings.db.statement_timeout * 1000),
        ),
    )


class CatalogCrudClient(CoreCrudClient):
    """stac-fastapi-pgstac's client with two repairs found by stac-api-validator.

    - PgSTAC 0.10 turns a six-number bbox into a PolyhedralSurface and fails with a 500
      ("Unknown geometry type: 13"). STAC API allows 3D bboxes and catalog items have no
      elevation to compare with, so the vertical range is dropped before the search.
    - PgSTAC drops null-valued properties when it stores an item, so an item with a
      ``start_datetime``/``end_datetime`` range comes back without ``datetime``, which STAC
      requires (as null). It is put back on every item served (search, items, item).
    """

    async def _search_base(self, search_request: PgstacSearch, request: Request) -> Any:
        bbox = search_request.bbox
        if bbox is not None and len(bbox) == 6:
            search_request.bbox = (bbox[0], bbox[1], bbox[3], bbox[4])
        collection = await super()._search_base(search_request, request)
        for feature in collection.get("features", []):
            properties = feature.get("properties")
            if isinstance(properties, dict):
                properties.setdefault("datetime", None)
        return collection


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("geomlops")
    except PackageNotFoundError:
        return "0.0.0"


_DATABASE_LOST: tuple[type[Exception], ...] = (
    OSError,  # refused, reset: the server is gone
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # a pooled connection that died under us
    asyncpg.exceptions.QueryCanceledError,  # the statement timeout
)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with a body naming the database, instead of a bare 500 "Internal Server Error"."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return JSONResponse(
        status_code=503,
        content={
            "code": "ServiceUnavailable",
            "description": f"the catalog database (PostgreSQL) is not answering: {text}",
        },
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the STAC API: transactions and filter extensions, writes behind authentication."""
    settings = settings or get_settings()
    pg = postgres_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await connect_to_db(app, postgres_settings=pg, add_write_connection_pool=True)
        yield
        await close_db_connection(app)

    stac_settings = StacFastapiSettings(
        enable_transactions_extensions=True,
        stac_fastapi_title="geomlops catalog",
        stac_fastapi_description="Models, datasets, imagery and predictions of geomlops.",
        stac_fastapi_landing_id="geomlops",
        stac_fastapi_version=_version(),
    )
    # The extensions read their own settings (transactions off by default): pass ours.
    api = instantiate_api(
        client=CatalogCrudClient,
        settings=stac_settings,
        extensions=Extensions(settings=stac_settings),
        lifespan=lifespan,
    )
    for lost in _DATABASE_LOST:
        api.app.add_exception_handler(lost, _database_unavailable)
    # Inside authentication (it needs the identity): what may be written to `models`.
    api.app.add_middleware(GovernedModelsMiddleware)
    # Inside authentication: sizes, collections and item rules of a write (catalog/guards.py).
    api.app.add_middleware(CatalogWriteGuard, settings=settings)
    # Outermost, so a refused request never reaches a route (or a database write).
    api.app.add_middleware(CatalogAuthMiddleware, settings=settings.auth)
    return api.app
