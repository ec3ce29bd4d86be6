"""JSON schemas of STAC and its extensions, resolved from a local mirror first.

Validation must work offline (DESIGN.md §4): every schema URL, including the ones a schema
``$ref``-erences, is mapped to ``<mirror>/<host>/<path>``. Only when the mirror lacks a file
and the settings allow it is the network asked. A schema that cannot be found either way is
reported as :class:`SchemaUnavailable`, which validation turns into a problem naming the URL
(this is how an unknown extension version is reported).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable

from geomlops.settings import CatalogSettings, get_settings

STAC_ITEM_SCHEMA = "https://schemas.stacspec.org/v{version}/item-spec/json-schema/item.json"
STAC_COLLECTION_SCHEMA = (
    "https://schemas.stacspec.org/v{version}/collection-spec/json-schema/collection.json"
)


class SchemaUnavailable(Exception):
    """A schema URL is neither in the mirror nor (when allowed) on the network."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"schema {url} is unavailable: {reason}")
        self.url = url
        self.reason = reason


def mirror_path(mirror: Path, url: str) -> Path:
    """Where ``url`` lives in a mirror laid out as ``<host>/<path>``."""
    parts = urlsplit(url)
    return mirror / parts.netloc / parts.path.lstrip("/")


class SchemaStore:
    """Loads schemas by URL from the mirror (and the network when allowed), once each."""

    def __init__(self, mirror: Path | None, allow_network: bool = False) -> None:
        self.mirror = mirror
        self.allow_network = allow_network
        self._cache: dict[str, dict[str, Any]] = {}
        self.registry: Registry = Registry(retrieve=self._retrieve)  # type: ignore[call-arg]

    def _load(self, url: str) -> dict[str, Any]:
        url = url.split("#", 1)[0]
        if url in self._cache:
            return self._cache[url]
        tried: list[str] = []
        if self.mirror is not None:
            path = mirror_path(self.mirror, url)
            if path.is_file():
                self._cache[url] = json.loads(path.read_text())
                return self._cache[url]
            tried.append(f"not in the mirror (looked for {path})")
        else:
            tried.append("no schema mirror is configured (GEOMLOPS_SCHEMA_MIRROR)")
        if not self.allow_network:
            tried.append("network fallback is off (GEOMLOPS_SCHEMA_NETWORK)")
            raise SchemaUnavailable(url, "; ".join(tried))
        import httpx

        try:
            response = httpx.get(url, timeout=30, follow_redirects=True)
            response.raise_for_status()
            self._cache[url] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            tried.append(f"download failed ({exc})")
            raise SchemaUnavailable(url, "; ".join(tried)) from exc
        return self._cache[url]

    def _retrieve(self, uri: str) -> Resource[Any]:
        try:
            return Resource.from_contents(self._load(uri))
        except SchemaUnavailable as exc:
            # an attrs exception class: mypy's attrs plugin does not see its `ref` field
            raise NoSuchResource(ref=uri) from exc  # type: ignore[call-arg]

    def schema(self, url: str) -> dict[str, Any]:
        """The schema at ``url`` (raises :class:`SchemaUnavailable`)."""
        return self._load(url)

    def validator(self, url: str) -> Any:
        """A jsonschema validator for ``url`` that resolves every ``$ref`` through this store."""
        import jsonschema.validators

        schema = self._load(url)
        cls = jsonschema.validators.validator_for(schema)
        return cls(schema, registry=self.registry)


def unresolvable_url(exc: Unresolvable) -> str:
    """The URL a failed ``$ref`` pointed at, for messages."""
    return str(getattr(exc, "ref", exc))


@lru_cache(maxsize=4)
def _store(mirror: Path | None, allow_network: bool) -> SchemaStore:
    return SchemaStore(mirror, allow_network)


def schema_store(settings: CatalogSettings | None = None) -> SchemaStore:
    """The process-wide store for these settings (schemas are parsed once)."""
    settings = settings or get_settings().catalog
    return _store(settings.schema_mirror, settings.schema_network)
