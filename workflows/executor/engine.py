"""The reconcile loop that drives one run, the way Argo's controller does.

Each pass walks the template tree from the entrypoint and, for every node, looks up what
the state already knows: a fulfilled node is never touched again, a node whose inputs are
ready is created, a pod that has room is launched. Pods run on worker threads; only the
main thread changes the state, and it journals every change before acting on it. Because a
pass derives everything from the persisted nodes, a fresh executor resuming after a crash
runs the same passes and continues exactly where the dead one stopped; pods that were
running when it died are killed (their process groups) and run again, completed ones never.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from geomlops.errors import GeomlopsError
from geomlops.workflows.executor.expressions import (
    DependsNode,
    ExpressionError,
    as_parameter,
    dependencies_as_depends,
    depends_results,
    depends_tasks,
    evaluate_depends,
    evaluate_when,
    item_scope,
    parse_depends,
    substitute,
    substitute_all,
)
from geomlops.workflows.executor.model import (
    Node,
    NodePhase,
    NodeType,
    RunPhase,
    RunState,
    iso,
    node_id,
    now,
    pod_name,
)
from geomlops.workflows.executor.paths import PathMapper, expand_k8s_vars
from geomlops.workflows.executor.pods import (
    OutputFile,
    PodResult,
    PodRunner,
    PodSpec,
    kill_leftover,
)
from geomlops.workflows.executor.progress import ProgressEvent
from geomlops.workflows.executor.store import RunJournal, take_requests
from geomlops.workflows.executor.support import POD_KINDS, template_kind
from geomlops.workflows.executor.timing import RetryPlan, parse_duration, parse_int

STOP_MESSAGE = "Stopped with strategy '{}'"
HANDLED_RESULTS = {"Failed", "Errored", "AllFailed", "AnySucceeded"}


@dataclass(frozen=True)
class EngineConfig:
    """What the engine needs from the settings, resolved by the caller."""

    parallelism: int
    path_map: dict[str, str]
    secrets_dir: Path
    base_env: dict[str, str]
    poll_interval: float
    kill_grace: float


@dataclass(frozen=True)
class _Ctx:
    """Where in the tree a template is being executed."""

    boundary_id: str | None
    parent_id: str | None
    display: str
    in_exit: bool = False
    attempt: int | None = None


@dataclass
class _DagInfo:
    order: list[dict[str, Any]]
    deps: dict[str, set[str]]
    depends: dict[str, DependsNode | None]
    targets: list[str]
    handled: dict[str, set[str]]
    fail_fast: bool


class Engine:
    """Drives one run until it finishes, or until only suspended nodes are left."""

    def __init__(
        self,
        state: RunState,
        directory: Path,
        config: EngineConfig,
        listener: Callable[[ProgressEvent], None] | None = None,
    ) -> None:
        self.state = state
        self.directory = directory
        self.config = config
        self.listener = listener
        self.spec = state.workflow["spec"]
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.journal = RunJournal(directory, state)
        self.pods = PodRunner(config.kill_grace)
        self.results: queue.SimpleQueue[PodResult] = queue.SimpleQueue()
        self.running: dict[str, list[str]] = {}  # pod node id -> boundary chain
        self.running_under: defaultdict[str, int] = defaultdict(int)
        self.limits: dict[str, int] = {}
        self.global_limit = min(config.parallelism, self.spec.get("parallelism") or 10**9)
        self.timers: list[float] = []
        self.ids: dict[str, str] = {}
        self.children: defaultdict[str, list[str]] = defaultdict(list)
        for node in state.nodes.values():
            if node.parent_id:
                self.children[node.parent_id].append(node.id)
        self.expansions: dict[str, list[tuple[str, str, dict[str, str]]] | None] = {}
        self.open_children: dict[str, list[tuple[str, str, dict[str, str]]]] = {}
        self.dag_infos: dict[str, _DagInfo] = {}
        self.retry_plans: dict[str, RetryPlan] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.last_request_check = 0.0
        self.workflow_scope = self._workflow_scope()

    # --- driving ------------------------------------------------------------------------

    def drive(self) -> None:
        """Run passes until the run is finished or cannot progress without a resume."""
        self._recover_interrupted_pods()
        if self.state.phase == RunPhase.PENDING:
            self.state.phase = RunPhase.RUNNING
            self.state.started_at = now()
            self.journal.run()
            self._emit_run()
        self.pool = ThreadPoolExecutor(max_workers=self.global_limit, thread_name_prefix="pod")
        try:
            while True:
                self._check_requests(force=True)
                if self._settle():
                    break
                if not self.running and not self.timers:
                    if not self.state.suspended_nodes:
                        self._finish(RunPhase.ERROR, "the executor could make no progress")
                    break
                self._wait()
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): kill the pods but leave their nodes Running, so
            # that resuming the run re-runs exactly those.
            self.pods.kill_all("the executor was interrupted")
            raise
        finally:
            self.pool.shutdown(wait=True)
            self.journal.compact()
            self.journal.close()

    def _settle(self) -> bool:
        """Reconcile until a pass changes nothing; True when the run has finished."""
        while True:
            before = self.state.seq
            self.timers = []
            finished = self._reconcile()
            if finished or self.state.seq == before:
                return finished

    def _wait(self) -> None:
        timeout = self.config.poll_interval
        if self.timers:
            timeout = max(0.0, min(timeout, min(self.timers) - now()))
        with contextlib.suppress(queue.Empty):
            self._apply_result(self.results.get(timeout=timeout))
        while True:
            try:
                self._apply_result(self.results.get_nowait())
            except queue.Empty:
                break
        self._check_requests()

    # --- requests from other processes --------------------------------------------------

    def _check_requests(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self.last_request_check < self.config.poll_interval:
            return
        self.last_request_check = time.monotonic()
        for request in take_requests(self.directory):
            if request.get("kind") == "stop":
                self._apply_stop(request)
            elif request.get("kind") == "resume":
                self.apply_resume(request)

    def _apply_stop(self, request: dict[str, Any]) -> None:
        if self.state.shutdown or self.state.finished:
            return
        strategy = "Terminate" if request.get("terminate") else "Stop"
        self.state.shutdown = strategy
        self.state.message = request.get("reason") or STOP_MESSAGE.format(strategy)
        self.journal.run()
        self.pods.kill_all(STOP_MESSAGE.format(strategy))

    def apply_resume(self, request: dict[str, Any]) -> list[str]:
        """Resume suspended nodes (all, or the one named); returns the resumed node names."""
        wanted = request.get("node")
        parameters = request.get("parameters") or {}
        resumed = []
        for node in list(self.state.suspended_nodes):
            if wanted and wanted not in (node.name, node.display_name, node.id):
                continue
            template = self.templates[node.template or ""]
            try:
                outputs = suspend_outputs(template, parameters, self._base_scope(node))
            except ExpressionError as error:
                self._set(node, NodePhase.ERROR, str(error))
                continue
            node.outputs = {"parameters": outputs} if outputs else None
            message = request.get("reason") or "resumed"
            self._set(node, NodePhase.SUCCEEDED, message, kind="resumed")
            resumed.append(node.name)
        return resumed

    # --- pods finishing -----------------------------------------------------------------

    def _apply_result(self, result: PodResult) -> None:
        node = self.state.nodes[result.node_id]
        for boundary in self.running.pop(node.id, []):
            self.running_under[boundary] -= 1
        outputs: dict[str, Any] = {}
        if result.parameters:
            outputs["parameters"] = dict(result.parameters)
        if result.result is not None:
            outputs["result"] = result.result
        if result.exit_code is not None:
            outputs["exitCode"] = str(result.exit_code)
        # Static output values (`value:`) are resolved at launch; merge them in order.
        static = (node.outputs or {}).get("static") or {}
        if static:
            outputs.setdefault("parameters", {}).update(static)
        node.outputs = outputs or None
        message = result.message
        if not message and node.restarts:
            message = "re-run after the executor was interrupted while this pod ran"
        self._set(node, result.phase, message, finished_at=result.finished_at)

    def _recover_interrupted_pods(self) -> None:
        """Pods left Running by a dead executor: kill leftovers, then run them again."""
        for node in list(self.state.nodes.values()):
            if node.type == NodeType.POD and node.phase == NodePhase.RUNNING and node.pod_name:
                kill_leftover(self.directory / "pods" / node.pod_name)
                node.restarts += 1
                node.message = "re-run after the executor was interrupted while this pod ran"
                self._set(node, NodePhase.PENDING, node.message, kind="restarted")

    # --- the tree -----------------------------------------------------------------------

    def _reconcile(self) -> bool:
        run = self.state.name
        if self.state.finished:
            return True
        root = self.execute(
            run,
            self.spec["entrypoint"],
            dict(self.state.parameters),
            _Ctx(boundary_id=None, parent_id=None, display=run),
        )
        if not root.fulfilled:
            return False
        exit_node = None
        on_exit = self.spec.get("onExit")
        if on_exit and self.state.shutdown != "Terminate":
            self._set_exit_scope(root)
            exit_node = self.execute(
                f"{run}.onExit",
                on_exit,
                dict(self.state.parameters),
                _Ctx(boundary_id=None, parent_id=None, display=f"{run}.onExit", in_exit=True),
            )
            if not exit_node.fulfilled:
                return False
        phase = root.phase if root.phase in NodePhase.COMPLETED else NodePhase.SUCCEEDED
        message = root.message if phase != NodePhase.SUCCEEDED else ""
        exit_failed = exit_node is not None and exit_node.phase in NodePhase.FAILED_OR_ERROR
        if exit_failed and phase == NodePhase.SUCCEEDED:
            phase = NodePhase.FAILED
            message = f"exit handler failed: {exit_node.message}".rstrip(": ")  # type: ignore[union-attr]
        if self.state.shutdown:
            message = self.state.message or STOP_MESSAGE.format(self.state.shutdown)
            phase = NodePhase.FAILED
        self._finish(phase, message)
        return True

    def _finish(self, phase: str, message: str) -> None:
        self.state.phase = phase
        self.state.message = message
        self.state.finished_at = now()
        self.journal.run()
        self._emit_run()

    def node_by_name(self, name: str) -> Node | None:
        identifier = self.ids.get(name)
        if identifier is None:
            identifier = self.ids[name] = node_id(self.state.name, name)
        return self.state.nodes.get(identifier)

    def execute(
        self, name: str, template_name: str, args: dict[str, str] | None, ctx: _Ctx
    ) -> Node:
        """Advance the node ``name`` running ``template_name``; create it if it is new."""
        node = self.node_by_name(name)
        if node is not None and node.fulfilled:
            return node
        template = self.templates[template_name]
        kind = template_kind(template)
        if node is None:
            try:
                inputs = self._resolve_inputs(template, args or {})
            except ExpressionError as error:
                return self._new(
                    name, ctx, NodeType.SKIPPED, NodePhase.ERROR, template_name, str(error)
                )
            if "retryStrategy" in template and ctx.attempt is None:
                node = self._new(
                    name, ctx, NodeType.RETRY, NodePhase.RUNNING, template_name, inputs=inputs
                )
            else:
                node_type = {
                    "container": NodeType.POD,
                    "script": NodeType.POD,
                    "dag": NodeType.DAG,
                    "steps": NodeType.STEPS,
                    "suspend": NodeType.SUSPEND,
                }[kind]
                phase = (
                    NodePhase.PENDING
                    if node_type in (NodeType.POD, NodeType.SUSPEND)
                    else NodePhase.RUNNING
                )
                node = self._new(name, ctx, node_type, phase, template_name, inputs=inputs)
                if ctx.attempt is not None:
                    node.attempt = ctx.attempt
        if node.type == NodeType.RETRY:
            return self._execute_retry(node, template, ctx)
        if kind in POD_KINDS:
            return self._execute_pod(node, template, kind, ctx)
        if kind == "dag":
            return self._execute_dag(node, template, ctx)
        if kind == "steps":
            return self._execute_steps(node, template, ctx)
        return self._execute_suspend(node, template, ctx)

    def _new(
        self,
        name: str,
        ctx: _Ctx,
        node_type: str,
        phase: str,
        template: str | None,
        message: str = "",
        inputs: dict[str, str] | None = None,
    ) -> Node:
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
        self._emit(node)
        return node

    def _set(
        self,
        node: Node,
        phase: str,
        message: str | None = None,
        *,
        kind: str | None = None,
        finished_at: float | None = None,
    ) -> None:
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
        self._emit(node, kind)

    # --- scopes -------------------------------------------------------------------------

    def _workflow_scope(self) -> dict[str, str]:
        workflow = self.state.workflow
        metadata = workflow.get("metadata") or {}
        scope = {
            "workflow.name": self.state.name,
            "workflow.namespace": self.state.namespace,
            "workflow.uid": self.state.uid,
            "workflow.creationTimestamp": iso(self.state.created_at) or "",
            "workflow.mainEntrypoint": self.spec.get("entrypoint", ""),
            "workflow.parameters": json.dumps(
                [{"name": k, "value": v} for k, v in self.state.parameters.items()]
            ),
        }
        for key, value in self.state.parameters.items():
            scope[f"workflow.parameters.{key}"] = value
        for key, value in (metadata.get("labels") or {}).items():
            scope[f"workflow.labels.{key}"] = str(value)
        for key, value in (metadata.get("annotations") or {}).items():
            scope[f"workflow.annotations.{key}"] = str(value)
        return scope

    def _set_exit_scope(self, root: Node) -> None:
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
        self.workflow_scope.update(
            {
                "workflow.status": NodePhase.FAILED if self.state.shutdown else root.phase,
                "workflow.failures": json.dumps(failures),
                "workflow.duration": f"{now() - started:.6f}",
            }
        )

    def _base_scope(self, node: Node) -> dict[str, str]:
        scope = dict(self.workflow_scope)
        inputs = node.inputs or {}
        for key, value in inputs.items():
            scope[f"inputs.parameters.{key}"] = value
        scope["inputs.parameters"] = json.dumps(
            [{"name": k, "value": v} for k, v in inputs.items()]
        )
        return scope

    def _resolve_inputs(self, template: dict[str, Any], args: dict[str, str]) -> dict[str, str]:
        values: dict[str, str] = {}
        for parameter in (template.get("inputs") or {}).get("parameters") or []:
            name = parameter["name"]
            if args.get(name) is not None:
                value = args[name]
            elif "value" in parameter:
                value = substitute(as_parameter(parameter["value"]), self.workflow_scope)
            elif "default" in parameter:
                value = substitute(as_parameter(parameter["default"]), self.workflow_scope)
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

    def _sibling_scope(self, prefix: str, node: Node) -> dict[str, str]:
        """``tasks.T.*`` / ``steps.S.*`` tags of one sibling (aggregated when it fanned out)."""
        scope = {
            f"{prefix}.status": node.phase,
            f"{prefix}.id": node.id,
            f"{prefix}.startedAt": iso(node.started_at) or "",
            f"{prefix}.finishedAt": iso(node.finished_at) or "",
        }
        if node.type == NodeType.TASK_GROUP:
            results: list[Any] = []
            parameters: list[dict[str, str]] = []
            by_name: defaultdict[str, list[str]] = defaultdict(list)
            for child_id in self.children.get(node.id, []):
                child = self.state.nodes[child_id]
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
            scope[f"{prefix}.outputs.result"] = json.dumps(results)
            scope[f"{prefix}.outputs.parameters"] = json.dumps(parameters)
            for key, values in by_name.items():
                scope[f"{prefix}.outputs.parameters.{key}"] = json.dumps(values)
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

    # --- pods ---------------------------------------------------------------------------

    def _execute_pod(self, node: Node, template: dict[str, Any], kind: str, ctx: _Ctx) -> Node:
        if node.id in self.running:
            return node
        if self.state.shutdown and not ctx.in_exit:
            self._set(node, NodePhase.FAILED, STOP_MESSAGE.format(self.state.shutdown))
            return node
        chain = self._boundary_chain(node)
        if not self._has_room(chain):
            return node
        try:
            spec = self._pod_spec(node, template, kind, ctx)
        except GeomlopsError as error:
            self._set(node, NodePhase.ERROR, error.message)
            return node
        self.running[node.id] = chain
        for boundary in chain:
            self.running_under[boundary] += 1
        if node.restarts:
            with open(spec.log_path, "ab") as log:
                log.write(
                    b"[geomlops executor] --- re-run after the executor was interrupted ---\n"
                )
        self._set(
            node, NodePhase.RUNNING, "" if not node.restarts else node.message, kind="started"
        )
        assert self.pool is not None  # noqa: S101 - drive() creates it
        self.pool.submit(self._run_pod, spec)
        return node

    def _run_pod(self, spec: PodSpec) -> None:
        try:
            result = self.pods.run(spec)
        except Exception as error:
            result = PodResult(spec.node_id, NodePhase.ERROR, f"executor error: {error}")
        self.results.put(result)

    def _boundary_chain(self, node: Node) -> list[str]:
        chain = []
        boundary = node.boundary_id
        while boundary:
            chain.append(boundary)
            parent = self.state.nodes.get(boundary)
            boundary = parent.boundary_id if parent else None
        return chain

    def _has_room(self, chain: list[str]) -> bool:
        if len(self.running) >= self.global_limit:
            return False
        return all(self.running_under[b] < self.limits[b] for b in chain if b in self.limits)

    def _saturated(self) -> bool:
        return len(self.running) >= self.global_limit

    def _pod_spec(self, node: Node, template: dict[str, Any], kind: str, ctx: _Ctx) -> PodSpec:
        name = pod_name(self.state.name, template["name"], node.name)
        pod_dir = self.directory / "pods" / name
        scope = self._base_scope(node)
        scope["pod.name"] = name
        scope["node.name"] = node.name
        if ctx.attempt is not None:
            scope["retries"] = str(ctx.attempt)
        body = substitute_all(template[kind], scope)
        mapper = PathMapper(self.config.path_map, pod_dir=pod_dir, run_dir=self.directory)
        env_values = self._env(body.get("env") or [])
        argv = [*body.get("command", []), *body.get("args", [])]
        argv = [mapper.map(expand_k8s_vars(str(a), env_values)) for a in argv]
        env = dict(self.config.base_env)
        for key, value in env_values.items():
            env[key] = mapper.map(value)
        cwd = None
        if body.get("workingDir"):
            cwd = Path(mapper.map(body["workingDir"]))
            if not cwd.is_dir():
                raise ExpressionError(
                    f"workingDir {body['workingDir']!r} is {cwd}, which does not exist here",
                    hint="map the container path to a local one with GEOMLOPS_WORKFLOWS_PATH_MAP",
                )
        outputs = substitute_all((template.get("outputs") or {}).get("parameters") or [], scope)
        files, static = [], {}
        for parameter in outputs:
            value_from = parameter.get("valueFrom") or {}
            if "path" in value_from:
                files.append(
                    OutputFile(
                        parameter["name"],
                        Path(mapper.map(value_from["path"])),
                        value_from.get("default"),
                    )
                )
            elif "value" in parameter:
                static[parameter["name"]] = as_parameter(parameter["value"])
        deadline = None
        if "activeDeadlineSeconds" in template:
            deadline = float(
                parse_int(
                    substitute(str(template["activeDeadlineSeconds"]), scope),
                    field="activeDeadlineSeconds",
                )
            )
        if "timeout" in template:
            timeout = parse_duration(substitute(str(template["timeout"]), scope), field="timeout")
            deadline = timeout if deadline is None else min(deadline, timeout)
        mapper.make_dirs()
        node.pod_name = name
        node.image = body.get("image")
        node.command = argv + (["<script>"] if kind == "script" else [])
        node.outputs = {"static": static} if static else None
        return PodSpec(
            node_id=node.id,
            pod_name=name,
            argv=argv,
            env=env,
            cwd=cwd,
            log_path=self.directory / "logs" / f"{name}.log",
            pod_dir=pod_dir,
            script=mapper.map(body["source"]) if kind == "script" else None,
            output_files=files,
            deadline=deadline,
        )

    def _env(self, entries: list[dict[str, Any]]) -> dict[str, str]:
        values: dict[str, str] = {}
        for entry in entries:
            if "valueFrom" in entry:
                ref = entry["valueFrom"]["secretKeyRef"]
                path = self.config.secrets_dir / ref["name"] / ref["key"]
                try:
                    values[entry["name"]] = path.read_text(encoding="utf-8")
                except OSError:
                    if ref.get("optional"):
                        continue
                    raise ExpressionError(
                        f"env {entry['name']}: secret {ref['name']!r} key {ref['key']!r} "
                        f"is not in {self.config.secrets_dir}",
                        hint=f"write the value to {path}",
                    ) from None
            else:
                values[entry["name"]] = expand_k8s_vars(str(entry.get("value", "")), values)
        return values

    # --- retries ------------------------------------------------------------------------

    def _execute_retry(self, node: Node, template: dict[str, Any], ctx: _Ctx) -> Node:
        plan = self.retry_plans.get(node.id)
        if plan is None:
            try:
                strategy = substitute_all(template["retryStrategy"], self._base_scope(node))
                plan = RetryPlan.parse(
                    strategy, field=f"template {template['name']!r} retryStrategy"
                )
            except ExpressionError as error:
                self._set(node, NodePhase.ERROR, error.message)
                return node
            self.retry_plans[node.id] = plan
        attempt = node.attempt or 0
        if node.attempt is None:
            node.attempt = 0
            self.journal.node(node)
        while True:
            child_ctx = replace(
                ctx,
                parent_id=node.id,
                display=f"{node.display_name}({attempt})",
                attempt=attempt,
            )
            child = self.execute(
                f"{node.name}({attempt})", template["name"], node.inputs, child_ctx
            )
            if not child.fulfilled:
                return node
            if child.phase == NodePhase.SUCCEEDED:
                node.outputs = child.outputs
                self._set(node, NodePhase.SUCCEEDED, child.message)
                return node
            stopping = self.state.shutdown and not ctx.in_exit
            exhausted = plan.limit is not None and attempt >= plan.limit
            if stopping or exhausted or not plan.retries_phase(child.phase, child.message):
                message = child.message
                if exhausted and plan.limit:
                    message = f"No more retries left ({plan.limit}): {child.message}"
                node.outputs = child.outputs
                self._set(node, child.phase, message)
                return node
            delay = plan.delay_before(attempt + 1)
            if node.next_attempt_at is None:
                started = node.started_at or now()
                if plan.max_duration is not None and now() + delay - started > plan.max_duration:
                    node.outputs = child.outputs
                    self._set(node, child.phase, f"Max duration limit exceeded: {child.message}")
                    return node
                node.next_attempt_at = (child.finished_at or now()) + delay
                self._set(
                    node, NodePhase.RUNNING, f"retrying after: {child.message}", kind="retrying"
                )
            if now() < node.next_attempt_at:
                self.timers.append(node.next_attempt_at)
                return node
            attempt += 1
            node.attempt = attempt
            node.next_attempt_at = None
            self.journal.node(node)

    # --- suspend ------------------------------------------------------------------------

    def _execute_suspend(self, node: Node, template: dict[str, Any], ctx: _Ctx) -> Node:
        if self.state.shutdown and not ctx.in_exit:
            self._set(node, NodePhase.FAILED, STOP_MESSAGE.format(self.state.shutdown))
            return node
        if node.phase == NodePhase.PENDING:
            duration = (template.get("suspend") or {}).get("duration")
            if duration:
                try:
                    text = substitute(str(duration), self._base_scope(node))
                    node.resume_at = now() + parse_duration(text, field="suspend.duration")
                except ExpressionError as error:
                    self._set(node, NodePhase.ERROR, error.message)
                    return node
            self._set(node, NodePhase.RUNNING, "waiting to be resumed", kind="suspended")
        if node.resume_at is not None:
            if now() >= node.resume_at:
                try:
                    outputs = suspend_outputs(template, {}, self._base_scope(node))
                except ExpressionError as error:
                    self._set(node, NodePhase.ERROR, error.message)
                    return node
                node.outputs = {"parameters": outputs} if outputs else None
                self._set(node, NodePhase.SUCCEEDED, "resumed after its duration", kind="resumed")
            else:
                self.timers.append(node.resume_at)
        return node

    # --- DAG ----------------------------------------------------------------------------

    def _dag_info(self, template: dict[str, Any]) -> _DagInfo:
        info = self.dag_infos.get(template["name"])
        if info is not None:
            return info
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
        info = _DagInfo(order, deps, depends, targets, dict(handled), fail_fast)
        self.dag_infos[template["name"]] = info
        return info

    def _execute_dag(self, node: Node, template: dict[str, Any], ctx: _Ctx) -> Node:
        info = self._dag_info(template)
        if "parallelism" in template:
            self.limits[node.id] = int(template["parallelism"])
        scope = self._base_scope(node)
        inner = replace(ctx, boundary_id=node.id, parent_id=node.id, attempt=None)
        for task in info.order:
            self._execute_dag_task(node, info, task, scope, inner)
        phase, message = self._assess_dag(node, info)
        if phase == NodePhase.RUNNING:
            return node
        if phase == NodePhase.SUCCEEDED:
            phase, message = self._template_outputs(
                node, template, self._dag_scope(node, info, scope)
            )
        self._set(node, phase, message)
        return node

    def _task_node(self, dag: Node, task: str) -> Node | None:
        return self.node_by_name(f"{dag.name}.{task}")

    def _unhandled_failure(self, dag: Node, info: _DagInfo) -> Node | None:
        for name in info.deps:
            task_node = self._task_node(dag, name)
            if task_node is None or task_node.phase not in NodePhase.FAILED_OR_ERROR:
                continue
            task = next(t for t in info.order if t["name"] == name)
            continue_on = task.get("continueOn") or {}
            if (task_node.phase == NodePhase.FAILED and continue_on.get("failed")) or (
                task_node.phase == NodePhase.ERROR and continue_on.get("error")
            ):
                continue
            if info.handled.get(name):
                continue
            return task_node
        return None

    def _blocked(self, dag: Node, info: _DagInfo, ctx: _Ctx) -> bool:
        """No new task may start: the run is stopping, or failFast and a task failed."""
        if self.state.shutdown and not ctx.in_exit:
            return True
        return info.fail_fast and self._unhandled_failure(dag, info) is not None

    def _execute_dag_task(
        self, dag: Node, info: _DagInfo, task: dict[str, Any], scope: dict[str, str], ctx: _Ctx
    ) -> None:
        name = task["name"]
        node_name = f"{dag.name}.{name}"
        existing = self.node_by_name(node_name)
        if existing is not None and existing.fulfilled:
            return
        if existing is None:
            dep_nodes = {d: self._task_node(dag, d) for d in info.deps[name]}
            if any(n is None or not n.fulfilled for n in dep_nodes.values()):
                return
            tree = info.depends[name]
            if tree is not None and not evaluate_depends(
                tree, lambda t, r: _task_result(dep_nodes[t], r, self._children_of(dep_nodes[t]))
            ):
                self._new(
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
        for ancestor in _ancestors(name, info.deps):
            ancestor_node = self._task_node(dag, ancestor)
            if ancestor_node is not None:
                task_scope.update(self._sibling_scope(f"tasks.{ancestor}", ancestor_node))
        self._run_task(node_name, name, task, task_scope, ctx)

    def _children_of(self, node: Node | None) -> list[Node]:
        if node is None:
            return []
        return [self.state.nodes[c] for c in self.children.get(node.id, [])]

    def _assess_dag(self, dag: Node, info: _DagInfo) -> tuple[str, str]:
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
                    return NodePhase.FAILED, STOP_MESSAGE.format(self.state.shutdown)
                return NodePhase.RUNNING, ""
        for target in info.targets:
            phase = branch[target]
            if phase in NodePhase.FAILED_OR_ERROR:
                task = next(t for t in info.order if t["name"] == target)
                continue_on = task.get("continueOn") or {}
                if (phase == NodePhase.FAILED and continue_on.get("failed")) or (
                    phase == NodePhase.ERROR and continue_on.get("error")
                ):
                    continue
                target_node = task_nodes[target]
                detail = target_node.message if target_node else ""
                return phase, f"task '{target}' {phase.lower()}: {detail}".rstrip(": ")
        return NodePhase.SUCCEEDED, ""

    def _dag_scope(self, dag: Node, info: _DagInfo, scope: dict[str, str]) -> dict[str, str]:
        full = dict(scope)
        for name in info.deps:
            task_node = self._task_node(dag, name)
            if task_node is not None:
                full.update(self._sibling_scope(f"tasks.{name}", task_node))
        return full

    # --- steps --------------------------------------------------------------------------

    def _execute_steps(self, node: Node, template: dict[str, Any], ctx: _Ctx) -> Node:
        if "parallelism" in template:
            self.limits[node.id] = int(template["parallelism"])
        scope = self._base_scope(node)
        inner = replace(ctx, boundary_id=node.id, attempt=None)
        for index, group in enumerate(template["steps"]):
            group_name = f"{node.name}[{index}]"
            group_node = self.node_by_name(group_name)
            if group_node is None:
                if self.state.shutdown and not ctx.in_exit:
                    self._set(node, NodePhase.FAILED, STOP_MESSAGE.format(self.state.shutdown))
                    return node
                group_node = self._new(
                    group_name,
                    replace(inner, parent_id=node.id, display=f"[{index}]"),
                    NodeType.STEP_GROUP,
                    NodePhase.RUNNING,
                    None,
                )
            if not group_node.fulfilled:
                for step in group:
                    self._run_task(
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
                self._set(node, group_node.phase, group_node.message)
                return node
            for step in group:
                step_node = self.node_by_name(f"{group_name}.{step['name']}")
                if step_node is not None:
                    scope.update(self._sibling_scope(f"steps.{step['name']}", step_node))
        phase, message = self._template_outputs(node, template, scope)
        self._set(node, phase, message)
        return node

    def _settle_group(self, group_node: Node, group: list[dict[str, Any]], ctx: _Ctx) -> bool:
        step_nodes = [self.node_by_name(f"{group_node.name}.{s['name']}") for s in group]
        if any(n is None or not n.fulfilled for n in step_nodes):
            if (
                self.state.shutdown
                and not ctx.in_exit
                and not any(n is not None and not n.fulfilled for n in step_nodes)
            ):
                self._set(group_node, NodePhase.FAILED, STOP_MESSAGE.format(self.state.shutdown))
                return True
            return False
        for step, step_node in zip(group, step_nodes, strict=True):
            assert step_node is not None  # noqa: S101 - checked above
            if step_node.phase not in NodePhase.FAILED_OR_ERROR:
                continue
            continue_on = step.get("continueOn") or {}
            if (step_node.phase == NodePhase.FAILED and continue_on.get("failed")) or (
                step_node.phase == NodePhase.ERROR and continue_on.get("error")
            ):
                continue
            self._set(
                group_node,
                NodePhase.FAILED,
                f"step '{step['name']}' {step_node.phase.lower()}: {step_node.message}".rstrip(
                    ": "
                ),
            )
            return True
        self._set(group_node, NodePhase.SUCCEEDED)
        return True

    # --- tasks and steps, with fan-out --------------------------------------------------

    def _run_task(
        self, name: str, display: str, task: dict[str, Any], scope: dict[str, str], ctx: _Ctx
    ) -> None:
        """Run one DAG task or step: expanded into a task group when it loops."""
        existing = self.node_by_name(name)
        if existing is not None and existing.fulfilled:
            return
        loops = any(k in task for k in ("withItems", "withParam", "withSequence"))
        if not loops:
            self._run_single(name, display, task, scope, ctx)
            return
        if existing is None and self.state.shutdown and not ctx.in_exit:
            return
        try:
            expansion = self._expansion(name, display, task, scope)
        except ExpressionError as error:
            self._new(
                name,
                replace(ctx, display=display),
                NodeType.SKIPPED,
                NodePhase.ERROR,
                task.get("template"),
                error.message,
            )
            return
        group = existing or self._new(
            name,
            replace(ctx, display=display),
            NodeType.TASK_GROUP,
            NodePhase.RUNNING,
            task.get("template"),
        )
        if not expansion:
            self._set(group, NodePhase.SKIPPED, "Skipped, empty params")
            return
        open_entries = self.open_children.get(group.id)
        if open_entries is None:
            open_entries = expansion
        still_open = []
        stopping = self.state.shutdown is not None and not ctx.in_exit
        child_ctx = replace(ctx, parent_id=group.id)
        for index, (child_name, child_display, child_scope) in enumerate(open_entries):
            child = self.node_by_name(child_name)
            if child is None and stopping:
                continue  # never started; the group fails below
            if self._saturated() and (child is None or child.phase == NodePhase.PENDING):
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
        if still_open:
            return
        phase, message = NodePhase.SUCCEEDED, ""
        children = self.children.get(group.id, [])
        for child_id in children:
            child_phase = self.state.nodes[child_id].phase
            if child_phase in NodePhase.FAILED_OR_ERROR:
                phase, message = child_phase, "one or more items failed"
        if stopping and len(children) < len(expansion):
            phase, message = NodePhase.FAILED, STOP_MESSAGE.format(self.state.shutdown)
        self._set(group, phase, message)

    def _expansion(
        self, name: str, display: str, task: dict[str, Any], scope: dict[str, str]
    ) -> list[tuple[str, str, dict[str, str]]]:
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
        self, name: str, display: str, task: dict[str, Any], scope: dict[str, str], ctx: _Ctx
    ) -> Node | None:
        node = self.node_by_name(name)
        ctx = replace(ctx, display=display)
        if node is not None:
            return self.execute(name, task["template"], None, ctx)
        if self.state.shutdown and not ctx.in_exit:
            return None
        try:
            when = substitute(str(task.get("when", "")), scope)
            if when.strip() and not evaluate_when(when):
                return self._new(
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
            return self._new(
                name, ctx, NodeType.SKIPPED, NodePhase.ERROR, task.get("template"), error.message
            )
        return self.execute(name, task["template"], args, ctx)

    # --- outputs of DAG and steps templates ----------------------------------------------

    def _template_outputs(
        self, node: Node, template: dict[str, Any], scope: dict[str, str]
    ) -> tuple[str, str]:
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

    # --- progress -----------------------------------------------------------------------

    def _emit(self, node: Node, kind: str | None = None) -> None:
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

    def _emit_run(self) -> None:
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


def _task_result(node: Node | None, result: str, children: list[Node]) -> bool:
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


def _ancestors(name: str, deps: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    pending = list(deps.get(name, ()))
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(deps.get(current, ()))
    return seen


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


def default_base_env() -> dict[str, str]:
    """The executor's own environment, which local pods inherit (PATH, HOME, …).

    The interpreter's own ``bin`` folder goes first on PATH: a pod's ``command`` names a
    program the way its image would (``geomlops``), and locally that program lives beside
    this interpreter even when the executor was started without the venv activated.
    """
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = os.pathsep.join(filter(None, [bindir, env.get("PATH", "")]))
    return env
