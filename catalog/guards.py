"""What the STAC API checks in a write before stac-fastapi or PgSTAC sees it.

stac-fastapi-pgstac stores what it is given: a 60 MB item, an item of 20,000 assets, an
imagery item posted into ``models``, a latitude of 200. A POST to a collection that does
not exist failed inside PgSTAC with a 500 (and left the connection so the next request
failed too); a duplicate POST got a 409 without a description. This ASGI middleware, inside
the authentication one, answers those itself with a ``{code, description}`` JSON body:

- bodies (POST, PUT, PATCH) over ``GEOMLOPS_STAC_MAX_BODY_BYTES`` → 413, read no further;
- a body that is not a JSON object → 400;
- an item (or each feature of a bulk FeatureCollection) whose collection is missing → 404,
  which names another collection than its URL → 400, that already exists on POST → 409;
- more than ``GEOMLOPS_STAC_MAX_ASSETS`` assets → 413;
- into ``models``: only MLM items, valid against every schema they declare (the catalog's
  offline validator, :mod:`geomlops.catalog.validation`) → else 400 listing the problems;
- everywhere: a valid geometry inside WGS 84's ranges, enclosed by its bbox → else 400.

PATCH bodies are held to the size limit only (a JSON Patch is an array; what it may change
is the governance guard's business). Reads and deletes pass through untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from geomlops.catalog.collections import MODELS
from geomlops.catalog.extensions import MLM_SCHEMA
from geomlops.catalog.mlm import output_kind_problems
from geomlops.catalog.validation import Problem, geometry_problems, stac_problems
from geomlops.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ITEMS = re.compile(r"^/collections/(?P<collection>[^/]+)/items(?:/(?P<item>[^/]+))?/?$")
_COLLECTIONS = re.compile(r"^/collections(?:/(?P<collection>[^/]+))?/?$")
_EXISTS_COLLECTION = "SELECT 1 FROM pgstac.collections WHERE id = $1"
_EXISTS_ITEM = "SELECT 1 FROM pgstac.items WHERE collection = $1 AND id = $2"
_MAX_PROBLEMS = 20


class Refused(Exception):
    """A write refused before it reaches the app, with its status and JSON body."""

    def __init__(
        self, status: int, code: str, description: str, problems: list[str] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.problems = (problems or [])[:_MAX_PROBLEMS]


class CatalogWriteGuard:
    """Refuses oversized, malformed, misplaced or invalid STAC writes (see the module doc)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_body = settings.stac.max_body_bytes
        self.max_assets = settings.stac.max_assets
        self.catalog = settings.catalog

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "")
        if scope["type"] != "http" or method not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        path = scope["path"][len(scope.get("root_path", "")) :] or "/"
        items = _ITEMS.match(path)
        if items is None and _COLLECTIONS.match(path) is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await self._body(scope, receive)
            if method != "PATCH":  # a PATCH may be a JSON Patch array: only its size is ours
                document = _json_object(body)
                if items is not None:
                    await self._check_items(scope, method, items, document)
        except Refused as refused:
            await _send_refusal(send, refused)
            return
        await self.app(scope, replayed(body, receive), send)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise _too_large(int(declared), self.max_body)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Refused(400, "BadRequest", "the client went away before the body arrived")
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                raise _too_large(total, self.max_body)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _check_items(
        self, scope: Scope, method: str, match: re.Match[str], document: dict[str, Any]
    ) -> None:
        collection = match["collection"]
        if not await _exists(scope, _EXISTS_COLLECTION, collection):
            raise Refused(
                404,
                "NotFoundError",
                f"collection {collection!r} does not exist; nothing was written",
            )
        if document.get("type") == "FeatureCollection" and method == "POST":
            features = document.get("features")
            if not isinstance(features, list):
                raise Refused(400, "BadRequest", "features: must be an array of STAC items")
            for index, feature in enumerate(features):
                await self._check_item(scope, method, collection, feature, f"features[{index}]")
            return
        if method == "PUT" and document.get("id") not in (None, match["item"]):
            raise Refused(
                400,
                "BadRequest",
                f"id: {document.get('id')!r} differs from the item in the URL {match['item']!r}",
            )
        await self._check_item(scope, method, collection, document, "$")

    async def _check_item(
        self, scope: Scope, method: str, collection: str, item: Any, where: str
    ) -> None:
        if not isinstance(item, dict):
            raise Refused(400, "BadRequest", f"{where}: an item must be a JSON object")
        item_id = item.get("id")
        named = item.get("collection")
        if named is not None and named != collection:
            raise Refused(
                400,
                "BadRequest",
                f"{where}.collection: item {item_id!r} names collection {named!r}, but is "
                f"written to {collection!r}",
            )
        assets = item.get("assets")
        if isinstance(assets, dict) and len(assets) > self.max_assets:
            raise Refused(
                413,
                "PayloadTooLarge",
                f"{where}.assets: item {item_id!r} has {len(assets)} assets, more than the "
                f"{self.max_assets} accepted (GEOMLOPS_STAC_MAX_ASSETS)",
            )
        problems = self._problems(collection, item)
        if problems:
            raise Refused(
                400,
                "ValidationError",
                f"{where}: item {item_id!r} is not a valid {collection} item "
                f"({len(problems)} problem(s)); nothing was written",
                [str(p) for p in problems],
            )
        duplicate = (
            method == "POST"
            and isinstance(item_id, str)
            and await _exists(scope, _EXISTS_ITEM, collection, item_id)
        )
        if duplicate:
            raise Refused(
                409,
                "ConflictError",
                f"item {item_id!r} already exists in collection {collection!r}; "
                "PUT it to /collections/{collection}/items/{id} to replace it",
            )

    def _problems(self, collection: str, item: dict[str, Any]) -> list[Problem]:
        item_id = str(item.get("id") or "<no id>")
        if item.get("type") != "Feature":
            return [
                Problem(item_id, "$.type", "type", f"expected 'Feature', got {item.get('type')!r}")
            ]
        if collection == MODELS:
            extensions = item.get("stac_extensions")
            if not isinstance(extensions, list) or not any(
                isinstance(u, str) and "/mlm/" in u for u in extensions
            ):
                return [
                    Problem(
                        item_id,
                        "$.stac_extensions",
                        "mlm-required",
                        f"collection {MODELS!r} holds model versions: the item must declare the "
                        f"MLM extension ({MLM_SCHEMA})",
                    )
                ]
            return stac_problems(item) + output_kind_problems(item)
        return geometry_problems(item)  # other collections: geometry, ranges, bbox


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise Refused(400, "BadRequest", f"the body is not JSON: {error}") from None
    except ValueError as error:
        raise Refused(400, "BadRequest", str(error)) from None
    if not isinstance(document, dict):
        raise Refused(400, "BadRequest", "the body must be a JSON object")
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"the body holds {name}, which JSON does not allow")


async def _exists(scope: Scope, sql: str, *args: str) -> bool:
    pool = scope["app"].state.readpool
    async with pool.acquire() as conn:
        return await conn.fetchval(sql, *args) is not None


def _too_large(size: int, limit: int) -> Refused:
    return Refused(
        413,
        "PayloadTooLarge",
        f"the body is {size} bytes or more, over the {limit} accepted "
        "(GEOMLOPS_STAC_MAX_BODY_BYTES); nothing was written",
    )


def replayed(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the client's own messages (a disconnect, say)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_refusal(send: Send, refused: Refused) -> None:
    payload: dict[str, Any] = {"code": refused.code, "description": refused.description}
    if refused.problems:
        payload["problems"] = refused.problems
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
