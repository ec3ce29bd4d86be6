"""A batch-inference request as either door takes it: checked, then its AOI put in S3.

The CLI reads its AOI from a file, the gateway from a request body; both end in the same
workflow parameters here. Checked before anything is submitted: the interval is well
formed, the AOI is polygonal lon/lat, the model resolves, and the AOI lies inside the
model's region unless allowed (the plan step checks again, with the same code).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from geomlops import objects
from geomlops.connections import get_connections
from geomlops.errors import ValidationFailed
from geomlops.settings import Settings
from geomlops.workflows.inference.aoi import parse_aoi
from geomlops.workflows.inference.planner import check_region, pin_model

_INSTANT = r"(\.\.|\d{4}-\d{2}-\d{2}([Tt ][0-9:.]+([Zz]|[+-]\d{2}:\d{2})?)?)"
_INTERVAL = re.compile(rf"^{_INSTANT}/{_INSTANT}$", re.ASCII)


def normalise_interval(text: str) -> str:
    """``START/END`` with dates widened to whole days (UTC), as STAC search needs.

    The one check of a request's interval (the CLI and the gateway both call it): each end
    is ``..`` or a real date or date-time (2019-02-30 and 25:00 are refused), and the start
    is not after the end, so a reversed interval fails here and not 48 s into the plan step.
    """
    text = text.strip() if isinstance(text, str) else ""
    if not _INTERVAL.match(text) or text == "../..":
        raise ValidationFailed(
            f"datetime {text!r} is not START/END",
            problems=["e.g. 2019-09-01/2019-09-30 or 2019-09-18T00:00:00Z/.. (`..` = open)"],
        )
    start, end = text.split("/")
    start, end = _instant(start, "T00:00:00Z"), _instant(end, "T23:59:59Z")
    first, last = _parsed(start, "start"), _parsed(end, "end")
    if first is not None and last is not None and first > last:
        raise ValidationFailed(
            f"datetime {text!r}: the start {start} is after the end {end}",
            hint="give START/END in that order",
        )
    return f"{start}/{end}"


def _parsed(text: str, which: str) -> dt.datetime | None:
    """The instant ``text`` names (None for an open end); ValidationFailed if none exists."""
    if text == "..":
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as error:
        raise ValidationFailed(
            f"datetime: the {which} {text!r} is not a real date-time ({error})",
            hint="use ISO 8601, e.g. 2019-09-18 or 2019-09-18T10:50:00Z",
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _instant(text: str, day_time: str) -> str:
    return f"{text}{day_time}" if len(text) == 10 else text


def upload_aoi(document: Any, settings: Settings) -> str:
    """Put the AOI document in S3 under its content hash (the same AOI: the same key)."""
    return upload_document(document, "aoi", settings, suffix=".geojson")


def upload_document(document: Any, kind: str, settings: Settings, suffix: str = ".json") -> str:
    """Put a request's JSON document in S3 under its content hash (the same: the same key)."""
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
    uri = f"s3://{settings.s3.bucket_predictions}/_requests/{kind}-{digest}{suffix}"
    objects.write_json(get_connections(settings), uri, document)
    return uri


@dataclass(frozen=True)
class CheckedRequest:
    """The workflow parameters of an accepted request, and what the check found."""

    parameters: dict[str, str]
    outside_fraction: float


def prepare(
    *,
    model: str,
    version: str | None,
    aoi: Any,
    datetime: str,
    allow_outside_region: bool,
    settings: Settings,
) -> CheckedRequest:
    """Check a request and upload its AOI; the parameters of ``geomlops-batch-inference``."""
    interval = normalise_interval(datetime)
    geometry = parse_aoi(aoi, "aoi")
    _, item = pin_model(model, version, settings)
    fraction = check_region(
        geometry, item, allow_outside_region=allow_outside_region, settings=settings.inference
    )
    parameters = {
        "model": model,
        "version": version or "",
        "aoi": upload_aoi(aoi, settings),
        "datetime": interval,
        "allow-outside-region": "true" if allow_outside_region else "false",
    }
    return CheckedRequest(parameters, fraction)
