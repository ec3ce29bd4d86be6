"""Overhead of the local Argo executor over running the same commands directly.

Two measurements, each against a baseline run in this same process:

1. Per step: a steps template of N sequential no-op steps (`true`) through the executor,
   versus N ``subprocess.run(["true"])`` calls one after the other.
2. Fan-out: one DAG task with a 1,000-item ``withItems`` of no-op steps, at the executor's
   parallelism, versus the same 1,000 commands on a thread pool of the same size.

The executor's figure includes everything a run does: manifest checks, the journal write
for every node change, per-pod log files, and the final snapshot.

Usage: .venv/bin/python bench/workflow_overhead.py [--steps 50] [--items 1000] [--parallelism N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from geomlops.settings import Settings, StackSettings, WorkflowSettings
from geomlops.workflows.executor import LocalExecutor


def _sequential_manifest(steps: int) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "bench-steps-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "steps": [[{"name": f"s{i}", "template": "noop"}] for i in range(steps)],
                },
                {"name": "noop", "container": {"image": "busybox", "command": ["true"]}},
            ],
        },
    }


def _fanout_manifest(items: int) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "bench-fanout-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "dag": {
                        "tasks": [
                            {"name": "fan", "template": "noop", "withItems": list(range(items))}
                        ]
                    },
                },
                {"name": "noop", "container": {"image": "busybox", "command": ["true"]}},
            ],
        },
    }


def _timed_run(executor: LocalExecutor, manifest: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    status = executor.run(executor.submit(manifest))
    elapsed = time.perf_counter() - started
    if status["phase"] != "Succeeded":
        raise SystemExit(f"bench run failed: {status['phase']} {status['message']}")
    return elapsed, status


def _direct(count: int, parallelism: int) -> float:
    started = time.perf_counter()
    if parallelism == 1:
        for _ in range(count):
            subprocess.run(["true"], check=True)
    else:
        with ThreadPoolExecutor(parallelism) as pool:
            list(pool.map(lambda _: subprocess.run(["true"], check=True), range(count)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--parallelism", type=int, default=os.cpu_count() or 1)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="geomlops-bench-") as home:
        settings = Settings(
            stack=StackSettings(home=Path(home)),
            workflows=WorkflowSettings(parallelism=options.parallelism),
        )
        executor = LocalExecutor(settings)
        _timed_run(executor, _sequential_manifest(3))  # warm-up: imports, caches

        direct = _direct(options.steps, 1)
        through, _ = _timed_run(executor, _sequential_manifest(options.steps))
        print(f"sequential steps: {options.steps} x `true`")
        _report("direct subprocess.run", direct, options.steps, "step")
        _report("local executor", through, options.steps, "step")
        _overhead(direct, through, options.steps, "step")

        direct = _direct(options.items, options.parallelism)
        through, status = _timed_run(executor, _fanout_manifest(options.items))
        pods = sum(1 for n in status["nodes"] if n["type"] == "Pod")
        snapshot = Path(status["stateDir"]) / "run.json"
        print(f"withItems fan-out: {options.items} x `true`, parallelism {options.parallelism}")
        _report("direct (thread pool)", direct, options.items, "item")
        _report("local executor", through, options.items, "item")
        _overhead(direct, through, options.items, "item")
        print(
            f"  {'pods run':22}: {pods:8d}; state snapshot {snapshot.stat().st_size / 1e6:.2f} MB"
            f" for {len(status['nodes'])} nodes"
        )


def _report(label: str, seconds: float, count: int, unit: str) -> None:
    print(f"  {label:22}: {seconds:8.3f} s  ({seconds / count * 1e3:6.2f} ms/{unit})")


def _overhead(direct: float, through: float, count: int, unit: str) -> None:
    per = (through - direct) / count * 1e3
    print(f"  {'overhead per ' + unit:22}: {per:8.2f} ms  (ratio {through / direct:4.1f}x)")


if __name__ == "__main__":
    main()
