"""The local stand-in for Seldon's executor: walks the graph, speaks the Seldon protocol.

In a cluster the Seldon operator puts an executor in front of the components; it receives
``/api/v1.0/predictions`` and calls each graph node's microservice in turn. Locally this
app does the same for the graph in the generated SeldonDeployment, with the executor's
rules for the node types that manifest uses:

- ``MODEL``: ``POST /api/v1.0/predictions``; its answer goes on to its child, if any;
- ``TRANSFORMER``: ``POST /transform-input``, then the child gets the result;
- ``OUTPUT_TRANSFORMER``: the child first, then ``POST /transform-output`` with its answer.

A component's error (any non-200) ends the walk and is returned as it came, status and
body: a bad image gets the model's 4xx message, not a gateway error. Bodies are passed on
as bytes, never parsed here, so the graph adds as little time as it can.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from geomlops.errors import ValidationFailed
from geomlops.serving.manifest import graph_nodes

SUPPORTED_TYPES = {"MODEL", "TRANSFORMER", "OUTPUT_TRANSFORMER"}
_JSON = "application/json"


def _failure(status: int, message: str, reason: str) -> JSONResponse:
    """An error in the body format the Seldon wrapper and executor use."""
    body = {"status": {"code": -1, "info": message, "reason": reason, "status": "FAILURE"}}
    return JSONResponse(body, status_code=status)


def check_graph(graph: dict[str, Any], endpoints: dict[str, str]) -> None:
    """Refuse a graph this router cannot run, before anything starts."""
    problems = []
    for node in graph_nodes(graph):
        if node.get("type") not in SUPPORTED_TYPES:
            problems.append(f"node {node.get('name')!r}: type {node.get('type')!r} not supported")
        if len(node.get("children") or []) > 1:
            problems.append(f"node {node.get('name')!r}: more than one child needs a ROUTER")
        if node.get("name") not in endpoints:
            problems.append(f"node {node.get('name')!r}: no running component")
    if problems:
        raise ValidationFailed("the local router cannot run this graph", problems)


class GraphExecutor:
    """Runs one request through the graph over HTTP (keep-alive connections)."""

    def __init__(
        self, graph: dict[str, Any], endpoints: dict[str, str], client: httpx.AsyncClient
    ) -> None:
        check_graph(graph, endpoints)
        self.graph = graph
        self.endpoints = endpoints
        self.client = client

    async def _post(self, node: dict[str, Any], path: str, body: bytes) -> httpx.Response:
        return await self.client.post(
            self.endpoints[node["name"]] + path, content=body, headers={"content-type": _JSON}
        )

    async def run(self, node: dict[str, Any], body: bytes) -> tuple[int, bytes]:
        """(status, body) of ``node`` for ``body``, following Seldon's executor."""
        kind = node["type"]
        child = (node.get("children") or [None])[0]
        if kind == "OUTPUT_TRANSFORMER":
            if child is not None:
                status, body = await self.run(child, body)
                if status != 200:
                    return status, body
            answer = await self._post(node, "/transform-output", body)
            return answer.status_code, answer.content
        path = "/api/v1.0/predictions" if kind == "MODEL" else "/transform-input"
        answer = await self._post(node, path, body)
        if answer.status_code != 200 or child is None:
            return answer.status_code, answer.content
        return await self.run(child, answer.content)


def create_router_app(
    graph: dict[str, Any],
    endpoints: dict[str, str],
    *,
    deployment: str,
    max_body_bytes: int,
    timeout: float = 120.0,
    on_ready: Callable[[], None] | None = None,
) -> Starlette:
    """The router for ``graph``, whose nodes' microservices listen at ``endpoints``."""
    check_graph(graph, endpoints)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_keepalive_connections=16, keepalive_expiry=60)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            state["executor"] = GraphExecutor(graph, endpoints, client)
            state["client"] = client
            if on_ready is not None:
                on_ready()
            yield

    async def predictions(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and int(declared) > max_body_bytes:
            return _failure(
                413,
                f"request body is {declared} bytes, more than the {max_body_bytes} accepted; "
                'send large scenes by reference: {"jsonData": {"url": "s3://…"}}',
                "REQUEST_TOO_LARGE",
            )
        body = await request.body()
        if len(body) > max_body_bytes:
            return _failure(413, "request body too large", "REQUEST_TOO_LARGE")
        try:
            status, answer = await state["executor"].run(graph, body)
        except httpx.HTTPError as error:
            return _failure(502, f"a graph component did not answer: {error}", "ENGINE_ERROR")
        return Response(answer, status_code=status, media_type=_JSON)

    async def _component_metadata(name: str) -> dict[str, Any]:
        answer = await state["client"].get(endpoints[name] + "/metadata")
        answer.raise_for_status()
        return answer.json()

    async def metadata(_: Request) -> Response:
        names = [node["name"] for node in graph_nodes(graph)]
        try:
            found = await asyncio.gather(*(_component_metadata(n) for n in names))
        except httpx.HTTPError as error:
            return _failure(502, f"a component's metadata is unavailable: {error}", "NO_METADATA")
        models = dict(zip(names, found, strict=True))
        # The request reaches the first node that is not an output transformer: the model,
        # or a pipeline's mask model.
        first = next(n for n in graph_nodes(graph) if n["type"] != "OUTPUT_TRANSFORMER")["name"]
        return JSONResponse(
            {
                "name": deployment,
                "models": models,
                "graphinputs": models[first].get("inputs", []),
                "graphoutputs": models[graph["name"]].get("outputs", []),
            }
        )

    async def component_metadata(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in endpoints:
            return _failure(404, f"no graph node named {name!r}", "NOT_FOUND")
        try:
            return JSONResponse(await _component_metadata(name))
        except httpx.HTTPError as error:
            return _failure(502, f"{name}'s metadata is unavailable: {error}", "NO_METADATA")

    async def live(_: Request) -> Response:
        return PlainTextResponse("live")

    async def ready(_: Request) -> Response:
        async def ping(url: str) -> bool:
            try:
                return (await state["client"].get(url + "/health/ping", timeout=5)).text == "pong"
            except httpx.HTTPError:
                return False

        results = await asyncio.gather(*(ping(url) for url in endpoints.values()))
        status = dict(zip(endpoints, results, strict=True))
        code = 200 if all(results) else 503
        return JSONResponse({"ready": all(results), "components": status}, status_code=code)

    async def ping(_: Request) -> Response:
        return PlainTextResponse("pong")

    return Starlette(
        routes=[
            Route("/api/v1.0/predictions", predictions, methods=["POST"]),
            Route("/api/v1.0/metadata", metadata, methods=["GET"]),
            Route("/api/v1.0/metadata/{name}", component_metadata, methods=["GET"]),
            Route("/live", live, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/health/ping", ping, methods=["GET"]),
            Route("/api/v1.0/health/status", ready, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
