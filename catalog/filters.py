"""CQL2-JSON filters on MLM fields, built one way for the CLI and every component.

PgSTAC takes CQL2-JSON in ``POST /search`` (CQL2-text in a POST body is refused), so
filters are built as JSON. Array fields (``mlm:tasks``, ``mlm:input.bands``) use
``a_contains``: an item matches when it has *all* the values asked for.

What users type is matched without regard to case: ``--framework pytorch`` finds items that
say ``PyTorch`` (MLM's own spelling). Scalars are compared with CQL2's ``casei``, which
PgSTAC renders as ``upper()`` on both sides. CQL2 has no case-insensitive array operator,
so task names are lower-cased instead: MLM's schema admits only its lower-case task names
(``semantic-segmentation``), and every item is validated against it before it is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geomlops.catalog.queryables import INPUT_BANDS


def _prop(name: str) -> dict[str, str]:
    return {"property": name}


def mlm_filter(
    *,
    tasks: Sequence[str] = (),
    framework: str | None = None,
    accelerator: str | None = None,
    input_bands: Sequence[str] = (),
) -> dict[str, Any] | None:
    """A CQL2-JSON filter matching every condition given, or None when none is."""
    clauses: list[dict[str, Any]] = []
    if tasks:
        wanted = [t.lower() for t in tasks]
        clauses.append({"op": "a_contains", "args": [_prop("mlm:tasks"), wanted]})
    if framework:
        clauses.append(equals_ignoring_case("mlm:framework", framework))
    if accelerator:
        clauses.append(equals_ignoring_case("mlm:accelerator", accelerator))
    if input_bands:
        clauses.append({"op": "a_contains", "args": [_prop(INPUT_BANDS), list(input_bands)]})
    return and_filters(*clauses)


def equals_ignoring_case(name: str, value: str) -> dict[str, Any]:
    """``name = value`` regardless of case (CQL2's case-insensitive comparison)."""
    return {
        "op": "=",
        "args": [{"op": "casei", "args": [_prop(name)]}, {"op": "casei", "args": [value]}],
    }


def and_filters(*filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Combine filters with ``and``, skipping the empty ones."""
    present = [f for f in filters if f]
    if not present:
        return None
    return present[0] if len(present) == 1 else {"op": "and", "args": present}
