"""Creating and changing nodes: the one place the run's state is written during a pass.

Every change goes through :class:`NodeBook`, which journals it before anything acts on it
and announces it to the progress listener, so a crash never leaves a change the journal
does not know about and the listener sees exactly what the journal holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from geomlops.workflows.executor.model import Node, NodePhase, RunState, node_id, now
from geomlops.workflows.executor.progress import ProgressEvent
from geomlops.workflows.executor.store import RunJournal

STOP_MESSAGE = "Stopped with strategy '{}'"


@dataclass(frozen=True)
class Ctx:
    """Where in the tree a template is being executed."""

    boundary_id: str | None
    parent_id: str | None
    display: str
    in_exit: bool = False
    attempt: int | None = None


class Execute(Protocol):
    """The engine's entry for one node; template handlers call it for their children."""

    def __call__(
        self, name: str, template_name: str, args: dict[str, str] | None, ctx: Ctx
    ) -> Node: ...


class NodeBook:
    """The run's nodes, by name and by parent, with journaled, announced changes."""

    def __init__(
        self,
        state: RunState,
        journal: RunJournal,
        listener: Callable[[ProgressEvent], None] | None,
    ) -> None:
        self.state = state
        self.journal = journal
        self.listener = listener
        self.ids: dict[str, str] = {}
        self.children: defaultdict[str, list[str]] = defaultdict(list)
        for node in state.nodes.values():
            if node.parent_id:
                self.children[node.parent_id].append(node.id)

    def by_name(self, name: str) -> Node | None:
        """The node called ``name``, or None before it was created (ids are cached)."""
        identifier = self.ids.get(name)
        if identifier is None:
            identifier = self.ids[name] = node_id(self.state.name, name)
        return self.state.nodes.get(identifier)

    def children_of(self, node: Node | None) -> list[Node]:
        """The direct children of ``node`` in creation order (none for a missing node)."""
        if node is None:
            return []
        return [self.state.nodes[c] for c in self.children.get(node.id, [])]

    def stop_message(self) -> str:
        """The message of a node that fails because the run is being stopped."""
        return STOP_MESSAGE.format(self.state.shutdown)

    def new(
        self,
        name: str,
        ctx: Ctx,
        node_type: str,
        phase: str,
        template: str | None,
        message: str = "",
        inputs: dict[str, str] | None = None,
    ) -> Node:
        """Create the node ``name`` under ``ctx``, journal it and announce it."""
        node = Node(
            id=node_id(self.state.name, name),
            name=name,
            display_name=ctx.display,
            type=node_type,
            phase=phase,
            template=template,
            boundary_id=ctx.boundary_id,
            parent_id=ctx.parent_id,
            message=message,
            inputs=inputs,
        )
        stamp = now()
        if phase != NodePhase.PENDING:
            node.started_at = stamp
        if phase in NodePhase.FULFILLED:
            node.finished_at = stamp
        self.state.nodes[node.id] = node
        self.ids[name] = node.id
        if ctx.parent_id:
            self.children[ctx.parent_id].append(node.id)
        self.journal.node(node)
        self.emit(node)
        return node

    def set(
        self,
        node: Node,
        phase: str,
        message: str | None = None,
        *,
        kind: str | None = None,
        finished_at: float | None = None,
    ) -> None:
        """Move ``node`` to ``phase`` (stamping start and end), journal and announce it."""
        node.phase = phase
        if message is not None:
            node.message = message
        if phase == NodePhase.RUNNING and node.started_at is None:
            node.started_at = now()
        if phase in NodePhase.FULFILLED:
            node.finished_at = finished_at or now()
            if node.started_at is None:
                node.started_at = node.finished_at
        elif phase == NodePhase.PENDING:
            node.finished_at = None
        self.journal.node(node)
        self.emit(node, kind)

    def finish(self, phase: str, message: str) -> None:
        """End the run with ``phase``, journal it and announce it."""
        self.state.phase = phase
        self.state.message = message
        self.state.finished_at = now()
        self.journal.run()
        self.emit_run()

    def emit(self, node: Node, kind: str | None = None) -> None:
        """Tell the listener what happened to ``node`` (``kind`` defaults to its phase)."""
        if self.listener is None:
            return
        self.listener(
            ProgressEvent(
                run=self.state.name,
                kind=kind or node.phase.lower(),
                node_name=node.name,
                display_name=node.display_name,
                node_type=node.type,
                phase=node.phase,
                message=node.message,
                attempt=node.attempt,
            )
        )

    def emit_run(self) -> None:
        """Tell the listener the run's own phase changed."""
        if self.listener is None:
            return
        self.listener(
            ProgressEvent(
                run=self.state.name,
                kind="run",
                node_name=None,
                display_name=self.state.name,
                node_type=None,
                phase=self.state.phase,
                message=self.state.message,
            )
        )
