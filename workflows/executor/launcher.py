"""Pod nodes: turning a container or script template into a process, within the limits.

A pod is launched only when the run and every DAG/steps boundary above it (their
``parallelism``) have room; it then runs on a worker thread, and its result comes back
through a queue that only the engine's main thread reads, so the state is changed by one
thread only.
"""

from __future__ import annotations

import queue
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from geomlops.errors import GeomlopsError
from geomlops.workflows.executor.expressions import (
    ExpressionError,
    as_parameter,
    substitute,
    substitute_all,
)
from geomlops.workflows.executor.model import Node, NodePhase, NodeType, RunState, pod_name
from geomlops.workflows.executor.nodes import Ctx, NodeBook
from geomlops.workflows.executor.paths import PathMapper, expand_k8s_vars
from geomlops.workflows.executor.pods import (
    OutputFile,
    PodResult,
    PodRunner,
    PodSpec,
    kill_leftover,
)
from geomlops.workflows.executor.scopes import Scopes
from geomlops.workflows.executor.timing import parse_duration, parse_int

RERUN_MESSAGE = "re-run after the executor was interrupted while this pod ran"


class PodLauncher:
    """Launches pod nodes, counts what runs under each boundary, and collects results."""

    def __init__(
        self,
        book: NodeBook,
        scopes: Scopes,
        directory: Path,
        *,
        parallelism: int,
        path_map: dict[str, str],
        secrets_dir: Path,
        base_env: dict[str, str],
        kill_grace: float,
    ) -> None:
        self.book = book
        self.state: RunState = book.state
        self.scopes = scopes
        self.directory = directory
        self.path_map = path_map
        self.secrets_dir = secrets_dir
        self.base_env = base_env
        self.pods = PodRunner(kill_grace)
        self.results: queue.SimpleQueue[PodResult] = queue.SimpleQueue()
        self.running: dict[str, list[str]] = {}  # pod node id -> boundary chain
        self.running_under: defaultdict[str, int] = defaultdict(int)
        self.limits: dict[str, int] = {}
        spec_limit = self.state.workflow["spec"].get("parallelism") or 10**9
        self.global_limit = min(parallelism, spec_limit)
        self.pool: ThreadPoolExecutor | None = None

    # --- launching ----------------------------------------------------------------------

    def execute(self, node: Node, template: dict[str, Any], kind: str, ctx: Ctx) -> Node:
        """Launch the pod node if there is room; a running one is left alone."""
        if node.id in self.running:
            return node
        if self.state.shutdown and not ctx.in_exit:
            self.book.set(node, NodePhase.FAILED, self.book.stop_message())
            return node
        chain = self._boundary_chain(node)
        if not self._has_room(chain):
            return node
        try:
            spec = self._pod_spec(node, template, kind, ctx)
        except GeomlopsError as error:
            self.book.set(node, NodePhase.ERROR, error.message)
            return node
        self.running[node.id] = chain
        for boundary in chain:
            self.running_under[boundary] += 1
        if node.restarts:
            with open(spec.log_path, "ab") as log:
                log.write(
                    b"[geomlops executor] --- re-run after the executor was interrupted ---\n"
                )
        self.book.set(
            node, NodePhase.RUNNING, "" if not node.restarts else node.message, kind="started"
        )
        assert self.pool is not None  # noqa: S101 - the engine's drive() creates it
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

    def saturated(self) -> bool:
        """No pod may start anywhere: the run's own limit is reached."""
        return len(self.running) >= self.global_limit

    # --- results and recovery -----------------------------------------------------------

    def apply_result(self, result: PodResult) -> None:
        """Record a finished pod: free its slots, store its outputs, set its phase."""
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
            message = RERUN_MESSAGE
        self.book.set(node, result.phase, message, finished_at=result.finished_at)

    def recover_interrupted(self) -> None:
        """Pods left Running by a dead executor: kill leftovers, then run them again."""
        for node in list(self.state.nodes.values()):
            if node.type == NodeType.POD and node.phase == NodePhase.RUNNING and node.pod_name:
                kill_leftover(self.directory / "pods" / node.pod_name)
                node.restarts += 1
                node.message = RERUN_MESSAGE
                self.book.set(node, NodePhase.PENDING, node.message, kind="restarted")

    # --- the pod's process --------------------------------------------------------------

    def _pod_spec(self, node: Node, template: dict[str, Any], kind: str, ctx: Ctx) -> PodSpec:
        name = pod_name(self.state.name, template["name"], node.name)
        pod_dir = self.directory / "pods" / name
        scope = self.scopes.base(node)
        scope["pod.name"] = name
        scope["node.name"] = node.name
        if ctx.attempt is not None:
            scope["retries"] = str(ctx.attempt)
        body = substitute_all(template[kind], scope)
        mapper = PathMapper(self.path_map, pod_dir=pod_dir, run_dir=self.directory)
        env_values = self._env(body.get("env") or [])
        argv = [*body.get("command", []), *body.get("args", [])]
        argv = [mapper.map(expand_k8s_vars(str(a), env_values)) for a in argv]
        env = dict(self.base_env)
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
        deadline = _deadline(template, scope)
        termination_log = _termination_log(body, mapper, pod_dir)
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
            termination_log=termination_log,
        )

    def _env(self, entries: list[dict[str, Any]]) -> dict[str, str]:
        values: dict[str, str] = {}
        for entry in entries:
            if "valueFrom" in entry:
                ref = entry["valueFrom"]["secretKeyRef"]
                path = self.secrets_dir / ref["name"] / ref["key"]
                try:
                    values[entry["name"]] = path.read_text(encoding="utf-8")
                except OSError:
                    if ref.get("optional"):
                        continue
                    raise ExpressionError(
                        f"env {entry['name']}: secret {ref['name']!r} key {ref['key']!r} "
                        f"is not in {self.secrets_dir}",
                        hint=f"write the value to {path}",
                    ) from None
            else:
                values[entry["name"]] = expand_k8s_vars(str(entry.get("value", "")), values)
        return values


def _termination_log(body: dict[str, Any], mapper: PathMapper, pod_dir: Path) -> Path | None:
    """The pod's own file for ``terminationMessagePath``, or None when the container has none.

    A kubelet gives each container a fresh file there; locally the path must map into the
    pod's own folder, or two pods (or a stale run) would share one message.
    """
    container_path = body.get("terminationMessagePath")
    if not container_path:
        return None
    local = Path(mapper.map(str(container_path)))
    if not local.is_relative_to(pod_dir):
        raise ExpressionError(
            f"terminationMessagePath {container_path!r} is {local}, not a per-pod path here",
            hint="map its folder per pod with GEOMLOPS_WORKFLOWS_PATH_MAP, e.g. "
            '\'{"/tmp/outputs": "{pod_dir}/outputs"}\'',
        )
    local.parent.mkdir(parents=True, exist_ok=True)
    return local


def _deadline(template: dict[str, Any], scope: dict[str, str]) -> float | None:
    """Seconds a pod may run: the smaller of activeDeadlineSeconds and timeout, if any."""
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
    return deadline
