"""The local stack's watchdog: restarts a service whose process died, without waiting for `up`.

``geomlops up`` starts it (``python -m geomlops.stack.supervisor``) as one more background
process with a PID file; ``geomlops down`` stops it first, so it never fights a shutdown.
It looks at every service each ``GEOMLOPS_SUPERVISE_INTERVAL`` seconds and restarts only
the ones whose process is gone: a service that runs but answers slowly is left alone (a
busy machine must not turn into a restart loop). Restarts follow the stack's waves, so a
dead PostgreSQL comes back before anything that needs it is touched.

A service that fails to start again is retried after a wait that doubles from the interval
up to ``GEOMLOPS_SUPERVISE_MAX_BACKOFF``; the log (``logs/supervisor.log``) says what died,
when, each attempt and its outcome. Each restart holds the stack's lock, as `up` and `down`
do, so the three never work on the services at the same time.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from geomlops.errors import StackError
from geomlops.settings import Settings, get_settings
from geomlops.stack import process

if TYPE_CHECKING:
    from geomlops.stack.context import StackContext
    from geomlops.stack.manager import LocalStack, Service

NAME = "supervisor"
"""Its PID file and log are named so: ``run/supervisor.pid``, ``logs/supervisor.log``."""


def running(ctx: StackContext) -> bool:
    """Whether the watchdog of this state directory is alive."""
    return process.read_pid(ctx.paths.pid_file(NAME)) is not None


def ensure(ctx: StackContext) -> bool:
    """Start the watchdog unless it runs; True if it was started."""
    if running(ctx):
        return False
    ctx.paths.ensure()
    process.spawn(
        [ctx.python, "-m", "geomlops.stack.supervisor"],
        log_file=ctx.paths.log_file(NAME),
        pid_file=ctx.paths.pid_file(NAME),
        env=ctx.child_env(),
        cwd=ctx.paths.run_dir,
    )
    return True


def stop(ctx: StackContext) -> bool:
    """Stop the watchdog (it finishes nothing half-way: a restart it began is `up`'s to see)."""
    return process.stop(ctx.paths.pid_file(NAME), timeout=10.0)


@dataclass
class Backoff:
    """When a service that failed to restart may be tried again."""

    first: float
    limit: float
    failures: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)

    def ready(self, name: str, now: float) -> bool:
        return now >= self.not_before.get(name, 0.0)

    def failed(self, name: str, now: float) -> float:
        """Record a failed attempt; returns the wait before the next one."""
        count = self.failures[name] = self.failures.get(name, 0) + 1
        wait = min(self.first * 2**count, self.limit)
        self.not_before[name] = now + wait
        return wait

    def succeeded(self, name: str) -> None:
        self.failures.pop(name, None)
        self.not_before.pop(name, None)


class Supervisor:
    """One look at the services and the restarts it calls for (:meth:`tick`)."""

    def __init__(self, settings: Settings) -> None:
        from geomlops.stack.manager import LocalStack

        self.settings = settings
        self.stack: LocalStack = LocalStack(settings)
        self.backoff = Backoff(
            settings.stack.supervise_interval, settings.stack.supervise_max_backoff
        )

    def log(self, message: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)

    def tick(self) -> list[str]:
        """Restart every dead service that is due; returns the names restarted."""
        from geomlops.stack.manager import SERVICE_WAVES, ServiceFactory
        from geomlops.stack.state import load_ports

        self.stack.ctx.ports = load_ports(self.stack.paths)
        by_type: dict[ServiceFactory, Service] = {type(s): s for s in self.stack.services()}
        dead = [s for s in by_type.values() if self._dead(s)]
        if not dead:
            return []
        restarted: list[str] = []
        try:
            with self.stack.locked(wait=0):
                for wave in SERVICE_WAVES:
                    members = [by_type[cls] for cls in wave]
                    for service in members:
                        if service in dead and self._restart(service):
                            restarted.append(service.name)
        except StackError:
            return restarted  # `up` or `down` is at work: it sees to the services itself
        return restarted

    def _dead(self, service: Service) -> bool:
        roles = service.port_roles
        return all(r in self.stack.ctx.ports for r in roles) and not service.running()

    def _restart(self, service: Service) -> bool:
        now = time.monotonic()
        if not self.backoff.ready(service.name, now):
            return False
        attempt = self.backoff.failures.get(service.name, 0) + 1
        self.log(f"{service.name}: not running; restarting (attempt {attempt})")
        began = time.monotonic()
        try:
            with _sigterm_deferred():  # `down` must find the PID file of what it starts
                service.start()
            self.stack.wait_healthy(service)
            service.after_healthy()
        except Exception as exc:  # a failed restart is logged and retried, never fatal
            wait = self.backoff.failed(service.name, time.monotonic())
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            self.log(f"{service.name}: restart failed ({first}); next try in {wait:.0f} s")
            return False
        self.backoff.succeeded(service.name)
        self.log(f"{service.name}: healthy again after {time.monotonic() - began:.1f} s")
        return True


@contextmanager
def _sigterm_deferred() -> Iterator[None]:
    """Hold back SIGTERM while a service is spawned and recorded, then deliver it.

    Stopped between starting a service and writing its PID file, the watchdog would leave
    that service running untracked: `down` could not find it, and it would hold its port.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def main() -> None:
    """Watch until stopped (SIGTERM) or until the state directory is gone."""
    settings = get_settings()
    supervisor = Supervisor(settings)

    def stop_now(signum: int, frame: object) -> None:
        supervisor.log("stopping")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop_now)
    supervisor.log(f"watching the stack in {supervisor.stack.paths.home}")
    while supervisor.stack.paths.state_file.exists():
        supervisor.tick()
        time.sleep(settings.stack.supervise_interval)
    supervisor.log("the state directory is gone; stopping")


if __name__ == "__main__":
    main()
