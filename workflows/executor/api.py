"""The local executor's API: what the CLI and the training/inference workflows call.

``submit`` checks a manifest and records a run; ``run`` drives it in this process until it
finishes or waits at a suspend step; ``start`` drives it in a background process. ``resume``
and ``stop`` reach a run whether or not an executor is driving it: a live executor picks
their request up within ``poll_interval``; otherwise the call drives the run itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geomlops.errors import ConflictError, NotFoundError, ValidationFailed
from geomlops.settings import Settings, get_settings
from geomlops.workflows.executor.engine import (
    Engine,
    EngineConfig,
    default_base_env,
    suspend_outputs,
)
from geomlops.workflows.executor.expressions import ExpressionError
from geomlops.workflows.executor.manifest import (
    Manifest,
    check_kind,
    instantiate,
    load_manifest,
    resolve_parameters,
    run_name_for,
)
from geomlops.workflows.executor.model import NodePhase, RunPhase, RunState, iso
from geomlops.workflows.executor.progress import ProgressEvent
from geomlops.workflows.executor.store import (
    JOURNAL,
    SNAPSHOT,
    RunLock,
    RunStore,
    drop_request,
    has_requests,
    write_json_atomic,
)
from geomlops.workflows.executor.support import check_workflow

Listener = Callable[[ProgressEvent], None]


class LocalExecutor:
    """Runs Argo manifests as local processes, with state under the settings' state dir."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        listener: Listener | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``env`` is the environment pods inherit (default: this process's own)."""
        self.settings = settings or get_settings()
        self.store = RunStore(self.settings.workflows_state_dir)
        self.listener = listener
        self.env = env

    # --- submitting ---------------------------------------------------------------------

    def validate(
        self, manifest: Manifest | str | Path, parameters: dict[str, Any] | None = None
    ) -> Manifest:
        """The Workflow a submit would run; raises ValidationFailed listing every problem."""
        workflow, _, _ = self._prepare(manifest, parameters or {}, run_name="validate")
        return workflow

    def _prepare(
        self, manifest: Manifest | str | Path, parameters: dict[str, Any], *, run_name: str
    ) -> tuple[Manifest, dict[str, str], Manifest]:
        source = load_manifest(manifest)
        problems = check_kind(source)
        if problems:
            raise ValidationFailed("the manifest cannot be run locally", problems=problems)
        values, problems = resolve_parameters(source["spec"], parameters)
        workflow = instantiate(source, run_name, values)
        problems += check_workflow(workflow)
        if problems:
            name = (source.get("metadata") or {}).get("name") or (source.get("metadata") or {}).get(
                "generateName", "?"
            )
            raise ValidationFailed(
                f"{source.get('kind')} {name!r} cannot be run by the local executor",
                problems=problems,
            )
        return workflow, values, source

    def submit(
        self, manifest: Manifest | str | Path, parameters: dict[str, Any] | None = None
    ) -> str:
        """Check ``manifest`` and record a new Pending run; returns the run's name.

        ``manifest`` is a dict, a path to a YAML file, or YAML text, holding a Workflow,
        WorkflowTemplate or ClusterWorkflowTemplate. Nothing runs until :meth:`run` or
        :meth:`start`.
        """
        source = load_manifest(manifest)
        for _ in range(20):
            run_name, generated = run_name_for(source)
            workflow, values, source = self._prepare(source, parameters or {}, run_name=run_name)
            state = RunState(
                name=run_name,
                uid=str(uuid.uuid4()),
                namespace=workflow["metadata"]["namespace"],
                manifest=source,
                workflow=workflow,
                parameters=values,
            )
            try:
                self.store.create(state)
            except ConflictError:
                if generated:
                    continue
                raise
            return run_name
        raise ConflictError("could not generate an unused run name")  # pragma: no cover

    # --- driving ------------------------------------------------------------------------

    def _config(self) -> EngineConfig:
        workflows = self.settings.workflows
        return EngineConfig(
            parallelism=workflows.parallelism,
            path_map=dict(workflows.path_map),
            secrets_dir=workflows.secrets_dir or self.settings.workflows_state_dir / "secrets",
            base_env=dict(self.env) if self.env is not None else default_base_env(),
            poll_interval=workflows.poll_interval,
            kill_grace=workflows.kill_grace,
        )

    def run(self, name: str, *, listener: Listener | None = None) -> dict[str, Any]:
        """Drive the run in this process until it finishes or waits at a suspend step.

        Also continues a run whose executor was killed: pods it had completed are kept,
        pods it was running are run again. Returns :meth:`status`.
        """
        directory = self.store.run_dir(name)
        self.store.load(name)  # NotFoundError for an unknown run
        with RunLock(directory).held(name):
            state = self.store.load(name)
            if not state.finished:
                Engine(state, directory, self._config(), listener or self.listener).drive()
        return self.status(name)

    def start(self, name: str) -> int:
        """Drive the run in a detached background process; returns its pid.

        The process is started through ``sh … &`` so that it is re-parented at once: it
        outlives the caller and never lingers as the caller's zombie child.
        """
        self.store.load(name)
        log = self.store.run_dir(name) / "executor.log"
        launched = subprocess.run(
            [
                "sh",
                "-c",
                '"$0" -m geomlops.workflows.executor run "$1" >>"$2" 2>&1 </dev/null & echo $!',
                sys.executable,
                name,
                str(log),
            ],
            capture_output=True,
            text=True,
            check=True,
            start_new_session=True,
            env={**os.environ, **self._child_env()},
        )
        return int(launched.stdout.strip())

    def _child_env(self) -> dict[str, str]:
        """Settings a background executor must share with this one, as its environment."""
        workflows = self.settings.workflows
        env = {
            "GEOMLOPS_HOME": str(self.settings.stack.home),
            "GEOMLOPS_WORKFLOWS_STATE_DIR": str(self.settings.workflows_state_dir),
            "GEOMLOPS_WORKFLOWS_PARALLELISM": str(workflows.parallelism),
            "GEOMLOPS_WORKFLOWS_PATH_MAP": json.dumps(workflows.path_map),
            "GEOMLOPS_WORKFLOWS_POLL_INTERVAL": str(workflows.poll_interval),
            "GEOMLOPS_WORKFLOWS_KILL_GRACE": str(workflows.kill_grace),
        }
        if workflows.secrets_dir is not None:
            env["GEOMLOPS_WORKFLOWS_SECRETS_DIR"] = str(workflows.secrets_dir)
        return env

    def wait(
        self, name: str, *, timeout: float | None = None, interval: float = 0.1
    ) -> dict[str, Any]:
        """Poll until the run finishes, or waits suspended with nothing left to drive it.

        "Nothing left": no executor holds the run and no resume/stop request is pending.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        lock = RunLock(self.store.run_dir(name))
        while True:
            status = self.status(name)
            if status["phase"] in ("Succeeded", "Failed", "Error"):
                return status
            settled = not lock.held_elsewhere() and not has_requests(lock.path.parent)
            if status["suspended"] and settled:
                return status
            if deadline is not None and time.monotonic() > deadline:
                return status
            time.sleep(interval)

    def resume(
        self,
        name: str,
        *,
        node: str | None = None,
        parameters: dict[str, Any] | None = None,
        reason: str | None = None,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Resume suspended nodes (all, or ``node``), supplying their output parameters.

        With ``wait`` and no executor driving the run, this process drives it on (until it
        finishes or suspends again); otherwise the request is left for the live executor,
        or a background one is started.
        """
        state = self.store.load(name)
        if state.finished:
            raise ConflictError(f"run {name!r} has already finished ({state.phase})")
        targets = [
            n for n in state.suspended_nodes if not node or node in (n.name, n.display_name, n.id)
        ]
        if not targets:
            where = f" named {node!r}" if node else ""
            raise ConflictError(
                f"run {name!r} has no suspended node{where}",
                hint="`geomlops workflows status RUN` shows its nodes",
            )
        templates = {t["name"]: t for t in state.workflow["spec"]["templates"]}
        problems = []
        given = parameters or {}
        for target in targets:
            template = templates[target.template or ""]
            declared = {p["name"] for p in (template.get("outputs") or {}).get("parameters") or []}
            problems += [
                f"{target.display_name}: no output parameter {key!r} (declared: "
                f"{', '.join(sorted(declared)) or 'none'})"
                for key in given
                if key not in declared
            ]
            try:
                suspend_outputs(template, given, {})
            except ExpressionError as error:
                problems.append(f"{target.display_name}: {error.message}")
        if problems:
            raise ValidationFailed(f"cannot resume run {name!r}", problems=problems)
        payload = {"node": node, "parameters": given, "reason": reason}
        return self._request(name, "resume", payload, wait=wait)

    def stop(
        self, name: str, *, terminate: bool = False, reason: str | None = None, wait: bool = True
    ) -> dict[str, Any]:
        """Stop the run: kill its pods, fail what is left, run ``onExit``.

        ``terminate`` skips the exit handler. The run ends Failed, its message saying so.
        """
        state = self.store.load(name)
        if state.finished:
            raise ConflictError(f"run {name!r} has already finished ({state.phase})")
        return self._request(name, "stop", {"terminate": terminate, "reason": reason}, wait=wait)

    def retry(self, name: str, *, wait: bool = True) -> dict[str, Any]:
        """Run a Failed or Error run again from where it failed, as ``argo retry`` does.

        Succeeded nodes are kept; failed, errored, skipped and omitted nodes, the nodes
        above them that had not succeeded, and the exit handler's nodes are forgotten, so
        the engine (which skips a node that is already fulfilled) runs exactly those again.
        """
        directory = self.store.run_dir(name)
        self.store.load(name)  # NotFoundError for an unknown run
        with RunLock(directory).held(name):
            state = self.store.load(name)
            if state.phase not in (RunPhase.FAILED, RunPhase.ERROR):
                raise ConflictError(
                    f"run {name!r} is {state.phase}; only a Failed or Error run can be retried"
                )
            exit_prefix = f"{state.name}.onExit"
            kept = {
                key: node
                for key, node in state.nodes.items()
                if node.phase == NodePhase.SUCCEEDED
                and not (node.name == exit_prefix or node.name.startswith(exit_prefix + "."))
            }
            for node in state.nodes.values():  # Argo deletes the pods it retries, logs too
                if node.id not in kept and node.pod_name:
                    (directory / "logs" / f"{node.pod_name}.log").unlink(missing_ok=True)
            state.nodes = kept
            state.phase = RunPhase.RUNNING
            state.message = ""
            state.finished_at = None
            state.shutdown = None
            write_json_atomic(directory / SNAPSHOT, state.to_dict())
            (directory / JOURNAL).write_bytes(b"")
        if wait:
            return self.run(name)
        self.start(name)
        return self.status(name)

    def _request(
        self, name: str, kind: str, payload: dict[str, Any], *, wait: bool
    ) -> dict[str, Any]:
        directory = self.store.run_dir(name)
        drop_request(directory, kind, payload)
        lock = RunLock(directory)
        if lock.held_elsewhere():
            return self.wait(name) if wait else self.status(name)
        if wait:
            try:
                return self.run(name)
            except ConflictError:  # an executor started meanwhile; it takes the request
                return self.wait(name)
        self.start(name)
        return self.status(name)

    # --- reading ------------------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        """The run's phase and every node's, as a JSON-ready dict (Argo field names)."""
        state = self.store.load(name)
        children: defaultdict[str, list[str]] = defaultdict(list)
        for node in state.nodes.values():
            if node.parent_id:
                children[node.parent_id].append(node.id)
        lock = RunLock(self.store.run_dir(name))
        driven = lock.held_elsewhere()
        pods = [n for n in state.nodes.values() if n.type == "Pod"]
        done = [n for n in pods if n.fulfilled]
        return {
            "name": state.name,
            "uid": state.uid,
            "namespace": state.namespace,
            "phase": state.phase,
            "message": state.message,
            "suspended": bool(state.suspended_nodes) and not state.finished,
            "createdAt": iso(state.created_at),
            "startedAt": iso(state.started_at),
            "finishedAt": iso(state.finished_at),
            "progress": f"{len(done)}/{len(pods)}",
            "parameters": dict(state.parameters),
            "workflowTemplate": state.workflow["metadata"]["labels"].get(
                "workflows.argoproj.io/workflow-template"
            ),
            "executor": {"running": driven, "pid": lock.holder_pid() if driven else None},
            "stateDir": str(self.store.run_dir(name)),
            "nodes": [n.to_status(children.get(n.id, [])) for n in state.nodes.values()],
        }

    def logs(self, name: str, node: str | None = None) -> str:
        """Logs of one node (by name, display name, id or pod name), or of every pod."""
        state = self.store.load(name)
        directory = self.store.run_dir(name)
        pods = [n for n in state.nodes.values() if n.pod_name]
        if node is not None:
            matches = [
                n
                for n in state.nodes.values()
                if node in (n.name, n.display_name, n.id, n.pod_name)
            ]
            if not matches:
                raise NotFoundError(
                    f"run {name!r} has no node {node!r}",
                    hint="`geomlops workflows status RUN` lists its nodes",
                )
            wanted = {m.id for m in matches}
            # A retry or group node shows the logs of the pods under it.
            parents = {n.id: n.parent_id for n in state.nodes.values()}

            def under(candidate: str | None) -> bool:
                while candidate:
                    if candidate in wanted:
                        return True
                    candidate = parents.get(candidate)
                return False

            pods = [p for p in pods if under(p.id)]
        parts = []
        for pod in pods:
            path = directory / "logs" / f"{pod.pod_name}.log"
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            parts.append(
                text
                if node is not None and len(pods) == 1
                else f"--- {pod.display_name} ({pod.pod_name})\n{text}"
            )
        return "".join(parts)

    def list(self) -> list[dict[str, Any]]:
        """One summary per run, newest first."""
        summaries: list[dict[str, Any]] = []
        created: list[float] = []
        for name in self.store.names():
            try:
                state = self.store.load(name)
            except (NotFoundError, ValueError):
                continue
            summaries.append(
                {
                    "name": state.name,
                    "phase": state.phase,
                    "suspended": bool(state.suspended_nodes) and not state.finished,
                    "createdAt": iso(state.created_at),
                    "finishedAt": iso(state.finished_at),
                    "message": state.message,
                },
            )
            created.append(state.created_at)
        order = sorted(range(len(summaries)), key=created.__getitem__, reverse=True)
        return [summaries[i] for i in order]
