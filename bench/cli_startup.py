"""Start-up time of the `geomlops` command line, over the interpreter's own start.

Each round runs, one after the other as fresh subprocesses of this interpreter (the venv's):
``python -c pass``, ``geomlops --help``, ``geomlops status``, ``geomlops workflows --help``
and ``geomlops serve --help``; the order rotates every round so that no command always
follows the same neighbour. The figure that matters is a command's median minus the median
of ``python -c pass`` measured in the same run: what the CLI adds (imports, typer, the
command), free of the machine's current speed. The goal (issue 12) is under 0.5 s for
``--help`` and ``status``.

``geomlops status`` runs against no stack by default: ``GEOMLOPS_HOME`` is a new, empty
directory, so it reads the settings, finds no state and answers "never started" for every
service (exit 1, as it does whenever a service is not healthy). That is the CLI's own
cost. ``--home DIR`` points it at a state directory instead: with a running stack the
figure then includes the health checks themselves (a PostgreSQL connection, HTTP probes,
an S3 bucket listing).

``--importtime`` also prints the modules ``geomlops --help`` spends most on (from
``python -X importtime``), the list to work down when the figure grows.

Usage: .venv/bin/python bench/cli_startup.py [--rounds 10] [--home DIR] [--importtime]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 0.5
"""Most a goal command may add to the interpreter's own start."""
CLI = str(Path(sys.executable).parent / "geomlops")
"""The console script pip wrote: exactly what a person's `geomlops` runs."""
BASELINE = "python -c pass"
COMMANDS: dict[str, list[str]] = {
    BASELINE: [sys.executable, "-c", "pass"],
    "geomlops --help": [sys.executable, CLI, "--help"],
    "geomlops status": [sys.executable, CLI, "status"],
    "geomlops workflows --help": [sys.executable, CLI, "workflows", "--help"],
    "geomlops serve --help": [sys.executable, CLI, "serve", "--help"],
}
GOAL_COMMANDS = ("geomlops --help", "geomlops status")


def _run(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    # status exits 1 when a service is not healthy; anything else means the command broke.
    if result.returncode not in (0, 1) or (result.returncode == 1 and "status" not in argv):
        raise SystemExit(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr.decode()[-2000:]}"
        )
    return elapsed


def _p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile (with 10 rounds: the second slowest)."""
    ordered = sorted(values)
    return ordered[max(0, -(-9 * len(ordered) // 10) - 1)]


def _measure(rounds: int, env: dict[str, str]) -> dict[str, list[float]]:
    names = list(COMMANDS)
    for name in names:  # warm-up: bytecode caches and the page cache, not measured
        _run(COMMANDS[name], env)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(_run(COMMANDS[name], env))
    return times


def _report(times: dict[str, list[float]], rounds: int, home: str) -> bool:
    base = statistics.median(times[BASELINE])
    print(f"{rounds} rounds, interleaved; GEOMLOPS_HOME={home}")
    print(f"  {'command':28} {'median':>8} {'p90':>8} {'over python':>12}")
    met = True
    for name, values in times.items():
        median = statistics.median(values)
        line = f"  {name:28} {median:7.3f}s {_p90(values):7.3f}s"
        if name != BASELINE:
            over = median - base
            line += f" {over:+11.3f}s"
            if name in GOAL_COMMANDS:
                ok = over < GOAL_SECONDS
                met = met and ok
                line += "  goal met" if ok else f"  over the {GOAL_SECONDS} s goal"
        print(line)
    print(
        f"goal ({', '.join(GOAL_COMMANDS)} under {GOAL_SECONDS} s over the interpreter): "
        + ("met" if met else "NOT met")
    )
    return met


def _importtime(env: dict[str, str], top: int) -> None:
    """The modules `geomlops --help` spends most on, by cumulative import time."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", CLI, "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((int(cumulative), int(own), name.rstrip()))
    total = sum(own for _, own, _ in rows)
    print(f"\nimports of `geomlops --help`: {len(rows)} modules, {total / 1e6:.3f} s in all")
    print(f"  {'cumulative':>10} {'self':>8}  module (indent: nesting)")
    for cumulative, own, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative / 1e3:8.1f}ms {own / 1e3:6.1f}ms {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--home", type=Path, help="State directory for `status` (default: a new, empty one)."
    )
    parser.add_argument(
        "--importtime", action="store_true", help="Also list the slowest imports of --help."
    )
    parser.add_argument("--top", type=int, default=30, help="How many imports to list.")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="geomlops-bench-") as empty:
        home = str(options.home.absolute()) if options.home else empty
        env = {**os.environ, "GEOMLOPS_HOME": home}
        times = _measure(options.rounds, env)
        _report(times, options.rounds, home if options.home else "(new, empty directory)")
        if options.importtime:
            _importtime(env, options.top)


if __name__ == "__main__":
    main()
