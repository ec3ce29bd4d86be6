"""The state of a local run: the run and its nodes, named and phased as Argo names them.

A node is one box of Argo's graph: the workflow's root, a DAG or steps invocation, a step
group, a task group (a fanned-out task), a retry wrapper, a pod (one process), a suspend
point, or a placeholder for a task that was skipped or omitted. Names and ids follow
Argo (``<run>.<task>``, ``<run>.<task>(0:item)``, ``<run>.<task>(1)`` for a retry attempt,
id ``<run>-<fnv32a(name)>``) so status reads the same locally and on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any


class RunPhase:
    """Phases of a run (Argo's workflow phases)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"
    FINISHED = frozenset({SUCCEEDED, FAILED, ERROR})


class NodePhase:
    """Phases of a node (Argo's node phases)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    SKIPPED = "Skipped"
    FAILED = "Failed"
    ERROR = "Error"
    OMITTED = "Omitted"
    COMPLETED = frozenset({SUCCEEDED, FAILED, ERROR})
    """Argo's ``Completed()``: ran to an end. Skipped and Omitted are not completed."""
    FULFILLED = frozenset({SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED})
    FAILED_OR_ERROR = frozenset({FAILED, ERROR})


class NodeType:
    """Kinds of node (Argo's node types)."""

    POD = "Pod"
    DAG = "DAG"
    STEPS = "Steps"
    STEP_GROUP = "StepGroup"
    TASK_GROUP = "TaskGroup"
    RETRY = "Retry"
    SKIPPED = "Skipped"
    SUSPEND = "Suspend"


def fnv32a(text: str) -> int:
    """FNV-1a 32-bit hash, the one Argo uses for node ids and pod names."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def node_id(run_name: str, node_name: str) -> str:
    """Argo's node id: the run name for the root node, else ``<run>-<fnv32a(name)>``."""
    return run_name if node_name == run_name else f"{run_name}-{fnv32a(node_name)}"


def pod_name(run_name: str, template: str, node_name: str) -> str:
    """Argo's (v2) pod name ``<run>-<template>-<fnv32a(node name)>``, kept filesystem-safe."""
    prefix = f"{run_name}-{template}"
    if len(prefix) > 240:
        prefix = prefix[:240]
    return f"{prefix}-{fnv32a(node_name)}"


def now() -> float:
    """Seconds since the epoch; one clock for every timestamp in the state."""
    return datetime.now(UTC).timestamp()


def iso(timestamp: float | None) -> str | None:
    """RFC 3339 in UTC, as Argo writes times, or None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Node:
    """One node of a run. Only the main loop of the executor mutates nodes."""

    id: str
    name: str
    display_name: str
    type: str
    phase: str
    template: str | None = None
    boundary_id: str | None = None
    parent_id: str | None = None
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    inputs: dict[str, str] | None = None
    outputs: dict[str, Any] | None = None
    pod_name: str | None = None
    image: str | None = None
    command: list[str] | None = None
    attempt: int | None = None
    next_attempt_at: float | None = None
    resume_at: float | None = None
    restarts: int = 0

    @property
    def fulfilled(self) -> bool:
        return self.phase in NodePhase.FULFILLED

    @property
    def completed(self) -> bool:
        return self.phase in NodePhase.COMPLETED

    @property
    def suspended(self) -> bool:
        return self.type == NodeType.SUSPEND and self.phase == NodePhase.RUNNING

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive deep copy dominated the journal's cost, and
        # the dict is serialised at once, so sharing the (JSON-only) values is safe.
        return {name: getattr(self, name) for name in _NODE_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Node:
        return cls(**{key: value for key, value in data.items() if key in _NODE_FIELDS})

    def to_status(self, children: list[str]) -> dict[str, Any]:
        """The node as ``status`` reports it (Argo's camelCase field names)."""
        status: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "displayName": self.display_name,
            "type": self.type,
            "templateName": self.template,
            "phase": self.phase,
            "message": self.message,
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "boundaryID": self.boundary_id,
            "children": children,
            "suspended": self.suspended,
        }
        if self.inputs is not None:
            status["inputs"] = {
                "parameters": [{"name": k, "value": v} for k, v in self.inputs.items()]
            }
        if self.outputs:
            outputs: dict[str, Any] = {}
            if self.outputs.get("parameters"):
                outputs["parameters"] = [
                    {"name": k, "value": v} for k, v in self.outputs["parameters"].items()
                ]
            for key in ("result", "exitCode"):
                if key in self.outputs:
                    outputs[key] = self.outputs[key]
            status["outputs"] = outputs
        if self.pod_name:
            status["podName"] = self.pod_name
            status["image"] = self.image
            status["command"] = self.command
        if self.attempt is not None:
            status["retries"] = self.attempt
        if self.restarts:
            status["restarts"] = self.restarts
        return status


_NODE_FIELDS = tuple(f.name for f in fields(Node))


@dataclass(slots=True)
class RunState:
    """Everything persisted about one run (``run.json`` plus the replayed journal)."""

    name: str
    uid: str
    namespace: str
    manifest: dict[str, Any]
    workflow: dict[str, Any]
    parameters: dict[str, str]
    phase: str = RunPhase.PENDING
    message: str = ""
    created_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    shutdown: str | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    seq: int = 0
    version: int = 1

    @property
    def finished(self) -> bool:
        return self.phase in RunPhase.FINISHED

    @property
    def suspended_nodes(self) -> list[Node]:
        return [node for node in self.nodes.values() if node.suspended]

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "nodes"}
        data["nodes"] = {key: node.to_dict() for key, node in self.nodes.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known and key != "nodes"}
        state = cls(**values)
        state.nodes = {key: Node.from_dict(node) for key, node in data.get("nodes", {}).items()}
        return state

    def run_fields(self) -> dict[str, Any]:
        """The run-level fields a journal record carries (everything but nodes and inputs)."""
        return {
            "phase": self.phase,
            "message": self.message,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "shutdown": self.shutdown,
        }
