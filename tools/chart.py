"""charts/geomlops for CI and release, with Helm's own engine (helm-python-sdk, no helm binary).

    python tools/chart.py lint               # helm lint --strict with every example values file
    python tools/chart.py render OUT         # OUT/<example>.yaml: what each profile installs
    python tools/chart.py package OUT        # OUT/geomlops-<version>.tgz
    python tools/chart.py images             # every image the chart can pull (images.txt)
    python tools/chart.py platform-image     # the platform image the settings default to

Exit 1 with the problems on stderr when lint finds errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import helm_python
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "geomlops"


def _examples() -> dict[str, dict]:
    return {
        path.stem: yaml.safe_load(path.read_text()) or {}
        for path in sorted((CHART / "examples").glob("*.yaml"))
    }


def lint() -> int:
    """Lint strictly with the defaults and every example; 1 if any has errors."""
    failed = 0
    for name, values in {"defaults": {}, **_examples()}.items():
        report = helm_python.lint(str(CHART), values, strict=True, namespace="geomlops")
        errors = [m for m in report["messages"] if m["severity"] >= 2]
        for message in errors:
            print(f"{name}: {message['path']}: {message['error']}", file=sys.stderr)
        failed += bool(errors)
        print(f"{name}: {'FAILED' if errors else 'ok'}")
    return 1 if failed else 0


def render(out: Path) -> int:
    """Write what each example profile installs, for review and as a release asset."""
    out.mkdir(parents=True, exist_ok=True)
    chart = helm_python.Chart.load(str(CHART))
    for name, values in _examples().items():
        rendered = chart.render(values, name="geomlops", namespace="geomlops", is_install=True)
        documents = [
            text for path, text in sorted(rendered.items()) if path.endswith((".yaml", ".yml"))
        ]
        (out / f"{name}.yaml").write_text("\n---\n".join(documents))
        print(out / f"{name}.yaml")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status is the process's."""
    parser = argparse.ArgumentParser(prog="tools/chart.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("lint")
    sub.add_parser("render").add_argument("out", type=Path)
    sub.add_parser("package").add_argument("out", type=Path)
    sub.add_parser("images")
    sub.add_parser("platform-image")
    args = parser.parse_args(argv)
    if args.command == "lint":
        return lint()
    if args.command == "render":
        return render(args.out)
    if args.command == "package":
        args.out.mkdir(parents=True, exist_ok=True)
        print(helm_python.package(str(CHART), destination=str(args.out)))
        return 0
    if args.command == "images":
        # Generated and checked against the rendered chart by tests/charts/test_chart.py.
        print((CHART / "images.txt").read_text(), end="")
        return 0
    from geomlops.settings import TrainingSettings

    print(TrainingSettings.model_construct().platform_image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
