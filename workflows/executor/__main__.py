"""``python -m geomlops.workflows.executor run NAME``: drive one run in this process.

This is what :meth:`LocalExecutor.start` launches in the background, so that a run outlives
the command that started it (``geomlops workflows submit --no-wait``).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from geomlops.errors import GeomlopsError
from geomlops.workflows.executor.api import LocalExecutor


def main(argv: list[str]) -> int:
    """Drive the run named in ``argv``; exit 0 when driven, 1 on an error, 2 on bad usage."""
    if len(argv) != 2 or argv[0] != "run":
        print("usage: python -m geomlops.workflows.executor run RUN_NAME", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        status = LocalExecutor().run(argv[1])
    except GeomlopsError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{status['name']}: {status['phase']}{' (suspended)' if status['suspended'] else ''}")
    return 0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit, so the engine kills its pods before the process ends.

    Their nodes stay Running, and resuming the run re-runs exactly those.
    """
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
