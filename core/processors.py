"""The generic-processor contract: where scripts live, how they are named and parameterised.

A generic processor is a user's Python script that runs after a batch-inference run has
published its outputs (DESIGN.md §11; Geospatial Studio's ``/v2/generic-processor``). Its
contract, the one place it is written down (``processors/README.md`` explains it to
authors):

- the script defines ``process(inputs: dict, params: dict) -> dict`` at top level
  (:data:`ENTRY_POINT`), and a literal ``PARAMETERS`` dict declaring each parameter it
  reads: ``{"name": {"type": "number", "default": 1.0, "description": "…"}}`` with types
  :data:`PARAMETER_TYPES`; a parameter without ``default`` must be given;
- it runs in its own process with a time and memory limit and no platform credentials;
  ``inputs`` names local files (the run's COGs and GeoJSON) and an ``output_dir`` whose
  files are stored with the prediction; the dict it returns is its JSON result, and its
  standard output carries that result alone (log to stderr).

Registration, the plan step and the process step all check parameters here, so a value is
coerced the same way at ``processor register`` and at ``infer --processor``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from geomlops.errors import ValidationFailed

ENTRY_POINT = "process"
"""The function every processor script defines: ``process(inputs, params) -> dict``."""
PARAMETERS = "PARAMETERS"
"""The module-level literal dict that declares the script's parameters."""
PARAMETER_TYPES = ("number", "integer", "string", "boolean")
"""The types a declared parameter may have (values travel as JSON)."""
NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
"""A processor name: lower case, digits and dashes (it is part of item ids and S3 keys)."""
FOLDER = "_processors"
"""Prefix, in the predictions bucket, of the registered scripts (beside ``_requests/``)."""


def check_name(name: str) -> str:
    """``name`` if it is a valid processor name; ValidationFailed saying the rule if not."""
    if not NAME.match(name or ""):
        raise ValidationFailed(
            f"processor name {name!r} is not valid",
            hint="use 2-63 lower-case letters, digits and dashes, starting with a letter",
        )
    return name


def item_id(name: str, version: int) -> str:
    """Id of version ``version`` of processor ``name`` in the ``processors`` collection."""
    return f"{name}-v{version}"


def script_uri(bucket: str, name: str, version: int, filename: str) -> str:
    """Where version ``version`` of processor ``name`` keeps its script (never overwritten)."""
    return f"s3://{bucket}/{FOLDER}/{name}/v{version}/{filename}"


def result_folder(run_uri: str, name: str) -> str:
    """Folder of a run where processor ``name`` stores its result and output files."""
    return f"{run_uri.rstrip('/')}/processors/{name}"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file: what a processor is catalogued and verified by."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_assignments(pairs: list[str], option: str) -> dict[str, str]:
    """``["k=v", …]`` as a dict; ValidationFailed naming ``option`` and the bad pair."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationFailed(f"{option} {pair!r} is not KEY=VALUE")
        found[key.strip()] = value
    return found


def _coerce(kind: str, text: Any, where: str) -> Any:
    if not isinstance(text, str):  # already typed (a default from the script, or JSON)
        text = str(text).lower() if isinstance(text, bool) else str(text)
    try:
        if kind == "number":
            return float(text)
        if kind == "integer":
            return int(text)
        if kind == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError("not true or false")
            return text.lower() == "true"
    except ValueError as error:
        raise ValidationFailed(f"{where}: {text!r} is not a {kind} ({error})") from None
    return text


def check_given(
    declared: dict[str, dict[str, Any]], given: dict[str, Any], where: str
) -> dict[str, Any]:
    """The ``given`` values coerced to their declared types; unknown names are refused.

    A name the script does not declare or a value of the wrong type is refused, naming
    ``where`` (the option or file) and the parameter, so a typo never silently runs with a
    default.
    """
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValidationFailed(
            f"{where}: unknown parameter(s) {', '.join(unknown)}",
            hint=f"the processor declares: {', '.join(sorted(declared)) or 'none'}",
        )
    return {
        key: _coerce(declared[key]["type"], value, f"{where} {key}") for key, value in given.items()
    }


def resolve_parameters(
    declared: dict[str, dict[str, Any]], given: dict[str, Any], where: str
) -> dict[str, Any]:
    """Every declared parameter's value: given (see :func:`check_given`) or its default.

    A parameter with neither a value nor a default is refused.
    """
    values = check_given(declared, given, where)
    missing = []
    for key, spec in declared.items():
        if key not in values:
            if "default" in spec:
                values[key] = spec["default"]
            else:
                missing.append(key)
    if missing:
        raise ValidationFailed(
            f"{where}: parameter(s) {', '.join(missing)} have no value and no default",
            hint="give each as -p KEY=VALUE (or --param at registration)",
        )
    return {key: values[key] for key in declared}
