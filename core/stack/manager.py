"""Bring the local stack up, down, and report on it.

`up` is idempotent and self-healing: a service that is already healthy is left alone, one
that died (or whose dependency moved to another port) is started again on the same data.
If a service cannot start, its log tail is reported and everything is stopped, so a failed
`up` never leaves half a stack behind.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Protocol

from geomlops.errors import ConfigError, StackError
from geomlops.settings import Settings
from geomlops.stack import process, supervisor
from geomlops.stack.context import StackContext
from geomlops.stack.gateway import GatewayService
from geomlops.stack.ports import choose_port
from geomlops.stack.postgres import PostgresService
from geomlops.stack.processes import (
    ArgoApiService,
    MLflowService,
    SeaweedService,
    StacApiService,
)
from geomlops.stack.state import (
    StatePaths,
    generated_secrets,
    load_ports,
    redact_logs,
    restrict,
    save_ports,
)

Progress = Callable[[str], None]


class Service(Protocol):
    """What the manager needs of each service."""

    @property
    def name(self) -> str: ...
    @property
    def port_roles(self) -> tuple[str, ...]: ...
    @property
    def log(self) -> object: ...

    def url(self) -> str: ...
    def running(self) -> bool: ...
    def start(self) -> None: ...
    def check(self) -> str | None: ...
    def after_healthy(self) -> None: ...
    def stop(self) -> bool: ...


ServiceFactory = Callable[[StackContext], Service]
"""A service class, as the manager uses it: built from the stack's context."""

SERVICE_WAVES: tuple[tuple[ServiceFactory, ...], ...] = (
    (PostgresService,),
    (SeaweedService, MLflowService, StacApiService, ArgoApiService, GatewayService),
)
"""Services of a wave start together once the previous wave is healthy; `down` stops
them in reverse order."""
SERVICE_TYPES = tuple(cls for wave in SERVICE_WAVES for cls in wave)

DEPENDS_ON: dict[str, tuple[str, ...]] = {"mlflow": ("postgres", "s3"), "stac": ("postgres",)}
"""Port roles each service was started with; if one moves, the service restarts."""


NEEDS: dict[str, tuple[str, ...]] = {
    "mlflow": ("postgres", "s3"),
    "stac": ("postgres",),
    "argo": ("stac",),
    "gateway": ("stac",),
}
"""Services each one needs to do its work (its runs, items, credentials live there).

A service can answer its own health check while one of these is down (MLflow's
``/health`` and the STAC API's ping never touch the database), so `status` reports it as
*degraded*, not healthy."""


@dataclass(frozen=True)
class ServiceStatus:
    """One line of `geomlops status`."""

    name: str
    url: str | None
    running: bool
    healthy: bool
    detail: str
    degraded: bool = False
    """Running and answering, but a service it needs is not healthy."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def degrade_dependents(statuses: list[ServiceStatus]) -> list[ServiceStatus]:
    """Mark every answering service whose needs (:data:`NEEDS`, transitively) are unhealthy."""
    by_name = {s.name: s for s in statuses}

    def broken(name: str, seen: frozenset[str] = frozenset()) -> list[str]:
        found = []
        for need in NEEDS.get(name, ()):
            if need in seen or need not in by_name:
                continue
            if not by_name[need].healthy:
                found.append(need)
            found += broken(need, seen | {name})
        return list(dict.fromkeys(found))

    result = []
    for status in statuses:
        down = broken(status.name)
        if status.healthy and down:
            detail = f"degraded: {', '.join(down)} {'is' if len(down) == 1 else 'are'} down"
            status = ServiceStatus(
                status.name, status.url, status.running, False, detail, degraded=True
            )
        result.append(status)
    return result


def _configured_ports(settings: Settings) -> dict[str, tuple[int, str]]:
    """Port roles a setting can fix, with the setting's name for error messages."""
    return {
        "postgres": (settings.db.port, "GEOMLOPS_DB_PORT"),
        "s3": (settings.s3.port, "GEOMLOPS_S3_PORT"),
        "mlflow": (settings.mlflow.port, "GEOMLOPS_MLFLOW_PORT"),
        "stac": (settings.stac.port, "GEOMLOPS_STAC_PORT"),
        "argo": (settings.argo.port, "GEOMLOPS_ARGO_PORT"),
        "gateway": (settings.gateway.port, "GEOMLOPS_GATEWAY_PORT"),
    }


def _reject_external(settings: Settings) -> None:
    external = {
        "GEOMLOPS_DB_DSN": settings.db.dsn,
        "GEOMLOPS_S3_ENDPOINT_URL": settings.s3.endpoint_url,
        "GEOMLOPS_MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        "GEOMLOPS_STAC_URL": settings.stac.url,
    }
    given = [name for name, value in external.items() if value]
    if given:
        raise ConfigError(
            f"`geomlops up` runs the local stack, but {', '.join(given)} point(s) elsewhere",
            hint="unset those variables to use the local stack, or don't run `up`",
        )


class LocalStack:
    """The services of the local stack under one state directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = StatePaths(settings.stack.home)
        self.ctx = StackContext(settings=settings, paths=self.paths)

    def services(self) -> list[Service]:
        return [cls(self.ctx) for cls in SERVICE_TYPES]

    @contextmanager
    def locked(self, wait: float | None = None) -> Iterator[None]:
        """One `up`, `down` or watchdog restart at a time per state directory.

        Waits up to ``wait`` seconds for the lock (default: one service's startup time, as
        long as a watchdog restart may hold it), then refuses.
        """
        self.paths.ensure()
        limit = time.monotonic() + (self.settings.stack.startup_timeout if wait is None else wait)
        with (self.paths.run_dir / "stack.lock").open("w") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= limit:
                        raise StackError(
                            f"another `geomlops up` or `down` (or the watchdog restarting a "
                            f"service) is working on {self.paths.home}",
                            hint="wait for it to finish",
                        ) from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _assign_ports(self, services: list[Service], running: dict[str, bool]) -> set[str]:
        """Choose every port; return the roles whose port changed."""
        remembered = load_ports(self.paths)
        configured = _configured_ports(self.settings)
        chosen: dict[str, int] = {}
        for service in services:
            for role in service.port_roles:
                value, setting = configured.get(role, (0, "the settings"))
                chosen[role] = choose_port(
                    f"{service.name} ({role})" if role != service.name else service.name,
                    configured=value,
                    remembered=remembered.get(role),
                    ours=running[service.name],
                    avoid=chosen.values(),
                    setting=setting,
                )
        save_ports(self.paths, chosen)
        self.ctx.ports = chosen
        return {role for role, port in chosen.items() if remembered.get(role) != port}

    def up(self, progress: Progress = lambda _: None) -> list[ServiceStatus]:
        """Start whatever is not running and healthy; wait until all are."""
        _reject_external(self.settings)
        with self.locked():
            # Logs and data are their owner's alone (what an earlier version left, too).
            restrict(self.paths, keep=(PostgresService(self.ctx).data,))
            redact_logs(self.paths, generated_secrets(self.paths))
            services = self.services()
            running = {s.name: s.running() for s in services}
            moved = self._assign_ports(services, running)
            by_type: dict[ServiceFactory, Service] = {type(s): s for s in services}
            try:
                for wave in SERVICE_WAVES:
                    members = [by_type[cls] for cls in wave]
                    started = [
                        s for s in members if self._start(s, running[s.name], moved, progress)
                    ]
                    for service in started:
                        self.wait_healthy(service)
                    for service in members:
                        service.after_healthy()
            except Exception:
                progress("stopping the stack after the failure")
                supervisor.stop(self.ctx)  # a watchdog of an earlier `up` would restart it
                self._stop_all(services)
                raise
            if self.settings.stack.supervise and supervisor.ensure(self.ctx):
                progress(f"watchdog: started (log: {self.paths.log_file(supervisor.NAME)})")
        return self.status()

    def _start(
        self, service: Service, was_running: bool, moved: set[str], progress: Progress
    ) -> bool:
        """Start ``service`` unless it runs healthy already; True if it was started."""
        stale = bool(set(DEPENDS_ON.get(service.name, ())) & moved)
        if was_running and not stale and service.check() is None:
            progress(f"{service.name}: already running at {service.url()}")
            return False
        if was_running:
            progress(f"{service.name}: restarting (unhealthy or a dependency moved)")
            service.stop()
        progress(f"{service.name}: starting on {service.url()}")
        service.start()
        return True

    def wait_healthy(self, service: Service) -> None:
        """Until ``service`` answers healthy; StackError with its log tail after the timeout."""
        deadline = time.monotonic() + self.settings.stack.startup_timeout
        problem: str | None = "not checked"
        while time.monotonic() < deadline:
            problem = service.check()
            if problem is None:
                return
            if problem == "not running":
                break
            time.sleep(0.25)
        log = self.paths.log_file(service.name)
        raise StackError(
            f"{service.name} did not become healthy ({problem}). Last lines of {log}:\n"
            + process.log_tail(log),
            hint="read the log above; `geomlops up` again retries, `geomlops down` stops all",
        )

    def _stop_all(self, services: list[Service]) -> list[str]:
        stopped = []
        for service in reversed(services):
            try:
                if service.stop():
                    stopped.append(service.name)
            except StackError:
                continue
        return stopped

    def down(self, progress: Progress = lambda _: None) -> list[str]:
        """Stop every service; data stays in the state directory."""
        if not self.paths.home.exists():
            return []
        # The watchdog first (it could restart what is being stopped); outside the lock,
        # which a restart of its own may hold.
        supervisor.stop(self.ctx)
        with self.locked():
            self.ctx.ports = load_ports(self.paths)
            stopped = []
            for service in reversed(self.services()):
                if service.stop():
                    progress(f"{service.name}: stopped")
                    stopped.append(service.name)
            return stopped

    def status(self) -> list[ServiceStatus]:
        """Name, URL and health of every service."""
        ports = load_ports(self.paths) if self.paths.home.exists() else {}
        self.ctx.ports = ports
        result = []
        for service in self.services():
            if service.port_roles[0] not in ports:
                result.append(ServiceStatus(service.name, None, False, False, "never started"))
                continue
            running = service.running()
            problem = service.check() if running else "not running"
            result.append(
                ServiceStatus(
                    name=service.name,
                    url=service.url(),
                    running=running,
                    healthy=problem is None,
                    detail=problem or "healthy",
                )
            )
        return degrade_dependents(result)
