"""Parameters in and out of templates: the ``{{…}}`` scopes a node sees, and its outputs.

A scope is a flat map from tag to value, built the way Argo builds it: the workflow's tags
(``workflow.*``), a template's inputs (``inputs.parameters.*``), and the outputs of the
siblings a task or step may read (``tasks.T.*``, ``steps.S.*``, aggregated into JSON lists
when a sibling fanned out). Output parameters of DAG, steps and suspend templates are
resolved here too, from those scopes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from geomlops.workflows.executor.expressions import ExpressionError, as_parameter, substitute
from geomlops.workflows.executor.model import Node, NodePhase, NodeType, RunState, iso, now
from geomlops.workflows.executor.nodes import NodeBook


class Scopes:
    """Builds the scopes of one run; holds the workflow-level tags, set once at start."""

    def __init__(self, state: RunState, book: NodeBook) -> None:
        self.state = state
        self.book = book
        self.workflow = self._workflow_scope()

    def _workflow_scope(self) -> dict[str, str]:
        state = self.state
        metadata = state.workflow.get("metadata") or {}
        scope = {
            "workflow.name": state.name,
            "workflow.namespace": state.namespace,
            "workflow.uid": state.uid,
            "workflow.creationTimestamp": iso(state.created_at) or "",
            "workflow.mainEntrypoint": state.workflow["spec"].get("entrypoint", ""),
            "workflow.parameters": json.dumps(
                [{"name": k, "value": v} for k, v in state.parameters.items()]
            ),
        }
        for key, value in state.parameters.items():
            scope[f"workflow.parameters.{key}"] = value
        for key, value in (metadata.get("labels") or {}).items():
            scope[f"workflow.labels.{key}"] = str(value)
        for key, value in (metadata.get("annotations") or {}).items():
            scope[f"workflow.annotations.{key}"] = str(value)
        return scope

    def set_exit(self, root: Node) -> None:
        """Add the tags only the exit handler sees: status, failures and duration."""
        failures = [
            {
                "displayName": n.display_name,
                "message": n.message,
                "templateName": n.template,
                "phase": n.phase,
                "podName": n.pod_name,
                "finishedAt": iso(n.finished_at),
            }
            for n in self.state.nodes.values()
            if n.type == NodeType.POD and n.phase in NodePhase.FAILED_OR_ERROR
        ]
        started = self.state.started_at or now()
        self.workflow.update(
            {
                "workflow.status": NodePhase.FAILED if self.state.shutdown else root.phase,
                "workflow.failures": json.dumps(failures),
                "workflow.duration": f"{now() - started:.6f}",
            }
        )

    def base(self, node: Node) -> dict[str, str]:
        """The workflow's tags plus the node's inputs: what its template's body may use."""
        scope = dict(self.workflow)
        inputs = node.inputs or {}
        for key, value in inputs.items():
            scope[f"inputs.parameters.{key}"] = value
        scope["inputs.parameters"] = json.dumps(
            [{"name": k, "value": v} for k, v in inputs.items()]
        )
        return scope

    def resolve_inputs(self, template: dict[str, Any], args: dict[str, str]) -> dict[str, str]:
        """A template's input values: arguments, else value/default; enums are enforced."""
        values: dict[str, str] = {}
        for parameter in (template.get("inputs") or {}).get("parameters") or []:
            name = parameter["name"]
            if args.get(name) is not None:
                value = args[name]
            elif "value" in parameter:
                value = substitute(as_parameter(parameter["value"]), self.workflow)
            elif "default" in parameter:
                value = substitute(as_parameter(parameter["default"]), self.workflow)
            else:
                raise ExpressionError(
                    f"inputs.parameters.{name} was not supplied to template {template['name']!r}"
                )
            enum = parameter.get("enum")
            if enum and value not in [as_parameter(v) for v in enum]:
                raise ExpressionError(
                    f"inputs.parameters.{name} = {value!r} is not one of "
                    f"{', '.join(as_parameter(v) for v in enum)}"
                )
            values[name] = value
        return values

    def sibling(self, prefix: str, node: Node) -> dict[str, str]:
        """``tasks.T.*`` / ``steps.S.*`` tags of one sibling (aggregated when it fanned out)."""
        scope = {
            f"{prefix}.status": node.phase,
            f"{prefix}.id": node.id,
            f"{prefix}.startedAt": iso(node.started_at) or "",
            f"{prefix}.finishedAt": iso(node.finished_at) or "",
        }
        if node.type == NodeType.TASK_GROUP:
            scope.update(self._group_outputs(prefix, node))
            return scope
        outputs = node.outputs or {}
        for key, value in (outputs.get("parameters") or {}).items():
            scope[f"{prefix}.outputs.parameters.{key}"] = value
        if outputs.get("parameters"):
            scope[f"{prefix}.outputs.parameters"] = json.dumps(outputs["parameters"])
        if "result" in outputs:
            scope[f"{prefix}.outputs.result"] = outputs["result"]
        if "exitCode" in outputs:
            scope[f"{prefix}.outputs.exitCode"] = outputs["exitCode"]
            scope[f"{prefix}.exitCode"] = outputs["exitCode"]
        return scope

    def _group_outputs(self, prefix: str, group: Node) -> dict[str, str]:
        """Outputs of a fanned-out sibling: its children's, as JSON lists in item order."""
        results: list[Any] = []
        parameters: list[dict[str, str]] = []
        by_name: defaultdict[str, list[str]] = defaultdict(list)
        for child in self.book.children_of(group):
            outputs = child.outputs or {}
            if "result" in outputs:
                try:
                    parsed = json.loads(outputs["result"])
                    results.append(parsed if isinstance(parsed, dict) else outputs["result"])
                except ValueError:
                    results.append(outputs["result"])
            if outputs.get("parameters"):
                parameters.append(dict(outputs["parameters"]))
                for key, value in outputs["parameters"].items():
                    by_name[key].append(value)
        scope = {
            f"{prefix}.outputs.result": json.dumps(results),
            f"{prefix}.outputs.parameters": json.dumps(parameters),
        }
        for key, values in by_name.items():
            scope[f"{prefix}.outputs.parameters.{key}"] = json.dumps(values)
        return scope


def template_outputs(
    node: Node, template: dict[str, Any], scope: dict[str, str]
) -> tuple[str, str]:
    """Resolve a DAG or steps template's output parameters into ``node.outputs``.

    Returns the phase the node ends in: Succeeded, or Error naming the parameter that
    could not be resolved and has no default.
    """
    declared = (template.get("outputs") or {}).get("parameters") or []
    values: dict[str, str] = {}
    for parameter in declared:
        value_from = parameter.get("valueFrom") or {}
        source = value_from.get("parameter", parameter.get("value"))
        try:
            values[parameter["name"]] = substitute(as_parameter(source), scope)
        except ExpressionError as error:
            if "default" in value_from:
                values[parameter["name"]] = as_parameter(value_from["default"])
            else:
                return (
                    NodePhase.ERROR,
                    f"output parameter {parameter['name']!r}: {error.message}",
                )
    if values:
        node.outputs = {"parameters": values}
    return NodePhase.SUCCEEDED, ""


def suspend_outputs(
    template: dict[str, Any], given: dict[str, Any], scope: dict[str, str]
) -> dict[str, str]:
    """Output parameters of a suspend node at resume: supplied values, else defaults."""
    values: dict[str, str] = {}
    for parameter in (template.get("outputs") or {}).get("parameters") or []:
        name = parameter["name"]
        value_from = parameter.get("valueFrom") or {}
        if name in given:
            value = as_parameter(given[name])
        elif "supplied" in value_from and "default" in value_from:
            value = as_parameter(value_from["default"])
        elif "supplied" in value_from and "default" in parameter:
            value = as_parameter(parameter["default"])
        elif "value" in parameter:
            value = substitute(as_parameter(parameter["value"]), scope)
        else:
            raise ExpressionError(f"resume needs a value for output parameter {name!r}")
        enum = parameter.get("enum")
        if enum and value not in [as_parameter(v) for v in enum]:
            raise ExpressionError(
                f"output parameter {name!r} = {value!r} is not one of "
                f"{', '.join(as_parameter(v) for v in enum)}"
            )
        values[name] = value
    return values
