"""Package contents that are well-formed enough to pass the schemas and still must be refused.

Found by feeding ``geomlops package validate`` hostile packages; each becomes a problem with
its file and field:

- ``mlm.json`` over ``GEOMLOPS_REGISTRATION_MAX_MLM_BYTES`` (it becomes the model item every
  search returns; a 9 MB one passed the 10 MB per-file limit);
- ``NaN``/``Infinity`` literals in ``mlm.json``: Python's JSON reader takes them, JSON and
  every other reader do not;
- asset or link hrefs to local files (``file:///etc/passwd``, ``/etc/…``) or schemes other than
  http(s) and s3: the registered item would point readers at the registering machine;
- ``geomlops:gates`` that is not an object of metric -> ``{min|max: number}`` (empty, a
  string, a bound that is no number): promotion would check nothing;
- a Python file of the package importing a module that is neither in the package, nor the
  standard library, nor declared in its ``requirements.txt`` (by distribution name), nor
  installed: the entry point would fail at its first run, in a pod.

Nothing in the package is imported or executed: imports are read with :mod:`ast` and looked
up with :func:`importlib.util.find_spec` on top-level names only (which imports nothing).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from geomlops.ml.spec import MLM_FILE
from geomlops.model import properties as prop
from geomlops.registration.files import walk
from geomlops.registration.problems import Problem
from geomlops.settings import RegistrationSettings

_CONSTANT = re.compile(r"-?\b(NaN|Infinity)\b")
_HREF_SCHEMES = ("http", "https", "s3")


def package_input_problems(package: Path, limits: RegistrationSettings) -> list[Problem]:
    """Every problem of this module's kinds in the package at ``package``."""
    problems: list[Problem] = []
    mlm_file = package / MLM_FILE
    if mlm_file.is_file():
        problems += _mlm_problems(mlm_file, limits)
    problems += _import_problems(package)
    return problems


def _mlm_problems(file: Path, limits: RegistrationSettings) -> list[Problem]:
    size = file.stat().st_size
    if size > limits.max_mlm_bytes:
        return [
            Problem(
                MLM_FILE,
                "",
                f"is {size} bytes, over the {limits.max_mlm_bytes} accepted for the model item",
                "describe the model, do not embed data in it "
                "(limit: GEOMLOPS_REGISTRATION_MAX_MLM_BYTES)",
            )
        ]
    try:
        text = file.read_text(encoding="utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return []  # reported by the validator's own reading of mlm.json
    problems = _constant_problems(text, data)
    if isinstance(data, dict):
        problems += _href_problems(data)
        props = data.get("properties")
        if isinstance(props, dict) and prop.GATES in props:
            problems += _gate_problems(props[prop.GATES])
    return problems


def _constant_problems(text: str, data: Any) -> list[Problem]:
    if not _has_constant(data):
        return []
    match = _CONSTANT.search(text)
    where = ""
    if match:
        line = text.count("\n", 0, match.start()) + 1
        where = f"line {line}, column {match.start() - text.rfind(chr(10), 0, match.start())}"
    word = match.group(0) if match else "NaN"
    return [
        Problem(
            MLM_FILE,
            where,
            f"holds the literal {word}, which JSON does not allow",
            "write null, or a number",
        )
    ]


def _has_constant(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_constant(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_constant(v) for v in value)
    return False


def _href_problem(href: Any, location: str) -> Problem | None:
    if not isinstance(href, str):
        return None
    parts = urlsplit(href)
    if parts.scheme == "file" or (not parts.scheme and href.startswith(("/", "\\", "~"))):
        why = "points at a file of the registering machine"
    elif parts.scheme and parts.scheme not in _HREF_SCHEMES:
        why = f"uses the scheme {parts.scheme!r} (allowed: {', '.join(_HREF_SCHEMES)})"
    else:
        return None
    return Problem(
        MLM_FILE,
        location,
        f"href {href!r:.120} {why}",
        "use a path relative to the package (./main.py) or an http(s)/s3 URL",
    )


def _href_problems(data: dict[str, Any]) -> list[Problem]:
    problems = []
    assets = data.get("assets")
    if isinstance(assets, dict):
        for key, asset in assets.items():
            if isinstance(asset, dict):
                found = _href_problem(asset.get("href"), f"$.assets.{key}.href")
                if found:
                    problems.append(found)
    links = data.get("links")
    if isinstance(links, list):
        for index, link in enumerate(links):
            if isinstance(link, dict):
                found = _href_problem(link.get("href"), f"$.links[{index}].href")
                if found:
                    problems.append(found)
    return problems


def _gate_problems(gates: Any) -> list[Problem]:
    where = f"$.properties['{prop.GATES}']"
    hint = 'e.g. {"val_iou_water": {"min": 0.7}}'
    if not isinstance(gates, dict):
        return [Problem(MLM_FILE, where, f"is {gates!r:.60}, not an object of gates", hint)]
    if not gates:
        return [Problem(MLM_FILE, where, "declares no gate: promotion would check nothing", hint)]
    problems = []
    for metric, bounds in gates.items():
        at = f"{where}.{metric}"
        if not isinstance(bounds, dict) or not ({"min", "max"} & set(bounds)):
            problems.append(
                Problem(MLM_FILE, at, f"is {bounds!r:.60}, not an object with min and/or max", hint)
            )
            continue
        for key in ("min", "max"):
            value = bounds.get(key)
            if key in bounds and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                problems.append(
                    Problem(MLM_FILE, f"{at}.{key}", f"is {value!r:.60}, not a finite number", hint)
                )
        unknown = sorted(set(bounds) - {"min", "max"})
        if unknown:
            problems.append(
                Problem(MLM_FILE, at, f"has unknown key(s) {unknown} (only min, max)", hint)
            )
    return problems


def _import_problems(package: Path) -> list[Problem]:
    problems = []
    local = {p.stem for p in package.iterdir() if p.suffix == ".py"} | {
        p.name for p in package.iterdir() if p.is_dir()
    }
    declared = _declared_distributions(package)
    for file in walk(package):
        if file.suffix != ".py" or not file.is_file() or file.is_symlink():
            continue
        relative = str(file.relative_to(package))
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=relative)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # the validator reports unparsable entry points
        for node in ast.walk(tree):
            for name in _imported(node):
                top = name.split(".")[0]
                if (
                    top in local
                    or top in sys.stdlib_module_names
                    or canonicalize_name(top) in declared
                    or _installed(top)
                ):
                    continue
                problems.append(
                    Problem(
                        relative,
                        f"line {getattr(node, 'lineno', '?')}",
                        f"imports {name!r}, which is neither a file of the package nor an "
                        "installed module",
                        f"add {top}.py to the package, fix the name, or declare the "
                        "distribution in requirements.txt",
                    )
                )
    return problems


def _declared_distributions(package: Path) -> set[str]:
    """Canonical names of the distributions the package's ``requirements.txt`` declares.

    The package runs in an environment built from that file, not in the platform's, so a
    framework it declares (terratorch) is importable there though not here. A module named
    differently from its distribution (``cv2`` from opencv) is still looked up as installed.
    """
    file = package / "requirements.txt"
    if not file.is_file():
        return set()
    names: set[str] = set()
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            names.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue  # the environment builder reports a bad line with its number
    return names


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module]
    return []


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
