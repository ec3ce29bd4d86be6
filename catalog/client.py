"""The one way components read and write the catalog: the STAC API with a credential.

Writes go through the transactions extension (so they pass the same authentication as any
client's) and are validated offline first: an invalid item never reaches the server. Each
write is one request that PgSTAC applies in one transaction, so a failed write leaves
nothing behind. ``upsert_item`` compares with what is stored and reports ``"unchanged"``
without writing when nothing differs, which makes re-registration a no-op.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx
import pystac

from geomlops.catalog.identity import Identity, parse_roles
from geomlops.catalog.mlm import with_derived_fields
from geomlops.catalog.schemas import SchemaStore
from geomlops.catalog.validation import validate_stac
from geomlops.connections import get_connections
from geomlops.errors import (
    AuthError,
    ConflictError,
    GeomlopsError,
    NotFoundError,
    ServiceUnavailable,
    StackNotRunning,
    ValidationFailed,
)
from geomlops.settings import Settings, get_settings
from geomlops.stack.state import StatePaths, existing_secret

UpsertResult = Literal["created", "updated", "unchanged"]
ItemLike = pystac.Item | Mapping[str, Any]

# Links the API generates for every item it returns; they are not part of what was written.
SERVER_LINK_RELS = frozenset({"self", "parent", "root", "collection", "items"})


def configured_api_key(settings: Settings) -> str | None:
    """``GEOMLOPS_API_KEY`` when set, else the administrator key of the local stack."""
    if settings.auth.api_key is not None:
        return settings.auth.api_key.get_secret_value()
    from geomlops.catalog.bootstrap import ADMIN_KEY_SECRET

    stored = existing_secret(StatePaths(settings.stack.home), ADMIN_KEY_SECRET)
    return stored.get("key") if stored else None


def item_dict(item: ItemLike) -> dict[str, Any]:
    """An item as plain JSON data (a copy)."""
    if isinstance(item, pystac.Item):
        data: Any = item.to_dict(include_self_link=False, transform_hrefs=False)
    else:
        data = item
    return json.loads(json.dumps(data, default=str))


def without_server_links(item: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of an item without the links the API generates."""
    data = dict(item)
    data["links"] = [
        link for link in data.get("links", []) if link.get("rel") not in SERVER_LINK_RELS
    ]
    return data


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def comparable(item: Mapping[str, Any]) -> Any:
    """An item reduced to what PgSTAC keeps, for "did anything change?".

    PgSTAC drops null-valued fields when it stores an item, so null and absent are equal.
    """
    return _drop_nulls(without_server_links(item))


class CatalogClient:
    """Read and write STAC items through the STAC API.

    Use :meth:`from_settings` for the platform's catalog; pass ``api_key=None`` for
    read-only use.
    """

    def __init__(
        self,
        stac_url: str,
        api_key: str | None = None,
        *,
        schemas: SchemaStore | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.stac_url = stac_url.rstrip("/")
        self.api_key = api_key
        self.schemas = schemas
        headers = {"Accept": "application/geo+json, application/json"}
        if api_key:
            headers["X-API-Key"] = api_key
        self._http = httpx.Client(
            base_url=self.stac_url, headers=headers, timeout=timeout, transport=transport
        )

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> CatalogClient:
        """A client for the configured catalog, with the configured key (if any)."""
        settings = settings or get_settings()
        return cls(get_connections(settings).stac_url, configured_api_key(settings))

    def close(self) -> None:
        """Release the HTTP connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- HTTP, with errors translated once, here ------------------------------------------
    def _request(
        self, method: str, path: str, *, json_body: Any = None, params: Any = None
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json_body, params=params)
        except httpx.ConnectError as exc:
            raise StackNotRunning(
                f"cannot reach the STAC API at {self.stac_url}: {exc}",
                hint="run `geomlops up` first (or set GEOMLOPS_STAC_URL)",
            ) from exc
        except httpx.TimeoutException as exc:
            raise ServiceUnavailable(
                f"the STAC API at {self.stac_url} did not answer {method} {path} in time: {exc}",
                hint="`geomlops status` shows whether it or the PostgreSQL behind it is down",
            ) from exc
        except httpx.HTTPError as exc:
            raise GeomlopsError(f"{method} {self.stac_url}{path} failed: {exc}") from exc
        if response.is_success:
            return response
        raise self._error(method, path, response)

    def _error(self, method: str, path: str, response: httpx.Response) -> GeomlopsError:
        problems: list[str] = []
        try:
            body = response.json()
            description = body.get("description") or body.get("detail") or response.text
            problems = [str(p) for p in body.get("problems") or []]  # the write guard's list
        except (ValueError, AttributeError):
            description = response.text
        where = f"{method} {path}"
        status = response.status_code
        if status == 401:
            return AuthError(
                f"{where}: not authenticated ({description})",
                hint="set GEOMLOPS_API_KEY to a key from `geomlops keys create`",
            )
        if status == 403:
            return AuthError(f"{where}: not allowed ({description})")
        if status == 404:
            return NotFoundError(f"{where}: not found ({description})")
        if status == 409:
            return ConflictError(f"{where}: conflict ({description})")
        if status in (400, 422):
            return ValidationFailed(
                f"{where}: rejected by the STAC API", problems=[description, *problems]
            )
        if status >= 500:
            return ServiceUnavailable(
                f"{where}: the STAC API at {self.stac_url} failed (HTTP {status}: "
                f"{str(description)[:300]})",
                hint="`geomlops status` shows whether the PostgreSQL behind it is down; "
                "`geomlops up` restarts it; then run the command again",
            )
        return GeomlopsError(f"{where}: HTTP {status}: {description}")

    # --- reads ----------------------------------------------------------------------------
    def whoami(self) -> Identity:
        """The identity the API sees behind this client's credential."""
        from geomlops.catalog.auth import WHOAMI_PATH

        if not self.api_key:
            raise AuthError(
                "no credential: the platform cannot tell who you are",
                hint="set GEOMLOPS_API_KEY to a key from `geomlops keys create NAME --role …`",
            )
        data = self._request("GET", WHOAMI_PATH).json()
        return Identity(data["name"], parse_roles(data["roles"]), via=data["via"])

    def get_item_dict(self, collection: str, item_id: str) -> dict[str, Any]:
        """The stored item as JSON (raises NotFoundError)."""
        return self._request("GET", _item_path(collection, item_id)).json()

    def get_item(self, collection: str, item_id: str) -> pystac.Item:
        """The stored item (raises NotFoundError)."""
        return to_item(self.get_item_dict(collection, item_id))

    def _find(self, collection: str, item_id: str) -> dict[str, Any] | None:
        try:
            return self.get_item_dict(collection, item_id)
        except NotFoundError:
            return None

    def iter_search(
        self,
        *,
        collections: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        bbox: Sequence[float] | None = None,
        intersects: Mapping[str, Any] | None = None,
        datetime: str | None = None,
        filter: Mapping[str, Any] | None = None,
        limit: int = 100,
        max_items: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Items matching every criterion given, following ``next`` links page by page."""
        body: dict[str, Any] = {"limit": limit}
        for key, value in (
            ("collections", collections),
            ("ids", ids),
            ("bbox", bbox),
            ("intersects", intersects),
            ("datetime", datetime),
        ):
            if value is not None:
                body[key] = list(value) if isinstance(value, (list, tuple)) else value
        if filter is not None:
            body["filter"] = filter
            body["filter-lang"] = "cql2-json"
        yielded = 0
        request: tuple[str, str, Any] | None = ("POST", "/search", body)
        while request is not None:
            method, url, payload = request
            page = self._request(method, url, json_body=payload if method == "POST" else None)
            data = page.json()
            for feature in data.get("features", []):
                yield feature
                yielded += 1
                if max_items is not None and yielded >= max_items:
                    return
            request = _next_request(data, body)

    def search(self, **criteria: Any) -> list[pystac.Item]:
        """Like :meth:`iter_search`, as a list of pystac items."""
        return [to_item(f) for f in self.iter_search(**criteria)]

    # --- writes ---------------------------------------------------------------------------
    def prepare(self, item: ItemLike, collection: str | None = None) -> dict[str, Any]:
        """The item as it will be written: collection set, validated (raises ValidationFailed).

        Server-generated links are dropped and one ``collection`` link added, which STAC 1.1
        requires of an item that names its collection; derived fields are set
        (:func:`geomlops.catalog.mlm.with_derived_fields`).
        """
        data = item_dict(item)
        collection = collection or data.get("collection")
        if not collection:
            raise ValidationFailed(
                f"item {data.get('id', '<no id>')!r} names no collection",
                hint="set its 'collection' field or pass --collection",
            )
        if data.get("collection") not in (None, collection):
            raise ValidationFailed(
                f"item {data.get('id')!r} belongs to {data['collection']!r}, not {collection!r}"
            )
        data["collection"] = collection
        data = with_derived_fields(without_server_links(data))
        data["links"].append(
            {
                "rel": "collection",
                "href": f"{self.stac_url}/collections/{quote(collection, safe='')}",
                "type": "application/json",
            }
        )
        validate_stac([data], self.schemas)
        return data

    def create_item(self, item: ItemLike, collection: str | None = None) -> None:
        """Add a new item (raises ConflictError if the id is taken)."""
        data = self.prepare(item, collection)
        self._request(
            "POST", f"/collections/{quote(data['collection'], safe='')}/items", json_body=data
        )

    def upsert_item(self, item: ItemLike, collection: str | None = None) -> UpsertResult:
        """Create the item, replace it if it differs, or leave it: returns what happened."""
        data = self.prepare(item, collection)
        existing = self._find(data["collection"], data["id"])
        if existing is None:
            try:
                self.create_item(data)
                return "created"
            except ConflictError:  # created meanwhile by someone else: replace it below
                existing = self.get_item_dict(data["collection"], data["id"])
        if comparable(existing) == comparable(data):
            return "unchanged"
        self._request("PUT", _item_path(data["collection"], data["id"]), json_body=data)
        return "updated"

    def deprecate(
        self, collection: str, item_id: str, *, latest: str | None = None
    ) -> UpsertResult:
        """Mark an item ``deprecated`` (version extension), linking its successor if given."""
        from pystac.extensions.version import VersionExtension

        item = to_item(self.get_item_dict(collection, item_id))
        item.links = [link for link in item.links if link.rel not in SERVER_LINK_RELS]
        version = VersionExtension.ext(item, add_if_missing=True)
        version.deprecated = True
        if latest is not None:
            item.links = [link for link in item.links if link.rel != "latest-version"]
            item.add_link(
                pystac.Link(
                    "latest-version",
                    f"{self.stac_url}{_item_path(collection, latest)}",
                    media_type=pystac.MediaType.GEOJSON,
                )
            )
        return self.upsert_item(item, collection)

    def delete_item(self, collection: str, item_id: str) -> None:
        """Remove an item (raises NotFoundError if there is none)."""
        self._request("DELETE", _item_path(collection, item_id))


def to_item(data: Mapping[str, Any]) -> pystac.Item:
    """A pystac item from JSON; deprecated items are normal catalog content, not a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pystac.errors.DeprecatedWarning)
        return pystac.Item.from_dict(dict(data))


def _item_path(collection: str, item_id: str) -> str:
    return f"/collections/{quote(collection, safe='')}/items/{quote(item_id, safe='')}"


def _next_request(page: Mapping[str, Any], body: Mapping[str, Any]) -> tuple[str, str, Any] | None:
    for link in page.get("links", []):
        if link.get("rel") != "next":
            continue
        if link.get("method", "GET").upper() == "POST":
            return ("POST", link["href"], {**body, **link.get("body", {})})
        return ("GET", link["href"], None)
    return None
