"""Which ``{{…}}`` tags are defined at a place of a manifest, for the support check.

Argo fails a workflow at run time when a tag names nothing; the local executor refuses it
before it runs instead, naming the field and the tag, so that what runs locally would also
run on a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from geomlops.workflows.executor.expressions import TAG

WORKFLOW_TAGS = {
    "workflow.name",
    "workflow.namespace",
    "workflow.uid",
    "workflow.creationTimestamp",
    "workflow.mainEntrypoint",
    "workflow.parameters",
    "workflow.status",
    "workflow.failures",
    "workflow.duration",
}
_SIBLING_TAG = re.compile(
    r"^(tasks|steps)\.([A-Za-z0-9][-A-Za-z0-9_]*)\."
    r"(outputs\.parameters\.[-A-Za-z0-9_.]+|outputs\.parameters|outputs\.result|outputs\.exitCode"
    r"|status|id|startedAt|finishedAt|exitCode)$"
)


@dataclass(frozen=True)
class TagScope:
    """Which tags are defined at one place of a template."""

    workflow_parameters: set[str]
    inputs: set[str] = frozenset()  # type: ignore[assignment]
    pod: bool = False
    retries: bool = False
    sibling_kind: str | None = None
    siblings: frozenset[str] = frozenset()
    looped: bool = False

    def with_siblings(self, kind: str, names: set[str], *, looped: bool = False) -> TagScope:
        return TagScope(
            self.workflow_parameters,
            self.inputs,
            False,
            False,
            kind,
            frozenset(names),
            looped,
        )

    def problem(self, tag: str) -> str | None:
        """Why ``tag`` is undefined here, or None when it is defined."""
        if tag.startswith("="):
            return "expression tags ({{=…}}) are not supported by the local executor"
        if tag in WORKFLOW_TAGS:
            return None
        if tag.startswith("workflow.parameters."):
            name = tag.removeprefix("workflow.parameters.")
            return None if name in self.workflow_parameters else f"no workflow parameter {name!r}"
        if tag.startswith(("workflow.labels.", "workflow.annotations.")):
            return None
        if tag == "inputs.parameters":
            return None
        if tag.startswith("inputs.parameters."):
            name = tag.removeprefix("inputs.parameters.")
            return None if name in self.inputs else f"no input parameter {name!r} in this template"
        if tag in ("pod.name", "node.name"):
            return (
                None if self.pod else f"{{{{{tag}}}}} is defined in container/script templates only"
            )
        if tag == "retries":
            return None if self.retries else "{{retries}} needs a retryStrategy on the template"
        if tag == "item" or tag.startswith("item."):
            return None if self.looped else "{{item}} needs withItems, withParam or withSequence"
        match = _SIBLING_TAG.match(tag)
        if match:
            kind, name, _ = match.groups()
            if kind != self.sibling_kind:
                return f"{{{{{tag}}}}} is not defined here"
            if name not in self.siblings:
                what = "a dependency of this task" if kind == "tasks" else "an earlier step"
                return f"{kind[:-1]} {name!r} is not {what}"
            return None
        return f"{{{{{tag}}}}} is not supported by the local executor"


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")


def tag_problems(value: Any, path: str, scope: TagScope) -> Iterator[tuple[str, str]]:
    """(field path, reason) for every tag in the strings of ``value`` undefined in ``scope``."""
    for where, text in _strings(value, path):
        if "{{" not in text:
            continue
        for match in TAG.finditer(text):
            problem = scope.problem(match.group(1).strip())
            if problem:
                yield where, problem
