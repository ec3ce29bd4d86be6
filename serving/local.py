"""``geomlops serve``: the SeldonDeployment's graph run as local processes on loopback.

Each graph node of the generated manifest becomes a seldon-core 1.17.1 microservice started
from the serving environment (its own virtual environment: the wrapper's pins do not fit
the main one), with the class, service type and parameters the manifest gives its
container and node, on 127.0.0.1 and free ports (:mod:`geomlops.transformers.microservice`
keeps the wrapper off other interfaces). The router (:mod:`.router`) then stands where
Seldon's executor would. Each component runs in its own process group, so stopping it
stops its gunicorn workers too; :class:`LocalGraph` stops them all however it is left.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from geomlops.errors import ConfigError, GeomlopsError
from geomlops.serving.manifest import WRAPPER_SERVICE_TYPES, graph_nodes
from geomlops.settings import LOOPBACK, Settings, get_settings
from geomlops.stack.ports import free_port

log = logging.getLogger(__name__)
LAUNCHER = "geomlops.transformers.microservice"


@dataclass
class Component:
    """One running microservice of the graph."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_file: Path


def _containers(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    predictor = manifest["spec"]["predictors"][0]
    return {
        container["name"]: container
        for component in predictor.get("componentSpecs", [])
        for container in component["spec"]["containers"]
    }


def _container_env(container: dict[str, Any], name: str) -> str:
    for entry in container.get("env", []):
        if entry.get("name") == name:
            return str(entry["value"])
    raise ConfigError(f"container {container['name']!r} sets no {name}")


def serving_python(settings: Settings) -> Path:
    """The serving environment's interpreter; a clear error when it was never built."""
    folder = settings.serving.venv_bin
    python = folder / "python" if folder is not None else None
    if python is None or not python.exists():
        raise ConfigError(
            f"the serving environment is missing ({python or 'GEOMLOPS_SERVING_VENV_BIN unset'})",
            hint="run `make install` (it builds .venv-serving from requirements/serving*.txt)",
        )
    return python


class LocalGraph:
    """Starts the components of a SeldonDeployment's first predictor; stops them on exit."""

    def __init__(self, manifest: dict[str, Any], log_dir: Path, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.manifest = manifest
        self.graph: dict[str, Any] = manifest["spec"]["predictors"][0]["graph"]
        self.log_dir = log_dir
        self.components: dict[str, Component] = {}

    @property
    def endpoints(self) -> dict[str, str]:
        """Graph node name -> base URL of its microservice."""
        return {name: component.url for name, component in self.components.items()}

    def start(self) -> dict[str, str]:
        """Start every node's microservice and wait until each answers; returns endpoints."""
        python = serving_python(self.settings)
        containers = _containers(self.manifest)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for node in graph_nodes(self.graph):
                self._start(python, node, containers[node["name"]])
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def _start(self, python: Path, node: dict[str, Any], container: dict[str, Any]) -> None:
        http_port = free_port(
            avoid=[int(c.url.rsplit(":", 1)[1]) for c in self.components.values()]
        )
        metrics_port = free_port(avoid=[http_port])
        command = [
            str(python), "-m", LAUNCHER, _container_env(container, "MODEL_NAME"),
            "--service-type", WRAPPER_SERVICE_TYPES[node["type"]],
            "--http-port", str(http_port), "--metrics-port", str(metrics_port),
            "--parameters", json.dumps(node.get("parameters") or []),
        ]  # fmt: skip
        log_file = self.log_dir / f"{node['name']}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self._model_env(node)}
        with log_file.open("ab") as output:
            process = subprocess.Popen(
                command,
                cwd=self.log_dir,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # one process group: gunicorn master and workers
            )
        url = f"http://{LOOPBACK}:{http_port}"
        self.components[node["name"]] = Component(node["name"], url, process, log_file)
        log.info("started %s (pid %d) at %s; log %s", node["name"], process.pid, url, log_file)

    def _model_env(self, node: dict[str, Any]) -> dict[str, str]:
        """What a MODEL node needs to run a model of its package's environment.

        The serving environment cannot build a package environment (no uv there), so for a
        model of the ``mlflow.pyfunc`` runtime this process (the platform's environment)
        finds or builds it now, and names its interpreter to the component
        (``GEOMLOPS_SERVING_MODEL_PYTHON``). A model that cannot be resolved yet (nothing
        promoted) gets nothing: the component says so when asked, as before.
        """
        if node.get("type") != "MODEL":
            return {}
        params = {p.get("name"): p.get("value") for p in node.get("parameters") or []}
        if not params.get("model_name"):
            return {}
        from geomlops.ml.runtime import model_python
        from geomlops.model.resolve import resolve_model
        from geomlops.model.runtimes import MLFLOW_PYFUNC

        try:
            resolved = resolve_model(
                str(params["model_name"]),
                params.get("model_version") or None,
                settings=self.settings,
            )
            if resolved.runtime != MLFLOW_PYFUNC:
                return {}
            python = model_python(resolved.name, resolved.artifact_uri, self.settings)
        except GeomlopsError as error:
            log.warning("%s: no model environment prepared: %s", node["name"], error)
            return {}
        return {"GEOMLOPS_SERVING_MODEL_PYTHON": str(python)}

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.serving.ready_timeout
        waiting = dict(self.components)
        while waiting:
            for name, component in list(waiting.items()):
                if component.process.poll() is not None:
                    raise GeomlopsError(
                        f"component {name} exited with {component.process.returncode}",
                        hint=f"its log {component.log_file} ends with:\n"
                        + _tail(component.log_file),
                    )
                try:
                    if httpx.get(component.url + "/health/ping", timeout=2).text == "pong":
                        del waiting[name]
                except httpx.HTTPError:
                    pass
            if waiting and time.monotonic() > deadline:
                raise GeomlopsError(
                    f"components {sorted(waiting)} not ready after "
                    f"{self.settings.serving.ready_timeout:.0f} s",
                    hint=f"see their logs in {self.log_dir}",
                )
            if waiting:
                time.sleep(0.3)

    def stop(self) -> None:
        """Stop every component (SIGTERM to its group, SIGKILL if it lingers)."""
        for component in self.components.values():
            if component.process.poll() is None:
                try:
                    os.killpg(component.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for component in self.components.values():
            try:
                component.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(component.process.pid, signal.SIGKILL)
                component.process.wait()
        self.components.clear()

    def __enter__(self) -> LocalGraph:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def serve_foreground(
    manifest: dict[str, Any],
    *,
    port: int | None,
    log_dir: Path,
    settings: Settings | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the graph and its router until interrupted (SIGINT/SIGTERM); then stop it all."""
    import uvicorn

    from geomlops.serving.router import create_router_app

    settings = settings or get_settings()
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    # uvicorn handles SIGTERM itself, then raises it again once it has shut down; with the
    # default action that would end this process before the components are stopped. As an
    # exception it unwinds through LocalGraph.__exit__ instead.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with LocalGraph(manifest, log_dir, settings) as graph:
            app = create_router_app(
                graph.graph,
                graph.endpoints,
                deployment=manifest["metadata"]["name"],
                # base64 makes binData 4/3 of the GeoTIFF; the rest is JSON around it.
                max_body_bytes=settings.serving.max_input_bytes * 4 // 3 + 64 * 1024,
                on_ready=(lambda: on_ready(url)) if on_ready else None,
            )
            config = uvicorn.Config(
                app, host=LOOPBACK, port=port, log_level="warning", lifespan="on"
            )
            server = uvicorn.Server(config)
            server.run()
            if not server.started:
                raise GeomlopsError(
                    f"the router could not listen on {url}", hint="pass another --port"
                )
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)
