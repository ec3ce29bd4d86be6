"""Run a rendered chart's platform containers as local processes, the way Kubernetes would.

Nothing here runs a cluster. What a cluster would do with the chart's platform pods is
done with plain processes, so that a wrong variable name, command, port or probe path
fails here as it would fail there:

- each container's environment is resolved as the kubelet does it: literal values,
  ``secretKeyRef`` from the rendered Secrets (a missing key fails unless ``optional``),
  then ``$(VAR)`` references in later values, ``command`` and ``args``; a reference to a
  variable no entry defines is left as it is by the kubelet, and reported here;
- the process gets only that environment over the platform image's own ``ENV`` (read from
  the Dockerfile): paths in it (``HOME``, ``GEOMLOPS_HOME``) and the image's ``WORKDIR``
  must lie on one of the container's emptyDir volumes (its root filesystem is read-only),
  which become folders of its own here; ``PATH`` is this environment's;
- Service DNS names become loopback ports: the platform's own Services the ports its
  processes are given, the infrastructure Services (the bundled PostgreSQL and S3, which
  run upstream images) the local stack's, which stand in for them;
- a container port becomes a free loopback port wherever its number is given to the
  process through the environment (the chart passes ports that way); ``0.0.0.0`` binds
  become ``127.0.0.1``;
- post-install hooks run first, in weight order, each to completion; then the Deployments
  start and their readiness probes (``httpGet``: path on the named or numbered port) are
  polled, then their liveness probes are checked once.

Every problem is reported with the object, the container and the field it comes from.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from chart_support import REPO, by_kind, pod_spec, ref, secret_data

VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
VENV_BIN = Path(sys.executable).parent
PATH = os.pathsep.join([str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"])


def image_config(dockerfile: Path) -> tuple[dict[str, str], str]:
    """ENV and WORKDIR of a Dockerfile's final stage: what every container of it starts with."""
    text = dockerfile.read_text().replace("\\\n", " ")
    final = re.split(r"^FROM\s", text, flags=re.MULTILINE)[-1]
    env: dict[str, str] = {}
    workdir = "/"
    for line in final.splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0] == "ENV":
            for word in shlex.split(words[1]):
                key, _, value = word.partition("=")
                env[key] = value
        elif len(words) == 2 and words[0] == "WORKDIR":
            workdir = words[1]
    return env, workdir


def _on_mount(path: str, mounts: dict[str, Path]) -> Path | None:
    """Where ``path`` in the container lies here, if it is on one of its mounts."""
    for mount, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if path == mount or path.startswith(mount + "/"):
            return local / path[len(mount) :].lstrip("/")
    return None


class WiringError(AssertionError):
    """The rendered chart does not run: each line names an object, container and field."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Started:
    obj: dict[str, Any]
    container: dict[str, Any]
    process: subprocess.Popen[bytes]
    log: Path
    ports: dict[int, int]
    """containerPort -> local port."""

    @property
    def where(self) -> str:
        return f"{ref(self.obj)} container {self.container['name']}"

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n      ".join(text.strip().splitlines()[-lines:])


@dataclass
class LocalCluster:
    """The platform pods of ``objects`` as processes; ``infrastructure``: Service -> port."""

    objects: list[dict[str, Any]]
    platform_image: str
    infrastructure: dict[str, int]
    workdir: Path
    ready_timeout: float = 90.0
    job_timeout: float = 300.0
    dockerfile: Path = REPO / "Dockerfile"
    started: list[Started] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.image_env, self.image_workdir = image_config(self.dockerfile)
        self.secrets = {n: secret_data(s) for n, s in by_kind(self.objects, "Secret").items()}
        self.configmaps = {
            n: dict(c.get("data") or {}) for n, c in by_kind(self.objects, "ConfigMap").items()
        }
        self.services = by_kind(self.objects, "Service")
        # Platform Deployments: a local port per container port, chosen before anything
        # starts so that every Service name can be mapped in every environment.
        self.local_ports: dict[tuple[str, str], dict[int, int]] = {}
        for obj in self._platform("Deployment"):
            for c in self._containers(obj):
                self.local_ports[(ref(obj), c["name"])] = {
                    p["containerPort"]: free_port() for p in c.get("ports", [])
                }
        self.hosts = self._service_hosts()

    # --- the cluster's view -------------------------------------------------------------

    def _platform(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind and any(self._containers(o))]

    def _containers(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        spec = pod_spec(obj) or {}
        return [c for c in spec.get("containers", []) if c["image"] == self.platform_image]

    def _service_hosts(self) -> dict[tuple[str, int], int]:
        """(Service name, Service port) -> the loopback port behind it."""
        hosts = {}
        for name, svc in self.services.items():
            selector = svc["spec"].get("selector") or {}
            backends = [
                o
                for o in self.objects
                if o["kind"] in ("Deployment", "StatefulSet")
                and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
            ]
            for port in svc["spec"]["ports"]:
                if name in self.infrastructure:
                    hosts[(name, port["port"])] = self.infrastructure[name]
                    continue
                for obj in backends:
                    for c in self._containers(obj):
                        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                        target = port.get("targetPort", port["port"])
                        number = ports.get(target, target)
                        local = self.local_ports.get((ref(obj), c["name"]), {}).get(number)
                        if local is None:
                            self.problems.append(
                                f"{ref(svc)} port {port['port']}: targetPort {target} is no "
                                f"port of {ref(obj)} container {c['name']}"
                            )
                        else:
                            hosts[(name, port["port"])] = local
        return hosts

    def map_hosts(self, text: str) -> str:
        """Service DNS names (short or qualified) with a port -> 127.0.0.1 and a local port."""
        for (name, port), local in self.hosts.items():
            pattern = (
                rf"(?<![\w.-]){re.escape(name)}(\.[a-z0-9-]+(\.svc(\.cluster\.local)?)?)?:{port}\b"
            )
            text = re.sub(pattern, f"127.0.0.1:{local}", text)
        return text

    # --- one container ------------------------------------------------------------------

    def environment(self, obj: dict[str, Any], c: dict[str, Any]) -> dict[str, str]:
        """The container's environment as the kubelet builds it, hosts and ports mapped."""
        where = f"{ref(obj)} container {c['name']}"
        ports = self.local_ports.get((ref(obj), c["name"]), {})
        env: dict[str, str] = {}
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                env.update(self.secrets.get(source["secretRef"]["name"], {}))
        for i, entry in enumerate(c.get("env", [])):
            name = entry["name"]
            if "value" in entry:
                value = VAR.sub(lambda m: env.get(m.group(1), m.group(0)), str(entry["value"]))
            else:
                value = self._value_from(where, i, entry)
                if value is None:
                    continue
            if value.isdigit() and int(value) in ports:
                value = str(ports[int(value)])
            env[name] = self.map_hosts(value)
        return env

    def _value_from(self, where: str, i: int, entry: dict[str, Any]) -> str | None:
        source = entry.get("valueFrom") or {}
        for kind, store in (("secretKeyRef", self.secrets), ("configMapKeyRef", self.configmaps)):
            if kind in source:
                r = source[kind]
                value = store.get(r["name"], {}).get(r["key"])
                if value is None and not r.get("optional", False):
                    self.problems.append(
                        f"{where} env[{i}] {entry['name']}: {kind} {r['name']}/{r['key']} "
                        "does not exist, so the pod would never start"
                    )
                return value
        self.problems.append(f"{where} env[{i}] {entry['name']}: unsupported source {source}")
        return None

    def argv(self, obj: dict[str, Any], c: dict[str, Any], env: dict[str, str]) -> list[str]:
        where = f"{ref(obj)} container {c['name']}"
        argv = []
        for fieldname in ("command", "args"):
            for i, word in enumerate(c.get(fieldname) or []):
                for missing in {m for m in VAR.findall(word) if m not in env}:
                    self.problems.append(
                        f"{where} {fieldname}[{i}]: $({missing}) names no env entry of the "
                        "container (the kubelet passes it on literally)"
                    )
                word = VAR.sub(lambda m: env.get(m.group(1), m.group(0)), word)
                # A pod binds all its interfaces; here the loopback one only.
                argv.append(self.map_hosts(word).replace("0.0.0.0", "127.0.0.1"))  # noqa: S104
        if not argv:
            self.problems.append(f"{where}: no command (the image's CMD is only --help)")
            return argv
        executable = argv[0]
        if "/" not in executable:
            found = VENV_BIN / executable
            resolved = str(found) if found.exists() else shutil.which(executable, path=PATH)
            if resolved is None:
                self.problems.append(f"{where} command[0]: {executable} is not installed")
                return []
            argv[0] = resolved
        return argv

    def mounts(self, obj: dict[str, Any], c: dict[str, Any], pod_dir: Path) -> dict[str, Path]:
        """The container's emptyDir mounts -> folders of its own (its writable places)."""
        volumes = {v["name"]: v for v in (pod_spec(obj) or {}).get("volumes", [])}
        mounts = {}
        for m in c.get("volumeMounts", []):
            if "emptyDir" in volumes.get(m["name"], {}):
                mounts[m["mountPath"].rstrip("/")] = pod_dir / m["name"]
                mounts[m["mountPath"].rstrip("/")].mkdir(parents=True, exist_ok=True)
        return mounts

    def start(self, obj: dict[str, Any], c: dict[str, Any]) -> Started | None:
        where = f"{ref(obj)} container {c['name']}"
        name = f"{obj['metadata']['name']}-{c['name']}"
        pod_dir = self.workdir / name
        pod_dir.mkdir(parents=True, exist_ok=True)
        mounts = self.mounts(obj, c, pod_dir)
        env = self.environment(obj, c)
        argv = self.argv(obj, c, env)
        if not argv:
            return None
        # The image's own ENV (its Dockerfile), under the container's: PATH is this
        # environment's; a path must lie on a writable volume (the root is read-only).
        process_env = {}
        for key, value in {**self.image_env, **env}.items():
            if key == "PATH":
                process_env[key] = PATH
            elif value.startswith("/") and key in self.image_env and key not in env:
                local = _on_mount(value, mounts)
                if local is None:
                    self.problems.append(
                        f"{where}: the image sets {key}={value}, on no writable volume of "
                        "the container (its root filesystem is read-only)"
                    )
                    return None
                process_env[key] = str(local)
            else:
                process_env[key] = value
        cwd = _on_mount(c.get("workingDir") or self.image_workdir, mounts) or pod_dir
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                env=process_env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = Started(obj, c, process, log, self.local_ports.get((ref(obj), c["name"]), {}))
        self.started.append(started)
        return started

    # --- the install --------------------------------------------------------------------

    def hooks(self) -> list[dict[str, Any]]:
        """post-install hook Jobs in the order Helm runs them (weight, then name)."""
        jobs = []
        for job in self._platform("Job"):
            annotations = job["metadata"].get("annotations") or {}
            if "post-install" in annotations.get("helm.sh/hook", ""):
                jobs.append((int(annotations.get("helm.sh/hook-weight", "0")), job))
        return [job for _, job in sorted(jobs, key=lambda p: (p[0], p[1]["metadata"]["name"]))]

    def run_hooks(self) -> None:
        for job in self.hooks():
            for c in self._containers(job):
                started = self.start(job, c)
                if started is None:
                    continue
                try:
                    code = started.process.wait(timeout=self.job_timeout)
                except subprocess.TimeoutExpired:
                    code = None
                if code != 0:
                    self.problems.append(
                        f"{started.where}: command "
                        f"{'timed out' if code is None else f'exited {code}'}\n"
                        f"      {started.log_tail()}"
                    )
            self._raise()

    def start_deployments(self) -> list[Started]:
        started = []
        for obj in self._platform("Deployment"):
            for c in self._containers(obj):
                s = self.start(obj, c)
                if s is not None:
                    started.append(s)
        return started

    def probe(self, s: Started, kind: str) -> str | None:
        """None once the probe succeeds; else why not (after the timeout, or at once)."""
        spec = s.container.get(kind)
        if not spec:
            return f"{s.where}: no {kind}"
        http = spec.get("httpGet")
        if http is None:
            return f"{s.where} {kind}: only httpGet probes are checked here"
        named = {p.get("name"): p["containerPort"] for p in s.container.get("ports", [])}
        number = named.get(http["port"], http["port"])
        if number not in s.ports:
            return f"{s.where} {kind}.httpGet.port: {http['port']} is no port of the container"
        url = f"http://127.0.0.1:{s.ports[number]}{http.get('path', '/')}"
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if s.process.poll() is not None:
                return (
                    f"{s.where}: exited {s.process.returncode} before its {kind} passed "
                    f"({http.get('path')} on port {http['port']})\n      {s.log_tail()}"
                )
            try:
                answer = httpx.get(url, timeout=3)
            except httpx.HTTPError as exc:
                last = f"{exc.__class__.__name__}"
            else:
                if answer.status_code < 400:
                    return None
                last = f"HTTP {answer.status_code}"
                if 400 <= answer.status_code < 500:
                    break  # the server is up and says the path is wrong: never ready
            time.sleep(0.5)
        return (
            f"{s.where} {kind}.httpGet: GET {http.get('path')} on port {http['port']} "
            f"never succeeded ({last})\n      {s.log_tail()}"
        )

    def install(self, hooks: bool = True) -> None:
        """Hooks first, then the Deployments until every readiness probe passes."""
        self._raise()
        if hooks:
            self.run_hooks()
        for s in self.start_deployments():
            for kind in ("readinessProbe", "livenessProbe"):
                problem = self.probe(s, kind)
                if problem:
                    self.problems.append(problem)
                    break
        self._raise()

    def url(self, service: str, port: int) -> str:
        return f"http://127.0.0.1:{self.hosts[(service, port)]}"

    def _raise(self) -> None:
        if self.problems:
            raise WiringError("the rendered chart does not run:\n  " + "\n  ".join(self.problems))

    def stop(self) -> None:
        for s in self.started:
            if s.process.poll() is None:
                os.killpg(s.process.pid, signal.SIGTERM)
        for s in self.started:
            try:
                s.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(s.process.pid, signal.SIGKILL)
                s.process.wait()
