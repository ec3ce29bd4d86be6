"""DAG templates: which task may start, which is omitted, and how the DAG ends.

Each pass walks the tasks in dependency order; a task starts once every task it depends on
is fulfilled and its ``depends`` expression holds (``dependencies`` are rewritten into the
equivalent ``depends``). With ``failFast`` (the default) an unhandled failure stops new
tasks from starting; the DAG's phase is then assessed the way Argo's ``assessDAGPhase``
does, from the worst phase reaching each target task.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

from geomlops.workflows.executor.expressions import (
    DependsNode,
    ExpressionError,
    dependencies_as_depends,
    depends_results,
    depends_tasks,
    evaluate_depends,
    parse_depends,
)
from geomlops.workflows.executor.model import Node, NodePhase, NodeType
from geomlops.workflows.executor.nodes import Ctx, NodeBook
from geomlops.workflows.executor.scopes import Scopes, template_outputs
from geomlops.workflows.executor.support import ancestors
from geomlops.workflows.executor.tasks import TaskRunner

HANDLED_RESULTS = {"Failed", "Errored", "AllFailed", "AnySucceeded"}
"""Task results that, named in a dependent's ``depends``, make a failure expected."""


@dataclass
class DagInfo:
    """What a DAG template's tasks mean, parsed once per template."""

    order: list[dict[str, Any]]
    deps: dict[str, set[str]]
    depends: dict[str, DependsNode | None]
    targets: list[str]
    handled: dict[str, set[str]]
    fail_fast: bool


def dag_info(template: dict[str, Any]) -> DagInfo:
    """Parse a DAG template: dependencies, ``depends`` trees, an order and the targets."""
    tasks = template["dag"]["tasks"]
    by_name = {t["name"]: t for t in tasks}
    deps: dict[str, set[str]] = {}
    depends: dict[str, DependsNode | None] = {}
    handled: defaultdict[str, set[str]] = defaultdict(set)
    for task in tasks:
        expression = task.get("depends")
        if not expression and task.get("dependencies"):
            continue_on = {n: by_name[n].get("continueOn") or {} for n in task["dependencies"]}
            expression = dependencies_as_depends(list(task["dependencies"]), continue_on)
        tree = parse_depends(expression) if expression else None
        depends[task["name"]] = tree
        deps[task["name"]] = depends_tasks(tree) if tree else set()
        for dep, result in depends_results(tree) if tree else ():
            if result in HANDLED_RESULTS:
                handled[dep].add(result)
    order: list[dict[str, Any]] = []
    placed: set[str] = set()
    while len(order) < len(tasks):
        for task in tasks:
            if task["name"] not in placed and deps[task["name"]] <= placed:
                order.append(task)
                placed.add(task["name"])
    dependents = set().union(*deps.values()) if deps else set()
    targets = [t["name"] for t in tasks if t["name"] not in dependents]
    fail_fast = template["dag"].get("failFast", True) is not False
    return DagInfo(order, deps, depends, targets, dict(handled), fail_fast)


class DagWalker:
    """Advances DAG nodes: starts the tasks that may start, then assesses the DAG."""

    def __init__(
        self, book: NodeBook, scopes: Scopes, tasks: TaskRunner, limits: dict[str, int]
    ) -> None:
        self.book = book
        self.state = book.state
        self.scopes = scopes
        self.tasks = tasks
        self.limits = limits
        self.infos: dict[str, DagInfo] = {}

    def execute(self, node: Node, template: dict[str, Any], ctx: Ctx) -> Node:
        """One pass over the DAG node's tasks; sets its phase once it has settled."""
        info = self.infos.get(template["name"])
        if info is None:
            info = self.infos[template["name"]] = dag_info(template)
        if "parallelism" in template:
            self.limits[node.id] = int(template["parallelism"])
        scope = self.scopes.base(node)
        inner = replace(ctx, boundary_id=node.id, parent_id=node.id, attempt=None)
        for task in info.order:
            self._execute_task(node, info, task, scope, inner)
        phase, message = self._assess(node, info)
        if phase == NodePhase.RUNNING:
            return node
        if phase == NodePhase.SUCCEEDED:
            phase, message = template_outputs(node, template, self._full_scope(node, info, scope))
        self.book.set(node, phase, message)
        return node

    def _task_node(self, dag: Node, task: str) -> Node | None:
        return self.book.by_name(f"{dag.name}.{task}")

    def _unhandled_failure(self, dag: Node, info: DagInfo) -> Node | None:
        for name in info.deps:
            task_node = self._task_node(dag, name)
            if task_node is None or task_node.phase not in NodePhase.FAILED_OR_ERROR:
                continue
            task = next(t for t in info.order if t["name"] == name)
            if continues_on(task, task_node.phase):
                continue
            if info.handled.get(name):
                continue
            return task_node
        return None

    def _blocked(self, dag: Node, info: DagInfo, ctx: Ctx) -> bool:
        """No new task may start: the run is stopping, or failFast and a task failed."""
        if self.state.shutdown and not ctx.in_exit:
            return True
        return info.fail_fast and self._unhandled_failure(dag, info) is not None

    def _execute_task(
        self, dag: Node, info: DagInfo, task: dict[str, Any], scope: dict[str, str], ctx: Ctx
    ) -> None:
        name = task["name"]
        node_name = f"{dag.name}.{name}"
        existing = self.book.by_name(node_name)
        if existing is not None and existing.fulfilled:
            return
        if existing is None:
            dep_nodes = {d: self._task_node(dag, d) for d in info.deps[name]}
            if any(n is None or not n.fulfilled for n in dep_nodes.values()):
                return
            tree = info.depends[name]
            if tree is not None and not evaluate_depends(
                tree,
                lambda t, r: task_result(dep_nodes[t], r, self.book.children_of(dep_nodes[t])),
            ):
                self.book.new(
                    node_name,
                    replace(ctx, display=name),
                    NodeType.SKIPPED,
                    NodePhase.OMITTED,
                    task.get("template"),
                    "omitted: depends condition not met",
                )
                return
            if self._blocked(dag, info, ctx):
                return  # failFast or stopping: record what is omitted, start nothing new
        task_scope = dict(scope)
        for ancestor in ancestors(name, info.deps):
            ancestor_node = self._task_node(dag, ancestor)
            if ancestor_node is not None:
                task_scope.update(self.scopes.sibling(f"tasks.{ancestor}", ancestor_node))
        self.tasks.run(node_name, name, task, task_scope, ctx)

    def _assess(self, dag: Node, info: DagInfo) -> tuple[str, str]:
        """Argo's assessDAGPhase: Running until all is settled, then the worst target branch."""
        task_nodes = {n: self._task_node(dag, n) for n in info.deps}
        if any(n is not None and not n.fulfilled for n in task_nodes.values()):
            return NodePhase.RUNNING, ""
        failing = self._unhandled_failure(dag, info)
        blocked = self.state.shutdown is not None or (info.fail_fast and failing is not None)
        if blocked and failing is not None:
            return (
                failing.phase,
                f"task '{failing.display_name}' {failing.phase.lower()}: {failing.message}".rstrip(
                    ": "
                ),
            )
        branch: dict[str, str] = {}
        for task in info.order:
            task_node = task_nodes[task["name"]]
            if task_node is None:
                continue
            if task_node.phase in NodePhase.COMPLETED:
                branch[task["name"]] = task_node.phase
            else:
                inherited = [branch.get(d, NodePhase.SUCCEEDED) for d in info.deps[task["name"]]]
                worst = [p for p in inherited if p in NodePhase.FAILED_OR_ERROR]
                branch[task["name"]] = worst[0] if worst else NodePhase.SUCCEEDED
        for target in info.targets:
            if target not in branch:
                if blocked:
                    return NodePhase.FAILED, self.book.stop_message()
                return NodePhase.RUNNING, ""
        for target in info.targets:
            phase = branch[target]
            if phase in NodePhase.FAILED_OR_ERROR:
                task = next(t for t in info.order if t["name"] == target)
                if continues_on(task, phase):
                    continue
                target_node = task_nodes[target]
                detail = target_node.message if target_node else ""
                return phase, f"task '{target}' {phase.lower()}: {detail}".rstrip(": ")
        return NodePhase.SUCCEEDED, ""

    def _full_scope(self, dag: Node, info: DagInfo, scope: dict[str, str]) -> dict[str, str]:
        """The DAG's scope with every task's tags: what its output parameters may read."""
        full = dict(scope)
        for name in info.deps:
            task_node = self._task_node(dag, name)
            if task_node is not None:
                full.update(self.scopes.sibling(f"tasks.{name}", task_node))
        return full


def continues_on(task: dict[str, Any], phase: str) -> bool:
    """Whether the task's ``continueOn`` lets its parent go on after it ended in ``phase``."""
    continue_on = task.get("continueOn") or {}
    return bool(
        (phase == NodePhase.FAILED and continue_on.get("failed"))
        or (phase == NodePhase.ERROR and continue_on.get("error"))
    )


def task_result(node: Node | None, result: str, children: list[Node]) -> bool:
    """Whether a task node has the result a ``depends`` term names (``A.Succeeded``, …)."""
    if node is None:
        return False
    phase = node.phase
    if result == "Succeeded":
        return phase == NodePhase.SUCCEEDED
    if result == "Failed":
        return phase == NodePhase.FAILED
    if result == "Errored":
        return phase == NodePhase.ERROR
    if result == "Skipped":
        return phase == NodePhase.SKIPPED
    if result == "Omitted":
        return phase == NodePhase.OMITTED
    if result == "Daemoned":
        return False
    if result == "AnySucceeded":
        return node.type == NodeType.TASK_GROUP and any(
            c.phase == NodePhase.SUCCEEDED for c in children
        )
    if result == "AllFailed":
        return (
            node.type == NodeType.TASK_GROUP
            and bool(children)
            and all(c.phase == NodePhase.FAILED for c in children)
        )
    raise ExpressionError(f"unknown task result {result!r}")
