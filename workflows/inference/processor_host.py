"""Runs one generic processor script: the request on stdin, the result on stdout.

Started by :mod:`geomlops.workflows.inference.processor_run` as ``python -I THIS SCRIPT
MEMORY_MB CPU_S FILE_MB`` in a process of its own, without platform credentials. It sets
its own resource limits first (address space, CPU time, file size: they bind the script
it then loads, and setting them here needs no ``preexec_fn`` in a threaded parent), imports
nothing of geomlops (``-I`` leaves the working folder off the path), loads the script, calls its
``process(inputs, params)`` and writes the returned dict as JSON on stdout. Standard output
belongs to the result: a script that prints there makes it non-JSON, and its run fails.
"""

import importlib.util
import json
import resource
import sys


def limit(memory_mb: int, cpu_s: int, file_mb: int) -> None:
    """Bind this process (and the script it loads) to its limits; none can be raised again."""
    for which, value in (
        (resource.RLIMIT_AS, memory_mb * 1024 * 1024),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_FSIZE, file_mb * 1024 * 1024),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(which, (value, value))


def main() -> int:
    """Load the script named on the command line, run it on the request read from stdin."""
    limit(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    request = json.load(sys.stdin)
    spec = importlib.util.spec_from_file_location("processor", sys.argv[1])
    if spec is None or spec.loader is None:
        print(f"cannot load {sys.argv[1]} as Python", file=sys.stderr)
        return 3
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.process(request["inputs"], request["params"])
    if not isinstance(result, dict):
        print(f"process() returned {type(result).__name__}, not a dict", file=sys.stderr)
        return 3
    sys.stdout.write(json.dumps(result, allow_nan=False))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
