"""Check a package's ``MLproject``: entry points, typed parameters, the files commands run.

Parsed as YAML without running MLflow, so every problem is found at once and located by
line. The rules are the contract's (:mod:`geomlops.registration.contract`); that MLflow
itself accepts the file is checked last, through its own loader, so a file this module
passes cannot still fail at `mlflow run`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geomlops.registration.contract import (
    ENTRY_POINTS,
    ENVIRONMENT_FILE_KEYS,
    MLPROJECT_FILE,
    PARAMETER_TYPES,
    SCRIPT_SUFFIXES,
)
from geomlops.registration.files import reference_problem
from geomlops.registration.problems import Problem


@dataclass
class MLProject:
    """The parsed file: its data, the line of each field, and the scripts its commands run."""

    data: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)
    scripts: list[str] = field(default_factory=list)

    def where(self, path: str) -> str:
        """``path`` with its line number, when known: ``entry_points.train (line 7)``."""
        line = self.lines.get(path)
        return f"{path} (line {line})" if line else path

    def parameters(self, entry_point: str) -> dict[str, dict[str, Any]]:
        """The entry point's parameters, normalised to ``{name: {"type", "default"?}}``."""
        point = (self.data.get("entry_points") or {}).get(entry_point) or {}
        raw = point.get("parameters") if isinstance(point, dict) else None
        out: dict[str, dict[str, Any]] = {}
        for name, spec in (raw or {}).items() if isinstance(raw, dict) else ():
            if isinstance(spec, str):
                out[str(name)] = {"type": spec}
            elif isinstance(spec, dict):
                out[str(name)] = {"type": spec.get("type", "string"), **spec}
            elif spec is None:
                out[str(name)] = {"type": "string"}
            else:  # a bare default: MLflow treats it as a string parameter with that default
                out[str(name)] = {"type": "string", "default": spec}
        return out


def _line_map(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """Dotted field path -> 1-based line where that key is written."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = f"{prefix}.{key.value}" if prefix else str(key.value)
            lines[path] = key.start_mark.line + 1
            lines.update(_line_map(value, path))
    return lines


def read_mlproject(package: Path) -> tuple[MLProject | None, list[Problem]]:
    """Parse ``MLproject``; a missing or unreadable file is one problem and no project."""
    file = package / MLPROJECT_FILE
    if not file.is_file():
        return None, []  # reported with the other missing files
    text = file.read_text(encoding="utf-8", errors="replace")
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = " ".join(str(part) for part in (error.context, error.problem) if part)
        return None, [
            Problem(
                MLPROJECT_FILE,
                where,
                f"is not valid YAML: {reason}",
                "fix the YAML syntax (indentation, quotes, colons) at that line",
            )
        ]
    except yaml.YAMLError as error:
        return None, [Problem(MLPROJECT_FILE, "", f"is not valid YAML: {error}")]
    if not isinstance(data, dict):
        return None, [
            Problem(
                MLPROJECT_FILE,
                "",
                f"must be a YAML mapping with name and entry_points, not {type(data).__name__}",
                "see model_packages/README.md section 3",
            )
        ]
    return MLProject(data, _line_map(root) if root is not None else {}), []


def mlproject_problems(project: MLProject, package: Path) -> list[Problem]:
    """Every problem of a parsed MLproject; records the scripts commands run in ``project``.

    Its ``name`` is checked with the package's other names (the validator's name check).
    """
    problems: list[Problem] = []

    def add(location: str, message: str, hint: str = "") -> None:
        problems.append(Problem(MLPROJECT_FILE, project.where(location), message, hint))

    for key in ENVIRONMENT_FILE_KEYS:
        value = project.data.get(key)
        if isinstance(value, str):
            found = reference_problem(package, value, MLPROJECT_FILE, project.where(key), key)
            if found:
                problems.append(found)
    entry_points = project.data.get("entry_points")
    if not isinstance(entry_points, dict):
        add(
            "entry_points",
            "is missing or not a mapping",
            f"declare entry points {', '.join(ENTRY_POINTS)}",
        )
        return problems
    for entry in ENTRY_POINTS:
        if entry not in entry_points:
            add(
                "entry_points",
                f"entry point {entry!r} is missing",
                f"add `{entry}` with parameters {', '.join(ENTRY_POINTS[entry])} and a command",
            )
    for entry, point in entry_points.items():
        problems += _entry_point_problems(project, package, str(entry), point)
    return problems


def _entry_point_problems(
    project: MLProject, package: Path, entry: str, point: Any
) -> list[Problem]:
    problems: list[Problem] = []
    base = f"entry_points.{entry}"

    def add(location: str, message: str, hint: str = "") -> None:
        problems.append(Problem(MLPROJECT_FILE, project.where(location), message, hint))

    if not isinstance(point, dict):
        add(base, "must be a mapping with parameters and command")
        return problems
    raw_parameters = point.get("parameters", {})
    if raw_parameters is not None and not isinstance(raw_parameters, dict):
        add(f"{base}.parameters", "must be a mapping of parameter name to type")
    declared = project.parameters(entry)
    for name, spec in declared.items():
        kind = spec.get("type")
        if kind not in PARAMETER_TYPES:
            add(
                f"{base}.parameters.{name}",
                f"has type {kind!r}, not one of MLflow's {sorted(PARAMETER_TYPES)}",
                "integers are declared `float` and given as whole numbers",
            )
    for name, wanted in ENTRY_POINTS.get(entry, {}).items():
        if name not in declared:
            add(
                f"{base}.parameters",
                f"parameter {name!r} ({wanted}) is missing",
                f"declare `{name}: {{type: {wanted}}}` (README section 3)",
            )
        elif declared[name].get("type") != wanted:
            add(
                f"{base}.parameters.{name}",
                f"has type {declared[name].get('type')!r}, the contract says {wanted!r}",
            )
    command = point.get("command")
    if not isinstance(command, str) or not command.strip():
        add(f"{base}.command", "is missing", "give the shell command the entry point runs")
        return problems
    problems += _command_problems(project, package, f"{base}.command", command, declared)
    return problems


def _command_problems(
    project: MLProject,
    package: Path,
    location: str,
    command: str,
    declared: dict[str, dict[str, Any]],
) -> list[Problem]:
    problems: list[Problem] = []
    where = project.where(location)
    try:
        tokens = shlex.split(command)
    except ValueError as error:
        return [Problem(MLPROJECT_FILE, where, f"cannot be split into words: {error}")]
    for token in tokens:
        if "{" in token:
            # A placeholder must name a declared parameter, or MLflow fails at run time.
            for name in _placeholders(token):
                if name not in declared:
                    problems.append(
                        Problem(
                            MLPROJECT_FILE,
                            where,
                            f"uses {{{name}}}, which is not a parameter of this entry point",
                            f"declare `{name}` under parameters or remove it from the command",
                        )
                    )
            continue
        if token.startswith("-") or "://" in token or "=" in token:
            continue
        if not (token.endswith(SCRIPT_SUFFIXES) or "/" in token):
            continue
        found = reference_problem(package, token, MLPROJECT_FILE, where, "the file")
        if found:
            problems.append(found)
        elif token not in project.scripts:
            project.scripts.append(token)
    return problems


def _placeholders(token: str) -> list[str]:
    names, rest = [], token
    while "{" in rest and "}" in rest.split("{", 1)[1]:
        inner, rest = rest.split("{", 1)[1].split("}", 1)
        names.append(inner)
    return names


def mlflow_load_problem(package: Path) -> Problem | None:
    """What MLflow's own loader says about the project, if it refuses it."""
    from mlflow.exceptions import MlflowException
    from mlflow.projects._project_spec import load_project

    try:
        load_project(str(package))
    except (MlflowException, ValueError, TypeError, KeyError, AttributeError) as error:
        return Problem(
            MLPROJECT_FILE,
            "",
            f"MLflow cannot load the project: {error}",
            "`mlflow run` will fail the same way; fix the field it names",
        )
    return None
