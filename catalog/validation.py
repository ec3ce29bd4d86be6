"""Validate STAC items and collections offline, reporting every problem by field.

An object is checked against the STAC core schema of its ``stac_version`` and the schema of
every URL in its ``stac_extensions`` (any MLM or other extension version works as long as
its schema resolves through :mod:`geomlops.catalog.schemas`). Then come the rules no schema
expresses: the geometry must be valid, ``bbox`` must enclose it, and a datetime range must
not end before it starts. Each problem names the object, the JSON path and the rule broken.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

from jsonschema.exceptions import ValidationError, best_match
from referencing.exceptions import Unresolvable

from geomlops.catalog.schemas import (
    STAC_COLLECTION_SCHEMA,
    STAC_ITEM_SCHEMA,
    SchemaStore,
    SchemaUnavailable,
    schema_store,
    unresolvable_url,
)
from geomlops.errors import ValidationFailed

BBOX_TOLERANCE_DEG = 1e-6


@dataclass(frozen=True)
class Problem:
    """One broken rule: which object, where in it, which rule, and what is wrong."""

    object_id: str
    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.object_id}: {self.path}: {self.message} (rule: {self.rule})"


def schema_label(url: str) -> str:
    """A short name for a schema URL in messages: ``mlm v1.6.0``, ``STAC item v1.1.0``."""
    parts = urlsplit(url).path.strip("/").split("/")
    if urlsplit(url).netloc == "schemas.stacspec.org" and len(parts) >= 2:
        return f"STAC {parts[1].removesuffix('-spec')} {parts[0]}"
    if len(parts) >= 2:
        return f"{parts[0]} {parts[1]}"
    return url


def _deepest(error: ValidationError) -> ValidationError:
    """Descend through anyOf/oneOf to the error that explains the failure best.

    The branch the author meant is the one that got furthest into the object and, among
    those, broke the fewest rules: a Polygon with bad coordinates is reported as bad
    coordinates, not as "should be null" or "is not a Point".
    """

    def reach(e: ValidationError) -> int:
        return max([len(e.absolute_path), *(reach(c) for c in e.context)])

    while error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for e in error.context:
            branches.setdefault(e.relative_schema_path[0], []).append(e)
        best = max(branches.values(), key=lambda b: (max(map(reach, b)), -len(b)))
        error = best_match(best) or error
    return error


def _message(error: ValidationError) -> str:
    """Jsonschema's message, rephrased where it is cryptic."""
    if error.validator == "not" and error.validator_value == {}:
        field = error.path[-1] if error.path else "this field"
        if error.json_path == "$.collection":
            return "'collection' is set but no link has rel 'collection' (add one, or drop it)"
        return f"{field!r} is not allowed here"
    return error.message


def _schema_comment(error: ValidationError) -> str | None:
    """The nearest ``$comment`` the schema authors left above a generic failure.

    Conditional rules (MLM: "named bands need a bands definition") fail with messages like
    "None of [...] are valid"; the authors' comment says what was meant.
    """
    if error.validator not in ("contains", "anyOf", "oneOf", "not", "if"):
        return None
    node: ValidationError | None = error
    while node is not None:
        comment = node.schema.get("$comment") if isinstance(node.schema, dict) else None
        if isinstance(comment, str):
            return comment if len(comment) <= 240 else comment[:237] + "..."
        node = cast(ValidationError | None, node.parent)  # parents of a ValidationError are too
    return None


def _schema_problems(
    obj: Mapping[str, Any], object_id: str, url: str, store: SchemaStore
) -> list[Problem]:
    try:
        validator = store.validator(url)
    except SchemaUnavailable as exc:
        return [Problem(object_id, "$.stac_extensions", "schema-unavailable", str(exc))]
    problems = []
    try:
        for error in validator.iter_errors(obj):
            deepest = _deepest(error)
            rule = f"{deepest.validator} ({schema_label(url)})"
            message = _message(deepest)
            why = _schema_comment(deepest)
            if why:
                message += f" [schema: {why}]"
            problems.append(Problem(object_id, deepest.json_path, rule, message))
    except Unresolvable as exc:
        problems.append(
            Problem(
                object_id,
                "$",
                "schema-unavailable",
                f"schema {url} refers to {unresolvable_url(exc)}, which is unavailable "
                "(add it to GEOMLOPS_SCHEMA_MIRROR or set GEOMLOPS_SCHEMA_NETWORK=true)",
            )
        )
    return problems


def _parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _datetime_range_problems(props: Mapping[str, Any], object_id: str) -> list[Problem]:
    start = _parse_datetime(props.get("start_datetime"))
    end = _parse_datetime(props.get("end_datetime"))
    if start is not None and end is not None and start > end:
        return [
            Problem(
                object_id,
                "$.properties.end_datetime",
                "datetime-range",
                f"end_datetime {props['end_datetime']} is before start_datetime "
                f"{props['start_datetime']}",
            )
        ]
    return []


def _range_problems(item: Mapping[str, Any], object_id: str) -> list[Problem]:
    """Longitudes in [-180, 180] and latitudes in [-90, 90] (STAC geometry is WGS 84).

    The schemas only ask for numbers: a latitude of 200 passed them and made a footprint no
    search could ever match.
    """
    import numpy as np
    import shapely

    problems = []
    bbox = item.get("bbox")
    if (
        isinstance(bbox, list)
        and len(bbox) in (4, 6)
        and all(isinstance(v, int | float) for v in bbox)
    ):
        lons = [bbox[0], bbox[len(bbox) // 2]]
        lats = [bbox[1], bbox[len(bbox) // 2 + 1]]
        if not all(-180 <= v <= 180 for v in lons) or not all(-90 <= v <= 90 for v in lats):
            problems.append(
                Problem(
                    object_id,
                    "$.bbox",
                    "coordinate-range",
                    f"bbox {bbox} is outside longitude [-180, 180] / latitude [-90, 90]",
                )
            )
    geometry = item.get("geometry")
    if isinstance(geometry, Mapping):
        try:
            coords = shapely.get_coordinates(shapely.from_geojson(json.dumps(geometry)))
        except (shapely.errors.ShapelyError, ValueError, TypeError):
            return problems  # unreadable: _geometry_problems says so
        if coords.size and (
            not np.isfinite(coords).all()
            or np.abs(coords[:, 0]).max() > 180
            or np.abs(coords[:, 1]).max() > 90
        ):
            lon, lat = coords[:, 0], coords[:, 1]
            problems.append(
                Problem(
                    object_id,
                    "$.geometry.coordinates",
                    "coordinate-range",
                    f"longitudes {lon.min():g} to {lon.max():g} and latitudes {lat.min():g} to "
                    f"{lat.max():g} are not all within [-180, 180] / [-90, 90] (WGS 84)",
                )
            )
    return problems


def _geometry_problems(item: Mapping[str, Any], object_id: str) -> list[Problem]:
    import shapely
    from shapely.geometry import shape

    geometry = item.get("geometry")
    if not isinstance(geometry, Mapping):
        return []  # null geometry is allowed; a wrong type is the schema's to report
    try:
        geom = shape(dict(geometry))
    except (ValueError, TypeError, AttributeError, shapely.errors.ShapelyError) as exc:
        return [Problem(object_id, "$.geometry", "geometry-valid", f"unreadable geometry: {exc}")]
    problems = []
    if not geom.is_valid:
        problems.append(
            Problem(
                object_id,
                "$.geometry",
                "geometry-valid",
                f"invalid geometry: {shapely.is_valid_reason(geom)}",
            )
        )
    bbox = item.get("bbox")
    if isinstance(bbox, list) and len(bbox) in (4, 6) and not geom.is_empty:
        west, south, east, north = (bbox[0], bbox[1], bbox[3], bbox[4]) if len(bbox) == 6 else bbox
        gw, gs, ge, gn = geom.bounds
        crosses_antimeridian = west > east
        inside = (
            south - BBOX_TOLERANCE_DEG <= gs
            and gn <= north + BBOX_TOLERANCE_DEG
            and (crosses_antimeridian or (west - BBOX_TOLERANCE_DEG <= gw and ge <= east + 1e-6))
        )
        if not inside:
            problems.append(
                Problem(
                    object_id,
                    "$.bbox",
                    "bbox-encloses-geometry",
                    f"bbox {bbox} does not enclose the geometry (bounds {list(geom.bounds)})",
                )
            )
    return problems


def geometry_problems(item: Mapping[str, Any]) -> list[Problem]:
    """The rules of an item's geometry no schema states: valid, in WGS 84's ranges, in bbox."""
    object_id = str(item.get("id") or "<no id>")
    return _geometry_problems(item, object_id) + _range_problems(item, object_id)


def stac_problems(obj: Any, store: SchemaStore | None = None) -> list[Problem]:
    """Every problem found in one STAC item or collection (empty when it is valid)."""
    store = store or schema_store()
    if not isinstance(obj, Mapping):
        return [Problem("?", "$", "type", "a STAC object must be a JSON object")]
    # Validate the JSON form: builders may hold tuples, which JSON Schema does not see as arrays.
    obj = json.loads(json.dumps(obj, default=str))
    object_id = str(obj.get("id") or "<no id>")
    kind = obj.get("type")
    if kind not in ("Feature", "Collection"):
        return [
            Problem(
                object_id, "$.type", "type", f"expected 'Feature' or 'Collection', got {kind!r}"
            )
        ]
    version = obj.get("stac_version")
    if not isinstance(version, str):
        return [Problem(object_id, "$.stac_version", "required", "'stac_version' is missing")]
    core = STAC_ITEM_SCHEMA if kind == "Feature" else STAC_COLLECTION_SCHEMA
    urls = [core.format(version=version)]
    extensions = obj.get("stac_extensions", [])
    if isinstance(extensions, list):
        urls += [u for u in extensions if isinstance(u, str)]

    problems: list[Problem] = []
    for url in urls:
        problems += _schema_problems(obj, object_id, url, store)
    if kind == "Feature":
        problems += _geometry_problems(obj, object_id)
        problems += _range_problems(obj, object_id)
        props = obj.get("properties")
        if isinstance(props, Mapping):
            problems += _datetime_range_problems(props, object_id)
    return list(dict.fromkeys(problems))  # the same finding from two schemas, once


def validate_stac(objects: Iterable[Any], store: SchemaStore | None = None) -> None:
    """Raise :class:`ValidationFailed` listing every problem of every object, if any."""
    problems = [p for obj in objects for p in stac_problems(obj, store)]
    if problems:
        ids = sorted({p.object_id for p in problems})
        raise ValidationFailed(
            f"{len(problems)} problem(s) in {', '.join(ids)}",
            problems=[str(p) for p in problems],
            hint="fix the fields named above; `geomlops catalog validate FILE` re-checks",
        )
