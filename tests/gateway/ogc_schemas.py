"""Validate answers against the official OGC API - Processes 1.0 schemas, offline.

The schemas are OpenAPI 3.0 fragments in YAML with relative ``$ref``s; each response file
(``responses/Status.yaml``…) names its body's schema under ``content``. They are read in
place (``GEOMLOPS_GATEWAY_SCHEMA_DIR``) and every ``$ref`` is resolved from local files by a
``referencing`` registry, so nothing is fetched. OpenAPI 3.0 schema objects are draft-4
JSON Schema (``exclusiveMinimum`` as a boolean) plus keywords a validator ignores.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT4

from geomlops.settings import get_settings


def schema_dir() -> Path:
    folder = get_settings().gateway.schema_dir
    assert folder is not None and folder.is_dir(), (
        "the OGC API - Processes schemas are needed (GEOMLOPS_GATEWAY_SCHEMA_DIR)"
    )
    return folder


def _retrieve(uri: str) -> Resource:
    if not uri.startswith("file://"):
        raise NoSuchResource(ref=uri)  # offline: only the local files
    path = Path(uri.removeprefix("file://"))
    return Resource.from_contents(
        yaml.safe_load(path.read_text(encoding="utf-8")), default_specification=DRAFT4
    )


@cache
def validator(response: str, media_type: str = "application/json") -> Draft4Validator:
    """A validator of the body ``responses/<response>.yaml`` describes."""
    path = (schema_dir() / "responses" / f"{response}.yaml").resolve()
    pointer = f"#/content/{media_type.replace('~', '~0').replace('/', '~1')}/schema"
    registry: Registry = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
    return Draft4Validator({"$ref": path.as_uri() + pointer}, registry=registry)


def check(response: str, body: Any) -> None:
    """Assert ``body`` is valid for ``response``, listing every error."""
    errors = sorted(validator(response).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors
    )
