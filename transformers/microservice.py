r"""``seldon-core-microservice`` bound to 127.0.0.1, for running a component locally.

The seldon-core 1.17.1 wrapper hard-codes the wildcard address (all interfaces) for its REST
and metrics servers (``microservice._make_rest_server_prod`` and
``_make_rest_metrics_server`` build the gunicorn ``bind`` option from a literal) and has no
host flag, so a component started locally would listen on every interface. This entry point
runs the wrapper's own ``main`` unchanged except for that address: gunicorn reads its
options through ``StandaloneApplication.load_config``, and the override below sets ``bind``
to the loopback address there, keeping the port. The two ways the wrapper would still listen
elsewhere are refused: the gRPC server (binds all interfaces; local serving is REST only, so
``--grpc-workers`` defaults to 0) and debug mode (Flask's development server, on all
interfaces).

In a cluster, images run the plain ``seldon-core-microservice``: there the pod network is
the boundary and the executor must reach the container.

Usage (same arguments as ``seldon-core-microservice``)::

    python -m geomlops.transformers.microservice \
        geomlops.transformers.seldon_raster_to_vector.RasterToVector \
        --service-type TRANSFORMER --http-port 9000 --metrics-port 6000
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from geomlops.settings import LOOPBACK


def _loopback_bind(bind: str | list[str]) -> list[str]:
    addresses = [bind] if isinstance(bind, str) else list(bind)
    return [f"{LOOPBACK}:{address.rsplit(':', 1)[-1]}" for address in addresses]


def _install_loopback_bind() -> None:
    from seldon_core.gunicorn_utils import StandaloneApplication

    original = StandaloneApplication.load_config
    if getattr(original, "_geomlops_loopback", False):
        return

    def load_config(self: StandaloneApplication) -> None:
        original(self)
        self.cfg.set("bind", _loopback_bind(self.cfg.bind))

    load_config._geomlops_loopback = True  # type: ignore[attr-defined]
    StandaloneApplication.load_config = load_config


def _refuse_all_interfaces(args: list[str]) -> str | None:
    """Why these arguments would make the wrapper listen beyond loopback, if they would."""
    if "--debug" in args or os.environ.get("SELDON_DEBUG", "").lower() in {"1", "true", "yes"}:
        return "--debug / SELDON_DEBUG runs Flask's development server on all interfaces"
    for index, arg in enumerate(args):
        value = None
        if arg == "--grpc-workers" and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--grpc-workers="):
            value = arg.split("=", 1)[1]
        if value is not None and value.strip() != "0":
            return "--grpc-workers other than 0: the gRPC server binds all interfaces"
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``seldon-core-microservice`` with ``argv``, listening on loopback only."""
    args = list(sys.argv[1:] if argv is None else argv)
    reason = _refuse_all_interfaces(args)
    if reason:
        sys.stderr.write(f"error: {reason}; local components listen on {LOOPBACK} only\n")
        raise SystemExit(2)
    if not any(a == "--grpc-workers" or a.startswith("--grpc-workers=") for a in args):
        args += ["--grpc-workers", "0"]
    _install_loopback_bind()
    from seldon_core import microservice

    sys.argv = ["seldon-core-microservice", *args]
    microservice.main()


if __name__ == "__main__":
    main()
