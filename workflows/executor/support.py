"""What the local executor supports, checked before anything runs.

Every field of a manifest is one of three things here: *interpreted* (the executor acts on
it), *recorded* (it only means something to a Kubernetes scheduler, e.g. resources, node
selectors, tolerations, and is kept in the manifest without effect on one machine), or
*rejected* with its path named. A field this module does not list is rejected: a manifest
that needs a volume, an artifact, a resource template or a mutex cannot run faithfully as
local processes, and running it without would mean its result could differ from the
cluster's without anyone knowing.

The same pass checks what Argo's own validation would: templates and tasks that exist,
dependencies without cycles, ``depends`` that parse, and ``{{…}}`` tags that name
something defined where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from geomlops.workflows.executor.expressions import (
    ExpressionError,
    depends_tasks,
    parse_depends,
)
from geomlops.workflows.executor.retry_expression import parse_retry_expression
from geomlops.workflows.executor.tags import TagScope, tag_problems

TEMPLATE_KINDS = ("container", "script", "dag", "steps", "suspend")
POD_KINDS = ("container", "script")

_K8S_ONLY = "means something only to a Kubernetes scheduler"

SPEC_FIELDS = {"entrypoint", "arguments", "templates", "onExit", "parallelism"}
SPEC_RECORDED = {
    "serviceAccountName",
    "automountServiceAccountToken",
    "nodeSelector",
    "tolerations",
    "affinity",
    "imagePullSecrets",
    "podGC",
    "ttlStrategy",
    "podMetadata",
    "podPriorityClassName",
    "priority",
    "schedulerName",
    "securityContext",
    "executor",
    "hostAliases",
    "hostNetwork",
    "dnsPolicy",
    "dnsConfig",
    "archiveLogs",
    "podDisruptionBudget",
    "workflowMetadata",
    "volumeClaimGC",
}
TEMPLATE_FIELDS = {
    "name",
    "inputs",
    "outputs",
    *TEMPLATE_KINDS,
    "retryStrategy",
    "parallelism",
    "activeDeadlineSeconds",
    "timeout",
}
TEMPLATE_RECORDED = {
    "metadata",
    "annotations",
    "nodeSelector",
    "tolerations",
    "affinity",
    "serviceAccountName",
    "automountServiceAccountToken",
    "securityContext",
    "priorityClassName",
    "schedulerName",
    "executor",
    "hostAliases",
    "archiveLocation",
    "podResources",
    "pendingTimeout",
}
CONTAINER_FIELDS = {
    "name",
    "image",
    "command",
    "args",
    "env",
    "workingDir",
    "terminationMessagePath",
}
CONTAINER_RECORDED = {
    "resources",
    "imagePullPolicy",
    "securityContext",
    "ports",
    "terminationMessagePolicy",
    "resizePolicy",
    "restartPolicy",
    "restartPolicyRules",
}
TASK_FIELDS = {
    "name",
    "template",
    "arguments",
    "when",
    "withItems",
    "withParam",
    "withSequence",
    "continueOn",
}
REASONS = {
    "resource": "`resource` templates (kubectl actions) need a cluster",
    "http": "`http` templates are not supported by the local executor",
    "plugin": "executor plugins are not supported by the local executor",
    "containerSet": "`containerSet` templates are not supported by the local executor",
    "data": "`data` templates are not supported by the local executor",
    "daemon": "daemoned steps are not supported by the local executor",
    "sidecars": "sidecars are not supported by the local executor",
    "initContainers": "init containers are not supported by the local executor",
    "volumes": "volumes are not supported; map container paths with GEOMLOPS_WORKFLOWS_PATH_MAP",
    "volumeMounts": "volume mounts are not supported; map container paths with "
    "GEOMLOPS_WORKFLOWS_PATH_MAP",
    "volumeClaimTemplates": "volume claims are not supported by the local executor",
    "synchronization": "semaphores and mutexes are not supported by the local executor",
    "memoize": "memoization is not supported by the local executor",
    "metrics": "Prometheus metrics are not supported by the local executor",
    "artifacts": "artifacts are not supported by the local executor; pass data through S3 "
    "with parameters naming the objects",
    "templateRef": "templateRef is not supported; put the template in this manifest",
    "workflowTemplateRef": "workflowTemplateRef is not supported; submit the WorkflowTemplate",
    "hooks": "lifecycle hooks are not supported by the local executor",
    "onExit": "task-level onExit is not supported; use spec.onExit",
    "inline": "inline templates are not supported; name the template",
    "podSpecPatch": "podSpecPatch cannot be applied to a local process",
    "envFrom": "envFrom is not supported; list env entries",
    "globalName": "global output parameters are not supported by the local executor",
    "expression": "expr-language expressions are not supported by the local executor",
    "target": "dag.target is not supported by the local executor",
}


@dataclass
class _Check:
    """Problems found so far, and what the tag checks need to know about the workflow."""

    workflow_parameters: set[str]
    templates: dict[str, dict[str, Any]]
    problems: list[str] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def fields(
        self,
        obj: Any,
        path: str,
        allowed: set[str],
        recorded: frozenset[str] | set[str] = frozenset(),
    ) -> bool:
        """Reject every key of ``obj`` that is neither interpreted nor recorded."""
        if not isinstance(obj, dict):
            self.add(path, f"expected a mapping, got {type(obj).__name__}")
            return False
        for key in obj:
            if key in allowed or key in recorded:
                continue
            reason = REASONS.get(key, "not supported by the local executor")
            self.add(f"{path}.{key}", reason)
        return True


def check_workflow(workflow: dict[str, Any]) -> list[str]:
    """Every reason the executor cannot run this (instantiated) Workflow; empty if none."""
    spec = workflow.get("spec") or {}
    templates_list = spec.get("templates")
    check = _Check(
        workflow_parameters={
            str(p.get("name")) for p in (spec.get("arguments") or {}).get("parameters") or []
        },
        templates={},
    )
    if not isinstance(templates_list, list) or not templates_list:
        check.add("spec.templates", "a workflow needs at least one template")
        return check.problems
    check.fields(spec, "spec", SPEC_FIELDS, SPEC_RECORDED)
    for index, template in enumerate(templates_list):
        if not isinstance(template, dict) or not template.get("name"):
            check.add(f"spec.templates[{index}]", "a template needs a name")
            continue
        if template["name"] in check.templates:
            check.add(f"spec.templates[{index}].name", f"duplicate template {template['name']!r}")
        check.templates[template["name"]] = template
    _check_arguments(check, spec.get("arguments"), "spec.arguments", workflow_level=True)
    entrypoint = spec.get("entrypoint")
    if not entrypoint:
        check.add("spec.entrypoint", "missing: this manifest is a library of templates")
    elif entrypoint not in check.templates:
        check.add("spec.entrypoint", f"no template named {entrypoint!r}")
    if spec.get("onExit") and spec["onExit"] not in check.templates:
        check.add("spec.onExit", f"no template named {spec['onExit']!r}")
    for field_name in ("entrypoint", "onExit"):
        template = check.templates.get(spec.get(field_name) or "")
        if template is not None:
            _check_bound_by_arguments(check, template, f"spec.{field_name}")
    if "parallelism" in spec and not _positive_int(spec["parallelism"]):
        check.add("spec.parallelism", "must be a positive integer")
    for index, template in enumerate(templates_list):
        if isinstance(template, dict) and template.get("name"):
            _check_template(check, template, f"spec.templates[{index}]")
    return check.problems


def _check_bound_by_arguments(check: _Check, template: dict[str, Any], path: str) -> None:
    """The entrypoint and exit handler get only the workflow's arguments as inputs."""
    for parameter in (template.get("inputs") or {}).get("parameters") or []:
        if not isinstance(parameter, dict):
            continue
        name = parameter.get("name")
        supplied = "value" in parameter or "default" in parameter
        if not supplied and name not in check.workflow_parameters:
            check.add(
                path,
                f"template {template['name']!r} needs input {name!r}, which no workflow "
                "argument of that name supplies",
            )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _template_kind(template: dict[str, Any]) -> str | None:
    kinds = [kind for kind in TEMPLATE_KINDS if kind in template]
    return kinds[0] if len(kinds) == 1 else None


def _check_template(check: _Check, template: dict[str, Any], path: str) -> None:
    check.fields(template, path, TEMPLATE_FIELDS, TEMPLATE_RECORDED)
    kinds = [kind for kind in TEMPLATE_KINDS if kind in template]
    name = template["name"]
    if len(kinds) != 1:
        unsupported = [
            k for k in ("resource", "http", "plugin", "containerSet", "data") if k in template
        ]
        if not unsupported:
            check.add(
                path,
                f"template {name!r} needs exactly one of {', '.join(TEMPLATE_KINDS)} "
                f"(has {', '.join(kinds) or 'none'})",
            )
        return
    kind = kinds[0]
    inputs = _check_inputs(check, template.get("inputs"), f"{path}.inputs")
    scope = TagScope(
        workflow_parameters=check.workflow_parameters,
        inputs=inputs,
        pod=kind in POD_KINDS,
        retries="retryStrategy" in template,
    )
    if "retryStrategy" in template:
        _check_retry(check, template["retryStrategy"], f"{path}.retryStrategy")
        _check_tags(check, template["retryStrategy"], f"{path}.retryStrategy", scope)
    if "parallelism" in template and not _positive_int(template["parallelism"]):
        check.add(f"{path}.parallelism", "must be a positive integer")
    for key in ("activeDeadlineSeconds", "timeout"):
        if key in template:
            if kind not in POD_KINDS:
                check.add(f"{path}.{key}", "applies to container and script templates only")
            _check_tags(check, template[key], f"{path}.{key}", scope)
    if kind in POD_KINDS:
        _check_pod(check, template, kind, path, scope)
    elif kind == "suspend":
        suspend = template["suspend"] or {}
        check.fields(suspend, f"{path}.suspend", {"duration"})
        _check_tags(check, suspend, f"{path}.suspend", scope)
    elif kind == "dag":
        _check_dag(check, template, path, scope)
    else:
        _check_steps(check, template, path, scope)
    _check_outputs(check, template.get("outputs"), f"{path}.outputs", kind, scope, template)


def _check_inputs(check: _Check, inputs: Any, path: str) -> set[str]:
    if inputs is None:
        return set()
    check.fields(inputs, path, {"parameters"})
    names = set()
    for index, parameter in enumerate((inputs or {}).get("parameters") or []):
        where = f"{path}.parameters[{index}]"
        check.fields(parameter, where, {"name", "value", "default", "enum", "description"})
        if isinstance(parameter, dict):
            names.add(str(parameter.get("name")))
            for key in ("value", "default"):
                if key in parameter:
                    _check_tags(
                        check,
                        parameter[key],
                        f"{where}.{key}",
                        TagScope(check.workflow_parameters),
                    )
    return names


def _check_arguments(check: _Check, arguments: Any, path: str, *, workflow_level: bool) -> None:
    if arguments is None:
        return
    check.fields(arguments, path, {"parameters"})
    allowed = {"name", "value", "description"}
    if workflow_level:
        allowed |= {"default", "enum"}
    for index, parameter in enumerate((arguments or {}).get("parameters") or []):
        where = f"{path}.parameters[{index}]"
        check.fields(parameter, where, allowed)
        if isinstance(parameter, dict) and not workflow_level and "value" not in parameter:
            check.add(where, f"argument {parameter.get('name')!r} has no value")


def _check_retry(check: _Check, strategy: Any, path: str) -> None:
    allowed = {"limit", "retryPolicy", "backoff", "expression"}
    if not check.fields(strategy, path, allowed, {"affinity"}):
        return
    if strategy.get("expression") and "{{" not in str(strategy["expression"]):
        try:
            parse_retry_expression(str(strategy["expression"]))
        except ExpressionError as error:
            check.add(f"{path}.expression", error.message)
    if "backoff" in strategy:
        check.fields(
            strategy["backoff"], f"{path}.backoff", {"duration", "factor", "maxDuration", "cap"}
        )


def _check_pod(
    check: _Check, template: dict[str, Any], kind: str, path: str, scope: TagScope
) -> None:
    body = template[kind]
    where = f"{path}.{kind}"
    allowed = CONTAINER_FIELDS | ({"source"} if kind == "script" else set())
    if not check.fields(body, where, allowed, CONTAINER_RECORDED):
        return
    if not body.get("command"):
        check.add(
            f"{where}.command",
            f"missing: the entrypoint of image {body.get('image')!r} cannot run as a local "
            "process; give the command explicitly",
        )
    for index, entry in enumerate(body.get("env") or []):
        env_path = f"{where}.env[{index}]"
        if not check.fields(entry, env_path, {"name", "value", "valueFrom"}):
            continue
        if "valueFrom" in entry:
            source = entry["valueFrom"]
            check.fields(source, f"{env_path}.valueFrom", {"secretKeyRef"})
            if isinstance(source, dict) and "secretKeyRef" in source:
                check.fields(
                    source["secretKeyRef"],
                    f"{env_path}.valueFrom.secretKeyRef",
                    {"name", "key", "optional"},
                )
    _check_tags(check, body, where, scope)


def _check_outputs(
    check: _Check,
    outputs: Any,
    path: str,
    kind: str,
    scope: TagScope,
    template: dict[str, Any],
) -> None:
    if outputs is None:
        return
    check.fields(outputs, path, {"parameters"})
    sources = {
        "container": {"path", "default"},
        "script": {"path", "default"},
        "suspend": {"supplied", "default"},
        "dag": {"parameter", "default"},
        "steps": {"parameter", "default"},
    }[kind]
    for index, parameter in enumerate((outputs or {}).get("parameters") or []):
        where = f"{path}.parameters[{index}]"
        if not check.fields(
            parameter, where, {"name", "value", "valueFrom", "description", "enum", "default"}
        ):
            continue
        value_from = parameter.get("valueFrom")
        if value_from is not None:
            check.fields(value_from, f"{where}.valueFrom", sources)
        elif "value" not in parameter:
            check.add(where, f"output parameter {parameter.get('name')!r} needs value or valueFrom")
        if kind in ("dag", "steps"):
            inner = _children_scope(template, kind, scope)
            _check_tags(check, parameter, where, inner)
        else:
            _check_tags(check, parameter, where, scope)


def _children_scope(template: dict[str, Any], kind: str, scope: TagScope) -> TagScope:
    if kind == "dag":
        names = {
            str(t.get("name"))
            for t in (template["dag"] or {}).get("tasks") or []
            if isinstance(t, dict)
        }
        return scope.with_siblings("tasks", names)
    names = {
        str(s.get("name"))
        for group in template.get("steps") or []
        for s in (group or [])
        if isinstance(s, dict)
    }
    return scope.with_siblings("steps", names)


def _check_task_common(check: _Check, task: dict[str, Any], where: str) -> None:
    template_name = task.get("template")
    if not template_name:
        if not any(k in task for k in ("templateRef", "inline")):
            check.add(where, f"task {task.get('name')!r} names no template")
    elif template_name not in check.templates:
        check.add(f"{where}.template", f"no template named {template_name!r}")
    _check_arguments(check, task.get("arguments"), f"{where}.arguments", workflow_level=False)
    loops = [k for k in ("withItems", "withParam", "withSequence") if k in task]
    if len(loops) > 1:
        check.add(where, f"use one of withItems, withParam, withSequence (has {', '.join(loops)})")
    if "withItems" in task and not isinstance(task["withItems"], list):
        check.add(f"{where}.withItems", "must be a list")
    if "withSequence" in task:
        check.fields(
            task["withSequence"], f"{where}.withSequence", {"count", "start", "end", "format"}
        )
    if "continueOn" in task:
        check.fields(task["continueOn"], f"{where}.continueOn", {"error", "failed"})


def _check_dag(check: _Check, template: dict[str, Any], path: str, scope: TagScope) -> None:
    dag = template["dag"]
    where = f"{path}.dag"
    if not check.fields(dag, where, {"tasks", "failFast"}):
        return
    tasks = dag.get("tasks") or []
    if not tasks:
        check.add(f"{where}.tasks", "a DAG needs at least one task")
        return
    names: dict[str, int] = {}
    for index, task in enumerate(tasks):
        if isinstance(task, dict) and task.get("name"):
            if task["name"] in names:
                check.add(f"{where}.tasks[{index}].name", f"duplicate task {task['name']!r}")
            names[task["name"]] = index
    dependencies: dict[str, set[str]] = {}
    for index, task in enumerate(tasks):
        task_path = f"{where}.tasks[{index}]"
        if not check.fields(task, task_path, TASK_FIELDS | {"dependencies", "depends"}):
            continue
        _check_task_common(check, task, task_path)
        deps: set[str] = set()
        if "dependencies" in task and "depends" in task:
            check.add(task_path, "use either dependencies or depends, not both")
        for dep in task.get("dependencies") or []:
            deps.add(str(dep))
        if task.get("depends"):
            try:
                deps |= depends_tasks(parse_depends(str(task["depends"])))
            except ExpressionError as error:
                check.add(f"{task_path}.depends", error.message)
        for dep in sorted(deps):
            if dep not in names:
                check.add(task_path, f"task {task.get('name')!r} depends on unknown task {dep!r}")
        dependencies[str(task.get("name"))] = deps & set(names)
    cycle = _find_cycle(dependencies)
    if cycle:
        check.add(f"{where}.tasks", f"dependency cycle: {' -> '.join(cycle)}")
        return
    for index, task in enumerate(tasks):
        if not isinstance(task, dict):
            continue
        upstream = ancestors(str(task.get("name")), dependencies)
        task_scope = scope.with_siblings("tasks", upstream, looped=_loops(task))
        fields = {k: task[k] for k in ("arguments", "when", "withParam", "withItems") if k in task}
        _check_tags(check, fields, f"{where}.tasks[{index}]", task_scope)


def _check_steps(check: _Check, template: dict[str, Any], path: str, scope: TagScope) -> None:
    groups = template["steps"]
    if not isinstance(groups, list) or not groups:
        check.add(f"{path}.steps", "needs at least one step group")
        return
    earlier: set[str] = set()
    for g, group in enumerate(groups):
        if not isinstance(group, list) or not group:
            check.add(f"{path}.steps[{g}]", "a step group is a non-empty list of steps")
            continue
        names = set()
        for s, step in enumerate(group):
            step_path = f"{path}.steps[{g}][{s}]"
            if not check.fields(step, step_path, TASK_FIELDS):
                continue
            if not step.get("name"):
                check.add(step_path, "a step needs a name")
            _check_task_common(check, step, step_path)
            step_scope = scope.with_siblings("steps", earlier, looped=_loops(step))
            fields = {
                k: step[k] for k in ("arguments", "when", "withParam", "withItems") if k in step
            }
            _check_tags(check, fields, step_path, step_scope)
            names.add(str(step.get("name")))
        earlier |= names


def _loops(task: dict[str, Any]) -> bool:
    return any(k in task for k in ("withItems", "withParam", "withSequence"))


def _find_cycle(dependencies: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(dependencies.get(name, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[name] = 2
        return None

    for name in dependencies:
        if name not in state and (found := visit(name)):
            return found
    return None


def ancestors(name: str, dependencies: dict[str, set[str]]) -> set[str]:
    """Every task ``name`` depends on, directly or through others."""
    seen: set[str] = set()
    pending = list(dependencies.get(name, ()))
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(dependencies.get(current, ()))
    return seen


def _check_tags(check: _Check, value: Any, path: str, scope: TagScope) -> None:
    for where, problem in tag_problems(value, path, scope):
        check.add(where, problem)


def template_kind(template: dict[str, Any]) -> str:
    """The one kind of a template that passed :func:`check_workflow`."""
    kind = _template_kind(template)
    if kind is None:  # pragma: no cover - check_workflow rejects these first
        raise ValueError(f"template {template.get('name')!r} has no single kind")
    return kind
