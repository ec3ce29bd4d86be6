"""Validation of Argo manifests against Argo's official JSON schema, offline.

The schema's root is a ``oneOf`` over the kinds, and WorkflowTemplate and
ClusterWorkflowTemplate have identical shapes, so a valid WorkflowTemplate matches two
branches and fails the ``oneOf``. A manifest is therefore validated against the definition
for its own ``kind``. Note the schema types Kubernetes' int-or-string fields (e.g.
``retryStrategy.limit``) as strings: render those as strings.

The schema files (``schema-v<version>.json``) are read from the ``argo_schema_dir``
setting, never downloaded.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from geomlops.errors import ConfigError, ValidationFailed
from geomlops.settings import Settings, get_settings

DEFINITION_PREFIX = "io.argoproj.workflow.v1alpha1."
KINDS = (
    "Workflow",
    "WorkflowTemplate",
    "ClusterWorkflowTemplate",
    "CronWorkflow",
    "WorkflowEventBinding",
)
_SCHEMA_FILE = re.compile(r"^schema-v(\d+\.\d+\.\d+)\.json$")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class ArgoSchema:
    """The Argo JSON schemas found in one directory, one per Argo version."""

    def __init__(self, directory: Path | None = None, settings: Settings | None = None) -> None:
        directory = directory or (settings or get_settings()).workflows.argo_schema_dir
        if directory is None or not directory.is_dir():
            raise ConfigError(
                f"no Argo JSON schema directory ({directory or 'unset'})",
                hint="set GEOMLOPS_WORKFLOWS_ARGO_SCHEMA_DIR to the folder holding "
                "schema-v<version>.json (e.g. ../shared/data/schemas/argo-workflows)",
            )
        self.directory = directory
        self.files = {
            match.group(1): path
            for path in directory.iterdir()
            if (match := _SCHEMA_FILE.match(path.name))
        }
        if not self.files:
            raise ConfigError(f"no schema-v<version>.json file in {directory}")

    @property
    def versions(self) -> list[str]:
        """The Argo versions available, newest first."""
        return sorted(self.files, key=_version_key, reverse=True)

    def problems(self, manifest: dict[str, Any], version: str) -> list[str]:
        """Every schema violation of ``manifest`` for Argo ``version``, as ``path: message``."""
        if version not in self.files:
            raise ConfigError(
                f"no Argo schema for version {version} in {self.directory}",
                hint=f"available: {', '.join(self.versions)}",
            )
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        if kind not in KINDS:
            return [f"kind: {kind!r} is not an Argo kind ({', '.join(KINDS)})"]
        validator = _validator(self.files[version], kind)
        errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
        return [f"{_path(error)}: {_message(error)}" for error in errors]

    def validate(self, manifest: dict[str, Any], versions: list[str] | None = None) -> None:
        """Raise ValidationFailed listing the violations for each version (default: all)."""
        problems = []
        for version in versions or self.versions:
            problems += [f"[Argo v{version}] {p}" for p in self.problems(manifest, version)]
        if problems:
            name = (manifest.get("metadata") or {}).get("name") or (
                manifest.get("metadata") or {}
            ).get("generateName")
            raise ValidationFailed(
                f"{manifest.get('kind')} {name!r} does not match Argo's schema", problems=problems
            )


@cache
def _schema(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _validator(path: Path, kind: str) -> Draft202012Validator:
    """A validator for one kind's definition, resolving refs inside the same document."""
    schema = {key: value for key, value in _schema(path).items() if key not in ("oneOf", "type")}
    schema["$ref"] = f"#/definitions/{DEFINITION_PREFIX}{kind}"
    return Draft202012Validator(schema)


def _path(error: ValidationError) -> str:
    parts = []
    for part in error.absolute_path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(f".{part}" if parts else str(part))
    return "".join(parts) or "(root)"


def _message(error: ValidationError) -> str:
    return error.message if len(error.message) <= 300 else error.message[:297] + "..."
