"""Cold start time of the local stack and its resident memory at idle.

Cold means a new, empty state directory (initdb, migrations, buckets all run); warm is
`up` again on the same directory after `down`. Memory is the RSS summed over each
service's process tree, after a short idle period.

    .venv/bin/python bench/stack_startup.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil

from geomlops.settings import get_settings
from geomlops.stack.manager import LocalStack
from geomlops.stack.process import read_pid

IDLE_SECONDS = 10


def _tree_rss(root: psutil.Process) -> int:
    procs = [root, *root.children(recursive=True)]
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def _service_roots(stack: LocalStack) -> dict[str, psutil.Process]:
    roots = {}
    for service in stack.services():
        if service.name == "postgres":
            pid_file = stack.paths.service_dir("postgres") / "data" / "postmaster.pid"
            roots[service.name] = psutil.Process(int(pid_file.read_text().splitlines()[0]))
        else:
            record = read_pid(stack.paths.pid_file(service.name))
            assert record is not None
            roots[service.name] = psutil.Process(record.pid)
    return roots


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="geomlops-bench-"))
    os.environ["GEOMLOPS_HOME"] = str(home)
    get_settings.cache_clear()
    stack = LocalStack(get_settings())
    try:
        started = time.perf_counter()
        stack.up()
        cold = time.perf_counter() - started

        time.sleep(IDLE_SECONDS)
        rss = {name: _tree_rss(proc) for name, proc in _service_roots(stack).items()}

        started = time.perf_counter()
        stack.down()
        down = time.perf_counter() - started

        started = time.perf_counter()
        stack.up()
        warm = time.perf_counter() - started

        print(f"cold up (empty state directory): {cold:6.1f} s")
        print(f"warm up (after down, same data): {warm:6.1f} s")
        print(f"down:                            {down:6.1f} s")
        print(f"resident memory at idle ({IDLE_SECONDS} s after up):")
        for name, value in rss.items():
            print(f"  {name:9} {value / 2**20:8.1f} MiB")
        print(f"  {'total':9} {sum(rss.values()) / 2**20:8.1f} MiB")
    finally:
        stack.down()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
