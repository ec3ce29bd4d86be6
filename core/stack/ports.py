"""Free ports on loopback, chosen once and kept while they stay free."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from geomlops.errors import StackError
from geomlops.settings import LOOPBACK


def is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(avoid: Iterable[int] = (), host: str = LOOPBACK) -> int:
    """A port the kernel reports free, not among ``avoid``."""
    avoid = set(avoid)
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise StackError("could not find a free port on loopback", hint="close some programs")


def choose_port(
    role: str,
    *,
    configured: int,
    remembered: int | None,
    ours: bool,
    avoid: Iterable[int],
    setting: str,
) -> int:
    """Pick the port for ``role``.

    A configured port is used as it is, or refused with a message naming the setting. A
    remembered port is reused when it is free or held by our own process, so URLs handed
    out earlier stay valid; otherwise a new free port is chosen.
    """
    if configured:
        if ours or is_free(configured):
            return configured
        raise StackError(
            f"port {configured} for {role} is already in use by another program",
            hint=f"stop that program, or set {setting} to another port (0 picks a free one)",
        )
    if remembered and (ours or is_free(remembered)):
        return remembered
    return free_port(avoid)
