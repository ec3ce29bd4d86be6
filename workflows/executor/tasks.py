"""One DAG task or step: its ``when``, its arguments, and its fan-out over items.

A task with ``withItems``, ``withParam`` or ``withSequence`` becomes a task group with one
child per item, named ``<task>(<index>:<label>)`` as Argo names them. Children start in
item order and only while the run has room, so a fan-out of thousands never holds more
than ``parallelism`` pods; the expansion is computed once and kept for later passes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from geomlops.workflows.executor.expressions import (
    ExpressionError,
    as_parameter,
    evaluate_when,
    item_scope,
    substitute,
    substitute_all,
)
from geomlops.workflows.executor.model import Node, NodePhase, NodeType
from geomlops.workflows.executor.nodes import Ctx, Execute, NodeBook
from geomlops.workflows.executor.timing import parse_int

Expansion = list[tuple[str, str, dict[str, str]]]
"""Children of a task group: (node name, display name, the item's scope)."""

LOOPS = ("withItems", "withParam", "withSequence")


class TaskRunner:
    """Runs tasks and steps, expanding the looped ones into task groups."""

    def __init__(self, book: NodeBook, execute: Execute, saturated: Callable[[], bool]) -> None:
        self.book = book
        self.state = book.state
        self.execute = execute
        self.saturated = saturated
        self.expansions: dict[str, Expansion] = {}
        self.open_children: dict[str, Expansion] = {}

    def run(
        self, name: str, display: str, task: dict[str, Any], scope: dict[str, str], ctx: Ctx
    ) -> None:
        """Run one DAG task or step: expanded into a task group when it loops."""
        existing = self.book.by_name(name)
        if existing is not None and existing.fulfilled:
            return
        if not any(k in task for k in LOOPS):
            self._run_single(name, display, task, scope, ctx)
            return
        if existing is None and self.state.shutdown and not ctx.in_exit:
            return
        try:
            expansion = self._expansion(name, display, task, scope)
        except ExpressionError as error:
            self.book.new(
                name,
                replace(ctx, display=display),
                NodeType.SKIPPED,
                NodePhase.ERROR,
                task.get("template"),
                error.message,
            )
            return
        group = existing or self.book.new(
            name,
            replace(ctx, display=display),
            NodeType.TASK_GROUP,
            NodePhase.RUNNING,
            task.get("template"),
        )
        if not expansion:
            self.book.set(group, NodePhase.SKIPPED, "Skipped, empty params")
            return
        stopping = self.state.shutdown is not None and not ctx.in_exit
        if self._advance_children(group, expansion, task, scope, ctx, stopping=stopping):
            return
        phase, message = NodePhase.SUCCEEDED, ""
        children = self.book.children.get(group.id, [])
        for child_id in children:
            child_phase = self.state.nodes[child_id].phase
            if child_phase in NodePhase.FAILED_OR_ERROR:
                phase, message = child_phase, "one or more items failed"
        if stopping and len(children) < len(expansion):
            phase, message = NodePhase.FAILED, self.book.stop_message()
        self.book.set(group, phase, message)

    def _advance_children(
        self,
        group: Node,
        expansion: Expansion,
        task: dict[str, Any],
        scope: dict[str, str],
        ctx: Ctx,
        *,
        stopping: bool,
    ) -> bool:
        """Start or advance the group's open children in order; True while some are open."""
        open_entries = self.open_children.get(group.id)
        if open_entries is None:
            open_entries = expansion
        still_open = []
        child_ctx = replace(ctx, parent_id=group.id)
        for index, (child_name, child_display, child_scope) in enumerate(open_entries):
            child = self.book.by_name(child_name)
            if child is None and stopping:
                continue  # never started; the group fails below
            if self.saturated() and (child is None or child.phase == NodePhase.PENDING):
                still_open.extend(open_entries[index:])
                break
            if child is None or not child.fulfilled:
                child = self._run_single(
                    child_name,
                    child_display,
                    task,
                    {**scope, **child_scope},
                    replace(child_ctx, display=child_display),
                )
            if child is None or not child.fulfilled:
                still_open.append((child_name, child_display, child_scope))
        self.open_children[group.id] = still_open
        return bool(still_open)

    def _expansion(
        self, name: str, display: str, task: dict[str, Any], scope: dict[str, str]
    ) -> Expansion:
        cached = self.expansions.get(name)
        if cached is not None:
            return cached
        if "withItems" in task:
            items = substitute_all(task["withItems"], scope)
        elif "withParam" in task:
            text = substitute(str(task["withParam"]), scope)
            try:
                items = json.loads(text)
            except ValueError:
                items = None
            if not isinstance(items, list):
                raise ExpressionError(
                    f"withParam value could not be parsed as a JSON list: {text.strip()[:200]}"
                )
        else:
            items = _sequence(substitute_all(task["withSequence"], scope))
        expansion = []
        for index, item in enumerate(items):
            label = _item_label(item)
            expansion.append(
                (f"{name}({index}:{label})", f"{display}({index}:{label})", item_scope(item))
            )
        self.expansions[name] = expansion
        return expansion

    def _run_single(
        self, name: str, display: str, task: dict[str, Any], scope: dict[str, str], ctx: Ctx
    ) -> Node | None:
        node = self.book.by_name(name)
        ctx = replace(ctx, display=display)
        if node is not None:
            return self.execute(name, task["template"], None, ctx)
        if self.state.shutdown and not ctx.in_exit:
            return None
        try:
            when = substitute(str(task.get("when", "")), scope)
            if when.strip() and not evaluate_when(when):
                return self.book.new(
                    name,
                    ctx,
                    NodeType.SKIPPED,
                    NodePhase.SKIPPED,
                    task.get("template"),
                    f"when '{when}' evaluated false",
                )
            args = {
                p["name"]: substitute(as_parameter(p.get("value", "")), scope)
                for p in (task.get("arguments") or {}).get("parameters") or []
            }
        except ExpressionError as error:
            return self.book.new(
                name, ctx, NodeType.SKIPPED, NodePhase.ERROR, task.get("template"), error.message
            )
        return self.execute(name, task["template"], args, ctx)


def _item_label(item: Any) -> str:
    """Argo's item label in a node name: the value, or ``k:v,k:v`` for a map."""
    if isinstance(item, dict):
        return ",".join(f"{k}:{as_parameter(v)}" for k, v in sorted(item.items()))
    return as_parameter(item)


def _sequence(sequence: dict[str, Any]) -> list[str]:
    start = parse_int(sequence.get("start", 0), field="withSequence.start")
    if "count" in sequence:
        count = parse_int(sequence["count"], field="withSequence.count")
        values = list(range(start, start + count))
    elif "end" in sequence:
        end = parse_int(sequence["end"], field="withSequence.end")
        step = 1 if end >= start else -1
        values = list(range(start, end + step, step))
    else:
        raise ExpressionError("withSequence needs count or end")
    fmt = sequence.get("format")
    if fmt:
        return [_printf(fmt, v) for v in values]
    return [str(v) for v in values]


def _printf(fmt: str, value: int) -> str:
    try:
        return fmt % value
    except (TypeError, ValueError):
        raise ExpressionError(f"withSequence.format {fmt!r} cannot format {value}") from None
