"""Checking a generic processor's script before it is stored: it parses, it keeps the contract.

Read, never run: registration must not execute a user's code on the registering machine.
The script is parsed (a syntax error is reported with its line), must define
``process(inputs, params)`` at top level, and must declare its parameters in a literal
``PARAMETERS`` dict (:mod:`geomlops.processors`), each with a known type and, when it has a
default, a default of that type. Every problem is reported at once, with file and field.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geomlops.errors import ValidationFailed
from geomlops.processors import ENTRY_POINT, PARAMETER_TYPES, PARAMETERS, check_given

MAX_SCRIPT_BYTES = 1_000_000
"""A processor is a script, not a data file: anything larger is refused."""


@dataclass(frozen=True)
class ScriptSpec:
    """What registration learned from a script: its parameters and docstring."""

    parameters: dict[str, dict[str, Any]]
    description: str


def _entry_point_problems(tree: ast.Module, where: str) -> list[str]:
    found = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == ENTRY_POINT
    ]
    if not found:
        return [f"{where}: defines no top-level function `{ENTRY_POINT}(inputs, params)`"]
    node = found[-1]
    if isinstance(node, ast.AsyncFunctionDef):
        return [f"{where}:{node.lineno}: `{ENTRY_POINT}` must be a plain function, not async"]
    positional = [*node.args.posonlyargs, *node.args.args]
    if len(positional) != 2 or node.args.vararg is not None:
        return [
            f"{where}:{node.lineno}: `{ENTRY_POINT}` must take exactly two arguments "
            f"(inputs, params); it takes {len(positional)}"
        ]
    return []


def _parameters(tree: ast.Module, where: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    assigned = [
        node
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and any(
            isinstance(t, ast.Name) and t.id == PARAMETERS
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
    ]
    if not assigned:
        return {}, [
            f"{where}: declares no `{PARAMETERS}` dict (write `{PARAMETERS} = {{}}` if the "
            "script takes none)"
        ]
    node = assigned[-1]
    try:
        value = ast.literal_eval(node.value) if node.value is not None else None
    except ValueError:
        return {}, [f"{where}:{node.lineno}: `{PARAMETERS}` must be a literal dict"]
    if not isinstance(value, dict):
        return {}, [f"{where}:{node.lineno}: `{PARAMETERS}` must be a dict"]
    problems: list[str] = []
    declared: dict[str, dict[str, Any]] = {}
    for key, spec in value.items():
        field = f"{where}: {PARAMETERS}[{key!r}]"
        if not isinstance(key, str) or not key.isidentifier():
            problems.append(f"{field}: a parameter name must be an identifier")
            continue
        if not isinstance(spec, dict) or spec.get("type") not in PARAMETER_TYPES:
            problems.append(f"{field}.type: must be one of {', '.join(PARAMETER_TYPES)}")
            continue
        extra = sorted(set(spec) - {"type", "default", "description"})
        if extra:
            problems.append(f"{field}: unknown field(s) {', '.join(extra)}")
            continue
        declared[key] = dict(spec)
    if not problems:
        # Each default must be of its declared type (the same rule a run's values meet).
        for key, spec in declared.items():
            if "default" in spec:
                try:
                    spec["default"] = check_given(
                        {key: spec}, {key: spec["default"]}, f"{where}: {PARAMETERS}"
                    )[key]
                except ValidationFailed as error:
                    problems.append(f"{error.message} (its default)")
    return declared, problems


def check_script(path: Path) -> ScriptSpec:
    """The script's spec; ValidationFailed listing every problem with file and field."""
    where = str(path)
    if path.suffix != ".py":
        raise ValidationFailed(f"{where}: a processor is a Python file (.py)")
    size = path.stat().st_size
    if size > MAX_SCRIPT_BYTES:
        raise ValidationFailed(f"{where}: {size} bytes; a processor script is at most 1 MB")
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=where)
    except UnicodeDecodeError as error:
        raise ValidationFailed(f"{where}: not UTF-8 text ({error})") from None
    except SyntaxError as error:
        raise ValidationFailed(
            f"{where}:{error.lineno}: does not parse: {error.msg}",
            hint="run `python -m py_compile FILE` to see it",
        ) from None
    problems = _entry_point_problems(tree, where)
    declared, parameter_problems = _parameters(tree, where)
    problems += parameter_problems
    if problems:
        raise ValidationFailed(
            f"{where} is not a valid processor script",
            problems=problems,
            hint="see processors/README.md for the contract",
        )
    return ScriptSpec(declared, (ast.get_docstring(tree) or "").strip())
