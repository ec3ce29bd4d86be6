"""Steps templates: groups of steps run one after another, the steps of a group together.

A group is a ``StepGroup`` node; its steps start together, and the next group starts once
every step of this one is fulfilled and none failed without ``continueOn``. Later groups
see the earlier steps' outputs as ``steps.S.*`` tags.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from geomlops.workflows.executor.dag import continues_on
from geomlops.workflows.executor.model import Node, NodePhase, NodeType
from geomlops.workflows.executor.nodes import Ctx, NodeBook
from geomlops.workflows.executor.scopes import Scopes, template_outputs
from geomlops.workflows.executor.tasks import TaskRunner


class StepsWalker:
    """Advances steps nodes, one step group at a time."""

    def __init__(
        self, book: NodeBook, scopes: Scopes, tasks: TaskRunner, limits: dict[str, int]
    ) -> None:
        self.book = book
        self.state = book.state
        self.scopes = scopes
        self.tasks = tasks
        self.limits = limits

    def execute(self, node: Node, template: dict[str, Any], ctx: Ctx) -> Node:
        """One pass over the steps node's groups, up to the first that is not settled."""
        if "parallelism" in template:
            self.limits[node.id] = int(template["parallelism"])
        scope = self.scopes.base(node)
        inner = replace(ctx, boundary_id=node.id, attempt=None)
        for index, group in enumerate(template["steps"]):
            group_name = f"{node.name}[{index}]"
            group_node = self.book.by_name(group_name)
            if group_node is None:
                if self.state.shutdown and not ctx.in_exit:
                    self.book.set(node, NodePhase.FAILED, self.book.stop_message())
                    return node
                group_node = self.book.new(
                    group_name,
                    replace(inner, parent_id=node.id, display=f"[{index}]"),
                    NodeType.STEP_GROUP,
                    NodePhase.RUNNING,
                    None,
                )
            if not group_node.fulfilled:
                for step in group:
                    self.tasks.run(
                        f"{group_name}.{step['name']}",
                        step["name"],
                        step,
                        scope,
                        replace(inner, parent_id=group_node.id),
                    )
                settled = self._settle_group(group_node, group, ctx)
                if not settled:
                    return node
            if group_node.phase in NodePhase.FAILED_OR_ERROR:
                self.book.set(node, group_node.phase, group_node.message)
                return node
            for step in group:
                step_node = self.book.by_name(f"{group_name}.{step['name']}")
                if step_node is not None:
                    scope.update(self.scopes.sibling(f"steps.{step['name']}", step_node))
        phase, message = template_outputs(node, template, scope)
        self.book.set(node, phase, message)
        return node

    def _settle_group(self, group_node: Node, group: list[dict[str, Any]], ctx: Ctx) -> bool:
        """Set the group's phase once all its steps are fulfilled; False while some run."""
        step_nodes = [self.book.by_name(f"{group_node.name}.{s['name']}") for s in group]
        if any(n is None or not n.fulfilled for n in step_nodes):
            if (
                self.state.shutdown
                and not ctx.in_exit
                and not any(n is not None and not n.fulfilled for n in step_nodes)
            ):
                self.book.set(group_node, NodePhase.FAILED, self.book.stop_message())
                return True
            return False
        for step, step_node in zip(group, step_nodes, strict=True):
            assert step_node is not None  # noqa: S101 - checked above
            if step_node.phase not in NodePhase.FAILED_OR_ERROR:
                continue
            if continues_on(step, step_node.phase):
                continue
            self.book.set(
                group_node,
                NodePhase.FAILED,
                f"step '{step['name']}' {step_node.phase.lower()}: {step_node.message}".rstrip(
                    ": "
                ),
            )
            return True
        self.book.set(group_node, NodePhase.SUCCEEDED)
        return True
