"""Reading an Argo manifest and turning it into the Workflow a run executes.

A ``Workflow`` runs as written. A ``WorkflowTemplate`` or ``ClusterWorkflowTemplate`` is
instantiated the way ``argo submit --from workflowtemplate/NAME`` does it: a Workflow named
``<template>-<5 random characters>`` whose spec is the template's, with the submitted
parameters set on ``spec.arguments``. Parameters are checked here, once: unknown names,
missing values and values outside an ``enum`` are all reported together.
"""

from __future__ import annotations

import copy
import secrets
import string
from pathlib import Path
from typing import Any

import yaml

from geomlops.errors import ValidationFailed
from geomlops.workflows.executor.expressions import as_parameter

API_VERSION = "argoproj.io/v1alpha1"
RUNNABLE_KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate")
TEMPLATE_LABEL = "workflows.argoproj.io/workflow-template"

Manifest = dict[str, Any]


def load_manifest(source: Manifest | str | Path) -> Manifest:
    """One manifest from a dict, a YAML/JSON file path, or YAML text."""
    if isinstance(source, dict):
        return copy.deepcopy(source)
    if isinstance(source, Path):
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as error:
            raise ValidationFailed(
                f"cannot read manifest {source}: {error.strerror or error}"
            ) from None
        origin = str(source)
    else:
        text, origin = source, "manifest text"
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise ValidationFailed(f"{origin} is not valid YAML: {error}") from None
    if len(documents) != 1:
        raise ValidationFailed(
            f"{origin} holds {len(documents)} documents; the executor runs exactly one",
            hint="split the file, one Workflow or WorkflowTemplate per file",
        )
    if not isinstance(documents[0], dict):
        raise ValidationFailed(f"{origin} is not a mapping (an Argo manifest)")
    return documents[0]


def random_suffix(length: int = 5) -> str:
    """Argo's generateName suffix: lowercase letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def run_name_for(manifest: Manifest) -> tuple[str, bool]:
    """The run's name and whether it was generated (and so may be regenerated on clash)."""
    metadata = manifest.get("metadata") or {}
    kind = manifest.get("kind")
    if kind == "Workflow":
        if metadata.get("name"):
            return str(metadata["name"]), False
        return f"{metadata.get('generateName') or 'workflow-'}{random_suffix()}", True
    base = metadata.get("name") or metadata.get("generateName") or "workflow"
    return f"{str(base).rstrip('-')}-{random_suffix()}", True


def check_kind(manifest: Manifest) -> list[str]:
    """Problems with ``apiVersion`` and ``kind`` (other kinds cannot be run)."""
    problems = []
    if manifest.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: expected {API_VERSION!r}, got {manifest.get('apiVersion')!r}")
    kind = manifest.get("kind")
    if kind not in RUNNABLE_KINDS:
        hint = " (run its spec.workflowSpec as a Workflow)" if kind == "CronWorkflow" else ""
        problems.append(
            f"kind: {kind!r} cannot be run; expected one of {', '.join(RUNNABLE_KINDS)}{hint}"
        )
    if not isinstance(manifest.get("spec"), dict):
        problems.append("spec: missing or not a mapping")
    return problems


def resolve_parameters(
    spec: dict[str, Any], given: dict[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """The workflow parameters' final values, and every problem with what was given.

    Like ``argo submit -p``, a name the spec does not declare is accepted when the
    entrypoint template has an input of that name (Argo adds it to ``spec.arguments``,
    and workflow arguments bind to the entrypoint's inputs); any other unknown name is a
    mistake and is reported with the names that would be accepted.
    """
    declared = list(((spec.get("arguments") or {}).get("parameters")) or [])
    problems: list[str] = []
    values: dict[str, str] = {}
    names = [p.get("name") for p in declared]
    entry_inputs = _entrypoint_inputs(spec)
    for name in given:
        if name in names:
            continue
        if name in entry_inputs:
            declared.append({"name": name})
            names.append(name)
            continue
        known = ", ".join(str(n) for n in [*names, *sorted(entry_inputs - set(names))]) or "none"
        problems.append(
            f"parameter {name!r} is neither in spec.arguments.parameters nor an input of the "
            f"entrypoint (accepted: {known})"
        )
    for index, parameter in enumerate(declared):
        name = parameter.get("name")
        where = f"spec.arguments.parameters[{index}]"
        if name in given:
            value = as_parameter(given[name])
        elif "value" in parameter:
            value = as_parameter(parameter["value"])
        elif "default" in parameter:
            value = as_parameter(parameter["default"])
        else:
            problems.append(f"{where}: parameter {name!r} has no value; pass it (-p {name}=...)")
            continue
        enum = parameter.get("enum")
        if enum and value not in [as_parameter(v) for v in enum]:
            problems.append(
                f"{where}: parameter {name!r} = {value!r} is not one of "
                f"{', '.join(as_parameter(v) for v in enum)}"
            )
            continue
        values[str(name)] = value
    return values, problems


def _entrypoint_inputs(spec: dict[str, Any]) -> set[str]:
    entrypoint = spec.get("entrypoint")
    for template in spec.get("templates") or []:
        if isinstance(template, dict) and template.get("name") == entrypoint:
            inputs = template.get("inputs") or {}
            return {
                str(p.get("name")) for p in inputs.get("parameters") or [] if isinstance(p, dict)
            }
    return set()


def instantiate(manifest: Manifest, run_name: str, parameters: dict[str, str]) -> Manifest:
    """The Workflow a run executes: the manifest's spec, named, with parameter values set."""
    spec = copy.deepcopy(manifest["spec"])
    declared = spec.setdefault("arguments", {}).setdefault("parameters", [])
    for parameter in declared:
        if parameter.get("name") in parameters:
            parameter["value"] = parameters[parameter["name"]]
            parameter.pop("default", None)
    present = {p.get("name") for p in declared}
    declared.extend({"name": k, "value": v} for k, v in parameters.items() if k not in present)
    source_metadata = manifest.get("metadata") or {}
    metadata: dict[str, Any] = {
        "name": run_name,
        "namespace": source_metadata.get("namespace") or "default",
        "labels": dict(source_metadata.get("labels") or {}),
        "annotations": dict(source_metadata.get("annotations") or {}),
    }
    if manifest.get("kind") != "Workflow":
        metadata["labels"][TEMPLATE_LABEL] = source_metadata.get("name", "")
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": metadata, "spec": spec}
