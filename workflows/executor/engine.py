"""The reconcile loop that drives one run, the way Argo's controller does.

Each pass walks the template tree from the entrypoint and, for every node, looks up what
the state already knows: a fulfilled node is never touched again, a node whose inputs are
ready is created, a pod that has room is launched. Pods run on worker threads; only the
main thread changes the state, and it journals every change before acting on it. Because a
pass derives everything from the persisted nodes, a fresh executor resuming after a crash
runs the same passes and continues exactly where the dead one stopped; pods that were
running when it died are killed (their process groups) and run again, completed ones never.

The engine itself only drives and dispatches; each concern has its own module:
:mod:`.nodes` (journaled node changes), :mod:`.scopes` (parameters in and out),
:mod:`.launcher` (pods and parallelism), :mod:`.waiting` (retries and suspends),
:mod:`.dag`, :mod:`.steps` and :mod:`.tasks` (the walks and the fan-out).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geomlops.workflows.executor.dag import DagWalker
from geomlops.workflows.executor.expressions import ExpressionError
from geomlops.workflows.executor.launcher import PodLauncher
from geomlops.workflows.executor.model import Node, NodePhase, NodeType, RunPhase, RunState, now
from geomlops.workflows.executor.nodes import STOP_MESSAGE, Ctx, NodeBook
from geomlops.workflows.executor.progress import ProgressEvent
from geomlops.workflows.executor.scopes import Scopes, suspend_outputs
from geomlops.workflows.executor.steps import StepsWalker
from geomlops.workflows.executor.store import RunJournal, take_requests
from geomlops.workflows.executor.support import POD_KINDS, template_kind
from geomlops.workflows.executor.tasks import TaskRunner
from geomlops.workflows.executor.waiting import Waits

__all__ = ["STOP_MESSAGE", "Engine", "EngineConfig", "default_base_env", "suspend_outputs"]

NODE_TYPES = {
    "container": NodeType.POD,
    "script": NodeType.POD,
    "dag": NodeType.DAG,
    "steps": NodeType.STEPS,
    "suspend": NodeType.SUSPEND,
}
"""The node a template of each kind creates (a retryStrategy wraps it in a Retry node)."""


@dataclass(frozen=True)
class EngineConfig:
    """What the engine needs from the settings, resolved by the caller."""

    parallelism: int
    path_map: dict[str, str]
    secrets_dir: Path
    base_env: dict[str, str]
    poll_interval: float
    kill_grace: float


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
        self.spec = state.workflow["spec"]
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.journal = RunJournal(directory, state)
        self.book = NodeBook(state, self.journal, listener)
        self.scopes = Scopes(state, self.book)
        self.launcher = PodLauncher(
            self.book,
            self.scopes,
            directory,
            parallelism=config.parallelism,
            path_map=config.path_map,
            secrets_dir=config.secrets_dir,
            base_env=config.base_env,
            kill_grace=config.kill_grace,
        )
        self.timers: list[float] = []
        self.waits = Waits(self.book, self.scopes, self.execute, self.timers)
        self.tasks = TaskRunner(self.book, self.execute, self.launcher.saturated)
        self.dags = DagWalker(self.book, self.scopes, self.tasks, self.launcher.limits)
        self.steps = StepsWalker(self.book, self.scopes, self.tasks, self.launcher.limits)
        self.last_request_check = 0.0

    # --- driving ------------------------------------------------------------------------

    def drive(self) -> None:
        """Run passes until the run is finished or cannot progress without a resume."""
        self.launcher.recover_interrupted()
        if self.state.phase == RunPhase.PENDING:
            self.state.phase = RunPhase.RUNNING
            self.state.started_at = now()
            self.journal.run()
            self.book.emit_run()
        pool = ThreadPoolExecutor(max_workers=self.launcher.global_limit, thread_name_prefix="pod")
        self.launcher.pool = pool
        try:
            while True:
                self._check_requests(force=True)
                if self._settle():
                    break
                if not self.launcher.running and not self.timers:
                    if not self.state.suspended_nodes:
                        self.book.finish(RunPhase.ERROR, "the executor could make no progress")
                    break
                self._wait()
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): kill the pods but leave their nodes Running, so
            # that resuming the run re-runs exactly those.
            self.launcher.pods.kill_all("the executor was interrupted")
            raise
        finally:
            pool.shutdown(wait=True)
            self.journal.compact()
            self.journal.close()

    def _settle(self) -> bool:
        """Reconcile until a pass changes nothing; True when the run has finished."""
        while True:
            before = self.state.seq
            self.timers.clear()
            finished = self._reconcile()
            if finished or self.state.seq == before:
                return finished

    def _wait(self) -> None:
        timeout = self.config.poll_interval
        if self.timers:
            timeout = max(0.0, min(timeout, min(self.timers) - now()))
        results = self.launcher.results
        with contextlib.suppress(queue.Empty):
            self.launcher.apply_result(results.get(timeout=timeout))
        while True:
            try:
                self.launcher.apply_result(results.get_nowait())
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
        self.launcher.pods.kill_all(STOP_MESSAGE.format(strategy))

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
                outputs = suspend_outputs(template, parameters, self.scopes.base(node))
            except ExpressionError as error:
                self.book.set(node, NodePhase.ERROR, str(error))
                continue
            node.outputs = {"parameters": outputs} if outputs else None
            message = request.get("reason") or "resumed"
            self.book.set(node, NodePhase.SUCCEEDED, message, kind="resumed")
            resumed.append(node.name)
        return resumed

    # --- the tree -----------------------------------------------------------------------

    def _reconcile(self) -> bool:
        run = self.state.name
        if self.state.finished:
            return True
        root = self.execute(
            run,
            self.spec["entrypoint"],
            dict(self.state.parameters),
            Ctx(boundary_id=None, parent_id=None, display=run),
        )
        if not root.fulfilled:
            return False
        exit_node = None
        on_exit = self.spec.get("onExit")
        if on_exit and self.state.shutdown != "Terminate":
            self.scopes.set_exit(root)
            exit_node = self.execute(
                f"{run}.onExit",
                on_exit,
                dict(self.state.parameters),
                Ctx(boundary_id=None, parent_id=None, display=f"{run}.onExit", in_exit=True),
            )
            if not exit_node.fulfilled:
                return False
        phase = root.phase if root.phase in NodePhase.COMPLETED else NodePhase.SUCCEEDED
        message = root.message if phase != NodePhase.SUCCEEDED else ""
        exit_failed = exit_node is not None and exit_node.phase in NodePhase.FAILED_OR_ERROR
        if exit_node is not None and exit_failed and phase == NodePhase.SUCCEEDED:
            phase = NodePhase.FAILED
            message = f"exit handler failed: {exit_node.message}".rstrip(": ")
        if self.state.shutdown:
            message = self.state.message or STOP_MESSAGE.format(self.state.shutdown)
            phase = NodePhase.FAILED
        self.book.finish(phase, message)
        return True

    def execute(self, name: str, template_name: str, args: dict[str, str] | None, ctx: Ctx) -> Node:
        """Advance the node ``name`` running ``template_name``; create it if it is new."""
        node = self.book.by_name(name)
        if node is not None and node.fulfilled:
            return node
        template = self.templates[template_name]
        kind = template_kind(template)
        if node is None:
            try:
                inputs = self.scopes.resolve_inputs(template, args or {})
            except ExpressionError as error:
                return self.book.new(
                    name, ctx, NodeType.SKIPPED, NodePhase.ERROR, template_name, str(error)
                )
            if "retryStrategy" in template and ctx.attempt is None:
                node = self.book.new(
                    name, ctx, NodeType.RETRY, NodePhase.RUNNING, template_name, inputs=inputs
                )
            else:
                node_type = NODE_TYPES[kind]
                phase = (
                    NodePhase.PENDING
                    if node_type in (NodeType.POD, NodeType.SUSPEND)
                    else NodePhase.RUNNING
                )
                node = self.book.new(name, ctx, node_type, phase, template_name, inputs=inputs)
                if ctx.attempt is not None:
                    node.attempt = ctx.attempt
        if node.type == NodeType.RETRY:
            return self.waits.retry(node, template, ctx)
        if kind in POD_KINDS:
            return self.launcher.execute(node, template, kind, ctx)
        if kind == "dag":
            return self.dags.execute(node, template, ctx)
        if kind == "steps":
            return self.steps.execute(node, template, ctx)
        return self.waits.suspend(node, template, ctx)


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
